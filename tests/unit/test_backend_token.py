"""SMART Backend Services tokens: the client_credentials request with a private_key_jwt assertion,
the cache, one request per key at a time, and the token endpoint's answers as the connector's errors.

The real SafeHttpClient runs over ``httpx.MockTransport`` with a fake resolver; the fake token
endpoint verifies each assertion against the JWKS our key ring publishes, like an EHR would.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import parse_qs

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from connector.adapters.fhir.backend_token import JWT_BEARER, BackendServicesTokens
from connector.adapters.identity.client_assertions import ClientAssertionSigner, KeyRing
from connector.adapters.net import OutboundRequestRefused, SafeHttpClient
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.errors import (
    ConfigurationError, InvalidUpstreamData, NotAuthenticated, UpstreamError, UpstreamUnavailable,
)

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "66666666-7777-8888-9999-000000000000"
CERNER_TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
AUTH_HOST = "authorization.cerner.com"
TOKEN_URL = f"https://{AUTH_HOST}/tenants/{CERNER_TENANT}/protocols/oauth2/profiles/smart-v1/token"
BASE = f"https://fhir-ehr.cerner.com/r4/{CERNER_TENANT}"
BACKEND_CLIENT = "bb318a62-fa61-49ae-b692-7d99214f0ec7"
JWKS_URL = "https://visits.example.org/api/.well-known/jwks.json"
SCOPES = ("system/Appointment.read", "system/Patient.read")
DNS = {AUTH_HOST: ["151.101.1.140"], "token.internal.example": ["10.0.0.7"]}


class FakeTokenEndpoint:
    """Cerner's token endpoint as far as this client sees it: checks the assertion against the
    published keys and answers what the test says (a body, or a function of the request)."""

    def __init__(self, jwks: Callable[[], dict], answer: Callable[[httpx.Request], httpx.Response] | None = None):
        self.jwks = jwks
        self.answer = answer
        self.requests: list[httpx.Request] = []
        self.issued: list[str] = []
        self._lock = threading.Lock()

    def handle(self, request: httpx.Request) -> httpx.Response:
        with self._lock:
            self.requests.append(request)
            number = len(self.requests)
        if self.answer is not None:
            return self.answer(request)
        form = form_of(request)
        verify(form["client_assertion"], self.jwks(), issuer=form["client_id"])
        value = f"access-token-{number}"
        with self._lock:
            self.issued.append(value)
        return token_answer({"access_token": value, "token_type": "Bearer", "expires_in": 570, "scope": form["scope"]})

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self.handle)


def form_of(request: httpx.Request) -> dict[str, str]:
    parsed = parse_qs(request.content.decode("ascii"), keep_blank_values=True, strict_parsing=True)
    assert all(len(v) == 1 for v in parsed.values())
    return {k: v[0] for k, v in parsed.items()}


def verify(assertion: str, jwks: dict, issuer: str = BACKEND_CLIENT) -> dict:
    header = jwt.get_unverified_header(assertion)
    [jwk] = [k for k in jwks["keys"] if k["kid"] == header["kid"]]
    key = jwt.PyJWK(jwk, algorithm=header["alg"]).key
    claims = jwt.decode(assertion, key, algorithms=[header["alg"]], audience=TOKEN_URL, issuer=issuer)
    assert claims["sub"] == issuer
    return claims


def token_answer(body: dict, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=body, headers={"content-type": "application/json", "cache-control": "no-store",
                                                      **headers})


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                backend_client_id=BACKEND_CLIENT, location_ids=["32216101"],
                created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return FhirEndpoint(**{**base, **changes})


class Clock:
    def __init__(self, now: float = 1_800_000_000.0):
        self.now = now

    def __call__(self) -> float:
        return self.now


@pytest.fixture(scope="module")
def ring() -> KeyRing:
    return KeyRing(ClientAssertionSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048)))


def tokens_for(server: FakeTokenEndpoint, signer, clock: Callable[[], float] = time.time,
               jwks_url: str | None = JWKS_URL) -> BackendServicesTokens:
    http = SafeHttpClient(resolver=lambda host, port: DNS.get(host, []), transport_factory=server.transport)
    return BackendServicesTokens(http, signer, allow_loopback=False, clock=clock, jwks_url=jwks_url)


# -- the request ---------------------------------------------------------------------------------


@pytest.mark.parametrize("make_key, alg", [
    (lambda: rsa.generate_private_key(public_exponent=65537, key_size=2048), "RS384"),
    (lambda: ec.generate_private_key(ec.SECP384R1()), "ES384"),
])
def test_the_request_is_client_credentials_with_a_private_key_jwt_assertion(make_key, alg):
    signer = ClientAssertionSigner(make_key())
    server = FakeTokenEndpoint(signer.jwks)
    before = int(time.time())
    token = tokens_for(server, signer).token(endpoint(), TOKEN_URL, SCOPES)
    assert token == "access-token-1"
    [request] = server.requests
    assert request.method == "POST"
    assert request.url.host == "151.101.1.140" and request.headers["host"] == AUTH_HOST
    assert request.extensions["sni_hostname"] == AUTH_HOST
    assert request.headers["content-type"] == "application/x-www-form-urlencoded"
    assert "authorization" not in request.headers  # one client authentication method only
    form = form_of(request)
    assert set(form) == {"grant_type", "scope", "client_id", "client_assertion_type", "client_assertion"}
    assert form["grant_type"] == "client_credentials"
    assert form["scope"] == "system/Appointment.read system/Patient.read"
    assert form["client_id"] == BACKEND_CLIENT
    assert form["client_assertion_type"] == JWT_BEARER == "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
    header = jwt.get_unverified_header(form["client_assertion"])
    assert header == {"alg": alg, "kid": signer.kid, "typ": "JWT"}
    claims = verify(form["client_assertion"], signer.jwks())
    assert claims["iss"] == claims["sub"] == BACKEND_CLIENT
    assert claims["aud"] == TOKEN_URL
    assert 0 < claims["exp"] - claims["iat"] <= 300 and before - 1 <= claims["iat"] <= int(time.time()) + 1
    assert len(claims["jti"]) >= 22


def test_every_request_carries_a_new_assertion_with_a_new_jti(ring):
    server = FakeTokenEndpoint(ring.jwks)
    tokens = tokens_for(server, ring)
    tokens.token(endpoint(), TOKEN_URL, SCOPES)
    tokens.token(endpoint(endpoint_id="second"), TOKEN_URL, SCOPES)
    jtis = [jwt.decode(form_of(r)["client_assertion"], options={"verify_signature": False})["jti"]
            for r in server.requests]
    assert len(jtis) == 2 and jtis[0] != jtis[1]


def test_the_key_rings_current_key_signs_and_a_rotated_ring_verifies_with_its_jwks():
    old = ClientAssertionSigner(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    new = ClientAssertionSigner(ec.generate_private_key(ec.SECP384R1()))
    ring = KeyRing(new, [old])
    server = FakeTokenEndpoint(ring.jwks)
    assert tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES) == "access-token-1"
    header = jwt.get_unverified_header(form_of(server.requests[0])["client_assertion"])
    assert (header["kid"], header["alg"]) == (new.kid, "ES384")
    assert [k["kid"] for k in ring.jwks()["keys"]] == [new.kid, old.kid]


def test_the_signer_is_asked_for_only_when_a_token_is_needed(ring):
    asked = []

    def provider():
        asked.append(1)
        return ring

    server = FakeTokenEndpoint(ring.jwks)
    tokens = tokens_for(server, provider)
    assert asked == []
    tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert asked == [1]


# -- the cache ------------------------------------------------------------------------------------


def test_a_token_is_cached_per_endpoint_tenant_client_token_url_and_scopes(ring):
    server = FakeTokenEndpoint(ring.jwks)
    tokens = tokens_for(server, ring)
    first = tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == first
    assert tokens.token(endpoint(), TOKEN_URL, tuple(reversed(SCOPES))) == first  # the same set of scopes
    assert len(server.requests) == 1
    others = [
        tokens.token(endpoint(), TOKEN_URL, ("system/Appointment.read",)),
        tokens.token(endpoint(endpoint_id="west"), TOKEN_URL, SCOPES),
        tokens.token(endpoint(tenant_id=OTHER_TENANT), TOKEN_URL, SCOPES),
        tokens.token(endpoint(backend_client_id="another-backend-app"), TOKEN_URL, SCOPES),
    ]
    assert len(set(others) | {first}) == 5 and len(server.requests) == 5
    assert tokens.token(endpoint(endpoint_id="west"), TOKEN_URL, SCOPES) == others[1]
    assert len(server.requests) == 5


def test_another_client_id_gets_its_own_token_even_with_a_refused_first_one(ring):
    def answer(request: httpx.Request) -> httpx.Response:
        if form_of(request)["client_id"] == BACKEND_CLIENT:
            return token_answer({"error": "invalid_client"}, 401)
        return token_answer({"access_token": "for-the-other-app", "token_type": "Bearer", "expires_in": 570})

    server = FakeTokenEndpoint(ring.jwks, answer)
    tokens = tokens_for(server, ring)
    with pytest.raises(ConfigurationError):
        tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert tokens.token(endpoint(backend_client_id="other-app"), TOKEN_URL, SCOPES) == "for-the-other-app"
    with pytest.raises(ConfigurationError):  # a refusal is never cached
        tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert len(server.requests) == 3


def test_a_token_is_fetched_again_60_seconds_before_it_expires(ring):
    clock = Clock()
    server = FakeTokenEndpoint(ring.jwks)
    tokens = tokens_for(server, ring, clock)
    first = tokens.token(endpoint(), TOKEN_URL, SCOPES)
    clock.now += 570 - 60 - 1
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == first
    clock.now += 1
    second = tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert second != first and len(server.requests) == 2


def test_a_short_lived_token_is_kept_for_half_its_life_and_one_without_expires_in_not_at_all(ring):
    clock = Clock()
    lifetimes = iter([60, None, None])

    def answer(request: httpx.Request) -> httpx.Response:
        body = {"access_token": f"t{len(server.requests)}", "token_type": "bearer"}
        lifetime = next(lifetimes)
        if lifetime is not None:
            body["expires_in"] = lifetime
        return token_answer(body)

    server = FakeTokenEndpoint(ring.jwks, answer)
    tokens = tokens_for(server, ring, clock)
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "t1"
    clock.now += 29
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "t1"
    clock.now += 1
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "t2"  # no expires_in: used once
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "t3"


def test_forget_drops_the_endpoints_tokens_only(ring):
    server = FakeTokenEndpoint(ring.jwks)
    tokens = tokens_for(server, ring)
    tokens.token(endpoint(), TOKEN_URL, SCOPES)
    tokens.token(endpoint(), TOKEN_URL, ("system/Appointment.read",))
    kept = tokens.token(endpoint(endpoint_id="west"), TOKEN_URL, SCOPES)
    assert tokens.forget(endpoint()) == 2
    assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "access-token-4"
    assert tokens.token(endpoint(endpoint_id="west"), TOKEN_URL, SCOPES) == kept
    assert len(server.requests) == 4


def test_threads_wanting_the_same_token_share_one_request(ring):
    started = threading.Event()

    def answer(request: httpx.Request) -> httpx.Response:
        started.set()
        time.sleep(0.2)  # long enough for every other thread to be waiting
        return token_answer({"access_token": f"shared-{len(server.requests)}", "token_type": "Bearer",
                             "expires_in": 570})

    server = FakeTokenEndpoint(ring.jwks, answer)
    tokens = tokens_for(server, ring)
    results: list[str] = []
    lock = threading.Lock()

    def worker():
        value = tokens.token(endpoint(), TOKEN_URL, SCOPES)
        with lock:
            results.append(value)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert started.is_set()
    assert results == ["shared-1"] * 8
    assert len(server.requests) == 1


# -- refusals and failures ---------------------------------------------------------------------------


def test_invalid_client_tells_the_admin_to_register_our_jwks_url(ring):
    description = "client_assertion signature does not match any registered key SECRET-DETAIL"
    server = FakeTokenEndpoint(ring.jwks, lambda r: token_answer(
        {"error": "invalid_client", "error_description": description}, 401,
        **{"www-authenticate": 'Basic realm="smart-v1", error="invalid_client"'}))
    with pytest.raises(ConfigurationError) as caught:
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES)
    message = caught.value.message
    assert "invalid_client" in message and BACKEND_CLIENT in message
    assert f"register our JWKS URL {JWKS_URL}" in message and "code console" in message
    assert "SECRET-DETAIL" not in message  # the server's own words are not repeated


def test_without_a_jwks_url_the_sentence_still_says_what_to_register(ring):
    server = FakeTokenEndpoint(ring.jwks, lambda r: token_answer({"error": "invalid_client"}, 400))
    with pytest.raises(ConfigurationError, match="register the connector's JWKS URL"):
        tokens_for(server, ring, jwks_url=None).token(endpoint(), TOKEN_URL, SCOPES)


@pytest.mark.parametrize("body, status, error, words", [
    ({"error": "invalid_scope"}, 400, ConfigurationError, "scopes system/Appointment.read system/Patient.read"),
    ({"error": "unauthorized_client"}, 400, ConfigurationError, "as a System app"),
    ({"error": "invalid_grant"}, 400, NotAuthenticated, "(invalid_grant)"),
    ({"error": "Not A Code <script>"}, 401, NotAuthenticated, "(HTTP 401)"),
    ({"message": "nope"}, 400, NotAuthenticated, "(HTTP 400)"),
])
def test_refusals_become_sentences(ring, body, status, error, words):
    server = FakeTokenEndpoint(ring.jwks, lambda r: token_answer(body, status))
    with pytest.raises(error) as caught:
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES)
    assert words in caught.value.message
    assert "<script>" not in caught.value.message


@pytest.mark.parametrize("status, headers, retry_after", [
    (429, {"retry-after": "7"}, 7.0),
    (503, {}, None),
    (500, {"retry-after": "120"}, 120.0),
])
def test_throttling_and_outages_are_unavailable_with_retry_after(ring, status, headers, retry_after):
    server = FakeTokenEndpoint(ring.jwks, lambda r: httpx.Response(status, headers=headers, text="busy"))
    with pytest.raises(UpstreamUnavailable) as caught:
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES)
    assert caught.value.retry_after == retry_after
    assert f"HTTP {status}" in caught.value.message


@pytest.mark.parametrize("response, words", [
    (httpx.Response(200, text="<html>ok</html>", headers={"content-type": "text/html"}), "JSON object"),
    (token_answer({"token_type": "Bearer", "expires_in": 570}), "no usable access_token"),
    (token_answer({"access_token": "x", "token_type": "MAC", "expires_in": 570}), "not a Bearer token"),
])
def test_an_unusable_answer_is_invalid_upstream_data(ring, response, words):
    server = FakeTokenEndpoint(ring.jwks, lambda r: response)
    with pytest.raises(InvalidUpstreamData, match=words):
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES)


def test_a_redirect_is_not_followed(ring):
    server = FakeTokenEndpoint(ring.jwks, lambda r: httpx.Response(307, headers={"location": "https://evil.example/t"}))
    with pytest.raises(UpstreamError, match="HTTP 307"):
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, SCOPES)
    assert len(server.requests) == 1


def test_a_trimmed_grant_names_the_missing_scope(ring):
    # Cerner drops requested scopes the app is not registered for, and still answers 200.
    server = FakeTokenEndpoint(ring.jwks, lambda r: token_answer(
        {"access_token": "narrow", "token_type": "Bearer", "expires_in": 570, "scope": "system/Appointment.read"}))
    tokens = tokens_for(server, ring)
    with pytest.raises(ConfigurationError) as caught:
        tokens.token(endpoint(), TOKEN_URL, SCOPES)
    assert "did not grant system/Patient.read" in caught.value.message and "code console" in caught.value.message
    assert tokens.token(endpoint(), TOKEN_URL, ("system/Appointment.read",)) == "narrow"


def test_an_endpoint_without_a_backend_client_id_or_a_stamp_without_a_key_sends_nothing(ring):
    server = FakeTokenEndpoint(ring.jwks)
    with pytest.raises(ConfigurationError, match="no backend services client id"):
        tokens_for(server, ring).token(endpoint(backend_client_id=None), TOKEN_URL, SCOPES)
    with pytest.raises(ConfigurationError, match="CONNECTOR_CLIENT_ASSERTION_KEY"):
        tokens_for(server, lambda: None).token(endpoint(), TOKEN_URL, SCOPES)
    assert server.requests == []


@pytest.mark.parametrize("scopes", [(), ("",), ("system/Appointment.read bad",), ('system/"x"',)])
def test_scopes_must_be_scope_tokens(ring, scopes):
    server = FakeTokenEndpoint(ring.jwks)
    with pytest.raises(ValueError):
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, scopes)
    with pytest.raises(TypeError):
        tokens_for(server, ring).token(endpoint(), TOKEN_URL, "system/Appointment.read")  # type: ignore[arg-type]
    assert server.requests == []


def test_a_token_url_on_a_private_address_is_refused_before_anything_is_sent(ring):
    server = FakeTokenEndpoint(ring.jwks)
    with pytest.raises(OutboundRequestRefused):
        tokens_for(server, ring).token(endpoint(), "https://token.internal.example/token", SCOPES)
    assert server.requests == []


def test_no_token_or_assertion_reaches_the_logs_or_the_errors(ring, caplog):
    outcomes = iter([token_answer({"access_token": "TOPSECRET-TOKEN", "token_type": "Bearer", "expires_in": 570}),
                     token_answer({"error": "invalid_client", "error_description": "bad"}, 401),
                     httpx.Response(503)])
    assertions: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        assertions.append(form_of(request)["client_assertion"])
        return next(outcomes)

    server = FakeTokenEndpoint(ring.jwks, answer)
    tokens = tokens_for(server, ring)
    messages = []
    with caplog.at_level(logging.DEBUG):
        assert tokens.token(endpoint(), TOKEN_URL, SCOPES) == "TOPSECRET-TOKEN"
        for endpoint_id in ("second", "third"):
            with pytest.raises((ConfigurationError, UpstreamUnavailable)) as caught:
                tokens.token(endpoint(endpoint_id=endpoint_id), TOKEN_URL, SCOPES)
            messages.append(caught.value.message)
    assert len(assertions) == 3
    logged = caplog.text + " ".join(messages)
    assert "TOPSECRET-TOKEN" not in logged
    assert not any(a in logged or a.split(".")[2] in logged for a in assertions)
    assert "backend services token issued for endpoint main" in caplog.text
