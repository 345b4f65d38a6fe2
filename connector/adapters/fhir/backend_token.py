"""SMART Backend Services: an access token for the connector itself (no user), for the scans.

    tokens = BackendServicesTokens(safe_http, lambda: container.client_assertions, allow_loopback=False,
                                   jwks_url="https://<stamp>/api/.well-known/jwks.json")
    access_token = tokens.token(endpoint, token_url, ("system/Appointment.read", "system/Patient.read"))

The request is OAuth 2.0 ``client_credentials`` with ``private_key_jwt`` client authentication
(RFC 7523; SMART App Launch 2, "Backend Services" and "client-confidential-asymmetric"):
``grant_type``, ``scope`` (the scopes, space separated), ``client_id`` (the endpoint's
``backend_client_id``: RFC 7521 section 4.2 allows it when it names the assertion's issuer),
``client_assertion_type`` = ``urn:ietf:params:oauth:client-assertion-type:jwt-bearer`` and a
fresh ``client_assertion`` (RS384 or ES384, ``aud`` = the token URL, ``exp`` at most five minutes
ahead, a unique ``jti``) signed by the stamp's key ring, whose public keys the EHR fetches
from our JWKS URL (registered for the app in Cerner's code console / System Account Management).

Tokens are cached per (tenant, endpoint, client id, token URL, scopes) until
``REFRESH_MARGIN_SECONDS`` before ``expires_in`` (Cerner: 570 s, so about 8.5 minutes), and one
request per key is in flight at a time: threads that want the same token wait for it rather
than each signing and posting their own. A token that stops working early (a 401 from FHIR)
is dropped with :meth:`BackendServicesTokens.forget`.

Answers become the connector's errors: 429 / 5xx -> ``UpstreamUnavailable`` (with
Retry-After); ``invalid_client``, ``invalid_scope``, ``unauthorized_client`` ->
``ConfigurationError`` with what the admin must fix in Cerner's code console; other refusals
-> ``NotAuthenticated``; an unusable 200 -> ``InvalidUpstreamData``. Nothing here logs or
repeats a token, an assertion or a response body; only OAuth error codes (ASCII words) are
repeated.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from connector.adapters.fhir.smart_client import bearer_token
from connector.adapters.net.headers import retry_after_seconds
from connector.domain.endpoint import FhirEndpoint
from connector.domain.smart import TokenResponse
from connector.errors import (
    ConfigurationError, NotAuthenticated, UpstreamError, UpstreamUnavailable,
)
from connector.services.ports import HttpResponse, SafeHttp

JWT_BEARER = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
REFRESH_MARGIN_SECONDS = 60.0
# An OAuth error code we may repeat (RFC 6749 section 5.2 codes are lower-case ASCII words).
_OAUTH_ERROR_CODE = frozenset("abcdefghijklmnopqrstuvwxyz_")
# Scope tokens are printable ASCII without spaces, quotes or backslashes (RFC 6749 section 3.3).
_SCOPE_CHARACTERS = frozenset(chr(c) for c in range(0x21, 0x7F)) - {'"', "\\"}

log = logging.getLogger("connector.fhir.backend")

_Key = tuple[str, str, str, str, tuple[str, ...]]


@dataclass(frozen=True)
class _Cached:
    access_token: str
    refresh_at: float  # clock time after which the token is fetched again


class BackendServicesTokens:
    def __init__(self, http: SafeHttp, signer_provider, *, allow_loopback: bool, clock: Callable[[], float] = time.time,
                 jwks_url: str | None = None, refresh_margin: float = REFRESH_MARGIN_SECONDS):
        """``signer_provider``: a ClientAssertionSigner / KeyRing, or a callable returning one (or
        None) when first needed. ``jwks_url``: where our public keys are served, named in the
        sentence an admin reads when the EHR refuses the connector's key."""
        self._http = http
        self._signer_provider = signer_provider
        self._allow_loopback = allow_loopback
        self._clock = clock
        self._jwks_url = jwks_url
        self._margin = refresh_margin
        self._cache: dict[_Key, _Cached] = {}
        self._in_flight: dict[_Key, threading.Lock] = {}
        self._lock = threading.Lock()

    def token(self, endpoint: FhirEndpoint, token_url: str, scopes: tuple[str, ...]) -> str:
        """A bearer token for ``scopes`` (SMART v1 ``system/...`` scopes for Cerner)."""
        client_id = endpoint.backend_client_id
        if not client_id:
            raise ConfigurationError(
                f"the FHIR endpoint {endpoint.endpoint_id} has no backend services client id: register the "
                "connector as a System app in Cerner's code console and enter its client id")
        requested = _scopes(scopes)
        key: _Key = (endpoint.tenant_id, endpoint.endpoint_id, client_id, token_url, tuple(sorted(requested)))
        cached = self._cached(key)
        if cached is not None:
            return cached
        with self._lock:
            flight = self._in_flight.setdefault(key, threading.Lock())
        with flight:  # one request per key at a time; the others take its answer from the cache
            cached = self._cached(key)
            if cached is not None:
                return cached
            asked_at = self._clock()
            answer = self._request(endpoint, client_id, token_url, requested)
            lifetime = answer.expires_in
            if lifetime is not None and lifetime > 0:
                refresh_at = asked_at + lifetime - min(self._margin, lifetime / 2)
                with self._lock:
                    self._cache[key] = _Cached(answer.access_token, refresh_at)
            log.info("backend services token issued for endpoint %s (expires in %s s)", endpoint.endpoint_id,
                     lifetime if lifetime is not None else "?")
            return answer.access_token

    def forget(self, endpoint: FhirEndpoint, token_url: str | None = None) -> int:
        """Drop the endpoint's cached tokens (all of them, or those of one token URL), e.g. after
        FHIR answered 401 to one of them. Returns how many were dropped."""
        with self._lock:
            doomed = [k for k in self._cache if k[0] == endpoint.tenant_id and k[1] == endpoint.endpoint_id
                      and (token_url is None or k[3] == token_url)]
            for key in doomed:
                del self._cache[key]
        return len(doomed)

    def _cached(self, key: _Key) -> str | None:
        with self._lock:
            entry = self._cache.get(key)
            if entry is None:
                return None
            if entry.refresh_at <= self._clock():
                del self._cache[key]
                return None
            return entry.access_token

    def _signer(self):
        provider = self._signer_provider
        signer = provider() if callable(provider) and not hasattr(provider, "assertion") else provider
        if signer is None:
            raise ConfigurationError("SMART Backend Services need the stamp's signing key: set "
                                     "CONNECTOR_CLIENT_ASSERTION_KEY (a Key Vault reference in Azure)")
        return signer

    def _request(self, endpoint: FhirEndpoint, client_id: str, token_url: str,
                 requested: tuple[str, ...]) -> TokenResponse:
        form = {
            "grant_type": "client_credentials",
            "scope": " ".join(requested),
            "client_id": client_id,
            "client_assertion_type": JWT_BEARER,
            "client_assertion": self._signer().assertion(client_id, token_url),
        }
        response = self._http.post(token_url, form=form, allow_loopback=self._allow_loopback)
        answer = self._answer(response, endpoint, client_id, requested)
        granted = set(answer.scope.split()) if answer.scope else set(requested)
        missing = [s for s in requested if s not in granted]
        if missing:
            # Cerner trims the grant to what the app was registered for, silently: say so now,
            # not with a 403 in the middle of a scan.
            raise ConfigurationError(
                f"the EHR did not grant {' '.join(missing)} to the backend app {client_id}: add "
                f"{'it' if len(missing) == 1 else 'them'} to the app's scopes in Cerner's code console")
        return answer

    def _answer(self, response: HttpResponse, endpoint: FhirEndpoint, client_id: str,
                requested: tuple[str, ...]) -> TokenResponse:
        status = response.status_code
        if status == 429 or status >= 500:
            raise UpstreamUnavailable(f"the EHR's token endpoint answered HTTP {status}; try again",
                                      retry_after=retry_after_seconds(response.headers))
        try:
            body = response.json()
        except ValueError:
            body = None
        if status in (400, 401):
            raise self._refusal(_error_code(body), status, endpoint, client_id, requested)
        if status != 200:
            raise UpstreamError(f"the EHR's token endpoint answered HTTP {status} to the backend services request")
        return bearer_token(body)

    def _refusal(self, code: str | None, status: int, endpoint: FhirEndpoint, client_id: str,
                 requested: tuple[str, ...]) -> Exception:
        keys = f"our JWKS URL {self._jwks_url}" if self._jwks_url else "the connector's JWKS URL"
        if code == "invalid_client":
            return ConfigurationError(
                f"the EHR refused the connector's backend app {client_id} (invalid_client): check its client id "
                f"on endpoint {endpoint.endpoint_id} and register {keys} for it in Cerner's code console "
                "(System Account Management); a key rotated in the last minutes may not be fetched yet")
        if code == "invalid_scope":
            return ConfigurationError(
                f"the EHR refused the scopes {' '.join(requested)} (invalid_scope): register them for the backend "
                f"app {client_id} in Cerner's code console")
        if code == "unauthorized_client":
            return ConfigurationError(
                f"the EHR does not let the app {client_id} use backend services (unauthorized_client): register it "
                "as a System app (client credentials) in Cerner's code console")
        shown = code or f"HTTP {status}"
        return NotAuthenticated(f"the EHR refused the backend services token ({shown})")


def _scopes(scopes: tuple[str, ...]) -> tuple[str, ...]:
    if isinstance(scopes, str):
        raise TypeError("scopes is a tuple of scope strings, not one string")
    unique = tuple(dict.fromkeys(scopes))
    if not unique or any(not s or not set(s) <= _SCOPE_CHARACTERS for s in unique):
        raise ValueError("scopes must be one or more OAuth scope tokens")
    return unique


def _error_code(body) -> str | None:
    code = body.get("error") if isinstance(body, dict) else None
    return code if isinstance(code, str) and code and set(code) <= _OAUTH_ERROR_CODE else None
