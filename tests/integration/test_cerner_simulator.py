"""The Cerner SMART + FHIR R4 simulator over a real loopback socket, driven with httpx.

These tests pin the wire behaviour the connector relies on: discovery, the EHR launch with
PKCE, backend services with private_key_jwt, Cerner's Appointment search rules, paging,
If-Match patching, and the shared fault switches.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from datetime import date, datetime
from urllib.parse import parse_qs, urlsplit

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from starlette.applications import Starlette
from starlette.responses import JSONResponse
from starlette.routing import Route

from dev.sandbox.cerner import (
    DEFAULT_TENANT, SANDBOX_TENANTS, SECOND_TENANT, CernerSimulator, CernerTenants, RegisteredClient, create_app,
)
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

TODAY = date(2026, 1, 15)  # a Thursday in CST (-06:00): no DST change near it
REDIRECT_URI = "http://127.0.0.1:7071/api/launch/callback"
PROVIDER_APP, SECRET_APP, BACKEND_APP = "provider-app", "secret-app", "backend-app"
APP_SECRET = "s3cret with spaces & symbols"
PROVIDER_SCOPE = "launch openid fhirUser online_access user/Patient.read user/Encounter.read user/Appointment.read"
SYSTEM_SCOPE = "system/Appointment.read system/Patient.read"
FAMILY_MEDICINE, CARDIOLOGY = "32216101", "32216102"
# Cerner's Appointment date search: only ge / lt, always with a time and a zone.
DAY = [("date", "ge2026-01-15T00:00:00-06:00"), ("date", "lt2026-01-16T00:00:00-06:00")]


@dataclass
class Cerner:
    url: str
    sim: CernerSimulator
    tenants: CernerTenants | None = None

    @property
    def iss(self) -> str:
        return self.sim.urls.fhir_base


@dataclass(frozen=True)
class SigningKey:
    private: object
    jwk: dict
    alg: str


def _signing_key(private, alg: str, kid: str) -> SigningKey:
    to_jwk = RSAAlgorithm.to_jwk if alg == "RS384" else ECAlgorithm.to_jwk
    public = to_jwk(private.public_key(), as_dict=True)
    return SigningKey(private, {**public, "kid": kid, "alg": alg, "use": "sig"}, alg)


@pytest.fixture(scope="module")
def rsa_key() -> SigningKey:
    return _signing_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", "rsa-1")


@pytest.fixture(scope="module")
def ec_key() -> SigningKey:
    return _signing_key(ec.generate_private_key(ec.SECP384R1()), "ES384", "ec-1")


@pytest.fixture
def cerner(rsa_key: SigningKey, ec_key: SigningKey):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients = [
        RegisteredClient(PROVIDER_APP, redirect_uris=[REDIRECT_URI]),
        RegisteredClient(SECRET_APP, redirect_uris=[REDIRECT_URI], client_secret=APP_SECRET),
        RegisteredClient(BACKEND_APP, jwks={"keys": [rsa_key.jwk, ec_key.jwk]}),
    ]
    app = create_app(public_url=url, today=TODAY, clients=clients)
    with LoopbackServer(app, port, name="cerner"):
        yield Cerner(url, app.state.cerner, app.state.cerner_tenants)


@pytest.fixture
def http(cerner: Cerner):
    # Depends on the server so it closes its keep-alive connections before the server stops.
    with httpx.Client(timeout=10.0) as client:
        yield client


# -- helpers ------------------------------------------------------------------------------

def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def mint_launch(http: httpx.Client, cerner: Cerner, **context: str) -> str:
    body = context or {"appointment": cerner.sim.seed.video_visit_id}
    response = http.post(f"{cerner.url}/_sandbox/launch", json=body, params={"tenant": cerner.sim.urls.tenant_id})
    assert response.status_code == 200, response.text
    assert response.json()["iss"] == cerner.iss
    return response.json()["launch"]


def authorize(http: httpx.Client, cerner: Cerner, challenge: str, **overrides: str | None) -> httpx.Response:
    params = {
        "response_type": "code", "client_id": PROVIDER_APP, "redirect_uri": REDIRECT_URI,
        "scope": PROVIDER_SCOPE, "state": "state-123", "aud": cerner.iss,
        "code_challenge": challenge, "code_challenge_method": "S256",
    }
    if "launch" not in overrides:
        params["launch"] = mint_launch(http, cerner)
    params.update(overrides)
    return http.get(cerner.sim.urls.authorize("provider"), params={k: v for k, v in params.items() if v is not None})


def redirect_params(response: httpx.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(REDIRECT_URI + "?")
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def exchange(http: httpx.Client, cerner: Cerner, code: str, verifier: str, **extra: str) -> httpx.Response:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI,
            "client_id": PROVIDER_APP, "code_verifier": verifier, **extra}
    return http.post(cerner.sim.urls.token, data=form)


def launch_token(http: httpx.Client, cerner: Cerner) -> dict:
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge))["code"]
    response = exchange(http, cerner, code, verifier)
    assert response.status_code == 200, response.text
    return response.json()


def client_assertion(key: SigningKey, cerner: Cerner, *, alg: str | None = None, headers: dict | None = None,
                     **claims) -> str:
    now = int(time.time())
    body = {"iss": BACKEND_APP, "sub": BACKEND_APP, "aud": cerner.sim.urls.token, "exp": now + 240,
            "iat": now, "jti": secrets.token_hex(16), **claims}
    return jwt.encode(body, key.private, algorithm=alg or key.alg, headers={"kid": key.jwk["kid"], **(headers or {})})


def backend_token(http: httpx.Client, cerner: Cerner, assertion: str, scope: str = SYSTEM_SCOPE) -> httpx.Response:
    return http.post(cerner.sim.urls.token, data={
        "grant_type": "client_credentials", "scope": scope,
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
        "client_assertion": assertion,
    })


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}


def system_token(http: httpx.Client, cerner: Cerner, key: SigningKey) -> str:
    response = backend_token(http, cerner, client_assertion(key, cerner))
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def search(http: httpx.Client, cerner: Cerner, token: str, params,
           resource_type: str = "Appointment") -> httpx.Response:
    return http.get(f"{cerner.iss}/{resource_type}", params=params, headers=bearer(token))


def ids(bundle: dict) -> list[str]:
    return [entry["resource"]["id"] for entry in bundle.get("entry", [])]


def assert_oauth_error(response: httpx.Response, status: int, error: str) -> dict:
    assert response.status_code == status, response.text
    body = response.json()
    assert body["error"] == error
    assert body["error_description"]
    assert response.headers["cache-control"] == "no-store"
    return body


# -- SMART EHR launch ---------------------------------------------------------------------

def test_ehr_launch_with_pkce_reads_the_launch_context(http, cerner):
    seed = cerner.sim.seed
    visit = seed.video_visit_id
    encounter = seed.encounter_for(visit)
    patient_id = encounter["subject"]["reference"].split("/")[1]
    launch = mint_launch(http, cerner, appointment=visit)

    config = http.get(f"{cerner.iss}/.well-known/smart-configuration").json()
    metadata = http.get(f"{cerner.iss}/metadata")
    assert metadata.headers["content-type"].startswith("application/fhir+json")
    oauth_uris = {e["url"]: e["valueUri"] for e in metadata.json()["rest"][0]["security"]["extension"][0]["extension"]}
    prefix = f"{cerner.url}/tenants/{cerner.sim.urls.tenant_id}/protocols/oauth2/profiles/smart-v1"
    assert config["authorization_endpoint"] == oauth_uris["authorize"] == f"{prefix}/personas/provider/authorize"
    assert config["token_endpoint"] == oauth_uris["token"] == f"{prefix}/token"
    assert config["code_challenge_methods_supported"] == ["S256"]
    assert "patient/Appointment.rs" not in config["scopes_supported"]

    verifier, challenge = pkce()
    params = redirect_params(authorize(http, cerner, challenge, launch=launch, state="opaque-state-1"))
    assert params["state"] == "opaque-state-1"
    response = exchange(http, cerner, params["code"], verifier)
    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    token = response.json()
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == 570
    assert token["scope"] == PROVIDER_SCOPE
    assert (token["patient"], token["encounter"]) == (patient_id, encounter["id"])
    assert token["user"] == "4122701"  # the appointment's practitioner
    assert token["tenant"] == cerner.sim.urls.tenant_id
    assert token["need_patient_banner"] is False
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert claims["fhirUser"] == f"{cerner.iss}/Practitioner/4122701"
    assert claims["aud"] == PROVIDER_APP

    patient = http.get(f"{cerner.iss}/Patient/{token['patient']}", headers=bearer(token["access_token"]))
    assert patient.status_code == 200
    assert patient.headers["content-type"].startswith("application/fhir+json")
    assert patient.headers["etag"] == 'W/"1"'
    assert patient.json()["id"] == patient_id
    read_encounter = http.get(f"{cerner.iss}/Encounter/{token['encounter']}", headers=bearer(token["access_token"]))
    assert read_encounter.json()["appointment"] == [{"reference": f"Appointment/{visit}"}]


def test_id_token_verifies_against_the_published_jwks(http, cerner):
    token = launch_token(http, cerner)
    issuer = f"{cerner.url}/tenants/{cerner.sim.urls.tenant_id}/oidc/idsps/{cerner.sim.urls.tenant_id}/"
    # Cerner: the OpenID configuration lives under the id_token's issuer and names the jwks.
    oidc = http.get(f"{issuer}.well-known/openid-configuration").json()
    assert oidc["issuer"] == issuer
    assert oidc["jwks_uri"] == f"{cerner.url}/jwk" == http.get(
        f"{cerner.iss}/.well-known/smart-configuration").json()["jwks_uri"]
    assert oidc["id_token_signing_alg_values_supported"] == ["RS256"]
    jwks = http.get(oidc["jwks_uri"]).json()
    header = jwt.get_unverified_header(token["id_token"])
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    claims = jwt.decode(token["id_token"], key, algorithms=["RS256"], audience=PROVIDER_APP, issuer=issuer)
    # sub is the login (Cerner: "may be a user's username, or ... an opaque identifier"), not
    # the FHIR id: the Practitioner is in fhirUser and in the token response's user.
    assert claims["sub"] == token["username"] == "erivera"
    assert token["user"] == "4122701"
    assert claims["fhirUser"] == f"{cerner.iss}/Practitioner/4122701"
    assert "nonce" not in claims and "name" not in claims  # no nonce sent, no profile scope asked


def test_each_tenant_is_its_own_domain_with_its_own_discovery_launches_and_tokens(http, cerner, rsa_key):
    """Like Cerner's hosts, one sandbox serves several tenants (domains): each its own FHIR base,
    SMART configuration, OAuth endpoints, launches, tokens and id_token issuer; the registered
    clients (Cerner's code console) are the same for all."""
    assert cerner.tenants.ids == SANDBOX_TENANTS == (DEFAULT_TENANT, SECOND_TENANT)
    assert cerner.sim is cerner.tenants.primary and cerner.sim.urls.tenant_id == DEFAULT_TENANT
    other = Cerner(cerner.url, cerner.tenants.get(SECOND_TENANT), cerner.tenants)
    assert other.iss == f"{cerner.url}/r4/{SECOND_TENANT}" != cerner.iss
    for tenant in (cerner, other):
        tenant_id = tenant.sim.urls.tenant_id
        prefix = f"{cerner.url}/tenants/{tenant_id}/protocols/oauth2/profiles/smart-v1"
        config = http.get(f"{tenant.iss}/.well-known/smart-configuration").json()
        assert config["authorization_endpoint"] == f"{prefix}/personas/provider/authorize"
        assert config["token_endpoint"] == f"{prefix}/token" and config["jwks_uri"] == f"{cerner.url}/jwk"
        metadata = http.get(f"{tenant.iss}/metadata").json()
        assert metadata["implementation"]["url"] == tenant.iss

    # An EHR launch in the second tenant, through its own authorize and token endpoints.
    visit = other.sim.seed.video_visit_id
    minted = http.post(f"{cerner.url}/_sandbox/launch", params={"tenant": SECOND_TENANT}, json={"appointment": visit})
    assert minted.status_code == 200 and minted.json()["iss"] == other.iss
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, other, challenge, launch=minted.json()["launch"]))["code"]
    token = exchange(http, other, code, verifier).json()
    assert token["tenant"] == SECOND_TENANT and token["user"] == "4122701"
    assert http.get(f"{other.iss}/Patient/{token['patient']}", headers=bearer(token["access_token"])).status_code == 200
    # ... whose token opens nothing in the first tenant, and whose launch the first does not know.
    assert http.get(f"{cerner.iss}/Patient/{token['patient']}", headers=bearer(token["access_token"])).status_code == 401
    _, challenge = pkce()
    foreign = authorize(http, cerner, challenge, launch=mint_launch(http, other))
    assert redirect_params(foreign)["error"] == "invalid_request"

    # Its id_token names its own issuer and verifies against the one /jwk of every tenant's keys.
    issuer = other.sim.urls.oidc_issuer
    assert issuer == f"{cerner.url}/tenants/{SECOND_TENANT}/oidc/idsps/{SECOND_TENANT}/"
    assert http.get(f"{issuer}.well-known/openid-configuration").json()["issuer"] == issuer
    jwks = http.get(f"{cerner.url}/jwk").json()
    assert {k["kid"] for k in jwks["keys"]} == {cerner.sim.signing_kid, other.sim.signing_kid}
    header = jwt.get_unverified_header(token["id_token"])
    assert header["kid"] == other.sim.signing_kid
    key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == header["kid"])).key
    claims = jwt.decode(token["id_token"], key, algorithms=["RS256"], audience=PROVIDER_APP, issuer=issuer)
    assert claims["fhirUser"] == f"{other.iss}/Practitioner/4122701"

    # Backend services: an assertion for the second tenant's token URL only works there.
    system = backend_token(http, other, client_assertion(rsa_key, other))
    assert system.status_code == 200, system.text
    assert search(http, other, system.json()["access_token"], [("location", FAMILY_MEDICINE), *DAY]).status_code == 200
    assert_oauth_error(backend_token(http, cerner, client_assertion(rsa_key, other)), 401, "invalid_client")

    # Each tenant keeps its own audit trail.
    assert [e["outcome"] for e in other.sim.audit("authorize")] == ["code"]
    assert [e["outcome"] for e in cerner.sim.audit("authorize")] == ["invalid_request"]


