"""Entra ID v2.0 access tokens for the admin API, verified against Entra's published keys.

    validator = token_validator_from_settings(settings)
    claims = validator.validate(token)   # the verified claims, or NotAuthenticated (401)

Nothing in a token is trusted before its signature verifies except what selects the key
and names the expected issuer: the header's ``kid`` and the ``tid`` claim. Then: RS256 only,
``iss`` exactly ``{authority}/{tid}/v2.0`` for the token's own ``tid``, the key's ``issuer``
template (if it has one) equal to that issuer once ``{tenantid}`` is the ``tid``, ``aud``
exactly the API's client id, ``exp``/``nbf``/``iat`` within the clock skew, required claims
present. Each failure says what is wrong and never repeats the token or a claim value.

Entra signs every tenant's tokens with the same keys, published once at
``{authority}/common/discovery/v2.0/keys`` (each key tagged with the issuer template
``.../{tenantid}/v2.0``), which is what Microsoft's own libraries validate against. So
:class:`JwksCache` holds ONE key set for a TTL, whatever the token's tenant: a token cannot
choose which URL is fetched, and a random ``tid`` costs nothing. Fetches a token can cause
are bounded globally:

- an unknown ``kid`` refetches at most once per refetch interval (Entra publishes a key well
  before signing with it, so real rotations are found anyway, and a stream of forged kids
  cannot become a fetch storm);
- while no keys are held (cold start, issuer down), failed fetches are retried no more than
  every few seconds (or the issuer's Retry-After), not once per request.

A failed fetch is 503 (UpstreamUnavailable), not 401: the caller's token may be fine. If a
refresh fails, keys up to twice the TTL old keep validating (an Entra blip must not lock
admins out), but a kid they do not hold is then 503 as well.
"""

from __future__ import annotations

import json
import logging
import math
import re
import ssl
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import certifi
import httpx
import jwt
from cryptography.hazmat.primitives.asymmetric.rsa import RSAPublicKey

from connector import telemetry
from connector.adapters.net.headers import ascii_int, retry_after_seconds
from connector.errors import ConfigurationError, NotAuthenticated, UpstreamUnavailable

if TYPE_CHECKING:
    from connector.settings import Settings

log = logging.getLogger(__name__)

ALGORITHM = "RS256"
REQUIRED_CLAIMS = ("tid", "oid", "exp", "iss", "aud")
GUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
# The keys Entra signs every tenant's tokens with, relative to the authority host.
COMMON_JWKS_PATH = "/common/discovery/v2.0/keys"
# Entra access tokens are a few KB; anything far larger is not worth parsing.
MAX_TOKEN_CHARS = 16 * 1024
# Entra's JWKS (a handful of keys with their certificates) is around 10 KB.
MAX_JWKS_BYTES = 128 * 1024
MAX_KID_CHARS = 256
MIN_RSA_KEY_BITS = 2048
HTTP_TIMEOUT_SECONDS = 5.0
# Read timeouts are per chunk; this bounds a server that drips the body a byte at a time.
JWKS_DEADLINE_SECONDS = 10.0
# With no keys held, a failed fetch is retried after this long (or the issuer's Retry-After).
COLD_RETRY_SECONDS = 2.0
USER_AGENT = "virtual-visits-connector"
TIMED_OUT = "the identity provider did not answer in time; try again shortly"
UNREACHABLE = "the identity provider could not be reached; try again shortly"


@dataclass(frozen=True)
class PublishedKey:
    public_key: RSAPublicKey
    # Entra tags each key with the issuer it signs for, e.g. ".../{tenantid}/v2.0".
    issuer_template: str | None


@dataclass(frozen=True)
class _KeySet:
    keys: dict[str, PublishedKey]
    fetched_at: float


