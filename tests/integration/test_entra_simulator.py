"""The Entra-ID-like issuer over a real https socket, checked the way its clients use it.

The admin API will validate bearer tokens from discovery + JWKS with PyJWT; the portal
will sign in with MSAL's auth code + PKCE flow and redeem the code cross-origin. These
tests do both by hand, so a simulator that drifts from what those clients need fails here.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette

from dev.sandbox.entra import (
    API_APP_ID_URI,
    API_CLIENT_ID,
    CONTOSO_TID,
    FABRIKAM_TID,
    GLOBAL_ADMINISTRATOR,
    PORTAL_CLIENT_ID,
    create_app,
)
from dev.sandbox.server import LoopbackServer, client_ssl_context, free_port
from dev.sandbox.tls import ensure_local_tls

pytestmark = pytest.mark.integration

AVERY = "c6ee2195-2f43-43df-9261-340dddf3bb56"  # Contoso Clinic, Global Administrator
JORDAN = "80b79bca-a426-4316-920a-c761b7ab6f47"  # Contoso Clinic, ordinary user
PORTAL_ORIGIN = "http://127.0.0.1:7071"
REDIRECT_URI = f"{PORTAL_ORIGIN}/portal/"
API_SCOPE = f"{API_APP_ID_URI}/Admin.ReadWrite"
AUTHORIZE = "/organizations/oauth2/v2.0/authorize"  # the portal's authority is organizations
TOKEN = "/organizations/oauth2/v2.0/token"


@pytest.fixture(scope="module")
def entra(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[LoopbackServer, Starlette, Path]]:
    tls = ensure_local_tls(tmp_path_factory.mktemp("tls"))
    port = free_port()
    app = create_app(public_url=f"https://127.0.0.1:{port}")
    server = LoopbackServer(app, port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra")
    with server:
        yield server, app, tls.ca_file


@pytest.fixture
def client(entra) -> Iterator[httpx.Client]:
    """A fresh https client (own cookie jar) trusting only the local CA."""
    server, _, ca_file = entra
    with httpx.Client(base_url=server.url, verify=client_ssl_context(ca_file)) as http:
        yield http


@pytest.fixture
def issuer(entra):
    return entra[1].state.issuer


def verify(client: httpx.Client, token: str, tid: str, audience: str = API_CLIENT_ID) -> dict:
    """Validate like the admin API: discovery -> jwks_uri -> key by kid -> RS256 + iss + aud."""
    config = client.get(f"/{tid}/v2.0/.well-known/openid-configuration").json()
    keys = client.get(config["jwks_uri"]).json()["keys"]
    kid = jwt.get_unverified_header(token)["kid"]
    matching = [k for k in keys if k["kid"] == kid]
    if not matching:
        raise jwt.InvalidKeyError(f"kid {kid} is not in the JWKS")
    key = jwt.PyJWK(matching[0]).key
    return jwt.decode(token, key, algorithms=["RS256"], audience=audience, issuer=config["issuer"])


# --- discovery ------------------------------------------------------------------------


def test_tenant_discovery_names_the_tenant_issuer_and_endpoints(client: httpx.Client) -> None:
    base = str(client.base_url).rstrip("/")
    response = client.get(f"/{CONTOSO_TID}/v2.0/.well-known/openid-configuration")

    assert response.status_code == 200
    config = response.json()
    assert config["issuer"] == f"{base}/{CONTOSO_TID}/v2.0"
    assert config["authorization_endpoint"] == f"{base}/{CONTOSO_TID}/oauth2/v2.0/authorize"
    assert config["token_endpoint"] == f"{base}/{CONTOSO_TID}/oauth2/v2.0/token"
    assert config["jwks_uri"] == f"{base}/{CONTOSO_TID}/discovery/v2.0/keys"
    assert config["end_session_endpoint"] == f"{base}/{CONTOSO_TID}/oauth2/v2.0/logout"
    assert config["id_token_signing_alg_values_supported"] == ["RS256"]
    assert config["response_types_supported"] == ["code"]
    assert set(config["response_modes_supported"]) == {"query", "fragment"}
    assert {"openid", "profile", "offline_access"} <= set(config["scopes_supported"])


def test_multi_tenant_discovery_advertises_the_issuer_template(client: httpx.Client) -> None:
    base = str(client.base_url).rstrip("/")
    for segment in ("organizations", "common"):
        config = client.get(f"/{segment}/v2.0/.well-known/openid-configuration").json()
        assert config["issuer"] == base + "/{tenantid}/v2.0"
        assert config["authorization_endpoint"] == f"{base}/{segment}/oauth2/v2.0/authorize"
    # A tenant domain resolves to the tenant id, as Entra does.
    by_domain = client.get("/fabrikam-health.example/v2.0/.well-known/openid-configuration").json()
    assert by_domain["issuer"] == f"{base}/{FABRIKAM_TID}/v2.0"


def test_unknown_tenant_is_invalid_tenant(client: httpx.Client) -> None:
    nowhere = "00000000-0000-0000-0000-000000000000"
    response = client.get(f"/{nowhere}/v2.0/.well-known/openid-configuration")
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_tenant"


def test_jwks_publishes_rsa_signing_keys(client: httpx.Client, issuer) -> None:
    keys = client.get(f"/{CONTOSO_TID}/discovery/v2.0/keys").json()["keys"]
    assert len(keys) >= 2  # the signing key and the next one, announced before use
    assert {k["kty"] for k in keys} == {"RSA"} and {k["use"] for k in keys} == {"sig"}
    assert {k["e"] for k in keys} == {"AQAB"}
    assert issuer.keys.current.kid in {k["kid"] for k in keys}


# --- minted access tokens -------------------------------------------------------------


def test_admin_token_verifies_against_the_served_jwks(client: httpx.Client, issuer) -> None:
    token = issuer.mint_access_token(CONTOSO_TID, "admin")

    claims = verify(client, token, CONTOSO_TID)

    assert claims["iss"] == f"{str(client.base_url).rstrip('/')}/{CONTOSO_TID}/v2.0"
    assert claims["aud"] == API_CLIENT_ID
    assert claims["tid"] == CONTOSO_TID
    assert claims["oid"] == AVERY
    assert GLOBAL_ADMINISTRATOR in claims["wids"]
    assert claims["ver"] == "2.0"
    assert claims["scp"] == "Admin.ReadWrite"
    assert claims["azp"] == PORTAL_CLIENT_ID
    assert claims["preferred_username"] == "avery.lindqvist@contoso-clinic.example"


def test_non_admin_token_lacks_the_global_administrator_role(client: httpx.Client, issuer) -> None:
    claims = verify(client, issuer.mint_access_token(CONTOSO_TID, "user"), CONTOSO_TID)

    assert claims["oid"] == JORDAN
    assert GLOBAL_ADMINISTRATOR not in claims["wids"]
    assert "roles" not in claims


def test_app_role_holder_gets_the_connector_admin_role(client: httpx.Client, issuer) -> None:
    claims = verify(client, issuer.mint_access_token(CONTOSO_TID, "app-admin"), CONTOSO_TID)
    assert claims["roles"] == ["Connector.Admin"]
    assert GLOBAL_ADMINISTRATOR not in claims["wids"]


def test_expired_token_fails_verification(client: httpx.Client, issuer) -> None:
    token = issuer.mint_access_token(CONTOSO_TID, "admin", expires_in=-120)
    with pytest.raises(jwt.ExpiredSignatureError):
        verify(client, token, CONTOSO_TID)


def test_not_yet_valid_token_fails_verification(client: httpx.Client, issuer) -> None:
    token = issuer.mint_access_token(CONTOSO_TID, "admin", not_before_offset=600)
    with pytest.raises(jwt.ImmatureSignatureError):
        verify(client, token, CONTOSO_TID)


def test_wrong_audience_fails_verification(client: httpx.Client, issuer) -> None:
    token = issuer.mint_access_token(CONTOSO_TID, "admin", audience="api://someone-else")
    with pytest.raises(jwt.InvalidAudienceError):
        verify(client, token, CONTOSO_TID)


def test_other_tenants_issuer_fails_verification(client: httpx.Client, issuer) -> None:
    fabrikam_issuer = issuer.issuer(FABRIKAM_TID)
    token = issuer.mint_access_token(CONTOSO_TID, "admin", claims={"iss": fabrikam_issuer})
    with pytest.raises(jwt.InvalidIssuerError):
        verify(client, token, CONTOSO_TID)


def test_token_from_an_unpublished_key_fails_verification(client: httpx.Client, issuer) -> None:
    foreign = issuer.mint_access_token(CONTOSO_TID, "admin", signed_by="foreign")
    with pytest.raises(jwt.InvalidKeyError, match="not in the JWKS"):
        verify(client, foreign, CONTOSO_TID)
    # A published kid over a signature made with another key.
    forged = issuer.mint_access_token(CONTOSO_TID, "admin", signed_by="forged")
    assert jwt.get_unverified_header(forged)["kid"] == issuer.keys.current.kid
    with pytest.raises(jwt.InvalidSignatureError):
        verify(client, forged, CONTOSO_TID)


def test_http_minting_api_issues_verifiable_tokens(client: httpx.Client) -> None:
    request = {"tenant": FABRIKAM_TID, "user": "user", "expires_in": 900}
    response = client.post("/_sandbox/tokens", json=request)

    assert response.status_code == 200
    body = response.json()
    assert body["token_type"] == "Bearer" and body["expires_in"] == 900
    claims = verify(client, body["access_token"], FABRIKAM_TID)
    assert claims["tid"] == FABRIKAM_TID
    assert claims["preferred_username"] == "theo.brandt@fabrikam-health.example"
    assert GLOBAL_ADMINISTRATOR not in claims["wids"]

    unknown = client.post("/_sandbox/tokens", json={"tenant": "no-such-tenant.example"})
    assert unknown.status_code == 404


def test_tokens_signed_before_a_rotation_still_verify(client: httpx.Client, issuer) -> None:
    before = issuer.mint_access_token(CONTOSO_TID, "admin")
    old_kid = jwt.get_unverified_header(before)["kid"]

    rotated = client.post("/_sandbox/keys/rotate").json()

    assert rotated["kid"] != old_kid and old_kid in rotated["published"]
    assert verify(client, before, CONTOSO_TID)["oid"] == AVERY
    after = issuer.mint_access_token(CONTOSO_TID, "admin")
    assert jwt.get_unverified_header(after)["kid"] == rotated["kid"]
    assert verify(client, after, CONTOSO_TID)["oid"] == AVERY


def test_simulator_mounts_the_fault_switches(client: httpx.Client) -> None:
    path = f"/{CONTOSO_TID}/discovery/v2.0/keys"
    armed = client.post("/_sandbox/faults", json={"status": 503, "count": 1, "path_prefix": path})
    assert armed.status_code == 200

    assert client.get(path).status_code == 503
    assert client.get(path).status_code == 200


# --- authorization code + PKCE, as MSAL does it ---------------------------------------


class _FormReader(HTMLParser):
    """The picker's form: its action, hidden inputs and submit buttons (value -> label)."""

    def __init__(self) -> None:
        super().__init__()
        self.action = ""
        self.hidden: dict[str, str] = {}
        self.buttons: dict[str, str] = {}
        self._button: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "form":
            self.action = a.get("action", "")
        elif tag == "input" and a.get("type") == "hidden":
            self.hidden[a["name"]] = a["value"]
        elif tag == "button" and a.get("name") == "account":
            self._button = a["value"]
            self.buttons[self._button] = ""

    def handle_endtag(self, tag: str) -> None:
        if tag == "button":
            self._button = None

    def handle_data(self, data: str) -> None:
        if self._button is not None:
            self.buttons[self._button] += data


