"""Client authentication at the token endpoint (RFC 6749 section 2.3, RFC 7523, SMART).

One method per request, as RFC 6749 requires:

- ``Authorization: Basic`` -> ``client_secret_basic``;
- ``client_assertion_type=urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` +
  ``client_assertion`` -> ``private_key_jwt`` (RS384 / ES384 only, as Cerner advertises in
  ``token_endpoint_auth_signing_alg_values_supported``);
- ``client_id`` alone -> a public client.

``private_key_jwt`` is checked as SMART's client-confidential-asymmetric profile has the
authorization server do it (hl7.org/fhir/smart-app-launch, "Signature Verification"; Cerner
points backend services clients there: fhir.cerner.com/authorization, "JWT Authentication"):
``kid`` is required and must pick exactly one key of the algorithm's ``kty`` (ES384: P-384;
RS384: RSA of 2048 bits or more) from the registered JWK Set, inline or read from the
registered JWK Set URL (a ``jku`` header must equal that URL); ``iss`` = ``sub`` = the
client id; ``aud`` = this token endpoint's URL; ``exp`` no more than five minutes ahead and
not past; ``jti`` never seen before for the client while its assertion could live. A JWK
Set URL is cached for as long as its ``Cache-Control`` allows and read again whenever an
assertion names a ``kid`` the cached copy lacks (key rotation): see :class:`JwksCache`.

Every failure is ``invalid_client`` with status 401.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import threading
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import unquote_plus, urlsplit

import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from .clients import ClientRegistry, RegisteredClient
from .errors import OAuthError
from .grants import GrantStore

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
ASSERTION_ALGS = {"RS384": "RSA", "ES384": "EC"}  # alg -> the JWK kty that can verify it
MAX_ASSERTION_LIFETIME = 300  # s: SMART Backend Services: exp no more than five minutes ahead
CLOCK_SKEW = 10  # s of tolerance for clients whose clocks run a little fast


def _invalid(description: str) -> OAuthError:
    return OAuthError("invalid_client", description, 401)


async def authenticate_client(
    headers: Mapping[str, str], form: Mapping[str, str], registry: ClientRegistry,
    grants: GrantStore, token_url: str, jwks_cache: "JwksCache | None" = None,
) -> RegisteredClient:
    basic = headers.get("authorization", "")
    assertion_type = form.get("client_assertion_type")
    if basic and assertion_type:
        raise OAuthError("invalid_request", "use one client authentication method, not two")
    if form.get("client_secret"):
        raise _invalid("client_secret_post is not supported; use client_secret_basic")
    if basic:
        return _basic(basic, form, registry)
    if assertion_type:
        return await _private_key_jwt(form, registry, grants, token_url, jwks_cache)
    client = registry.get(form.get("client_id"))
    if client is None:
        raise _invalid("unknown client_id")
    if not client.is_public:
        raise _invalid("confidential client must authenticate (client_secret_basic or private_key_jwt)")
    return client


def _basic(header: str, form: Mapping[str, str], registry: ClientRegistry) -> RegisteredClient:
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic":
        raise _invalid("Authorization header must use the Basic scheme")
    try:
        decoded = base64.b64decode(encoded, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _invalid("malformed Basic credentials") from None
    raw_id, sep, raw_secret = decoded.partition(":")
    # RFC 6749 section 2.3.1: both parts are form-urlencoded before being joined.
    client_id, secret = unquote_plus(raw_id), unquote_plus(raw_secret)
    client = registry.get(client_id)
    if not sep or client is None or client.client_secret is None:
        raise _invalid("unknown client or client without a secret")
    if not hmac.compare_digest(secret.encode(), client.client_secret.encode()):
        raise _invalid("client secret does not match")
    if form.get("client_id") not in (None, client_id):
        raise _invalid("client_id does not match the Basic credentials")
    return client


async def _private_key_jwt(form: Mapping[str, str], registry: ClientRegistry, grants: GrantStore,
                           token_url: str, jwks_cache: "JwksCache | None") -> RegisteredClient:
    if form.get("client_assertion_type") != JWT_BEARER:
        raise _invalid(f"client_assertion_type must be {JWT_BEARER}")
    assertion = form.get("client_assertion") or ""
    try:
        header = jwt.get_unverified_header(assertion)
        unverified = jwt.decode(assertion, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise _invalid("client_assertion is not a JWT") from None
    alg = header.get("alg")
    if alg not in ASSERTION_ALGS:
        raise _invalid(f"client_assertion alg {alg!r} not allowed; use RS384 or ES384")
    if str(header.get("typ", "JWT")).upper() != "JWT":
        raise _invalid("client_assertion typ must be JWT")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid:
        raise _invalid("client_assertion header needs the kid of the signing key")
    issuer = unverified.get("iss")
    client = registry.get(issuer) if isinstance(issuer, str) else None
    if client is None or (client.jwks is None and client.jwks_uri is None):
        raise _invalid("iss is not a client registered with a JWK Set")
    if form.get("client_id") not in (None, client.client_id):
        raise _invalid("client_id does not match the assertion's iss")
    jku = header.get("jku")
    if jku is not None and jku != client.jwks_uri:
        # SMART: a jku must match the JWK Set URL registered for the client, else verification fails.
        raise _invalid("client_assertion jku is not the JWK Set URL registered for this client")
    key = await _signing_key(client, alg, kid, jwks_cache or JwksCache(grants.now))
    claims = _verify_signature(assertion, alg, key, client, token_url)
    _check_claims(claims, client, grants)
    return client


async def _signing_key(client: RegisteredClient, alg: str, kid: str, jwks_cache: "JwksCache") -> Mapping[str, Any]:
    """The one registered key with this ``kid`` and the ``kty`` of ``alg`` (SMART's algorithm,
    step 3): none or several is a failure. A JWK Set URL is read through the cache and read
    again when the ``kid`` is not in the cached copy, so a client's new key works at once."""
    if client.jwks is not None:
        candidates = _candidates(client.jwks, alg, kid)
    else:
        jwks, fresh = await jwks_cache.get(client)
        candidates = _candidates(jwks, alg, kid)
        if not candidates and not fresh:
            jwks, _ = await jwks_cache.get(client, refresh=True)
            candidates = _candidates(jwks, alg, kid)
    if not candidates:
        raise _invalid(f"no key with kid {kid!r} for {alg} in the client's JWK Set")
    if len(candidates) > 1:
        raise _invalid(f"more than one key with kid {kid!r} in the client's JWK Set")
    jwk = candidates[0]
    if jwk.get("alg") not in (None, alg) or jwk.get("use", "sig") != "sig":
        raise _invalid(f"the key {kid!r} is not for {alg} signatures")
    if alg == "ES384" and jwk.get("crv") != "P-384":
        raise _invalid("ES384 needs a P-384 key")
    return jwk