def test_a_tenant_the_sandbox_does_not_serve_is_404_everywhere(http, cerner):
    unknown = "0b8a0111-e8e6-4c26-a91c-5069cbc6b1ca"
    oauth = f"{cerner.url}/tenants/{unknown}/protocols/oauth2/profiles/smart-v1"
    metadata = http.get(f"{cerner.url}/r4/{unknown}/metadata")
    assert metadata.status_code == 404 and metadata.json()["resourceType"] == "OperationOutcome"
    assert http.get(f"{cerner.url}/r4/{unknown}/.well-known/smart-configuration").status_code == 404
    assert http.get(f"{oauth}/personas/provider/authorize", params={"client_id": PROVIDER_APP}).status_code == 404
    assert http.post(f"{oauth}/token", data={"grant_type": "client_credentials"}).status_code == 404
    assert http.post(f"{oauth}/token/revoke", data={"token": "x"}).status_code == 404
    for tenant, idsp in ((unknown, unknown), (DEFAULT_TENANT, SECOND_TENANT)):
        assert http.get(f"{cerner.url}/tenants/{tenant}/oidc/idsps/{idsp}/.well-known/openid-configuration"
                        ).status_code == 404
    refused = http.post(f"{cerner.url}/_sandbox/launch", params={"tenant": unknown}, json={})
    assert refused.status_code == 404 and refused.json()["tenants"] == list(SANDBOX_TENANTS)
    assert http.get(f"{cerner.url}/_sandbox/schedule", params={"tenant": unknown}).status_code == 404


