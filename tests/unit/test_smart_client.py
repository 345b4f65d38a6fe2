"""The SMART authorization server seen from the connector: the code exchange with each client
authentication, the token endpoint's answers mapped to errors, and id_token verification.

The real SafeHttpClient runs over ``httpx.MockTransport`` with a fake resolver; id_tokens are
real JWTs signed with keys made here, and the JWKS is served from the same fake network.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import parse_qs, unquote_plus

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from jwt.algorithms import ECAlgorithm, RSAAlgorithm
from pydantic import ValidationError

from connector.adapters.fhir.smart_client import (
    CLOCK_SKEW_SECONDS, ClientSecrets, IdTokenJwksVerifier, SmartTokenHttpClient,
)
from connector.adapters.identity.client_assertions import ClientAssertionSigner
from connector.adapters.net import OutboundRequestRefused, SafeHttpClient
from connector.domain.endpoint import ClientAuth, EndpointChange, EndpointDraft, Environment, FhirEndpoint
from connector.domain.smart import SmartConfiguration, TokenResponse
from connector.errors import (
    ConfigurationError, InvalidUpstreamData, NotAuthenticated, UpstreamError, UpstreamUnavailable,
)
from tests.conftest import DATA

TENANT = "11111111-2222-3333-4444-555555555555"
TENANT_KEY = "11111111222233334444555555555555"  # the tenant in a secret's app setting name
CERNER_TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
BASE = f"https://fhir-ehr.cerner.com/r4/{CERNER_TENANT}"
AUTH_HOST = "authorization.cerner.com"
SMART_V1 = f"https://{AUTH_HOST}/tenants/{CERNER_TENANT}/protocols/oauth2/profiles/smart-v1"
TOKEN_URL = f"{SMART_V1}/token"
JWKS_URL = f"https://{AUTH_HOST}/jwk"
ISSUER = f"https://{AUTH_HOST}/tenants/{CERNER_TENANT}/oidc/idsps/{CERNER_TENANT}/"
CLIENT_ID = "0c5ff07e-6c6f-4f50-b2c1-5a3f3e1c4d2b"
REDIRECT = "https://visits.example.org/api/launch/callback"
VERIFIER = "v" * 64
CODE = "authz-code-0123456789"
SPEC_TOKENS = json.loads((DATA / "fixtures" / "smart-app-launch-spec" / "token-response.symmetric-auth-example.json")
                         .read_text())
ACCESS_TOKEN = SPEC_TOKENS["access_token"]
DNS = {AUTH_HOST: ["151.101.1.140"], "fhir-ehr.cerner.com": ["93.184.216.34"], "jwks.internal.example": ["10.1.2.3"]}

CONFIG = SmartConfiguration(authorization_endpoint=f"{SMART_V1}/personas/provider/authorize",
                            token_endpoint=TOKEN_URL, jwks_uri=JWKS_URL, issuer=ISSUER)

Route = httpx.Response | Callable[[httpx.Request], httpx.Response]


class FakeNetwork:
    """Answers by URL as written (scheme, Host header, path); records every request."""

    def __init__(self, routes: dict[str, Route] | None = None):
        self.routes: dict[str, Route] = routes or {}
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.url.scheme}://{request.headers['host']}{request.url.path}")
        if route is None:
            return httpx.Response(404)
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)

    def to(self, url: str) -> list[httpx.Request]:
        return [r for r in self.requests if f"{r.url.scheme}://{r.headers['host']}{r.url.path}" == url]


def http_for(network: FakeNetwork) -> SafeHttpClient:
    return SafeHttpClient(resolver=lambda host, port: DNS.get(host, []), transport_factory=network.transport)


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                provider_client_id=CLIENT_ID, created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return FhirEndpoint(**{**base, **changes})


def token_answer(body: dict | None = None, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=SPEC_TOKENS if body is None else body,
                          headers={"content-type": "application/json", **headers})


def form_of(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    return {k: v[0] for k, v in parsed.items()}


def exchange(network: FakeNetwork, ep: FhirEndpoint | None = None, *, secrets: dict[str, str] | None = None,
             signer: ClientAssertionSigner | None = None) -> TokenResponse:
    client = SmartTokenHttpClient(http_for(network), secrets=ClientSecrets(secrets or {}), signer=signer)
    return client.exchange_code(ep or endpoint(), CONFIG, client_id=CLIENT_ID, code=CODE, redirect_uri=REDIRECT,
                                code_verifier=VERIFIER)


@pytest.fixture(scope="module")
def rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


@pytest.fixture(scope="module")
def other_rsa_key():
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# == the code exchange ==============================================================================


def test_a_public_client_sends_client_id_in_the_form_and_no_authorization():
    network = FakeNetwork({TOKEN_URL: token_answer()})
    answer = exchange(network)
    [request] = network.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers
    assert form_of(request) == {"grant_type": "authorization_code", "code": CODE, "redirect_uri": REDIRECT,
                                "code_verifier": VERIFIER, "client_id": CLIENT_ID}
    assert answer.access_token == ACCESS_TOKEN
    assert (answer.patient, answer.expires_in, answer.token_type) == (SPEC_TOKENS["patient"], 3600, "Bearer")


def test_the_exchange_goes_to_the_checked_address_of_the_token_host():
    network = FakeNetwork({TOKEN_URL: token_answer()})
    exchange(network)
    [request] = network.requests
    assert request.url.host == "151.101.1.140" and request.headers["host"] == AUTH_HOST
    assert request.extensions["sni_hostname"] == AUTH_HOST


def test_client_secret_basic_sends_rfc_6749_basic_credentials_from_the_named_setting():
    secret = "s3cr:t+/ %&é~*"  # a colon, a plus, a space: each must survive the encoding
    network = FakeNetwork({TOKEN_URL: token_answer()})
    ep = endpoint(client_auth=ClientAuth.client_secret_basic, client_secret_name="CERNER_PROD")
    exchange(network, ep, secrets={f"CONNECTOR_CLIENT_SECRET_{TENANT_KEY}_CERNER_PROD": secret,
                                   f"CONNECTOR_CLIENT_SECRET_{TENANT_KEY}_OTHER": "not this one",
                                   "CONNECTOR_CLIENT_SECRET_CERNER_PROD": "not this one either"})
    [request] = network.requests
    scheme, _, encoded = request.headers["authorization"].partition(" ")
    assert scheme == "Basic"
    user, _, password = base64.b64decode(encoded).decode("ascii").partition(":")
    # RFC 6749 section 2.3.1: each part form-urlencoded, so the server form-decodes it back
    assert (unquote_plus(user), unquote_plus(password)) == (CLIENT_ID, secret)
    assert ":" not in password and " " not in password
    form = form_of(request)
    assert secret not in request.content.decode() and "client_secret" not in form
    # RFC 6749 section 4.1.3: client_id is needed in the form only when the client does not authenticate
    assert "client_id" not in form
    assert form["code_verifier"] == VERIFIER  # PKCE still goes along


def test_client_secret_basic_without_its_setting_is_a_configuration_error_and_sends_nothing():
    network = FakeNetwork({TOKEN_URL: token_answer()})
    ep = endpoint(client_auth=ClientAuth.client_secret_basic, client_secret_name="CERNER_PROD")
    another_tenant = "AAAAAAAABBBBCCCCDDDDEEEEEEEEEEEE"
    for secrets in ({}, {f"CONNECTOR_CLIENT_SECRET_{TENANT_KEY}_CERNER_PROD": ""}, {"CERNER_PROD": "x"},
                    {"CONNECTOR_CLIENT_SECRET_CERNER_PROD": "x"},  # a name without the tenant
                    {f"CONNECTOR_CLIENT_SECRET_{another_tenant}_CERNER_PROD": "x"}):  # another tenant's secret
        with pytest.raises(ConfigurationError, match=f"CONNECTOR_CLIENT_SECRET_{TENANT_KEY}_CERNER_PROD"):
            exchange(network, ep, secrets=secrets)
    assert network.requests == []


def test_private_key_jwt_sends_an_assertion_verifiable_with_the_signers_jwks(rsa_key):
    signer = ClientAssertionSigner(rsa_key)
    network = FakeNetwork({TOKEN_URL: token_answer()})
    ep = endpoint(client_auth=ClientAuth.private_key_jwt)
    exchange(network, ep, signer=signer)
    exchange(network, ep, signer=signer)
    forms = [form_of(r) for r in network.requests]
    assert all("authorization" not in r.headers for r in network.requests)
    jtis = []
    for form in forms:
        assert form["client_assertion_type"] == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
        assert form["client_id"] == CLIENT_ID
        header = jwt.get_unverified_header(form["client_assertion"])
        [jwk] = [k for k in signer.jwks()["keys"] if k["kid"] == header["kid"]]
        claims = jwt.decode(form["client_assertion"], jwt.PyJWK(jwk).key, algorithms=["RS384"], audience=TOKEN_URL)
        assert claims["iss"] == claims["sub"] == CLIENT_ID
        assert claims["exp"] - claims["iat"] <= 300
        jtis.append(claims["jti"])
    assert len(set(jtis)) == 2


def test_private_key_jwt_without_a_signing_key_is_a_configuration_error():
    network = FakeNetwork({TOKEN_URL: token_answer()})
    with pytest.raises(ConfigurationError, match="CONNECTOR_CLIENT_ASSERTION_KEY"):
        exchange(network, endpoint(client_auth=ClientAuth.private_key_jwt))
    assert network.requests == []


def test_a_token_endpoint_on_a_private_address_is_refused_before_the_code_is_sent():
    network = FakeNetwork()
    client = SmartTokenHttpClient(http_for(network), secrets=ClientSecrets({}))
    config = CONFIG.model_copy(update={"token_endpoint": "https://jwks.internal.example/token"})
    with pytest.raises(OutboundRequestRefused, match="private"):
        client.exchange_code(endpoint(), config, client_id=CLIENT_ID, code=CODE, redirect_uri=REDIRECT,
                             code_verifier=VERIFIER)
    assert network.requests == []


def test_a_redirect_from_the_token_endpoint_is_not_followed():
    network = FakeNetwork({TOKEN_URL: httpx.Response(307, headers={"location": "https://evil.example/token"})})
    with pytest.raises(NotAuthenticated, match="HTTP 307"):
        exchange(network)
    assert len(network.requests) == 1


# -- the token endpoint's answers ---------------------------------------------------------------


def test_invalid_grant_is_not_authenticated_naming_the_oauth_error():
    network = FakeNetwork({TOKEN_URL: token_answer({"error": "invalid_grant",
                                                    "error_description": "code expired"}, 400)})
    with pytest.raises(NotAuthenticated, match=r"\(invalid_grant\)") as caught:
        exchange(network)
    assert "code expired" not in caught.value.message


@pytest.mark.parametrize("error", ["<script>alert(1)</script>", "Invalid Grant", "", 42, None])
def test_an_unreadable_oauth_error_is_not_repeated(error):
    network = FakeNetwork({TOKEN_URL: token_answer({"error": error}, 400)})
    with pytest.raises(NotAuthenticated) as caught:
        exchange(network)
    assert caught.value.message == "the EHR refused the sign-in (HTTP 400)"


def test_a_refusal_without_json_names_the_status():
    network = FakeNetwork({TOKEN_URL: httpx.Response(401, text="<html>nope</html>")})
    with pytest.raises(NotAuthenticated, match=r"HTTP 401"):
        exchange(network)


@pytest.mark.parametrize(("status", "headers", "retry_after"), [
    (429, {"retry-after": "7"}, 7.0), (503, {"retry-after": "120"}, 120.0), (500, {}, None),
    (503, {"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, 0.0),  # an HTTP date in the past: now
])
def test_throttling_and_outages_are_upstream_unavailable_with_retry_after(status, headers, retry_after):
    network = FakeNetwork({TOKEN_URL: httpx.Response(status, text="busy", headers=headers)})
    with pytest.raises(UpstreamUnavailable, match=f"HTTP {status}") as caught:
        exchange(network)
    assert caught.value.retry_after == retry_after


@pytest.mark.parametrize("answer", [
    httpx.Response(200, text="<html>sign in</html>", headers={"content-type": "text/html"}),
    httpx.Response(200, json=["not", "an", "object"]),
    httpx.Response(200, json={"token_type": "Bearer"}),  # no access_token
    httpx.Response(200, json={"access_token": "", "token_type": "Bearer"}),
])
def test_a_200_without_a_usable_token_is_invalid_upstream_data(answer):
    with pytest.raises(InvalidUpstreamData):
        exchange(FakeNetwork({TOKEN_URL: answer}))


@pytest.mark.parametrize("token_type", ["mac", "DPoP", "N_A"])
def test_a_token_that_is_not_a_bearer_token_is_refused(token_type):
    network = FakeNetwork({TOKEN_URL: token_answer({**SPEC_TOKENS, "token_type": token_type})})
    with pytest.raises(InvalidUpstreamData, match="not a Bearer token"):
        exchange(network)


def test_bearer_is_accepted_in_any_case():
    network = FakeNetwork({TOKEN_URL: token_answer({**SPEC_TOKENS, "token_type": "bearer"})})
    assert exchange(network).access_token == ACCESS_TOKEN


def test_the_token_never_appears_in_an_error_or_a_log_record(caplog):
    caplog.set_level(logging.DEBUG)
    leaky = {**SPEC_TOKENS, "error": "invalid_grant"}
    answers = [
        token_answer(leaky, 400),
        httpx.Response(503, text=ACCESS_TOKEN, headers={"retry-after": "1"}),
        httpx.Response(200, text=f"not json {ACCESS_TOKEN}"),
        token_answer({**SPEC_TOKENS, "token_type": "mac"}),
        token_answer({"access_token": ACCESS_TOKEN, "token_type": "Bearer", "expires_in": "soon"}),
    ]
    messages = []
    for answer in answers:
        with pytest.raises(UpstreamError if answer.status_code != 400 else NotAuthenticated) as caught:
            exchange(FakeNetwork({TOKEN_URL: answer}))
        messages.append(str(caught.value))
        messages.append(json.dumps(caught.value.as_dict()))
    good = exchange(FakeNetwork({TOKEN_URL: token_answer()}))
    messages.append(repr(good))
    for text in [*messages, caplog.text]:
        assert ACCESS_TOKEN not in text and CODE not in text and VERIFIER not in text
        assert SPEC_TOKENS["refresh_token"] not in text


# == id_tokens =======================================================================================


def jwk_of(key, kid: str, **extra) -> dict:
    public = key.public_key()
    exported = (RSAAlgorithm if isinstance(public, rsa.RSAPublicKey) else ECAlgorithm).to_jwk(public, as_dict=True)
    return {**exported, "kid": kid, "use": "sig", **extra}


def now() -> int:
    """PyJWT checks exp and iat against the wall clock, so id_tokens are made relative to it."""
    return int(time.time())


def id_token(key, *, kid: str | None = "k1", alg: str = "RS256", **claims) -> str:
    body = {"iss": ISSUER, "sub": "4122701", "aud": CLIENT_ID, "iat": now(), "exp": now() + 600,
            "fhirUser": f"{BASE}/Practitioner/4122701", "nonce": "n-123", **claims}
    body = {k: v for k, v in body.items() if v is not None}
    headers = {"kid": kid} if kid else {}
    return jwt.encode(body, key, algorithm=alg, headers=headers)


class JwksServer:
    """The authorization server's JWKS on the fake network, with a settable clock."""

    def __init__(self, *jwks: dict, jwks_url: str = JWKS_URL):
        self.keys = list(jwks)
        self.now = time.time()  # the verifier's own clock (key caching), moved by the tests
        self.network = FakeNetwork({jwks_url: lambda _: httpx.Response(200, json={"keys": self.keys})})
        self.verifier = IdTokenJwksVerifier(http_for(self.network), clock=lambda: self.now)

    def verify(self, token: str, *, config: SmartConfiguration = CONFIG, nonce: str | None = "n-123") -> dict:
        return self.verifier.verify(token, config, client_id=CLIENT_ID, nonce=nonce)

    @property
    def fetches(self) -> int:
        return len(self.network.to(JWKS_URL))