class JwksCache:
    """The signing keys published at one JWKS URL, fetched within the bounds in the module docstring.

    Thread-safe. Lookups that need no fetch take no lock. Fetches are serialised by one lock
    and re-checked under it, so concurrent requests on a cold cache (or with the same unknown
    kid) cause one fetch; a due refresh of keys already held is done by one request while the
    others keep using the keys they have.
    """

    def __init__(
        self,
        http: httpx.Client,
        url: str,
        *,
        ttl_seconds: float,
        refetch_interval_seconds: float,
        now: Callable[[], float] = time.time,
    ) -> None:
        self._http = http
        self._url = url
        self._timeout = _bounded(http.timeout, HTTP_TIMEOUT_SECONDS)
        self._ttl = ttl_seconds
        self._refetch_interval = refetch_interval_seconds
        self._now = now
        self._current: _KeySet | None = None
        self._next_fetch = -math.inf  # no fetch attempt before this time, whatever asks for it
        self._fetch_lock = threading.Lock()

    def key(self, kid: str) -> PublishedKey | None:
        """The key ``kid``, or None if the issuer does not publish it."""
        current = self._current
        if current is None or self._wants_fetch(current, kid, self._now()):
            current = self._fetch_if_due(kid)
        if self._now() - current.fetched_at >= 2 * self._ttl:
            raise UpstreamUnavailable(
                "the identity provider's signing keys could not be refreshed; try again shortly"
            )
        return current.keys.get(kid)

    def _wants_fetch(self, current: _KeySet | None, kid: str, now: float) -> bool:
        if now < self._next_fetch:
            return False
        return current is None or kid not in current.keys or now - current.fetched_at >= self._ttl

    def _fetch_if_due(self, kid: str) -> _KeySet:
        held = self._current
        if held is not None and kid in held.keys:
            # Only a due refresh: while another thread fetches, the keys held still do.
            if not self._fetch_lock.acquire(blocking=False):
                return held
        else:
            self._fetch_lock.acquire()
        try:
            now = self._now()
            current = self._current
            if not self._wants_fetch(current, kid, now):
                if current is None:  # a fetch just failed: do not hammer the issuer
                    raise UpstreamUnavailable(
                        "the identity provider's signing keys are unavailable; try again shortly",
                        retry_after=max(1, math.ceil(self._next_fetch - now)),
                    )
                return current  # another thread fetched while this one waited
            try:
                fresh = self._download(now)
            except UpstreamUnavailable as exc:
                self._next_fetch = now + self._retry_pause(current, exc)
                if current is None or kid not in current.keys:
                    raise
                log.warning("JWKS refresh failed; using keys fetched %.0f s ago", now - current.fetched_at)
                return current
            self._current = fresh
            self._next_fetch = now + self._refetch_interval
            return fresh
        finally:
            self._fetch_lock.release()

    def _retry_pause(self, current: _KeySet | None, failure: UpstreamUnavailable) -> float:
        if current is not None:
            return self._refetch_interval
        return min(self._refetch_interval, max(COLD_RETRY_SECONDS, failure.retry_after or 0))

    def _download(self, now: float) -> _KeySet:
        host = httpx.URL(self._url).host
        with telemetry.span(f"GET {host}", method="GET", host=host, url=self._url) as call:
            try:
                with self._http.stream(
                    "GET", self._url, headers={"Accept": "application/json"}, timeout=self._timeout
                ) as response:
                    call.set(status=response.status_code)
                    if response.status_code != 200:
                        log.warning("JWKS fetch answered HTTP %s", response.status_code)
                        raise UpstreamUnavailable(
                            "the identity provider's signing keys are unavailable "
                            f"(HTTP {response.status_code}); try again shortly",
                            retry_after=_retry_after(response),
                        )
                    body = _read_limited(response, MAX_JWKS_BYTES)
            except httpx.TimeoutException as exc:
                log.warning("JWKS fetch timed out: %s", type(exc).__name__)
                raise UpstreamUnavailable(TIMED_OUT) from exc
            except httpx.HTTPError as exc:
                log.warning("JWKS fetch failed: %s", type(exc).__name__)
                raise UpstreamUnavailable(UNREACHABLE) from exc
        log.info("JWKS fetched from %s", self._url)
        return _KeySet(_parse_jwks(body), now)


def _bounded(timeout: httpx.Timeout, limit: float) -> httpx.Timeout:
    """The client's own timeouts, each capped at ``limit`` (None, i.e. wait forever, included)."""

    def cap(value: float | None) -> float:
        return limit if value is None else min(value, limit)

    return httpx.Timeout(
        connect=cap(timeout.connect),
        read=cap(timeout.read),
        write=cap(timeout.write),
        pool=cap(timeout.pool),
    )