def _candidates(jwk_set: Mapping[str, Any], alg: str, kid: str) -> list[Mapping[str, Any]]:
    keys = jwk_set.get("keys") if isinstance(jwk_set, Mapping) else None
    return [k for k in keys or [] if isinstance(k, Mapping) and k.get("kid") == kid
            and k.get("kty") == ASSERTION_ALGS[alg]]


class JwksCache:
    """Clients' JWK Sets fetched from their registered URLs, kept as long as the client's
    ``Cache-Control`` allows (SMART: "SHALL NOT cache a JWKS for longer than the client's
    cache-control header indicates"; no header or ``no-store`` / ``no-cache``: not kept).

    Every fetch is recorded (``fetches``, and the simulator's audit as ``jwks_fetch``) so tests
    can see when the simulator went back to the client's URL."""

    def __init__(self, now: Callable[[], float], record: Callable[..., None] | None = None) -> None:
        self._now = now
        self._record = record
        self._sets: dict[str, tuple[float, Mapping[str, Any]]] = {}
        self._lock = threading.Lock()
        self.fetches: list[str] = []

    async def get(self, client: RegisteredClient, *, refresh: bool = False) -> tuple[Mapping[str, Any], bool]:
        """(the client's JWK Set, whether it was fetched just now)."""
        url = client.jwks_uri or ""
        with self._lock:
            cached = self._sets.get(url)
        if cached is not None and not refresh and cached[0] > self._now():
            return cached[1], False
        jwks, max_age = await _fetch_jwks(client)
        with self._lock:
            self.fetches.append(url)
            if max_age > 0:
                self._sets[url] = (self._now() + max_age, jwks)
            else:
                self._sets.pop(url, None)
        if self._record is not None:
            self._record("jwks_fetch", client_id=client.client_id, keys=len(jwks.get("keys", [])), max_age=max_age)
        return jwks, True

    def clear(self) -> None:
        with self._lock:
            self._sets.clear()