def test_a_good_id_token_verifies_and_returns_its_claims(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    claims = server.verify(id_token(rsa_key))
    assert claims["sub"] == "4122701" and claims["fhirUser"].endswith("/Practitioner/4122701")
    assert claims["aud"] == CLIENT_ID and server.fetches == 1
    [request] = server.network.requests
    assert request.method == "GET" and request.url.host == "151.101.1.140"


def test_an_ec_signed_id_token_verifies():
    key = ec.generate_private_key(ec.SECP256R1())
    server = JwksServer(jwk_of(key, "ec-1"))
    assert server.verify(id_token(key, kid="ec-1", alg="ES256"))["sub"] == "4122701"


def test_keys_are_cached_between_verifications(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    for _ in range(3):
        server.verify(id_token(rsa_key))
    assert server.fetches == 1
    server.now += 3601  # past the hour
    server.verify(id_token(rsa_key))
    assert server.fetches == 2


def test_a_signature_by_another_key_with_the_same_kid_is_refused(rsa_key, other_rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated, match="signature or claims are not valid"):
        server.verify(id_token(other_rsa_key, kid="k1"))


def test_a_token_for_another_audience_is_refused(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated, match="another application"):
        server.verify(id_token(rsa_key, aud="some-other-client"))


def test_an_expired_token_is_refused_beyond_the_clock_skew(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    assert server.verify(id_token(rsa_key, iat=now() - 900, exp=now() - CLOCK_SKEW_SECONDS + 20))
    with pytest.raises(NotAuthenticated, match="expired"):
        server.verify(id_token(rsa_key, iat=now() - 900, exp=now() - CLOCK_SKEW_SECONDS - 20))


def test_a_token_from_another_issuer_is_refused(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated, match="another issuer"):
        server.verify(id_token(rsa_key, iss="https://evil.example/"))


@pytest.mark.parametrize("missing", ["iss", "sub", "aud", "exp", "iat"])
def test_a_token_without_a_required_claim_is_refused(rsa_key, missing):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated):
        server.verify(id_token(rsa_key, **{missing: None}))


def test_alg_none_is_refused_without_fetching_keys(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    unsigned = jwt.encode({"iss": ISSUER, "sub": "x", "aud": CLIENT_ID, "iat": now(), "exp": now() + 60}, None,
                          algorithm="none", headers={"kid": "k1"})
    with pytest.raises(NotAuthenticated, match="accepted algorithm"):
        server.verify(unsigned)
    assert server.fetches == 0


def test_hs256_is_refused_even_with_the_public_key_as_the_secret(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    public_pem = rsa_key.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo)

    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    signing_input = (b64(json.dumps({"alg": "HS256", "kid": "k1", "typ": "JWT"}).encode()) + "."
                     + b64(json.dumps({"iss": ISSUER, "sub": "x", "aud": CLIENT_ID, "iat": now(),
                                       "exp": now() + 60}).encode()))
    forged = signing_input + "." + b64(hmac.new(public_pem, signing_input.encode(), hashlib.sha256).digest())
    for token in (forged, jwt.encode({"sub": "x"}, "a-shared-secret-of-32-bytes-long!", algorithm="HS256")):
        with pytest.raises(NotAuthenticated, match="accepted algorithm"):
            server.verify(token)
    assert server.fetches == 0


def test_an_unknown_kid_refetches_at_most_once_a_minute_then_refuses(rsa_key, other_rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    server.verify(id_token(rsa_key))
    assert server.fetches == 1

    rotated = id_token(other_rsa_key, kid="k2")
    server.keys.append(jwk_of(other_rsa_key, "k2"))  # the server rotates its keys
    with pytest.raises(NotAuthenticated, match="does not publish"):
        server.verify(rotated)  # within the minute: no refetch
    assert server.fetches == 1

    server.now += 61
    assert server.verify(rotated)["sub"] == "4122701"  # the refetch finds the new key
    assert server.fetches == 2

    unknown = id_token(other_rsa_key, kid="k3")
    for _ in range(5):
        with pytest.raises(NotAuthenticated, match="does not publish"):
            server.verify(unknown)
    assert server.fetches == 2  # a forged kid cannot make a fetch storm
    server.now += 61
    with pytest.raises(NotAuthenticated, match="does not publish"):
        server.verify(unknown)
    assert server.fetches == 3


def test_a_token_without_kid_uses_the_only_key(rsa_key, other_rsa_key):
    assert JwksServer(jwk_of(rsa_key, "k1")).verify(id_token(rsa_key, kid=None))
    with pytest.raises(NotAuthenticated):
        JwksServer(jwk_of(rsa_key, "k1"), jwk_of(other_rsa_key, "k2")).verify(id_token(rsa_key, kid=None))


def test_encryption_keys_are_not_used_to_verify(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1", use="enc"))
    with pytest.raises(NotAuthenticated, match="does not publish"):
        server.verify(id_token(rsa_key))


def test_a_key_of_another_type_than_the_algorithm_is_refused(rsa_key):
    ec_key = ec.generate_private_key(ec.SECP256R1())
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated):
        server.verify(id_token(ec_key, kid="k1", alg="ES256"))


def test_a_nonce_mismatch_is_refused(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated, match="nonce"):
        server.verify(id_token(rsa_key, nonce="someone-elses"), nonce="n-123")
    assert server.verify(id_token(rsa_key, nonce="n-123"), nonce="n-123")["nonce"] == "n-123"


def test_a_missing_nonce_is_refused_when_one_was_sent(rsa_key):
    # OpenID Connect Core 3.1.3.7 step 11 (found while writing these tests: a token without the claim passed)
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(NotAuthenticated, match="nonce"):
        server.verify(id_token(rsa_key, nonce=None), nonce="n-123")
    assert server.verify(id_token(rsa_key, nonce=None), nonce=None)["sub"] == "4122701"


def test_without_a_discovered_issuer_the_issuer_must_be_the_token_endpoints_origin(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    no_issuer = CONFIG.model_copy(update={"issuer": None})
    assert server.verify(id_token(rsa_key), config=no_issuer)["iss"] == ISSUER  # same origin as TOKEN_URL
    with pytest.raises(NotAuthenticated, match="another issuer"):
        server.verify(id_token(rsa_key, iss="https://evil.example/"), config=no_issuer)
    with pytest.raises(NotAuthenticated, match="another issuer"):
        server.verify(id_token(rsa_key, iss=f"http://{AUTH_HOST}/"), config=no_issuer)


def test_a_jwks_on_a_private_address_is_refused_without_a_request(rsa_key):
    private = "https://jwks.internal.example/keys"
    server = JwksServer(jwk_of(rsa_key, "k1"), jwks_url=private)
    with pytest.raises(OutboundRequestRefused, match="private"):
        server.verify(id_token(rsa_key), config=CONFIG.model_copy(update={"jwks_uri": private}))
    assert server.network.requests == []


@pytest.mark.parametrize(("answer", "error"), [
    (httpx.Response(500), UpstreamUnavailable),
    (httpx.Response(200, text="<html/>"), InvalidUpstreamData),
    (httpx.Response(200, json={"keys": "nope"}), InvalidUpstreamData),
    (httpx.Response(200, json=[]), InvalidUpstreamData),
])
def test_an_unusable_jwks_is_an_upstream_error(rsa_key, answer, error):
    server = JwksServer()
    server.network.routes[JWKS_URL] = answer
    with pytest.raises(error):
        server.verify(id_token(rsa_key))


def test_no_jwks_uri_means_no_verification(rsa_key):
    server = JwksServer(jwk_of(rsa_key, "k1"))
    with pytest.raises(InvalidUpstreamData, match="jwks_uri"):
        server.verify(id_token(rsa_key), config=CONFIG.model_copy(update={"jwks_uri": None}))


@pytest.mark.parametrize("garbage", ["", "not-a-jwt", "a.b", "%%%.%%%.%%%"])
def test_something_that_is_not_a_jwt_is_not_authenticated(garbage):
    with pytest.raises(NotAuthenticated):
        JwksServer().verify(garbage)


# == the endpoint's client authentication settings =====================================================


def test_client_secret_basic_needs_a_secret_name_everywhere():
    with pytest.raises(ValidationError, match="client_secret_name"):
        endpoint(client_auth=ClientAuth.client_secret_basic)
    with pytest.raises(ValidationError, match="client_secret_name"):
        EndpointDraft(base_url=BASE, environment="production", client_auth="client_secret_basic")
    draft = EndpointDraft(base_url=BASE, environment="production", client_auth="client_secret_basic",
                          client_secret_name="CERNER_PROD")
    assert draft.client_auth is ClientAuth.client_secret_basic
    assert endpoint(client_auth=ClientAuth.private_key_jwt).client_secret_name is None
    assert endpoint().client_auth is ClientAuth.public


@pytest.mark.parametrize("name", ["cerner_prod", "CERNER-PROD", "A" * 41, "", "X Y", "../X"])
def test_a_secret_name_is_only_the_suffix_of_our_own_settings(name):
    with pytest.raises(ValidationError):
        EndpointDraft(base_url=BASE, environment="production", client_auth="client_secret_basic",
                      client_secret_name=name)


def test_endpoint_change_takes_the_new_fields_and_refuses_nulls_for_required_ones():
    change = EndpointChange(client_auth="private_key_jwt", write_back_links=True,
                            department_organizers={"32216101": "dr@example.org"})
    assert change.given() == {"client_auth": ClientAuth.private_key_jwt, "write_back_links": True,
                              "department_organizers": {"32216101": "dr@example.org"}}
    assert change.needs_validation is False
    for field in ("client_auth", "write_back_links", "department_organizers"):
        with pytest.raises(ValidationError, match="cannot be null"):
            EndpointChange(**{field: None})
    assert EndpointChange(meeting_organizer=None).given() == {"meeting_organizer": None}  # erases it
    with pytest.raises(ValidationError):
        EndpointChange(department_organizers={"32216101": "not an organizer"})
    with pytest.raises(ValidationError):
        EndpointChange(client_secret_name="lower")


def test_a_non_ascii_retry_after_from_the_token_endpoint_is_still_unavailable():
    network = FakeNetwork({TOKEN_URL: httpx.Response(503, headers=[(b"retry-after", "²".encode())])})
    with pytest.raises(UpstreamUnavailable) as caught:
        exchange(network)
    assert caught.value.retry_after is None