def _read_limited(response: httpx.Response, limit: int) -> bytes:
    declared = response.headers.get("Content-Length", "")
    if (ascii_int(declared) or 0) > limit:
        raise UpstreamUnavailable("the identity provider's key set is implausibly large")
    deadline = time.monotonic() + JWKS_DEADLINE_SECONDS
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise UpstreamUnavailable("the identity provider's key set is implausibly large")
        if time.monotonic() > deadline:
            raise UpstreamUnavailable(TIMED_OUT)
    return bytes(body)


def _retry_after(response: httpx.Response) -> float | None:
    return retry_after_seconds(response.headers)


def _parse_jwks(body: bytes) -> dict[str, PublishedKey]:
    """The usable RS256 signing keys by kid; keys of other kinds are skipped, not fatal."""
    try:
        document = json.loads(body)
    except ValueError:
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise UpstreamUnavailable("the identity provider's key set is not a JWKS document")
    keys: dict[str, PublishedKey] = {}
    for jwk in document["keys"]:
        if not isinstance(jwk, dict) or jwk.get("kty") != "RSA" or jwk.get("use", "sig") != "sig":
            continue
        kid, issuer = jwk.get("kid"), jwk.get("issuer")
        if not isinstance(kid, str) or not kid or jwk.get("alg", ALGORITHM) != ALGORITHM:
            continue
        try:
            public_key = jwt.PyJWK(jwk, algorithm=ALGORITHM).key
        except (jwt.PyJWKError, jwt.InvalidKeyError, ValueError, TypeError):
            continue
        if isinstance(public_key, RSAPublicKey) and public_key.key_size >= MIN_RSA_KEY_BITS:
            keys[kid] = PublishedKey(public_key, issuer if isinstance(issuer, str) else None)
    if not keys:
        raise UpstreamUnavailable("the identity provider published no usable signing keys")
    return keys