def pkce_pair() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(64)
    digest = hashlib.sha256(verifier.encode()).digest()
    challenge = base64.urlsafe_b64encode(digest).rstrip(b"=").decode()
    return verifier, challenge


def authorize_params(challenge: str, **overrides: str) -> dict[str, str]:
    """What @azure/msal-browser sends for loginRedirect with the API scope."""
    params = {
        "client_id": PORTAL_CLIENT_ID,
        "scope": f"{API_SCOPE} openid profile offline_access",
        "redirect_uri": REDIRECT_URI,
        "client-request-id": "0b2ff6b4-6a8f-4f1e-a3f7-5a1f7f1b5c8e",
        "response_mode": "fragment",
        "response_type": "code",
        "x-client-SKU": "msal.js.browser",
        "client_info": "1",
        "code_challenge": challenge,
        "code_challenge_method": "S256",
        "nonce": "nonce-" + secrets.token_hex(8),
        "state": "state-" + secrets.token_hex(8),
    }
    params.update(overrides)
    return params


def fragment_of(response: httpx.Response) -> dict[str, str]:
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "#"), location
    return {k: v[0] for k, v in parse_qs(urlsplit(location).fragment).items()}


def sign_in(client: httpx.Client, params: dict[str, str], oid: str) -> dict[str, str]:
    """Open the picker, submit its form with the account ``oid``; the redirect's fragment."""
    page = client.get(AUTHORIZE, params=params)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    form = _FormReader()
    form.feed(page.text)
    assert oid in form.buttons, form.buttons
    picked = client.post(form.action, data={**form.hidden, "account": oid})
    assert picked.status_code == 302
    return fragment_of(picked)


