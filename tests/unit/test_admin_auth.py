"""Admin bearer tokens: the Entra validator and the admin use case, against the sandbox issuer.

Tokens are minted in-process by the sandbox's ``TokenIssuer``; the validator fetches the
sandbox's JWKS through ``starlette.testclient.TestClient`` (an httpx.Client over the ASGI
app), wrapped so tests can count JWKS requests. A fake clock drives TTLs and intervals.
Transport failures the sandbox cannot produce are faked with ``httpx.MockTransport``.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from starlette.testclient import TestClient

from connector.adapters.identity import EntraTokenValidator, token_validator_from_settings
from connector.errors import ConfigurationError, NotAuthenticated, NotAuthorized, UpstreamUnavailable
from connector.services.admin_auth import AdminPrincipal, authenticate_admin
from connector.settings import Settings
from dev.sandbox.entra import (
    API_ADMIN_ROLE,
    API_CLIENT_ID,
    CONTOSO_TID,
    FABRIKAM_TID,
    GLOBAL_ADMINISTRATOR,
    TokenIssuer,
    create_app,
)
from dev.sandbox.faults import Fault

PUBLIC_URL = "https://login.sandbox.example"
GRAPH_APP_ID = "00000003-0000-0000-c000-000000000000"  # tokens for Microsoft Graph, not for us
AVERY = "c6ee2195-2f43-43df-9261-340dddf3bb56"  # Contoso, Global Administrator
JORDAN = "80b79bca-a426-4316-920a-c761b7ab6f47"  # Contoso, ordinary user
RILEY = "c88713b1-cca6-4110-99a0-b172e7abd757"  # Contoso, holds the Connector.Admin app role
SAMIRA = "11ba8957-9d0d-41ad-9b06-7b107e36e376"  # Fabrikam, Global Administrator
REFETCH_INTERVAL = 300
TTL = 86400


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class CountingApp:
    """ASGI wrapper recording the path of every request the validator makes."""

    def __init__(self, app) -> None:
        self.app = app
        self.paths: list[str] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "http":
            self.paths.append(scope["path"])
        await self.app(scope, receive, send)

    @property
    def jwks_fetches(self) -> int:
        return sum(path.endswith("/discovery/v2.0/keys") for path in self.paths)


@pytest.fixture
def sandbox():
    return create_app(public_url=PUBLIC_URL)


@pytest.fixture
def issuer(sandbox) -> TokenIssuer:
    return sandbox.state.issuer


@pytest.fixture
def wire(sandbox) -> CountingApp:
    return CountingApp(sandbox)


@pytest.fixture
def http(wire) -> Iterator[httpx.Client]:
    client = TestClient(wire, base_url=PUBLIC_URL)
    yield client
    client.close()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def validator(http, clock) -> EntraTokenValidator:
    return EntraTokenValidator(
        authority_host=PUBLIC_URL, audience=API_CLIENT_ID, http=http, now=clock,
        jwks_refetch_interval_seconds=REFETCH_INTERVAL, jwks_ttl_seconds=TTL,
    )


def admin(token: str, validator, role: str = API_ADMIN_ROLE) -> AdminPrincipal:
    return authenticate_admin(f"Bearer {token}", validator, admin_role=role)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hand_made(header: dict, claims: dict, sign: Callable[[bytes], bytes]) -> str:
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    return f"{signing_input}.{b64url(sign(signing_input.encode()))}"


def unverified(token: str) -> dict:
    return jwt.decode(token, options={"verify_signature": False})


def for_tenant(issuer: TokenIssuer, tid: str) -> str:
    """A correctly signed token claiming tenant ``tid`` (and its matching issuer)."""
    return issuer.mint_access_token(CONTOSO_TID, claims={"tid": tid, "iss": issuer.issuer(tid)})


def on_clock(issuer: TokenIssuer, clock: Clock, signed_by: str = "current") -> str:
    """A Contoso admin token issued now on the fake clock, valid an hour: for tests that move the clock."""
    now = int(clock.now)
    lifetime = {"iat": now, "nbf": now, "exp": now + 3600}
    return issuer.mint_access_token(CONTOSO_TID, signed_by=signed_by, claims=lifetime)


def mock_client(handler: Callable[[httpx.Request], httpx.Response]) -> httpx.Client:
    return httpx.Client(transport=httpx.MockTransport(handler))


def validator_over(http: httpx.Client, clock: Clock | None = None) -> EntraTokenValidator:
    return EntraTokenValidator(
        authority_host=PUBLIC_URL, audience=API_CLIENT_ID, http=http, now=clock or time.time
    )


# --- who is an admin ---------------------------------------------------------------------


def test_global_administrator_is_admin_of_the_tokens_tenant(issuer, validator):
    principal = admin(issuer.mint_access_token(CONTOSO_TID, "admin"), validator)
    assert principal == AdminPrincipal(tenant_id=CONTOSO_TID, oid=AVERY, is_global_admin=True, roles=())

    principal = admin(issuer.mint_access_token(FABRIKAM_TID, "admin"), validator)
    assert (principal.tenant_id, principal.oid, principal.is_global_admin) == (FABRIKAM_TID, SAMIRA, True)


def test_holder_of_the_app_role_is_admin(issuer, validator):
    principal = admin(issuer.mint_access_token(CONTOSO_TID, "app-admin"), validator)
    assert principal == AdminPrincipal(
        tenant_id=CONTOSO_TID, oid=RILEY, is_global_admin=False, roles=(API_ADMIN_ROLE,)
    )


def test_the_app_role_that_counts_is_the_configured_one(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID, "app-admin")
    with pytest.raises(NotAuthorized) as caught:
        admin(token, validator, role="Visits.Admin")
    assert caught.value.message == "this needs a Global Administrator or the Visits.Admin app role"


def test_plain_user_is_authenticated_but_not_authorized(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID, "user")
    assert validator.validate(token)["oid"] == JORDAN  # a valid token...
    with pytest.raises(NotAuthorized) as caught:  # ...of a non-admin
        admin(token, validator)
    assert caught.value.http_status == 403
    assert caught.value.message == "this needs a Global Administrator or the Connector.Admin app role"


@pytest.mark.parametrize(
    "claims",
    [
        {"wids": GLOBAL_ADMINISTRATOR},  # a scalar, not a list: no substring match
        {"roles": API_ADMIN_ROLE},
        {"roles": ["connector.admin"]},  # role values are case-sensitive
        {"wids": [GLOBAL_ADMINISTRATOR.upper()]},
    ],
)
def test_admin_claims_in_the_wrong_shape_grant_nothing(issuer, validator, claims):
    with pytest.raises(NotAuthorized):
        admin(issuer.mint_access_token(CONTOSO_TID, "user", claims=claims), validator)


def test_tenant_and_user_come_from_the_validated_claims_only():
    class FakeTokenValidator:
        def validate(self, token: str) -> dict:
            assert token == "opaque-token"
            return {"tid": FABRIKAM_TID, "oid": SAMIRA, "wids": [GLOBAL_ADMINISTRATOR], "roles": ["x", 7]}

    principal = authenticate_admin("Bearer opaque-token", FakeTokenValidator(), admin_role=API_ADMIN_ROLE)
    assert principal == AdminPrincipal(tenant_id=FABRIKAM_TID, oid=SAMIRA, is_global_admin=True, roles=("x",))


# --- the Authorization header --------------------------------------------------------------


@pytest.mark.parametrize(
    "header, message",
    [
        (None, "an Authorization: Bearer <token> header is required"),
        ("", "an Authorization: Bearer <token> header is required"),
        ("Basic dXNlcjpwYXNzd29yZA==", "the Authorization header must use the Bearer scheme"),
        ("Bearer", "the Authorization header must carry exactly one bearer token"),
        ("Bearer    ", "the Authorization header must carry exactly one bearer token"),
        ("Bearer two tokens", "the Authorization header must carry exactly one bearer token"),
        ("Bearer garbage", "the token is malformed"),
        ("Bearer a.b.c", "the token is malformed"),
        ("Bearer " + "A" * 20_000, "the token is malformed"),
    ],
)
def test_missing_or_unusable_header_is_401_without_fetching_keys(validator, wire, header, message):
    with pytest.raises(NotAuthenticated) as caught:
        authenticate_admin(header, validator, admin_role=API_ADMIN_ROLE)
    assert caught.value.http_status == 401
    assert caught.value.message == message
    assert wire.jwks_fetches == 0


def test_bearer_scheme_is_case_insensitive(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID)
    principal = authenticate_admin(f"bearer {token}", validator, admin_role=API_ADMIN_ROLE)
    assert principal.oid == AVERY


# --- lifetime --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "options, error",
    [
        ({"expires_in": -300}, "the token has expired"),
        ({"expires_in": -60}, None),  # expired 60 s ago: within the 120 s skew
        ({"not_before_offset": 600}, "the token is not valid yet"),
        ({"not_before_offset": 60}, None),  # valid in 60 s: within the skew
    ],
)
def test_lifetime_is_checked_with_the_clock_skew(issuer, validator, options, error):
    token = issuer.mint_access_token(CONTOSO_TID, **options)
    if error is None:
        assert validator.validate(token)["tid"] == CONTOSO_TID
    else:
        with pytest.raises(NotAuthenticated) as caught:
            validator.validate(token)
        assert caught.value.message == error


def test_a_token_expires_on_the_validators_clock(issuer, validator, clock):
    token = issuer.mint_access_token(CONTOSO_TID, expires_in=600)
    validator.validate(token)
    clock.advance(600 + 119)
    validator.validate(token)
    clock.advance(2)
    with pytest.raises(NotAuthenticated, match="^the token has expired$"):
        validator.validate(token)


def test_zero_skew_means_exactly_exp(issuer, http, clock):
    strict = EntraTokenValidator(
        authority_host=PUBLIC_URL, audience=API_CLIENT_ID, http=http, clock_skew_seconds=0, now=clock
    )
    with pytest.raises(NotAuthenticated, match="expired"):
        strict.validate(issuer.mint_access_token(CONTOSO_TID, expires_in=-1))


def test_issued_in_the_future_is_not_valid_yet(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID, claims={"iat": int(time.time()) + 3000})
    with pytest.raises(NotAuthenticated, match="^the token is not valid yet$"):
        validator.validate(token)


def test_non_numeric_exp_is_refused(issuer, validator):
    # PyJWT would accept a numeric string: the lifetime check must not.
    with pytest.raises(NotAuthenticated, match="'exp' claim is not a number"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={"exp": "9999999999"}))


# --- audience, issuer, tenant, required claims ----------------------------------------------


def test_token_for_another_api_is_refused(issuer, validator):
    with pytest.raises(NotAuthenticated, match="^the token is for another audience than this API$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, audience=GRAPH_APP_ID))


def test_audience_list_is_refused_even_if_it_contains_ours(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID, claims={"aud": [API_CLIENT_ID, "other"]})
    with pytest.raises(NotAuthenticated, match="another audience"):
        validator.validate(token)


@pytest.mark.parametrize(
    "iss",
    [
        f"{PUBLIC_URL}/{FABRIKAM_TID}/v2.0",  # another tenant's issuer
        f"https://sts.windows.net/{CONTOSO_TID}/",  # a v1.0 token
        f"{PUBLIC_URL}/{CONTOSO_TID}/v2.0/",  # not exactly equal
        f"https://evil.example/{CONTOSO_TID}/v2.0",  # another authority
    ],
)
def test_issuer_must_be_the_tenants_v2_issuer_exactly(issuer, validator, iss):
    with pytest.raises(NotAuthenticated, match="issuer is not its tenant's Entra ID v2.0 issuer$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={"iss": iss}))


@pytest.mark.parametrize("tid", ["contoso-clinic.example", CONTOSO_TID.upper(), "common", 42, None])
def test_tid_must_be_a_lowercase_guid(issuer, validator, wire, tid):
    with pytest.raises(NotAuthenticated, match=r"^the token's tenant id \(tid\) is missing or not a GUID$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={"tid": tid}))
    assert wire.jwks_fetches == 0  # a bad tid never becomes a URL


@pytest.mark.parametrize("claim", ["oid", "exp", "aud", "iss"])
def test_required_claims_must_be_present(issuer, validator, claim):
    with pytest.raises(NotAuthenticated) as caught:
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={claim: None}))
    assert caught.value.message == f"the token lacks the required claim '{claim}'"


def test_oid_must_be_a_guid(issuer, validator):
    with pytest.raises(NotAuthenticated, match=r"object id \(oid\) is not a GUID"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={"oid": "avery"}))


def test_a_tenant_the_issuer_does_not_know_is_401(issuer, validator, wire):
    with pytest.raises(NotAuthenticated, match="^the token's tenant is not known to the identity provider$"):
        validator.validate(for_tenant(issuer, str(uuid.uuid4())))
    assert wire.jwks_fetches == 1


# --- signatures and algorithms --------------------------------------------------------------


def test_key_the_issuer_does_not_publish_is_refused(issuer, validator):
    message = "^the token is signed with a key the identity provider does not publish$"
    with pytest.raises(NotAuthenticated, match=message):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, signed_by="foreign"))


def test_forged_signature_over_a_published_kid_is_refused(issuer, validator):
    with pytest.raises(NotAuthenticated, match="^the token's signature does not verify$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, signed_by="forged"))


def test_changed_payload_breaks_the_signature(issuer, validator):
    header, _, signature = issuer.mint_access_token(CONTOSO_TID, "user").split(".")
    claims = unverified(issuer.mint_access_token(CONTOSO_TID, "user")) | {"wids": [GLOBAL_ADMINISTRATOR]}
    tampered = f"{header}.{b64url(json.dumps(claims).encode())}.{signature}"
    with pytest.raises(NotAuthenticated, match="signature does not verify"):
        validator.validate(tampered)


def test_alg_none_is_refused_before_any_key_fetch(issuer, validator, wire):
    claims = unverified(issuer.mint_access_token(CONTOSO_TID))
    token = hand_made({"alg": "none", "typ": "JWT", "kid": issuer.keys.current.kid}, claims, lambda _: b"")
    with pytest.raises(NotAuthenticated, match="^the token must be signed with RS256$"):
        validator.validate(token)
    assert wire.jwks_fetches == 0


@pytest.mark.parametrize("secret", ["shared-secret", "public-key-pem"])
def test_hs256_is_refused_including_the_public_key_confusion_attack(issuer, validator, wire, secret):
    claims = unverified(issuer.mint_access_token(CONTOSO_TID))
    if secret == "public-key-pem":  # HMAC keyed with the issuer's own public key
        key = issuer.keys.current.private_key.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    else:
        key = secret.encode()
    header = {"alg": "HS256", "typ": "JWT", "kid": issuer.keys.current.kid}
    token = hand_made(header, claims, lambda data: hmac.new(key, data, hashlib.sha256).digest())
    with pytest.raises(NotAuthenticated, match="^the token must be signed with RS256$"):
        validator.validate(token)
    assert wire.jwks_fetches == 0


def test_token_without_kid_is_refused(issuer, validator):
    claims = unverified(issuer.mint_access_token(CONTOSO_TID))
    token = jwt.encode(claims, issuer.keys.current.private_key, algorithm="RS256")
    with pytest.raises(NotAuthenticated, match=r"does not name its signing key \(kid\)"):
        validator.validate(token)


# --- keys: caching, rotation, budgets --------------------------------------------------------


def test_keys_are_fetched_once_per_tenant_and_cached(issuer, validator, wire):
    for _ in range(5):
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    validator.validate(issuer.mint_access_token(FABRIKAM_TID))
    assert wire.paths == [
        f"/{CONTOSO_TID}/discovery/v2.0/keys",
        f"/{FABRIKAM_TID}/discovery/v2.0/keys",
    ]


def test_keys_are_refetched_after_the_ttl(issuer, validator, wire, clock):
    validator.validate(on_clock(issuer, clock))
    clock.advance(TTL - 1)
    validator.validate(on_clock(issuer, clock))
    assert wire.jwks_fetches == 1
    clock.advance(1)
    validator.validate(on_clock(issuer, clock))
    assert wire.jwks_fetches == 2


def test_rotation_to_the_announced_key_needs_no_fetch(issuer, validator, wire):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    issuer.keys.rotate()  # the JWKS already published the next key
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID, signed_by="previous"))["oid"] == AVERY
    assert wire.jwks_fetches == 1


def test_rotation_to_a_key_not_yet_seen_validates_after_one_refetch(issuer, validator, http, wire, clock):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    for _ in range(2):  # the second rotation signs with a key that was never in our copy
        assert http.post("/_sandbox/keys/rotate").status_code == 200
    token = issuer.mint_access_token(CONTOSO_TID)

    # Right after a fetch an unknown kid does not refetch: it is refused.
    with pytest.raises(NotAuthenticated, match="does not publish"):
        validator.validate(token)
    assert wire.jwks_fetches == 1

    clock.advance(REFETCH_INTERVAL)
    assert validator.validate(token)["tid"] == CONTOSO_TID
    assert wire.jwks_fetches == 2


def test_a_storm_of_forged_kids_refetches_at_most_once_per_interval(issuer, validator, wire, clock):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    claims = unverified(issuer.mint_access_token(CONTOSO_TID))

    def forged_kid_token() -> str:
        headers = {"kid": secrets.token_urlsafe(16)}
        return jwt.encode(claims, issuer.keys.foreign.private_key, algorithm="RS256", headers=headers)

    expected_fetches = 1
    for step in range(3):
        clock.advance(REFETCH_INTERVAL)
        for _ in range(40):
            with pytest.raises(NotAuthenticated, match="does not publish"):
                validator.validate(forged_kid_token())
            clock.advance(1)  # 40 s of storm: still inside one interval
        expected_fetches += 1
        assert wire.jwks_fetches == expected_fetches, f"step {step}"


def test_a_storm_of_unknown_tenants_spends_a_bounded_fetch_budget(issuer, validator, wire, clock):
    bogus = [str(uuid.uuid4()) for _ in range(50)]
    outcomes = []
    for tid in bogus:
        try:
            validator.validate(for_tenant(issuer, tid))
        except (NotAuthenticated, UpstreamUnavailable) as exc:
            outcomes.append(type(exc))
    assert wire.jwks_fetches == 20  # the new-tenant burst
    assert outcomes == [NotAuthenticated] * 20 + [UpstreamUnavailable] * 30

    # An unknown tenant is remembered: asking again costs nothing.
    with pytest.raises(NotAuthenticated, match="not known"):
        validator.validate(for_tenant(issuer, bogus[0]))
    assert wire.jwks_fetches == 20

    # A real new tenant waits for the bucket to refill; known tenants never wait.
    with pytest.raises(UpstreamUnavailable) as caught:
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert caught.value.http_status == 503 and caught.value.retry_after == 3
    clock.advance(3)
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["tid"] == CONTOSO_TID


def test_concurrent_requests_on_a_cold_cache_fetch_once(issuer):
    fetches = []
    lock = threading.Lock()

    def jwks(request: httpx.Request) -> httpx.Response:
        with lock:
            fetches.append(request.url.path)
        time.sleep(0.05)  # hold the fetch open while the other threads arrive
        return httpx.Response(200, json=issuer.keys.jwks(issuer.issuer_template))

    validator = validator_over(mock_client(jwks))
    tokens = [issuer.mint_access_token(CONTOSO_TID) for _ in range(16)]
    with ThreadPoolExecutor(max_workers=16) as pool:
        claims = list(pool.map(validator.validate, tokens))
    assert [c["oid"] for c in claims] == [AVERY] * 16
    assert fetches == [f"/{CONTOSO_TID}/discovery/v2.0/keys"]


def test_key_published_for_another_issuer_is_refused(issuer):
    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=issuer.keys.jwks("https://elsewhere.example/{tenantid}/v2.0"))

    with pytest.raises(NotAuthenticated, match="^the token's signing key is not published for its issuer$"):
        validator_over(mock_client(jwks)).validate(issuer.mint_access_token(CONTOSO_TID))


# --- the issuer's keys unavailable: 503, not 401 ----------------------------------------------


def test_jwks_endpoint_down_is_503_with_retry_after(issuer, sandbox, validator):
    sandbox.state.faults.arm(Fault(status=503, retry_after=7, path_prefix="/"))
    with pytest.raises(UpstreamUnavailable) as caught:
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 7
    assert "(HTTP 503)" in caught.value.message


def raising(exc: Exception) -> Callable[[httpx.Request], httpx.Response]:
    def handler(request: httpx.Request) -> httpx.Response:
        raise exc

    return handler


def weak_jwks(request: httpx.Request) -> httpx.Response:
    small = rsa.generate_private_key(public_exponent=65537, key_size=1024).public_key()
    jwk = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(small)) | {"kid": "weak", "use": "sig"}
    return httpx.Response(200, json={"keys": [jwk, {"kty": "oct", "kid": "hmac", "k": "c2VjcmV0"}]})


@pytest.mark.parametrize(
    "handler, message",
    [
        (raising(httpx.ConnectError("refused")), "could not be reached"),
        (raising(httpx.ReadTimeout("slow")), "did not answer in time"),
        (lambda r: httpx.Response(500), r"unavailable \(HTTP 500\)"),
        (lambda r: httpx.Response(302, headers={"Location": "http://169.254.169.254/"}), r"\(HTTP 302\)"),
        (lambda r: httpx.Response(200, text="<html>maintenance</html>"), "not a JWKS document"),
        (lambda r: httpx.Response(200, json={"keys": "none"}), "not a JWKS document"),
        (lambda r: httpx.Response(200, content=b"{" + b" " * 200_000 + b"}"), "implausibly large"),
        (weak_jwks, "no usable signing keys"),
    ],
)
def test_unusable_key_endpoint_is_503(issuer, handler, message):
    with pytest.raises(UpstreamUnavailable, match=message):
        validator_over(mock_client(handler)).validate(issuer.mint_access_token(CONTOSO_TID))


def test_failed_refresh_keeps_known_keys_for_a_while(issuer, sandbox, validator, wire, clock):
    validator.validate(on_clock(issuer, clock))
    sandbox.state.faults.arm(Fault(status=503))
    clock.advance(TTL)
    assert validator.validate(on_clock(issuer, clock))["oid"] == AVERY  # refresh failed; cached keys serve
    assert wire.jwks_fetches == 2
    validator.validate(on_clock(issuer, clock))
    assert wire.jwks_fetches == 2  # and the failed refresh is not retried on every request

    # A kid we do not hold cannot be decided while the issuer is down: 503, not 401.
    clock.advance(REFETCH_INTERVAL)
    with pytest.raises(UpstreamUnavailable):
        validator.validate(on_clock(issuer, clock, signed_by="foreign"))
    assert wire.jwks_fetches == 3

    # Keys older than twice the TTL are no longer trusted.
    clock.advance(TTL)
    with pytest.raises(UpstreamUnavailable, match="could not be refreshed"):
        validator.validate(on_clock(issuer, clock))


# --- what the messages never say ---------------------------------------------------------------


def test_error_messages_never_repeat_the_token_or_ids(issuer, validator, clock):
    bogus_tid = str(uuid.uuid4())
    tokens = [
        issuer.mint_access_token(CONTOSO_TID, expires_in=-600),
        issuer.mint_access_token(CONTOSO_TID, not_before_offset=900),
        issuer.mint_access_token(CONTOSO_TID, audience="api://other"),
        issuer.mint_access_token(CONTOSO_TID, claims={"iss": f"{PUBLIC_URL}/{FABRIKAM_TID}/v2.0"}),
        issuer.mint_access_token(CONTOSO_TID, signed_by="forged"),
        issuer.mint_access_token(CONTOSO_TID, signed_by="foreign"),
        issuer.mint_access_token(CONTOSO_TID, claims={"oid": "avery.lindqvist@contoso-clinic.example"}),
        issuer.mint_access_token(CONTOSO_TID, claims={"tid": "contoso-clinic.example"}),
        issuer.mint_access_token(CONTOSO_TID, claims={"exp": "soon"}),
        for_tenant(issuer, bogus_tid),
    ]
    secrets_ = [CONTOSO_TID, FABRIKAM_TID, bogus_tid, AVERY, "avery", "contoso", issuer.keys.current.kid]
    messages = []
    for token in tokens:
        with pytest.raises(NotAuthenticated) as caught:
            admin(token, validator)
        text = json.dumps(caught.value.as_dict()) + str(caught.value)
        messages.append(caught.value.message)
        assert all(part not in text for part in token.split(".") if part)
        assert not [s for s in secrets_ if s.lower() in text.lower()], text
    assert len(set(messages)) == len(messages)  # each failure says what is wrong, distinctly


# --- built from settings ------------------------------------------------------------------------


def settings(**overrides) -> Settings:
    values = {
        "stamp_region": "us",
        "storage_account_name": "devstoreaccount1",
        "admin_api_client_id": API_CLIENT_ID,
    }
    return Settings(**(values | overrides))


def test_validator_from_settings_needs_the_api_client_id():
    with pytest.raises(ConfigurationError, match="CONNECTOR_ADMIN_API_CLIENT_ID"):
        token_validator_from_settings(settings(admin_api_client_id=""))


def test_validator_from_settings_refuses_an_unreadable_ca_file(tmp_path):
    with pytest.raises(ConfigurationError, match="CONNECTOR_OUTBOUND_CA_FILE"):
        token_validator_from_settings(settings(outbound_ca_file=str(tmp_path / "missing.pem")))
    (tmp_path / "junk.pem").write_text("not a certificate")
    with pytest.raises(ConfigurationError, match="CONNECTOR_OUTBOUND_CA_FILE"):
        token_validator_from_settings(settings(outbound_ca_file=str(tmp_path / "junk.pem")))


def test_validator_from_settings_is_an_entra_validator():
    validator = token_validator_from_settings(settings())
    assert isinstance(validator, EntraTokenValidator)
    with pytest.raises(NotAuthenticated, match="malformed"):  # no network needed to refuse garbage
        validator.validate("not-a-jwt")