class EntraTokenValidator:
    """Verifies Entra ID v2.0 access tokens for one API (``audience``) from any tenant."""

    def __init__(
        self,
        *,
        authority_host: str,
        audience: str,
        http: httpx.Client,
        clock_skew_seconds: int = 120,
        jwks_ttl_seconds: int = 86400,
        jwks_refetch_interval_seconds: int = 300,
        now: Callable[[], float] = time.time,
    ) -> None:
        if not audience:
            raise ConfigurationError("the admin API's client id (token audience) is not configured")
        self._authority = authority_host.rstrip("/")
        self._audience = audience
        self._skew = clock_skew_seconds
        self._now = now
        self._http = http
        self._keys = JwksCache(
            http,
            self._authority + COMMON_JWKS_PATH,
            ttl_seconds=jwks_ttl_seconds,
            refetch_interval_seconds=jwks_refetch_interval_seconds,
            now=now,
        )

    def close(self) -> None:
        """Close the http client (its pooled keep-alive connections to the issuer)."""
        self._http.close()

    def validate(self, token: str) -> dict[str, Any]:
        """The token's verified claims; NotAuthenticated if it is not valid, UpstreamUnavailable (503)
        if the issuer's keys cannot be read."""
        kid, tid = _key_selectors(token)
        issuer = f"{self._authority}/{tid}/v2.0"
        key = self._signing_key(kid, tid, issuer)
        claims = self._verified_claims(token, key, issuer)
        self._check_lifetime(claims)
        if not isinstance(claims["oid"], str) or not GUID.fullmatch(claims["oid"]):
            raise NotAuthenticated("the token's object id (oid) is not a GUID")
        return claims

    def _signing_key(self, kid: str, tid: str, issuer: str) -> RSAPublicKey:
        published = self._keys.key(kid)
        if published is None:
            raise NotAuthenticated("the token is signed with a key the identity provider does not publish")
        template = published.issuer_template
        if template is not None and template.replace("{tenantid}", tid) != issuer:
            raise NotAuthenticated("the token's signing key is not published for its issuer")
        return published.public_key

    def _verified_claims(self, token: str, key: RSAPublicKey, issuer: str) -> dict[str, Any]:
        try:
            return jwt.decode(
                token,
                key,
                algorithms=[ALGORITHM],
                audience=self._audience,
                issuer=issuer,
                # Lifetime is checked by _check_lifetime against the injected clock.
                options={
                    "require": list(REQUIRED_CLAIMS),
                    "strict_aud": True,
                    "verify_exp": False,
                    "verify_nbf": False,
                    "verify_iat": False,
                },
            )
        except jwt.InvalidSignatureError:
            raise NotAuthenticated("the token's signature does not verify") from None
        except jwt.MissingRequiredClaimError as exc:
            raise NotAuthenticated(f"the token lacks the required claim '{exc.claim}'") from None
        except jwt.InvalidAudienceError:
            raise NotAuthenticated("the token is for another audience than this API") from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated("the token's issuer is not its tenant's Entra ID v2.0 issuer") from None
        except jwt.InvalidAlgorithmError:
            raise NotAuthenticated("the token must be signed with RS256") from None
        except jwt.InvalidTokenError:
            raise NotAuthenticated("the token is malformed") from None

    def _check_lifetime(self, claims: dict[str, Any]) -> None:
        now = self._now()
        exp, nbf, iat = claims["exp"], claims.get("nbf"), claims.get("iat")
        for name, value in (("exp", exp), ("nbf", nbf), ("iat", iat)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
                raise NotAuthenticated(f"the token's '{name}' claim is not a number")
        if exp <= now - self._skew:
            raise NotAuthenticated("the token has expired")
        if (nbf is not None and nbf > now + self._skew) or (iat is not None and iat > now + self._skew):
            raise NotAuthenticated("the token is not valid yet")


def _key_selectors(token: str) -> tuple[str, str]:
    """The header's ``kid`` and the ``tid`` claim, read unverified: they pick the key and the
    expected issuer, both checked against the signature and the key's issuer template."""
    if not isinstance(token, str) or not token or len(token) > MAX_TOKEN_CHARS:
        raise NotAuthenticated("the token is malformed")
    try:
        header = jwt.get_unverified_header(token)
        unverified = jwt.decode(token, options={"verify_signature": False})
    except jwt.InvalidTokenError:
        raise NotAuthenticated("the token is malformed") from None
    if header.get("alg") != ALGORITHM:
        raise NotAuthenticated("the token must be signed with RS256")
    kid = header.get("kid")
    if not isinstance(kid, str) or not kid or len(kid) > MAX_KID_CHARS:
        raise NotAuthenticated("the token does not name its signing key (kid)")
    tid = unverified.get("tid")
    # Lowercase only, as Entra issues it: the issuer it names must match ``iss`` exactly.
    if not isinstance(tid, str) or not GUID.fullmatch(tid):
        raise NotAuthenticated("the token's tenant id (tid) is missing or not a GUID")
    return kid, tid


def outbound_ssl_context(extra_ca_file: str | None = None) -> ssl.SSLContext:
    """Trust the system CAs and certifi's bundle (httpx's default, for hosts whose system
    store is empty), plus ``extra_ca_file`` (the local stack's CA) when given."""
    context = ssl.create_default_context()
    context.load_verify_locations(cafile=certifi.where())
    if extra_ca_file:
        try:
            context.load_verify_locations(cafile=extra_ca_file)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError("CONNECTOR_OUTBOUND_CA_FILE cannot be read as a PEM CA bundle") from exc
    return context


def token_validator_from_settings(settings: Settings) -> EntraTokenValidator:
    """The admin API's validator: Entra (or the sandbox issuer) at ``admin_authority_host``."""
    if not settings.admin_api_client_id:
        raise ConfigurationError(
            "CONNECTOR_ADMIN_API_CLIENT_ID is not set: admin tokens cannot be validated without it"
        )
    http = httpx.Client(
        verify=outbound_ssl_context(settings.outbound_ca_file),
        timeout=HTTP_TIMEOUT_SECONDS,
        follow_redirects=False,
        headers={"User-Agent": USER_AGENT},
    )
    return EntraTokenValidator(
        authority_host=settings.admin_authority_host,
        audience=settings.admin_api_client_id,
        http=http,
        clock_skew_seconds=settings.admin_clock_skew_seconds,
    )