def redeem(client: httpx.Client, code: str, verifier: str) -> httpx.Response:
    return client.post(
        TOKEN,
        data={
            "client_id": PORTAL_CLIENT_ID,
            "redirect_uri": REDIRECT_URI,
            "scope": f"{API_SCOPE} openid profile offline_access",
            "code": code,
            "code_verifier": verifier,
            "grant_type": "authorization_code",
            "client_info": "1",
        },
        headers={"Origin": PORTAL_ORIGIN},
    )


def test_picker_lists_both_tenants_accounts_for_organizations(client: httpx.Client) -> None:
    page = client.get(AUTHORIZE, params=authorize_params(pkce_pair()[1]))
    form = _FormReader()
    form.feed(page.text)

    assert "Contoso Clinic" in page.text and "Fabrikam Health" in page.text
    assert "Avery Lindqvist" in form.buttons[AVERY]
    assert "Global Administrator" in form.buttons[AVERY]
    assert len(form.buttons) == 5
    assert '<html lang="en">' in page.text
    # A tenant authority offers only that tenant's people.
    fabrikam_authorize = f"/{FABRIKAM_TID}/oauth2/v2.0/authorize"
    tenant_page = client.get(fabrikam_authorize, params=authorize_params(pkce_pair()[1]))
    assert "Avery Lindqvist" not in tenant_page.text and "Samira Haddad" in tenant_page.text