async def _fetch_jwks(client: RegisteredClient) -> tuple[Mapping[str, Any], int]:
    url = client.jwks_uri or ""
    parts = urlsplit(url)
    if parts.scheme != "https" and not (parts.scheme == "http" and parts.hostname in ("127.0.0.1", "localhost", "::1")):
        raise _invalid("the registered JWK Set URL must be https (http only on loopback in the sandbox)")
    try:
        async with httpx.AsyncClient(timeout=5.0, follow_redirects=False) as http:
            response = await http.get(url, headers={"Accept": "application/json"})
            response.raise_for_status()
            jwks = response.json()
    except (httpx.HTTPError, ValueError) as exc:
        raise _invalid(f"could not fetch the client's JWK Set: {type(exc).__name__}") from None
    if not isinstance(jwks, dict) or not isinstance(jwks.get("keys"), list):
        raise _invalid("the client's JWK Set URL does not serve a JWK Set")
    return jwks, _max_age(response.headers.get("cache-control", ""))


def _max_age(cache_control: str) -> int:
    """Seconds ``Cache-Control`` lets a shared cache keep the response; 0 when it says nothing."""
    directives = {}
    for part in cache_control.split(","):
        name, _, value = part.strip().partition("=")
        directives[name.strip().lower()] = value.strip().strip('"')
    if {"no-store", "no-cache", "private"} & set(directives):
        return 0
    for name in ("s-maxage", "max-age"):
        value = directives.get(name, "")
        if value.isascii() and value.isdigit():
            return int(value)
    return 0


def _verify_signature(assertion: str, alg: str, jwk: Mapping[str, Any], client: RegisteredClient,
                      token_url: str) -> dict[str, Any]:
    try:
        key = jwt.PyJWK(dict(jwk), algorithm=alg).key
    except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError):
        raise _invalid("the registered key cannot verify this assertion") from None
    if isinstance(key, rsa.RSAPublicKey) and key.key_size < 2048:
        raise _invalid("RSA keys must be 2048 bits or more")
    try:
        return jwt.decode(
            assertion, key, algorithms=[alg], audience=token_url, issuer=client.client_id,
            # exp/iat are checked against the simulator's clock below, not PyJWT's.
            options={"require": ["iss", "sub", "aud", "exp", "jti"], "verify_exp": False,
                     "verify_iat": False, "verify_nbf": False},
        )
    except jwt.InvalidSignatureError:
        raise _invalid("client_assertion signature does not match the registered key") from None
    except jwt.InvalidAudienceError:
        raise _invalid(f"client_assertion aud must be the token endpoint URL {token_url}") from None
    except jwt.InvalidIssuerError:
        raise _invalid("client_assertion iss must be the client_id") from None
    except jwt.InvalidTokenError as exc:
        raise _invalid(f"client_assertion rejected: {exc}") from None


def _check_claims(claims: Mapping[str, Any], client: RegisteredClient, grants: GrantStore) -> None:
    if claims.get("sub") != client.client_id:
        raise _invalid("client_assertion sub must equal iss (the client_id)")
    now = grants.now()
    exp = claims.get("exp")
    if not isinstance(exp, (int, float)) or exp <= now - CLOCK_SKEW:
        raise _invalid("client_assertion has expired")
    if exp > now + MAX_ASSERTION_LIFETIME + CLOCK_SKEW:
        raise _invalid("client_assertion exp is more than five minutes in the future")
    if not grants.use_jti(client.client_id, str(claims["jti"]), float(exp)):
        raise _invalid("client_assertion jti has already been used")
