"""Admin bearer tokens: the Entra validator and the admin use case, against the sandbox issuer.

Tokens are minted in-process by the sandbox's ``TokenIssuer``; the validator fetches the
sandbox's common JWKS (``/common/discovery/v2.0/keys``, as from real Entra) through
``starlette.testclient.TestClient`` (an httpx.Client over the ASGI app), wrapped so tests
can count JWKS requests. A fake clock drives TTLs and intervals.
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
    API_APP_ID_URI,
    API_CLIENT_ID,
    API_SCOPE,
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
COMMON_KEYS = "/common/discovery/v2.0/keys"
ADMIN_API_SCOPE = f"{API_APP_ID_URI}/{API_SCOPE}"  # as configured: api://connector-local/Admin.ReadWrite


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
    def key_paths(self) -> list[str]:
        return [path for path in self.paths if path.endswith("/discovery/v2.0/keys")]

    @property
    def jwks_fetches(self) -> int:
        return len(self.key_paths)


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


# --- the admin API's scope ------------------------------------------------------------------


def scoped(token: str, validator, scope: str = ADMIN_API_SCOPE) -> AdminPrincipal:
    return authenticate_admin(f"Bearer {token}", validator, admin_role=API_ADMIN_ROLE, required_scope=scope)


def app_only(issuer: TokenIssuer, roles=(API_ADMIN_ROLE,)) -> str:
    """A client-credentials token as Entra issues it: app roles in ``roles``, no ``scp``, no ``wids``."""
    return issuer.mint_access_token(
        CONTOSO_TID, "app-admin", roles=roles, claims={"scp": None, "wids": None, "idtyp": "app"}
    )


def test_the_sandbox_issues_the_scope_name_in_scp(issuer):
    # What the configured scope is compared with: the name only, as Entra writes scp.
    assert unverified(issuer.mint_access_token(CONTOSO_TID))["scp"] == API_SCOPE == "Admin.ReadWrite"


@pytest.mark.parametrize("scp", ["Admin.ReadWrite", "User.Read Admin.ReadWrite", "Admin.ReadWrite openid"])
def test_token_with_the_configured_scope_is_admin(issuer, validator, scp):
    principal = scoped(issuer.mint_access_token(CONTOSO_TID, claims={"scp": scp}), validator)
    assert principal == AdminPrincipal(tenant_id=CONTOSO_TID, oid=AVERY, is_global_admin=True, roles=())


@pytest.mark.parametrize(
    "scp",
    [
        "",  # consented to nothing of this API
        "User.Read",  # a token for another scope
        "admin.readwrite",  # scope names are case-sensitive
        "Admin.Read",  # a prefix of the name is not the name
        "Admin.ReadWriteAll",  # nor is a longer one
        f"{API_APP_ID_URI}/{API_SCOPE}",  # Entra never writes the resource into scp
        ["Admin.ReadWrite"],  # not a space-separated string
        None,  # a delegated token for a Global Administrator without scp
    ],
)
def test_token_without_the_configured_scope_is_403(issuer, validator, scp):
    token = issuer.mint_access_token(CONTOSO_TID, claims={"scp": scp})
    assert admin(token, validator).oid == AVERY  # an admin without a scope requirement...
    with pytest.raises(NotAuthorized) as caught:  # ...but not with one
        scoped(token, validator)
    assert caught.value.http_status == 403
    assert caught.value.message == "the token was not issued for this API's Admin.ReadWrite scope"


def test_the_app_role_does_not_stand_in_for_a_delegated_tokens_scope(issuer, validator):
    token = issuer.mint_access_token(CONTOSO_TID, "app-admin", scopes=["User.Read"])
    assert unverified(token)["roles"] == [API_ADMIN_ROLE]
    with pytest.raises(NotAuthorized) as caught:
        scoped(token, validator)
    assert caught.value.message == "the token was not issued for this API's Admin.ReadWrite scope"


def test_app_only_token_with_the_admin_role_needs_no_scope(issuer, validator):
    token = app_only(issuer)
    assert "scp" not in unverified(token)
    principal = scoped(token, validator)
    assert principal == AdminPrincipal(
        tenant_id=CONTOSO_TID, oid=RILEY, is_global_admin=False, roles=(API_ADMIN_ROLE,)
    )


def test_app_only_token_without_the_admin_role_is_403(issuer, validator):
    with pytest.raises(NotAuthorized) as caught:
        scoped(app_only(issuer, roles=("Visits.Read",)), validator)
    assert caught.value.message == "this needs a Global Administrator or the Connector.Admin app role"


@pytest.mark.parametrize("scope", ["Admin.ReadWrite", f"api://{API_CLIENT_ID}/Admin.ReadWrite"])
def test_the_scope_name_is_the_part_after_the_last_slash(issuer, validator, scope):
    assert scoped(issuer.mint_access_token(CONTOSO_TID), validator, scope=scope).oid == AVERY
    with pytest.raises(NotAuthorized, match="Admin.ReadWrite scope$"):
        scoped(issuer.mint_access_token(CONTOSO_TID, scopes=["Other.Scope"]), validator, scope=scope)


@pytest.mark.parametrize("scope", ["api://connector-local/", "api://connector-local/Admin ReadWrite"])
def test_a_configured_scope_without_a_name_is_a_configuration_error(issuer, validator, scope):
    with pytest.raises(ConfigurationError, match="CONNECTOR_ADMIN_API_SCOPE"):
        scoped(issuer.mint_access_token(CONTOSO_TID), validator, scope=scope)


@pytest.mark.parametrize("scope", [None, ""])
def test_without_a_configured_scope_scp_is_not_checked(issuer, validator, scope):
    token = issuer.mint_access_token(CONTOSO_TID, scopes=["Other.Scope"])
    assert scoped(token, validator, scope=scope).oid == AVERY


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


@pytest.mark.parametrize(
    "tid, iss_tid",
    [(CONTOSO_TID, FABRIKAM_TID), (FABRIKAM_TID, CONTOSO_TID), (str(uuid.uuid4()), CONTOSO_TID)],
)
def test_iss_naming_another_tenant_than_tid_is_401(issuer, validator, wire, tid, iss_tid):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))  # keys cached
    # Correctly signed with a published key: only the issuer/tid pairing is wrong.
    token = issuer.mint_access_token(CONTOSO_TID, claims={"tid": tid, "iss": issuer.issuer(iss_tid)})
    with pytest.raises(NotAuthenticated) as caught:
        validator.validate(token)
    assert caught.value.http_status == 401
    assert caught.value.message == "the token's issuer is not its tenant's Entra ID v2.0 issuer"
    assert wire.paths == [COMMON_KEYS]  # and deciding it fetched nothing more


def test_any_tenants_token_verifies_against_the_one_common_key_set(issuer, validator, wire):
    # Entra signs every tenant's tokens with the keys at /common: the signature (with iss
    # matching tid) is what vouches for the tenant, and no tenant has its own key URL.
    other = str(uuid.uuid4())
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["tid"] == CONTOSO_TID
    assert validator.validate(issuer.mint_access_token(FABRIKAM_TID))["tid"] == FABRIKAM_TID
    assert validator.validate(for_tenant(issuer, other))["tid"] == other
    assert wire.paths == [COMMON_KEYS]


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


# --- keys: one common key set, caching, rotation, bounded refetches ------------------------


def test_keys_are_fetched_once_for_all_tenants_and_cached(issuer, validator, wire):
    for _ in range(5):
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    validator.validate(issuer.mint_access_token(FABRIKAM_TID))
    assert wire.paths == [COMMON_KEYS]


def test_keys_are_refetched_after_the_ttl(issuer, validator, wire, clock):
    validator.validate(on_clock(issuer, clock))
    clock.advance(TTL - 1)
    validator.validate(on_clock(issuer, clock))
    assert wire.jwks_fetches == 1
    clock.advance(1)
    validator.validate(on_clock(issuer, clock))
    assert wire.paths == [COMMON_KEYS, COMMON_KEYS]


def test_rotation_to_the_announced_key_needs_no_fetch(issuer, validator, wire):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    issuer.keys.rotate()  # the JWKS already published the next key
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID, signed_by="previous"))["oid"] == AVERY
    assert validator.validate(issuer.mint_access_token(FABRIKAM_TID))["oid"] == SAMIRA
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
    # The refetched set serves every tenant: Fabrikam's token with the new key costs nothing.
    assert validator.validate(issuer.mint_access_token(FABRIKAM_TID))["tid"] == FABRIKAM_TID
    assert wire.key_paths == [COMMON_KEYS, COMMON_KEYS]


def test_the_refetch_interval_is_global_not_per_tenant(issuer, validator, wire, clock):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    clock.advance(REFETCH_INTERVAL)
    for tid in (CONTOSO_TID, FABRIKAM_TID, str(uuid.uuid4()), str(uuid.uuid4())):
        claims = unverified(issuer.mint_access_token(CONTOSO_TID)) | {"tid": tid, "iss": issuer.issuer(tid)}
        headers = {"kid": secrets.token_urlsafe(16)}  # a new unknown kid every time
        forged = jwt.encode(claims, issuer.keys.foreign.private_key, algorithm="RS256", headers=headers)
        with pytest.raises(NotAuthenticated) as caught:
            validator.validate(forged)
        assert caught.value.message == "the token is signed with a key the identity provider does not publish"
    assert wire.paths == [COMMON_KEYS, COMMON_KEYS]  # the first unknown kid refetched; no other did


def storm_token(issuer: TokenIssuer, n: int) -> tuple[str, str]:
    """An attacker's token for a random tenant (its iss matching) and a random kid: unsigned
    (``alg: none``) or RS256 with a key nobody publishes. Returns it with the expected refusal."""
    tid = str(uuid.uuid4())
    claims = unverified(issuer.mint_access_token(CONTOSO_TID)) | {"tid": tid, "iss": issuer.issuer(tid)}
    kid = secrets.token_urlsafe(16)
    if n % 4 == 0:
        token = hand_made({"alg": "none", "typ": "JWT", "kid": kid}, claims, lambda _: b"")
        return token, "the token must be signed with RS256"
    token = jwt.encode(claims, issuer.keys.foreign.private_key, algorithm="RS256", headers={"kid": kid})
    return token, "the token is signed with a key the identity provider does not publish"


def test_a_storm_of_forged_tokens_for_random_tenants_cannot_deny_real_admins(issuer, validator, wire, clock):
    assert validator.validate(on_clock(issuer, clock))["tid"] == CONTOSO_TID
    fetched_at = [clock.now]
    refusals = []
    for n in range(200):  # 200 tokens, one every 5 s: 1000 s of storm
        clock.advance(5)
        token, expected = storm_token(issuer, n)
        before = wire.jwks_fetches
        with pytest.raises(NotAuthenticated) as caught:
            authenticate_admin(f"Bearer {token}", validator, admin_role=API_ADMIN_ROLE)
        refusals.append(caught.value.message == expected and caught.value.http_status == 401)
        if wire.jwks_fetches > before:
            fetched_at.append(clock.now)
        if n % 10 == 9:  # real admins, including a tenant whose first sign-in is mid-storm
            for tid, oid in ((CONTOSO_TID, AVERY), (FABRIKAM_TID, SAMIRA)):
                now = int(clock.now)
                token = issuer.mint_access_token(tid, claims={"iat": now, "nbf": now, "exp": now + 3600})
                assert admin(token, validator) == AdminPrincipal(
                    tenant_id=tid, oid=oid, is_global_admin=True, roles=()
                ), f"token {n}"
    assert refusals == [True] * 200
    # One fetch to start, then at most one per refetch interval, all of the one common key set.
    assert set(wire.paths) == {COMMON_KEYS}
    assert len(fetched_at) == 4  # t = 0, then the first forged kid at or after 300, 600, 900
    assert [b - a >= REFETCH_INTERVAL for a, b in zip(fetched_at, fetched_at[1:])] == [True] * 3


def test_a_concurrent_storm_of_forged_kids_causes_one_fetch(issuer, validator, wire, clock):
    validator.validate(issuer.mint_access_token(CONTOSO_TID))
    clock.advance(REFETCH_INTERVAL)  # the next unknown kid may refetch: exactly one of them does
    tokens = [storm_token(issuer, n) for n in range(200)]
    real = issuer.mint_access_token(FABRIKAM_TID)

    def attempt(item: tuple[str, str]) -> str:
        try:
            validator.validate(item[0])
        except NotAuthenticated as exc:
            return "ok" if exc.message == item[1] else exc.message
        return "accepted!"

    with ThreadPoolExecutor(max_workers=32) as pool:
        outcomes = list(pool.map(attempt, tokens))
        valid = list(pool.map(validator.validate, [real] * 32))
    assert outcomes == ["ok"] * 200
    assert [c["oid"] for c in valid] == [SAMIRA] * 32
    assert wire.paths == [COMMON_KEYS, COMMON_KEYS]


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
    assert fetches == [COMMON_KEYS]


@pytest.mark.parametrize(
    "template",
    [
        "https://elsewhere.example/{tenantid}/v2.0",  # another authority's keys
        f"{PUBLIC_URL}/{{tenantid}}/v2.0/",  # not exactly the issuer
        f"{PUBLIC_URL}/{FABRIKAM_TID}/v2.0",  # a key for one other tenant only
        "https://sts.windows.net/{tenantid}/",  # v1.0 keys
    ],
)
def test_key_published_for_another_issuer_is_refused(issuer, template):
    paths = []

    def jwks(request: httpx.Request) -> httpx.Response:
        paths.append(request.url.path)
        return httpx.Response(200, json=issuer.keys.jwks(template))

    validator = validator_over(mock_client(jwks))
    with pytest.raises(NotAuthenticated) as caught:
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert caught.value.http_status == 401
    assert caught.value.message == "the token's signing key is not published for its issuer"
    assert paths == [COMMON_KEYS]


def test_key_issuer_template_is_matched_with_the_tokens_tid(issuer):
    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=issuer.keys.jwks(f"{PUBLIC_URL}/{FABRIKAM_TID}/v2.0"))

    validator = validator_over(mock_client(jwks))
    assert validator.validate(issuer.mint_access_token(FABRIKAM_TID))["oid"] == SAMIRA
    with pytest.raises(NotAuthenticated, match="^the token's signing key is not published for its issuer$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID))


def test_key_without_an_issuer_template_still_needs_iss_to_match_tid(issuer):
    def jwks(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json=issuer.keys.jwks())  # no "issuer" on the keys

    validator = validator_over(mock_client(jwks))
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    with pytest.raises(NotAuthenticated, match="issuer is not its tenant's Entra ID v2.0 issuer$"):
        validator.validate(issuer.mint_access_token(CONTOSO_TID, claims={"iss": issuer.issuer(FABRIKAM_TID)}))


# --- the issuer's keys unavailable: 503, not 401 ----------------------------------------------


def test_jwks_endpoint_down_is_503_with_retry_after(issuer, sandbox, validator):
    sandbox.state.faults.arm(Fault(status=503, retry_after=7, path_prefix="/"))
    with pytest.raises(UpstreamUnavailable) as caught:
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert caught.value.http_status == 503
    assert caught.value.retry_after == 7
    assert "(HTTP 503)" in caught.value.message


@pytest.mark.parametrize("retry_after, pause", [(None, 2), (7, 7), (3600, REFETCH_INTERVAL)])
def test_with_no_keys_held_failed_fetches_are_paced(issuer, sandbox, validator, wire, clock, retry_after,
                                                    pause):
    sandbox.state.faults.arm(Fault(status=503, retry_after=retry_after, path_prefix="/"))
    for _ in range(50):  # a burst on a cold cache while the issuer is down: one fetch, not 50
        with pytest.raises(UpstreamUnavailable) as caught:
            validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert wire.jwks_fetches == 1
    assert caught.value.message == "the identity provider's signing keys are unavailable; try again shortly"
    assert caught.value.retry_after == pause

    sandbox.state.faults.clear()
    clock.advance(pause - 1)
    with pytest.raises(UpstreamUnavailable):
        validator.validate(issuer.mint_access_token(CONTOSO_TID))
    assert wire.jwks_fetches == 1
    clock.advance(1)
    assert validator.validate(issuer.mint_access_token(CONTOSO_TID))["oid"] == AVERY
    assert wire.paths == [COMMON_KEYS, COMMON_KEYS]


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
        storm_token(issuer, 0)[0],  # alg none, a random tenant
    ]
    random_tid = unverified(tokens[-1])["tid"]
    secrets_ = [CONTOSO_TID, FABRIKAM_TID, random_tid, AVERY, "avery", "contoso", issuer.keys.current.kid]
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