def test_id_token_echoes_the_nonce_and_gives_profile_claims(http, cerner):
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge, nonce="n-0S6_WzA2Mj",
                                     scope=PROVIDER_SCOPE + " profile"))["code"]
    token = exchange(http, cerner, code, verifier).json()
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert claims["nonce"] == "n-0S6_WzA2Mj"
    assert claims["name"] == "Rivera, Elena"
    assert claims["profile"] == claims["fhirUser"] == f"{cerner.iss}/Practitioner/4122701"
    assert claims["exp"] - claims["iat"] == 570


def test_patient_persona_id_token_sub_is_an_opaque_stable_id(http, cerner):
    def patient_sub() -> str:
        verifier, challenge = pkce()
        response = http.get(cerner.sim.urls.authorize("patient"), params={
            "response_type": "code", "client_id": PROVIDER_APP, "redirect_uri": REDIRECT_URI,
            "scope": "launch/patient openid fhirUser patient/Patient.read", "state": "s", "aud": cerner.iss,
            "code_challenge": challenge, "code_challenge_method": "S256"})
        token = exchange(http, cerner, redirect_params(response)["code"], verifier).json()
        claims = jwt.decode(token["id_token"], options={"verify_signature": False})
        assert claims["fhirUser"] == f"{cerner.iss}/Patient/12744001"
        assert token["username"] == claims["sub"]
        return claims["sub"]

    first = patient_sub()
    assert first == patient_sub()
    assert len(first) == 36 and first.count("-") == 4 and "12744001" not in first


def test_wrong_pkce_verifier_is_invalid_grant(http, cerner):
    _, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge))["code"]
    other_verifier, _ = pkce()
    assert_oauth_error(exchange(http, cerner, code, other_verifier), 400, "invalid_grant")


def test_wrong_aud_redirects_back_with_error_and_state(http, cerner):
    _, challenge = pkce()
    response = authorize(http, cerner, challenge, aud="https://fhir-ehr.cerner.com/r4/other-tenant", state="keep-me")
    params = redirect_params(response)
    assert params["error"] == "invalid_request"
    assert "aud" in params["error_description"]
    assert params["state"] == "keep-me"
    assert "code" not in params


@pytest.mark.parametrize("overrides, error", [
    ({"code_challenge": None}, "invalid_request"),
    ({"code_challenge_method": "plain"}, "invalid_request"),
    ({"scope": "launch patient/Appointment.rs"}, "invalid_scope"),  # SMART v2 syntax: Cerner speaks v1
    ({"scope": "system/Appointment.read"}, "invalid_scope"),
    ({"launch": "not-a-launch-code"}, "invalid_request"),
    ({"response_type": "token"}, "unsupported_response_type"),
])
def test_authorization_errors_go_back_to_the_redirect_uri(http, cerner, overrides, error):
    _, challenge = pkce()
    params = redirect_params(authorize(http, cerner, challenge, state="s-9", **overrides))
    assert (params["error"], params["state"]) == (error, "s-9")


@pytest.mark.parametrize("overrides", [
    {"redirect_uri": "https://attacker.example/callback"},
    {"redirect_uri": REDIRECT_URI + "/extra"},
    {"client_id": "nobody"},
])
def test_bad_client_or_redirect_uri_gets_a_plain_400_and_no_redirect(http, cerner, overrides):
    _, challenge = pkce()
    response = authorize(http, cerner, challenge, **overrides)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/plain")


def test_launch_codes_are_single_use(http, cerner):
    launch = mint_launch(http, cerner)
    _, challenge = pkce()
    assert "code" in redirect_params(authorize(http, cerner, challenge, launch=launch))
    again = redirect_params(authorize(http, cerner, challenge, launch=launch))
    assert again["error"] == "invalid_request"


def test_a_reused_code_is_rejected_and_revokes_the_first_token(http, cerner):
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge))["code"]
    first = exchange(http, cerner, code, verifier)
    assert first.status_code == 200
    access_token = first.json()["access_token"]
    assert http.get(f"{cerner.iss}/Patient/{first.json()['patient']}", headers=bearer(access_token)).status_code == 200
    assert_oauth_error(exchange(http, cerner, code, verifier), 400, "invalid_grant")
    assert http.get(f"{cerner.iss}/Patient/{first.json()['patient']}", headers=bearer(access_token)).status_code == 401


def test_expired_code_is_invalid_grant(http, cerner):
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge))["code"]
    cerner.sim.grants.now = lambda: time.time() + 61
    assert_oauth_error(exchange(http, cerner, code, verifier), 400, "invalid_grant")


def test_confidential_client_must_authenticate_with_basic(http, cerner):
    verifier, challenge = pkce()
    code = redirect_params(authorize(http, cerner, challenge, client_id=SECRET_APP))["code"]
    unauthenticated = exchange(http, cerner, code, verifier, client_id=SECRET_APP)
    assert_oauth_error(unauthenticated, 401, "invalid_client")

    code = redirect_params(authorize(http, cerner, challenge, client_id=SECRET_APP))["code"]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT_URI, "code_verifier": verifier}
    response = http.post(cerner.sim.urls.token, data=form, auth=(SECRET_APP, APP_SECRET))
    assert response.status_code == 200, response.text
    assert response.json()["patient"]


# -- SMART Backend Services -----------------------------------------------------------------

@pytest.mark.parametrize("key_fixture", ["rsa_key", "ec_key"])
def test_backend_services_token_then_location_date_search(http, cerner, request, key_fixture):
    key = request.getfixturevalue(key_fixture)
    response = backend_token(http, cerner, client_assertion(key, cerner))
    assert response.status_code == 200, response.text
    token = response.json()
    assert token["scope"] == SYSTEM_SCOPE
    assert "patient" not in token and "refresh_token" not in token

    found = search(http, cerner, token["access_token"], [("location", CARDIOLOGY), *DAY])
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert bundle["type"] == "searchset"
    assert ids(bundle) == ["4826002", "4826004", "4826006", "4826009"]
    for entry in bundle["entry"]:
        assert f"Location/{CARDIOLOGY}" in {p["actor"].get("reference") for p in entry["resource"]["participant"]}
        assert entry["fullUrl"] == f"{cerner.iss}/Appointment/{entry['resource']['id']}"


@pytest.mark.parametrize("tamper, reason", [
    ("none", "alg"),
    ("hs256", "alg"),
    ("wrong_key", "signature"),
    ("wrong_aud", "aud"),
    ("sub_differs", "sub"),
    ("exp_too_far", "five minutes"),
    ("expired", "expired"),
])
def test_bad_client_assertions_are_invalid_client(http, cerner, rsa_key, tamper, reason):
    now = int(time.time())
    if tamper == "none":
        header = base64.urlsafe_b64encode(json.dumps({"alg": "none", "typ": "JWT"}).encode()).rstrip(b"=")
        claims = {"iss": BACKEND_APP, "sub": BACKEND_APP, "aud": cerner.sim.urls.token, "exp": now + 60, "jti": "x"}
        payload = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=")
        assertion = (header + b"." + payload + b".").decode()
    elif tamper == "hs256":
        hmac_key = SigningKey(b"k" * 48, {"kid": "rsa-1"}, "HS256")
        assertion = client_assertion(hmac_key, cerner)
    elif tamper == "wrong_key":
        stranger = _signing_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", "rsa-1")
        assertion = client_assertion(stranger, cerner)
    elif tamper == "wrong_aud":
        assertion = client_assertion(rsa_key, cerner, aud=cerner.iss)
    elif tamper == "sub_differs":
        assertion = client_assertion(rsa_key, cerner, sub="someone-else")
    elif tamper == "exp_too_far":
        assertion = client_assertion(rsa_key, cerner, exp=now + 3600)
    else:
        assertion = client_assertion(rsa_key, cerner, exp=now - 120, iat=now - 300)
    body = assert_oauth_error(backend_token(http, cerner, assertion), 401, "invalid_client")
    assert reason in body["error_description"]