def test_authorization_code_flow_with_pkce(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    params = authorize_params(challenge)

    answer = sign_in(client, params, AVERY)

    assert answer["state"] == params["state"]
    info = json.loads(base64.urlsafe_b64decode(answer["client_info"] + "=="))
    assert info == {"uid": AVERY, "utid": CONTOSO_TID}

    response = redeem(client, answer["code"], verifier)

    assert response.status_code == 200, response.text
    assert response.headers["access-control-allow-origin"] == PORTAL_ORIGIN
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == API_SCOPE
    assert body["expires_in"] == 3600 and body["ext_expires_in"] == 3600
    assert body["client_info"] == answer["client_info"]
    access = verify(client, body["access_token"], CONTOSO_TID)
    assert access["aud"] == API_CLIENT_ID and access["azp"] == PORTAL_CLIENT_ID
    assert access["tid"] == CONTOSO_TID and access["oid"] == AVERY
    assert access["scp"] == "Admin.ReadWrite" and GLOBAL_ADMINISTRATOR in access["wids"]
    id_token = verify(client, body["id_token"], CONTOSO_TID, audience=PORTAL_CLIENT_ID)
    assert id_token["nonce"] == params["nonce"]
    assert id_token["name"] == "Avery Lindqvist"
    assert id_token["preferred_username"] == "avery.lindqvist@contoso-clinic.example"
    assert (id_token["tid"], id_token["oid"]) == (CONTOSO_TID, AVERY)

    replay = redeem(client, answer["code"], verifier)
    assert replay.status_code == 400
    assert (replay.json()["error"], replay.json()["error_codes"]) == ("invalid_grant", [54005])

    refreshed = client.post(
        f"/{CONTOSO_TID}/oauth2/v2.0/token",
        data={
            "client_id": PORTAL_CLIENT_ID,
            "grant_type": "refresh_token",
            "refresh_token": body["refresh_token"],
            "scope": f"{API_SCOPE} openid profile offline_access",
        },
        headers={"Origin": PORTAL_ORIGIN},
    )
    assert refreshed.status_code == 200, refreshed.text
    assert verify(client, refreshed.json()["access_token"], CONTOSO_TID)["oid"] == AVERY


def test_silent_sign_in_uses_the_session(client: httpx.Client) -> None:
    params = authorize_params(pkce_pair()[1], prompt="none")
    no_session = fragment_of(client.get(AUTHORIZE, params=params))
    assert no_session["error"] == "login_required" and no_session["state"] == params["state"]

    sign_in(client, authorize_params(pkce_pair()[1]), JORDAN)
    verifier, challenge = pkce_pair()
    silent = client.get(AUTHORIZE, params=authorize_params(challenge, prompt="none"))

    assert silent.status_code == 302
    code = fragment_of(silent)["code"]
    body = redeem(client, code, verifier).json()
    assert verify(client, body["access_token"], CONTOSO_TID)["oid"] == JORDAN


def test_wrong_code_verifier_is_invalid_grant(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    answer = sign_in(client, authorize_params(challenge), AVERY)

    response = redeem(client, answer["code"], verifier[::-1])

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"
    assert response.json()["error_codes"] == [50148]
    assert "access_token" not in response.json()


def test_code_redemption_must_be_cross_origin(client: httpx.Client) -> None:
    verifier, challenge = pkce_pair()
    answer = sign_in(client, authorize_params(challenge), AVERY)
    form = {
        "client_id": PORTAL_CLIENT_ID,
        "grant_type": "authorization_code",
        "code": answer["code"],
        "redirect_uri": REDIRECT_URI,
        "code_verifier": verifier,
    }
    response = client.post(TOKEN, data=form)  # no Origin: not made by a browser's fetch
    assert response.status_code == 400
    assert response.json()["error_codes"] == [9002327]


def test_unregistered_redirect_uri_gets_a_400_page_not_a_redirect(client: httpx.Client) -> None:
    params = authorize_params(pkce_pair()[1], redirect_uri="https://attacker.example/callback")

    response = client.get(AUTHORIZE, params=params)

    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert "AADSTS50011" in response.text
    stranger = "11111111-2222-3333-4444-555555555555"
    unknown_client = client.get(
        AUTHORIZE, params=authorize_params(pkce_pair()[1], client_id=stranger)
    )
    assert unknown_client.status_code == 400 and "location" not in unknown_client.headers


def test_later_errors_go_back_to_the_client_with_state(client: httpx.Client) -> None:
    params = authorize_params("", code_challenge_method="")
    params.pop("code_challenge")

    answer = fragment_of(client.get(AUTHORIZE, params=params))

    assert answer["error"] == "invalid_request"
    assert answer["state"] == params["state"]
    assert "code" not in answer


def test_token_endpoint_answers_cors_preflight_for_the_local_portal(client: httpx.Client) -> None:
    preflight = {
        "Origin": PORTAL_ORIGIN,
        "Access-Control-Request-Method": "POST",
        "Access-Control-Request-Headers": "content-type,x-anchormailbox",
    }

    response = client.options(TOKEN, headers=preflight)

    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == PORTAL_ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    assert "x-anchormailbox" in response.headers["access-control-allow-headers"].lower()
    elsewhere = {**preflight, "Origin": "https://elsewhere.example"}
    foreign = client.options(TOKEN, headers=elsewhere)
    assert "access-control-allow-origin" not in foreign.headers


def test_logout_ends_the_session_and_returns_to_the_portal(client: httpx.Client) -> None:
    sign_in(client, authorize_params(pkce_pair()[1]), AVERY)

    logout = "/organizations/oauth2/v2.0/logout"
    response = client.get(logout, params={"post_logout_redirect_uri": REDIRECT_URI})

    assert response.status_code == 302 and response.headers["location"] == REDIRECT_URI
    silent = client.get(AUTHORIZE, params=authorize_params(pkce_pair()[1], prompt="none"))
    assert fragment_of(silent)["error"] == "login_required"


def test_instance_discovery_points_at_the_sandbox_host(client: httpx.Client) -> None:
    base = str(client.base_url).rstrip("/")
    query = {"api-version": "1.1", "authorization_endpoint": base + AUTHORIZE}
    response = client.get("/common/discovery/instance", params=query)

    body = response.json()
    host = urlsplit(base).netloc
    discovery = f"{base}/organizations/v2.0/.well-known/openid-configuration"
    assert body["tenant_discovery_endpoint"] == discovery
    assert body["metadata"] == [
        {"preferred_network": host, "preferred_cache": host, "aliases": [host]}
    ]