def test_replayed_jti_is_rejected(http, cerner, rsa_key):
    assertion = client_assertion(rsa_key, cerner, jti="once-only")
    assert backend_token(http, cerner, assertion).status_code == 200
    body = assert_oauth_error(backend_token(http, cerner, assertion), 401, "invalid_client")
    assert "jti" in body["error_description"]


def test_backend_services_only_grant_system_v1_scopes(http, cerner, rsa_key):
    response = backend_token(http, cerner, client_assertion(rsa_key, cerner), scope="user/Appointment.read")
    assert_oauth_error(response, 400, "invalid_scope")
    response = backend_token(http, cerner, client_assertion(rsa_key, cerner), scope="system/Appointment.rs")
    assert_oauth_error(response, 400, "invalid_scope")


def test_client_secret_basic_client_credentials(http, cerner):
    form = {"grant_type": "client_credentials", "scope": "system/Appointment.read"}
    response = http.post(cerner.sim.urls.token, data=form, auth=(SECRET_APP, APP_SECRET))
    assert response.status_code == 200, response.text
    token = response.json()["access_token"]
    found = search(http, cerner, token, [("practitioner", "4122703"), *DAY])
    assert ids(found.json()) == ["4826005", "4826008"]

    wrong = http.post(cerner.sim.urls.token, data=form, auth=(SECRET_APP, "not-it"))
    assert_oauth_error(wrong, 401, "invalid_client")
    assert wrong.headers["www-authenticate"].startswith("Basic")


def test_jwks_uri_clients_are_verified_against_the_fetched_keys(http, cerner, ec_key):
    async def keys(request):
        return JSONResponse({"keys": [ec_key.jwk]})

    port = free_port()
    with LoopbackServer(Starlette(routes=[Route("/jwks", keys)]), port, name="jwks"):
        cerner.sim.register_client(RegisteredClient(BACKEND_APP, jwks_uri=f"http://127.0.0.1:{port}/jwks"))
        response = backend_token(http, cerner, client_assertion(ec_key, cerner))
    assert response.status_code == 200, response.text


def test_clients_can_be_registered_over_http(http, cerner):
    created = http.post(f"{cerner.url}/_sandbox/clients",
                        json={"client_id": "late-app", "client_secret": "pw", "scopes": ["system/Location.read"]})
    assert created.status_code == 201
    assert "pw" not in created.text
    response = http.post(cerner.sim.urls.token, auth=("late-app", "pw"),
                         data={"grant_type": "client_credentials", "scope": "system/Location.read system/Patient.read"})
    assert response.json()["scope"] == "system/Location.read"  # trimmed to the registration, as Cerner does


# -- FHIR: search rules, paging, patch ------------------------------------------------------

@pytest.mark.parametrize("params, fragment", [
    ([("location", FAMILY_MEDICINE)], "parameter must be set when searching"),
    (DAY, "one of the 'patient', 'practitioner' or 'location'"),
    ([("patient", "12744001"), ("location", FAMILY_MEDICINE), *DAY], "may not be used in combination"),
    # The launch knows the patient and the practitioner, but Cerner takes only one of them.
    ([("patient", "12744003"), ("practitioner", "4122701"), *DAY], "may not be used in combination"),
    ([("patient", "12744003"), ("patient", "12744001"), *DAY], "only once"),
    ([("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T00:00:00Z"), ("date", "ge2026-01-16T00:00:00Z")],
     "lower and an upper bound"),
    ([("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T00:00:00Z"), ("date", "le2026-01-16T00:00:00Z")],
     "prefix 'le'"),
    ([("location", FAMILY_MEDICINE), ("date", "gt2026-01-15T00:00:00Z")], "prefix 'gt'"),
    ([("location", FAMILY_MEDICINE), ("date", "2026-01-15T10:00:00Z")], "prefix ''"),
    ([("location", FAMILY_MEDICINE), ("date", TODAY.isoformat())], "prefix ''"),
    ([("location", FAMILY_MEDICINE), ("date", "ge2026-01-15")], "time component"),
    ([("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T10:00:00")], "time zone"),
    ([("location", FAMILY_MEDICINE), ("date", "sa2026-01-15T10:00:00Z")], "prefix 'sa'"),
    ([("location", FAMILY_MEDICINE), *DAY, ("-date-or-req-period", "ge2026-01-15T00:00:00Z")], "not both"),
    ([("location", FAMILY_MEDICINE), *DAY, ("status", "confirmed")], "Invalid 'status'"),
    ([("location", FAMILY_MEDICINE), *DAY, ("_count", "0")], "_count"),
    ([("location", FAMILY_MEDICINE), *DAY, ("service-type", "x")], "Unsupported search parameter"),
    ([("_id", "4826001"), ("patient", "12744001")], "cannot be combined"),
])
def test_appointment_search_rules_answer_400_with_diagnostics(http, cerner, rsa_key, params, fragment):
    response = search(http, cerner, system_token(http, cerner, rsa_key), params)
    assert response.status_code == 400
    assert response.headers["content-type"].startswith("application/fhir+json")
    outcome = response.json()
    assert outcome["resourceType"] == "OperationOutcome"
    assert fragment in outcome["issue"][0]["diagnostics"]


def test_date_range_ge_lt_and_instants(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    tomorrow = search(http, cerner, token, [("location", f"{FAMILY_MEDICINE},{CARDIOLOGY}"),
                                            ("date", "ge2026-01-16T00:00:00-06:00"),
                                            ("date", "lt2026-01-17T00:00:00-06:00")])
    assert ids(tomorrow.json()) == ["4826010", "4826011", "4826012", "4826013"]
    # 4826003 is 10:30-10:45 local (16:30-16:45Z). Cerner returns appointments that "start or
    # end within the date range": a range holding only its end finds it ...
    around_end = search(http, cerner, token, [("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T10:40:00-06:00"),
                                              ("date", "lt2026-01-15T16:50:00Z")])
    assert ids(around_end.json()) == ["4826003"]
    # ... one inside the visit, holding neither its start nor its end, does not.
    inside = search(http, cerner, token, [("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T16:35:00Z"),
                                          ("date", "lt2026-01-15T16:40:00Z")])
    assert ids(inside.json()) == []
    # lt is exclusive: a range ending at the start instant misses it.
    before = search(http, cerner, token, [("location", FAMILY_MEDICINE), ("date", "ge2026-01-15T16:00:00Z"),
                                          ("date", "lt2026-01-15T16:30:00.000Z")])
    assert ids(before.json()) == []
    open_ended = search(http, cerner, token, {"patient": "Patient/12744001", "date": "ge2026-01-15T15:00:00.000Z"})
    assert ids(open_ended.json()) == ["4826010"]
    upper_only = search(http, cerner, token, {"patient": "12744001", "date": "lt2026-01-15T15:00:00.000Z"})
    assert ids(upper_only.json()) == ["4826001"]


def test_the_launch_search_patient_and_date_then_filter_on_the_practitioner(http, cerner, rsa_key):
    """What the connector's launch does when it has no Encounter.appointment: Cerner takes
    patient + date (not patient + practitioner), so the practitioner is filtered client-side."""
    token = system_token(http, cerner, rsa_key)
    # SOFIA GARCIA (12744003): 4826003 today with Rivera (4122701), 4826012 tomorrow with Adeyemi.
    found = search(http, cerner, token, [("patient", "12744003"), ("date", "ge2026-01-15T00:00:00-06:00"),
                                         ("date", "lt2026-01-17T00:00:00-06:00")])
    assert found.status_code == 200, found.text
    bundle = found.json()
    assert ids(bundle) == ["4826003", "4826012"]
    with_rivera = [entry["resource"]["id"] for entry in bundle["entry"]
                   if "Practitioner/4122701" in {p["actor"].get("reference") for p in entry["resource"]["participant"]}]
    assert with_rivera == ["4826003"]
    both = search(http, cerner, token, [("patient", "12744003"), ("practitioner", "4122701"), *DAY])
    assert both.status_code == 400


def test_proposed_appointments_only_come_back_with_date_or_req_period(http, cerner, rsa_key):
    proposed = dict(cerner.sim.store.get("Appointment", "4826011"), id="4826099", status="proposed")
    del proposed["start"], proposed["end"]  # a request: only the requested period
    cerner.sim.store.put(proposed)
    token = system_token(http, cerner, rsa_key)
    window = [("date", "ge2026-01-16T00:00:00-06:00"), ("date", "lt2026-01-17T00:00:00-06:00")]
    by_date = search(http, cerner, token, [("patient", "12744002"), *window])
    assert ids(by_date.json()) == ["4826011"]
    requested = [(("-date-or-req-period" if k == "date" else k), v) for k, v in window]
    by_request = search(http, cerner, token, [("patient", "12744002"), *requested])
    assert sorted(ids(by_request.json())) == ["4826011", "4826099"]


def test_status_filter(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    found = search(http, cerner, token, [("location", CARDIOLOGY), *DAY, ("status", "cancelled")])
    assert ids(found.json()) == [cerner.sim.seed.cancelled_id]
    both = search(http, cerner, token, [("location", FAMILY_MEDICINE), *DAY, ("status", "fulfilled,cancelled")])
    assert ids(both.json()) == ["4826001"]


def test_count_and_next_links_walk_every_match_once(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    params = [("practitioner", "4122701,4122702,4122703"), ("date", "ge2026-01-15T00:00:00-06:00"),
              ("date", "lt2026-01-17T00:00:00-06:00"), ("_count", "4")]
    first = search(http, cerner, token, params).json()
    pages, seen, bundle = 1, ids(first), first
    while (next_url := next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)) is not None:
        assert "-pageContext=" in next_url and "-pageDirection=NEXT" in next_url
        response = http.get(next_url, headers=bearer(token))
        assert response.status_code == 200, response.text
        bundle = response.json()
        assert len(ids(bundle)) <= 4
        seen += ids(bundle)
        pages += 1
    expected = sorted(a["id"] for a in cerner.sim.seed.appointments)
    assert pages == 4
    assert len(seen) == len(set(seen)) == 13
    assert sorted(seen) == expected
    starts = [datetime.fromisoformat(cerner.sim.store.get("Appointment", i)["start"]) for i in seen]
    assert starts == sorted(starts)


def test_default_page_size_is_ten_and_page_contexts_are_bound_to_their_query(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    first = search(http, cerner, token, {"practitioner": "4122701,4122702,4122703",
                                         "date": "ge2026-01-15T00:00:00-06:00"}).json()
    assert len(ids(first)) == 10
    next_url = next(l["url"] for l in first["link"] if l["relation"] == "next")
    tampered = next_url.replace("practitioner=4122701%2C4122702%2C4122703", "practitioner=4122701")
    response = http.get(tampered, headers=bearer(token))
    assert response.status_code == 400
    assert "-pageContext" in response.json()["issue"][0]["diagnostics"]


def test_read_and_id_searches_for_each_resource_type(http, cerner, rsa_key):
    form = {"grant_type": "client_credentials", "scope": "system/*.read"}
    token = http.post(cerner.sim.urls.token, data=form, auth=(SECRET_APP, APP_SECRET)).json()["access_token"]
    for resource_type, resource_id in [("Patient", "12744003"), ("Practitioner", "4122702"),
                                       ("Location", CARDIOLOGY), ("Encounter", "97960003")]:
        read = http.get(f"{cerner.iss}/{resource_type}/{resource_id}", headers=bearer(token))
        assert (read.status_code, read.json()["id"]) == (200, resource_id)
        found = search(http, cerner, token, {"_id": resource_id}, resource_type)
        assert ids(found.json()) == [resource_id]
    by_patient = search(http, cerner, token, {"patient": "12744001"}, "Encounter")
    assert ids(by_patient.json()) == ["97960001", "97960010"]
    missing = http.get(f"{cerner.iss}/Patient/999", headers=bearer(token))
    assert missing.status_code == 404
    assert missing.json()["resourceType"] == "OperationOutcome"


def test_json_patch_status_with_if_match(http, cerner):
    token = launch_token(http, cerner)["access_token"]
    write_token = http.post(cerner.sim.urls.token, auth=(SECRET_APP, APP_SECRET), data={
        "grant_type": "client_credentials", "scope": "system/Appointment.read system/Appointment.write"}).json()
    url = f"{cerner.iss}/Appointment/{cerner.sim.seed.video_visit_id}"
    patch_headers = {**bearer(write_token["access_token"]), "Content-Type": "application/json-patch+json"}
    arrive = [{"op": "replace", "path": "/status", "value": "arrived"}]

    read_only = http.patch(url, json=arrive, headers={**bearer(token), "Content-Type": "application/json-patch+json",
                                                      "If-Match": 'W/"1"'})
    assert read_only.status_code == 403  # user/Appointment.read does not allow writing

    no_if_match = http.patch(url, content=json.dumps(arrive), headers=patch_headers)
    assert no_if_match.status_code == 412
    done = http.patch(url, content=json.dumps(arrive), headers={**patch_headers, "If-Match": 'W/"1"'})
    assert done.status_code == 200, done.text
    assert done.headers["etag"] == 'W/"2"'
    stale = http.patch(url, content=json.dumps(arrive), headers={**patch_headers, "If-Match": 'W/"1"'})
    assert stale.status_code == 409  # Cerner: wrong version -> 409 Conflict (412 only when If-Match is missing)
    assert stale.json()["resourceType"] == "OperationOutcome"

    current = http.get(url, headers=bearer(token)).json()
    assert (current["status"], current["meta"]["versionId"]) == ("arrived", "2")
    backwards = [{"op": "replace", "path": "/status", "value": "booked"}]
    refused = http.patch(url, content=json.dumps(backwards), headers={**patch_headers, "If-Match": 'W/"2"'})
    assert refused.status_code == 422
    unsupported = [{"op": "remove", "path": "/participant/0"}]
    refused = http.patch(url, content=json.dumps(unsupported), headers={**patch_headers, "If-Match": 'W/"2"'})
    assert refused.status_code == 422
    # Cerner: "Only operations on the paths listed below are supported"; test is not listed.
    guarded = [{"op": "test", "path": "/status", "value": "arrived"},
               {"op": "replace", "path": "/status", "value": "checked-in"}]
    refused = http.patch(url, content=json.dumps(guarded), headers={**patch_headers, "If-Match": 'W/"2"'})
    assert refused.status_code == 422
    assert "'test'" in refused.json()["issue"][0]["diagnostics"]
    visit = next(v for v in cerner.sim.schedule() if v.appointment_id == cerner.sim.seed.video_visit_id)
    assert visit.status == "arrived"


# -- transport-level behaviour --------------------------------------------------------------

def test_fhir_needs_a_bearer_token(http, cerner):
    url = f"{cerner.iss}/Patient/12744001"
    for headers in ({}, {"Authorization": "Bearer made-up"}, {"Authorization": "Basic abc"}):
        response = http.get(url, headers=headers)
        assert response.status_code == 401
        assert response.json()["resourceType"] == "OperationOutcome"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert http.get(f"{cerner.iss}/metadata").status_code == 200  # discovery stays open


def test_scopes_must_cover_the_resource_type(http, cerner, rsa_key):
    token = backend_token(http, cerner, client_assertion(rsa_key, cerner), scope="system/Appointment.read").json()
    response = http.get(f"{cerner.iss}/Patient/12744001", headers=bearer(token["access_token"]))
    assert response.status_code == 403


def test_injected_429_carries_retry_after_then_clears(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    armed = http.post(f"{cerner.url}/_sandbox/faults",
                      json={"status": 429, "retry_after": 7, "count": 1, "path_prefix": "/r4/"})
    assert armed.status_code == 200
    params = [("location", FAMILY_MEDICINE), *DAY]
    throttled = search(http, cerner, token, params)
    assert throttled.status_code == 429
    assert throttled.headers["retry-after"] == "7"
    assert search(http, cerner, token, params).status_code == 200


def test_sandbox_schedule_lists_today_for_the_powerchart_page(http, cerner):
    day = http.get(f"{cerner.url}/_sandbox/schedule").json()
    assert day["date"] == TODAY.isoformat()
    visits = day["visits"]
    assert [v["appointment_id"] for v in visits][:3] == ["4826001", "4826002", "4826003"]
    assert len(visits) == 9
    assert sum(v["is_video"] for v in visits) == 6
    first = visits[0]
    assert first["start"] == "2026-01-15T08:00:00-06:00"
    assert first["encounter_id"] == "97960001"


def test_audit_records_grants_and_interactions(http, cerner, rsa_key):
    system_token(http, cerner, rsa_key)
    http.get(f"{cerner.iss}/Patient/12744001")
    tokens = cerner.sim.audit("token")
    assert tokens[-1]["client_id"] == BACKEND_APP and tokens[-1]["outcome"] == "issued"
    assert cerner.sim.audit("fhir")[-1]["status"] == 401


# -- sandbox fault: broken id_tokens -----------------------------------------------------------

def test_id_token_fault_knob_breaks_only_the_id_token_until_reset(http, cerner):
    sim = cerner.sim
    jwks = http.get(f"{cerner.url}/jwk").json()
    issuer = sim.urls.oidc_issuer

    def verify(id_token: str) -> dict:
        key = jwt.PyJWK(next(k for k in jwks["keys"] if k["kid"] == jwt.get_unverified_header(id_token)["kid"])).key
        return jwt.decode(id_token, key, algorithms=["RS256"], audience=PROVIDER_APP, issuer=issuer)

    with pytest.raises(ValueError, match="id_token_fault"):
        sim.id_token_fault = "expiry"
    assert sim.id_token_fault is None

    sim.id_token_fault = "signature"
    broken = launch_token(http, cerner)
    assert jwt.get_unverified_header(broken["id_token"])["kid"] == sim.signing_kid  # same key id, bad signature
    with pytest.raises(jwt.InvalidSignatureError):
        verify(broken["id_token"])
    unverified = jwt.decode(broken["id_token"], options={"verify_signature": False})
    assert unverified["aud"] == PROVIDER_APP and unverified["fhirUser"].endswith("/Practitioner/4122701")
    # Only the id_token is broken: the access token still reads FHIR.
    patient = http.get(f"{cerner.iss}/Patient/{broken['patient']}", headers=bearer(broken["access_token"]))
    assert patient.status_code == 200

    sim.id_token_fault = "audience"
    other = launch_token(http, cerner)
    with pytest.raises(jwt.InvalidAudienceError):
        verify(other["id_token"])
    claims = jwt.decode(other["id_token"], jwt.PyJWK(jwks["keys"][0]).key, algorithms=["RS256"],
                        options={"verify_aud": False})  # the signature itself is good
    assert claims["aud"] == "sandbox-another-client"

    sim.id_token_fault = None
    assert verify(launch_token(http, cerner)["id_token"])["aud"] == PROVIDER_APP


# -- backend services: JWK Set URLs as Cerner reads them (Cache-Control, rotation) -------------------

JWKS_URL_APP = "jwks-url-app"


class ClientKeys:
    """A client's JWK Set URL on loopback: serves ``keys`` with ``cache_control``; counts fetches."""

    def __init__(self, keys: list[dict], cache_control: str = "public, max-age=300"):
        self.keys = keys
        self.cache_control = cache_control
        self.fetches = 0
        self.server = LoopbackServer(Starlette(routes=[Route("/jwks.json", self._serve)]), name="client-jwks")

    async def _serve(self, request):
        self.fetches += 1
        headers = {"Cache-Control": self.cache_control} if self.cache_control else {}
        return JSONResponse({"keys": self.keys}, headers=headers)

    @property
    def url(self) -> str:
        return f"{self.server.url}/jwks.json"


@pytest.fixture
def client_keys(cerner, rsa_key):
    keys = ClientKeys([rsa_key.jwk])
    with keys.server:
        cerner.sim.register_client(RegisteredClient(JWKS_URL_APP, jwks_uri=keys.url))
        yield keys


def url_assertion(key: SigningKey, cerner: Cerner, **claims) -> str:
    return client_assertion(key, cerner, iss=JWKS_URL_APP, sub=JWKS_URL_APP, **claims)


def test_a_jwks_url_is_cached_as_its_cache_control_says(http, cerner, client_keys, rsa_key):
    client_keys.cache_control = "public, max-age=60"
    for _ in range(3):
        assert backend_token(http, cerner, url_assertion(rsa_key, cerner)).status_code == 200
    assert client_keys.fetches == 1
    fetched = cerner.sim.audit("jwks_fetch")
    assert [(e["client_id"], e["max_age"], e["keys"]) for e in fetched] == [(JWKS_URL_APP, 60, 1)]
    later = time.time() + 61
    cerner.sim.grants.now = lambda: later
    assert backend_token(http, cerner, url_assertion(rsa_key, cerner, exp=int(later) + 60)).status_code == 200
    assert client_keys.fetches == 2


@pytest.mark.parametrize("cache_control", ["no-store", "no-cache", "private, max-age=600", ""])
def test_a_jwks_url_that_may_not_be_cached_is_fetched_for_every_assertion(http, cerner, client_keys, rsa_key,
                                                                          cache_control):
    client_keys.cache_control = cache_control
    for _ in range(2):
        assert backend_token(http, cerner, url_assertion(rsa_key, cerner)).status_code == 200
    assert client_keys.fetches == 2


def test_a_new_kid_makes_the_simulator_fetch_the_jwks_again(http, cerner, client_keys, rsa_key, ec_key):
    assert backend_token(http, cerner, url_assertion(rsa_key, cerner)).status_code == 200
    client_keys.keys = [ec_key.jwk, rsa_key.jwk]  # the client rotated to its EC key
    assert backend_token(http, cerner, url_assertion(ec_key, cerner)).status_code == 200
    assert client_keys.fetches == 2
    assert backend_token(http, cerner, url_assertion(rsa_key, cerner)).status_code == 200  # still published
    assert client_keys.fetches == 2
    # A kid that is nowhere: one fetch more, then invalid_client.
    stranger = _signing_key(rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384", "rsa-9")
    body = assert_oauth_error(backend_token(http, cerner, url_assertion(stranger, cerner)), 401, "invalid_client")
    assert "no key with kid 'rsa-9'" in body["error_description"]
    assert client_keys.fetches == 3


def test_a_jwks_url_that_fails_is_invalid_client_without_its_details(http, cerner, rsa_key):
    cerner.sim.register_client(RegisteredClient(JWKS_URL_APP, jwks_uri=f"http://127.0.0.1:{free_port()}/jwks.json"))
    body = assert_oauth_error(backend_token(http, cerner, url_assertion(rsa_key, cerner)), 401, "invalid_client")
    assert body["error_description"] == "could not fetch the client's JWK Set: ConnectError"
    cerner.sim.register_client(RegisteredClient(JWKS_URL_APP, jwks_uri="http://jwks.example.com/jwks.json"))
    body = assert_oauth_error(backend_token(http, cerner, url_assertion(rsa_key, cerner)), 401, "invalid_client")
    assert "must be https" in body["error_description"]


def _es384_over_p256(cerner: Cerner, kid: str) -> str:
    """An "ES384" JWT signed with a P-256 key (PyJWT refuses to make one): SHA-384, raw r || s."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    key = ec.generate_private_key(ec.SECP256R1())

    def b64(data: bytes) -> bytes:
        return base64.urlsafe_b64encode(data).rstrip(b"=")

    now = int(time.time())
    header = b64(json.dumps({"alg": "ES384", "typ": "JWT", "kid": kid}).encode())
    claims = {"iss": BACKEND_APP, "sub": BACKEND_APP, "aud": cerner.sim.urls.token, "exp": now + 60, "jti": "p256"}
    signing_input = header + b"." + b64(json.dumps(claims).encode())
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA384())))
    jwk = {**ECAlgorithm.to_jwk(key.public_key(), as_dict=True), "kid": kid, "use": "sig"}
    cerner.sim.register_client(RegisteredClient(BACKEND_APP, jwks={"keys": [jwk]}))
    return (signing_input + b"." + b64(r.to_bytes(32, "big") + s.to_bytes(32, "big"))).decode()


def test_keys_are_picked_as_smart_says(http, cerner, rsa_key, ec_key):
    # kid is required, and must pick exactly one key of the algorithm's kty.
    no_kid = jwt.encode({"iss": BACKEND_APP, "sub": BACKEND_APP, "aud": cerner.sim.urls.token,
                         "exp": int(time.time()) + 60, "jti": "k"}, rsa_key.private, algorithm="RS384")
    body = assert_oauth_error(backend_token(http, cerner, no_kid), 401, "invalid_client")
    assert "kid" in body["error_description"]
    rsa_as_ec_kid = _signing_key(rsa_key.private, "RS384", "ec-1")  # the EC key's kid on an RSA signature
    body = assert_oauth_error(backend_token(http, cerner, client_assertion(rsa_as_ec_kid, cerner)), 401,
                              "invalid_client")
    assert "no key with kid 'ec-1' for RS384" in body["error_description"]
    twice = {"keys": [rsa_key.jwk, {**rsa_key.jwk}]}
    cerner.sim.register_client(RegisteredClient(BACKEND_APP, jwks=twice))
    body = assert_oauth_error(backend_token(http, cerner, client_assertion(rsa_key, cerner)), 401, "invalid_client")
    assert "more than one key" in body["error_description"]
    # A key published for another algorithm does not verify this one.
    cerner.sim.register_client(RegisteredClient(BACKEND_APP, jwks={"keys": [{**rsa_key.jwk, "alg": "RS256"}]}))
    body = assert_oauth_error(backend_token(http, cerner, client_assertion(rsa_key, cerner)), 401, "invalid_client")
    assert "not for RS384" in body["error_description"]
    # ES384 means P-384 (RFC 7518): a P-256 key is refused even with a valid signature.
    body = assert_oauth_error(backend_token(http, cerner, _es384_over_p256(cerner, "p256")), 401, "invalid_client")
    assert "P-384" in body["error_description"]


def test_rsa_keys_under_2048_bits_are_refused(http, cerner):
    weak = _signing_key(rsa.generate_private_key(public_exponent=65537, key_size=1024), "RS384", "weak")
    cerner.sim.register_client(RegisteredClient(BACKEND_APP, jwks={"keys": [weak.jwk]}))
    with pytest.warns(Warning, match="1024 bits"):  # PyJWT warns, and signs
        assertion = client_assertion(weak, cerner)
    body = assert_oauth_error(backend_token(http, cerner, assertion), 401, "invalid_client")
    assert "2048" in body["error_description"]


def test_a_jku_must_be_the_registered_jwks_url(http, cerner, client_keys, rsa_key):
    elsewhere = client_assertion(rsa_key, cerner, iss=JWKS_URL_APP, sub=JWKS_URL_APP,
                                 headers={"jku": "https://attacker.example/jwks.json"})
    body = assert_oauth_error(backend_token(http, cerner, elsewhere), 401, "invalid_client")
    assert "jku" in body["error_description"]
    assert client_keys.fetches == 0  # refused before anything is fetched
    same = client_assertion(rsa_key, cerner, iss=JWKS_URL_APP, sub=JWKS_URL_APP, headers={"jku": client_keys.url})
    assert backend_token(http, cerner, same).status_code == 200


# -- appointments that change: reschedule, cancel ----------------------------------------------------

def control(http: httpx.Client, cerner: Cerner, path: str, body=None) -> httpx.Response:
    return http.post(f"{cerner.url}/_sandbox/appointments/{path}", json=body)


def test_reschedule_moves_the_appointment_and_bumps_its_version(http, cerner, rsa_key):
    sim = cerner.sim
    token = system_token(http, cerner, rsa_key)
    office, video = "4826006", "4826009"  # booked today 14:30 (in person) and 20:00 (video, links written)
    moved = control(http, cerner, f"{office}/reschedule", {"start": "2026-01-16T11:00:00-06:00", "minutes": 45,
                                                            "reason": "Clinician unavailable"})
    assert moved.status_code == 200, moved.text
    assert moved.headers["etag"] == 'W/"2"'
    resource = moved.json()
    assert (resource["start"], resource["end"]) == ("2026-01-16T11:00:00-06:00", "2026-01-16T11:45:00-06:00")
    assert resource["minutesDuration"] == 45
    assert resource["requestedPeriod"] == [{"start": resource["start"], "end": resource["end"]}]
    assert resource["meta"]["versionId"] == "2" and resource["meta"]["lastUpdated"].endswith("Z")
    assert resource["meta"]["lastUpdated"] != sim.seed.appointment(office)["meta"]["lastUpdated"]
    assert "2026-01-16T11:00:00-06:00" in resource["text"]["div"]
    assert {"valueCodeableConcept": {"text": "Clinician unavailable"},
            "url": "https://fhir-ehr.cerner.com/r4/StructureDefinition/reschedule-reason"} in resource["extension"]
    read = http.get(f"{cerner.iss}/Appointment/{office}", headers=bearer(token))
    assert read.headers["etag"] == 'W/"2"' and read.json() == resource
    assert sim.store.get("Encounter", "97960006")["period"]["start"] == "2026-01-16T17:00:00.000Z"
    assert sim.store.get("Encounter", "97960006")["meta"]["versionId"] == "2"
    # The scan of the old day no longer finds it; the new day does.
    assert office not in ids(search(http, cerner, token, [("location", CARDIOLOGY), *DAY]).json())
    tomorrow = [("date", "ge2026-01-16T00:00:00-06:00"), ("date", "lt2026-01-17T00:00:00-06:00")]
    assert office in ids(search(http, cerner, token, [("location", CARDIOLOGY), *tomorrow]).json())
    # A video visit keeps Cerner's UTC instants and its two-part version; minutes default to its own.
    moved = control(http, cerner, f"{video}/reschedule", {"start": "2026-01-15T21:30:00"}).json()
    assert (moved["start"], moved["end"]) == ("2026-01-16T03:30:00.000Z", "2026-01-16T03:45:00.000Z")
    assert moved["meta"]["versionId"] == "2-1"
    assert sim.audit("reschedule")[-1] == {**sim.audit("reschedule")[-1], "appointment": video, "version": "2-1"}


@pytest.mark.parametrize("path, body, status, words", [
    ("4826004/reschedule", {"start": "2026-01-16T11:00:00-06:00"}, 409, "cancelled appointment cannot"),
    ("4826001/reschedule", {"start": "2026-01-16T11:00:00-06:00"}, 409, "fulfilled appointment cannot"),
    ("999/reschedule", {"start": "2026-01-16T11:00:00-06:00"}, 404, "not found"),
    ("4826003/reschedule", {}, 400, "'start' is required"),
    ("4826003/reschedule", {"start": "tomorrow"}, 400, "ISO 8601"),
    ("4826003/reschedule", {"start": "2026-01-16T11:00:00Z", "minutes": 0}, 400, "minutes"),
    ("4826003/reschedule", {"start": "2026-01-16T11:00:00Z", "when": 1}, 400, "unknown fields"),
    ("4826004/cancel", None, 409, "cancelled appointment cannot"),
    ("4826001/cancel", None, 409, "fulfilled appointment cannot"),
    ("999/cancel", None, 404, "not found"),
    ("4826003/cancel", {"reason": ""}, 400, "reason"),
])
def test_changes_that_cannot_be_made_are_refused(http, cerner, path, body, status, words):
    before = cerner.sim.store.get("Appointment", path.split("/")[0])
    response = control(http, cerner, path, body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert cerner.sim.store.get("Appointment", path.split("/")[0]) == before  # nothing changed


def test_cancel_marks_it_cancelled_like_cerner(http, cerner, rsa_key):
    token = system_token(http, cerner, rsa_key)
    cancelled = http.post(f"{cerner.url}/_sandbox/appointments/4826003/cancel")  # no body at all
    assert cancelled.status_code == 200 and cancelled.headers["etag"] == 'W/"2"'
    resource = cancelled.json()
    assert resource["status"] == "cancelled"
    assert resource["cancelationReason"]["text"] == "Patient request"
    flags = {e["url"].rsplit("/", 1)[1]: e["valueBoolean"] for e in resource["extension"] if "valueBoolean" in e}
    assert flags == {"is-cancelable": False, "is-reschedulable": False}
    assert cerner.sim.store.get("Encounter", "97960003")["status"] == "cancelled"
    booked = ids(search(http, cerner, token, [("location", FAMILY_MEDICINE), *DAY, ("status", "booked")]).json())
    assert "4826003" not in booked and "4826005" in booked
    with_reason = control(http, cerner, "4826005/cancel", {"reason": "Feeling better"}).json()
    assert with_reason["cancelationReason"]["text"] == "Feeling better"
    from fhir.resources.R4B.appointment import Appointment

    Appointment.model_validate(resource)  # still valid R4


# -- a bulk week for scale tests ---------------------------------------------------------------------

def test_a_bulk_week_is_booked_spread_and_fictional(http, cerner, rsa_key):
    body = {"location": FAMILY_MEDICINE, "count": 500, "start": "2026-01-15T08:00:00-06:00", "spread_hours": 72,
            "video_ratio": 0.5, "patients": 150}
    made = http.post(f"{cerner.url}/_sandbox/appointments/bulk", json=body)
    assert made.status_code == 201, made.text
    result = made.json()
    assert result["count"] == len(result["appointment_ids"]) == len(set(result["appointment_ids"])) == 500
    assert result["video"] == len(result["video_ids"]) == 250
    assert len(result["patient_ids"]) == 150
    assert result["first_start"] == "2026-01-15T08:00:00-06:00"
    last = datetime.fromisoformat(result["last_start"])
    assert datetime(2026, 1, 18, 7, 0, tzinfo=last.tzinfo) < last < datetime(2026, 1, 18, 8, 0, tzinfo=last.tzinfo)
    numbers = result["mobile_numbers"]
    assert len(set(numbers)) == 150
    assert numbers[:2] == ["7735550100", "7735550101"] and numbers[100] == "8725550100" and numbers[149] == "8725550149"
    seeded_numbers = {t["value"] for p in cerner.sim.seed.patients for t in p["telecom"] if t["system"] == "phone"}
    assert not seeded_numbers & set(numbers)

    from fhir.resources.R4B import get_fhir_model_class

    store = cerner.sim.store
    for rid in result["appointment_ids"][:50]:
        appointment = store.get("Appointment", rid)
        get_fhir_model_class("Appointment").model_validate(appointment)
        assert appointment["status"] == "booked"
        assert f"Location/{FAMILY_MEDICINE}" in {p["actor"]["reference"] for p in appointment["participant"]}
    for pid in result["patient_ids"][:10]:
        get_fhir_model_class("Patient").model_validate(store.get("Patient", pid))
    spanish = [store.get("Patient", pid)["communication"][0]["language"]["coding"][1]["code"]
               for pid in result["patient_ids"][:10]]
    assert spanish == ["en", "en", "es", "en", "en", "en", "en", "es", "en", "en"]
    durations = [store.get("Appointment", rid)["minutesDuration"] for rid in result["appointment_ids"][:4]]
    assert durations == [15, 20, 30, 15]

    # More bulk continues the ids and the numbers, and can make a department.
    more = http.post(f"{cerner.url}/_sandbox/appointments/bulk", json={
        "location": "32216199", "location_name": "Telehealth Hub", "count": 3, "start": "2026-01-15T09:00:00",
        "spread_hours": 2,
        "patients": 1, "video_ratio": 1}).json()
    assert int(more["appointment_ids"][0]) == int(result["appointment_ids"][-1]) + 1
    assert int(more["patient_ids"][0]) == int(result["patient_ids"][-1]) + 1
    assert more["mobile_numbers"] == ["8725550150"] and more["video"] == 3
    assert more["first_start"] == "2026-01-15T09:00:00-06:00"
    assert cerner.sim.store.get("Location", "32216199")["name"] == "Telehealth Hub"
    token = system_token(http, cerner, rsa_key)
    telehealth = search(http, cerner, token, [("location", "32216199"), *DAY]).json()
    assert ids(telehealth) == more["appointment_ids"]


@pytest.mark.parametrize("body, status, words", [
    ({"location": "404404", "count": 5, "start": "2026-01-15T08:00:00Z"}, 404, "does not exist"),
    ({"location": FAMILY_MEDICINE, "count": 0, "start": "2026-01-15T08:00:00Z"}, 400, "'count'"),
    ({"location": FAMILY_MEDICINE, "count": 5.0, "start": "2026-01-15T08:00:00Z"}, 400, "'count'"),
    ({"location": FAMILY_MEDICINE, "count": 5, "start": "2026-01-15T08:00:00Z", "video_ratio": 1.5}, 400,
     "video_ratio"),
    ({"location": FAMILY_MEDICINE, "count": 5, "start": "2026-01-15T08:00:00Z", "spread_hours": 0}, 400,
     "spread_hours"),
    ({"location": FAMILY_MEDICINE, "count": 5, "start": "2026-01-15T08:00:00Z", "patients": 1601}, 400,
     "1600 bulk patients"),
    ({"location": FAMILY_MEDICINE, "count": 5}, 400, "'start' is required"),
    ({"location": FAMILY_MEDICINE, "count": 5, "start": "2026-01-15T08:00:00Z", "colour": "red"}, 400,
     "unknown fields"),
])
def test_bulk_requests_that_cannot_be_made_are_refused(http, cerner, body, status, words):
    appointments = cerner.sim.store.count("Appointment")
    response = http.post(f"{cerner.url}/_sandbox/appointments/bulk", json=body)
    assert response.status_code == status, response.text
    assert words in response.json()["detail"]
    assert cerner.sim.store.count("Appointment") == appointments


def test_a_bulk_location_search_pages_with_count_and_survives_faults_on_a_next_page(http, cerner, rsa_key):
    result = cerner.sim.bulk_appointments(CARDIOLOGY, 250, "2026-01-15T00:00:00-06:00", spread_hours=48,
                                          patients=40)
    token = system_token(http, cerner, rsa_key)
    window = [("date", "ge2026-01-15T00:00:00-06:00"), ("date", "lt2026-01-17T00:00:00-06:00")]
    first = search(http, cerner, token, [("location", CARDIOLOGY), *window, ("_count", "100")])
    assert first.status_code == 200
    bundle, seen, pages = first.json(), ids(first.json()), 1
    assert len(seen) == 100
    armed = [{"status": 503, "count": 1, "path_prefix": "/r4/"},
             {"status": 429, "retry_after": 3, "count": 1, "path_prefix": "/r4/"}]
    while (next_url := next((l["url"] for l in bundle["link"] if l["relation"] == "next"), None)) is not None:
        assert f"location={CARDIOLOGY}" in next_url and "_count=100" in next_url
        if armed:
            assert http.post(f"{cerner.url}/_sandbox/faults", json=armed[0]).status_code == 200
            failed = http.get(next_url, headers=bearer(token))
            assert failed.status_code == armed.pop(0)["status"]
            if failed.status_code == 429:
                assert failed.headers["retry-after"] == "3"
        response = http.get(next_url, headers=bearer(token))  # the same next link works after the fault
        assert response.status_code == 200, response.text
        bundle = response.json()
        seen += ids(bundle)
        pages += 1
    seeded = [a["id"] for a in cerner.sim.seed.appointments if f"Location/{CARDIOLOGY}" in json.dumps(a)]
    assert len(seen) == len(set(seen)) == 250 + len(seeded)
    assert set(seen) == set(result.appointment_ids) | set(seeded)
    assert pages == 3 and armed == []
    # _count above Cerner's cap is clamped, not refused.
    big = search(http, cerner, token, [("location", CARDIOLOGY), *window, ("_count", "1000")]).json()
    assert len(ids(big)) == 100
