"""The SMART authorization server, seen from the connector: code exchange and id_token checks.

    tokens = SmartTokenHttpClient(safe_http, secrets=ClientSecrets(os.environ), signer=signer)
    answer = tokens.exchange_code(endpoint, config, client_id=..., code=..., redirect_uri=...,
                                  code_verifier=...)
    claims = IdTokenJwksVerifier(safe_http).verify(answer.id_token, config, client_id=..., nonce=...)

Client authentication follows the endpoint's configuration (SMART App Launch "client types"):
``public`` sends ``client_id`` in the form and relies on PKCE; ``client_secret_basic`` sends
HTTP Basic with the secret of app setting ``CONNECTOR_CLIENT_SECRET_<TENANT>_<NAME>`` (a Key
Vault reference in Azure; ``<TENANT>`` is the endpoint's Entra tenant id without dashes, so one
tenant's admin can never point the connector at another tenant's secret); ``private_key_jwt`` sends a client assertion signed with the stamp's key.

The token endpoint and the JWKS are admin-supplied hosts, so both calls go through the
SSRF-safe client. Nothing here logs or repeats a token, a code or a response body.
"""

from __future__ import annotations

import base64
import threading
import time
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, urlsplit

import jwt
from pydantic import ValidationError

from connector.adapters.net.headers import retry_after_seconds
from connector.domain.endpoint import ClientAuth, FhirEndpoint
from connector.domain.smart import SmartConfiguration, TokenResponse
from connector.errors import ConfigurationError, InvalidUpstreamData, NotAuthenticated, UpstreamUnavailable
from connector.services.ports import HttpResponse, SafeHttp

SECRET_SETTING_PREFIX = "CONNECTOR_CLIENT_SECRET_"
# What an authorization server may sign id_tokens with; never "none", never HMAC with a key we
# would have to share.
ID_TOKEN_ALGORITHMS = ("RS256", "RS384", "RS512", "ES256", "ES384", "ES512", "PS256", "PS384")
CLOCK_SKEW_SECONDS = 120
JWKS_TTL_SECONDS = 3600.0
# A readable OAuth error code: what the page may repeat (RFC 6749 section 5.2 codes are ASCII words).
_OAUTH_ERROR_CODE = frozenset("abcdefghijklmnopqrstuvwxyz_")


def secret_setting(tenant_id: str, name: str) -> str:
    """The app setting that holds a tenant's client secret ``name``."""
    return f"{SECRET_SETTING_PREFIX}{tenant_id.replace('-', '').upper()}_{name}"


class ClientSecrets:
    """Confidential clients' secrets, from app settings ``CONNECTOR_CLIENT_SECRET_<TENANT>_<NAME>``."""

    def __init__(self, environ: Mapping[str, str]):
        self._environ = environ

    def secret(self, tenant_id: str, name: str) -> str:
        setting = secret_setting(tenant_id, name)
        value = self._environ.get(setting, "")
        if not value:
            raise ConfigurationError(f"the app setting {setting} holds no client secret")
        return value


class SmartTokenHttpClient:
    def __init__(self, http: SafeHttp, *, secrets: ClientSecrets, signer=None, allow_loopback: bool = False):
        """``signer``: a ClientAssertionSigner, or a callable that returns one (or None) when first
        needed, so a stamp whose apps are public never parses its private key."""
        self._http = http
        self._secrets = secrets
        self._signer = signer
        self._allow_loopback = allow_loopback

    def exchange_code(self, endpoint: FhirEndpoint, config: SmartConfiguration, *, client_id: str, code: str,
                      redirect_uri: str, code_verifier: str) -> TokenResponse:
        form = {"grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
                "code_verifier": code_verifier}
        headers: dict[str, str] = {}
        if endpoint.client_auth is ClientAuth.client_secret_basic:
            secret = self._secrets.secret(endpoint.tenant_id, endpoint.client_secret_name or "")
            # RFC 6749 section 2.3.1: both parts form-urlencoded before Basic encoding.
            pair = f"{quote(client_id, safe='')}:{quote(secret, safe='')}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(pair).decode("ascii")
        elif endpoint.client_auth is ClientAuth.private_key_jwt:
            if callable(self._signer) and not hasattr(self._signer, "assertion"):
                self._signer = self._signer()
            if self._signer is None:
                raise ConfigurationError("private_key_jwt needs CONNECTOR_CLIENT_ASSERTION_KEY")
            form.update({
                "client_id": client_id,
                "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
                "client_assertion": self._signer.assertion(client_id, config.token_endpoint),
            })
        else:
            form["client_id"] = client_id
        response = self._http.post(config.token_endpoint, form=form, headers=headers,
                                   allow_loopback=self._allow_loopback)
        return _token_response(response)


def _token_response(response: HttpResponse) -> TokenResponse:
    if response.status_code == 429 or response.status_code >= 500:
        raise UpstreamUnavailable(f"the EHR's token endpoint answered HTTP {response.status_code}; try again",
                                  retry_after=retry_after_seconds(response.headers))
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code != 200:
        code = body.get("error") if isinstance(body, dict) else None
        shown = code if isinstance(code, str) and code and set(code) <= _OAUTH_ERROR_CODE else None
        raise NotAuthenticated(
            f"the EHR refused the sign-in ({shown})" if shown
            else f"the EHR refused the sign-in (HTTP {response.status_code})")
    return bearer_token(body)


def bearer_token(body: object) -> TokenResponse:
    """A token endpoint's 200 answer (launch or backend services), or InvalidUpstreamData."""
    if not isinstance(body, dict):
        raise InvalidUpstreamData("the EHR's token endpoint did not answer with a JSON object")
    try:
        answer = TokenResponse.model_validate(body)
    except ValidationError:
        raise InvalidUpstreamData("the EHR's token response has no usable access_token") from None
    if answer.token_type.lower() != "bearer":
        raise InvalidUpstreamData("the EHR issued a token that is not a Bearer token")
    return answer


def _origin(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()


class IdTokenJwksVerifier:
    """Verifies id_tokens against the authorization server's published keys (``jwks_uri``).

    Keys are cached per JWKS URL for an hour; an unknown ``kid`` refetches at most once a
    minute, so forged tokens cannot turn into a fetch storm against the EHR."""

    REFETCH_INTERVAL = 60.0

    def __init__(self, http: SafeHttp, *, allow_loopback: bool = False, clock=time.time):
        self._http = http
        self._allow_loopback = allow_loopback
        self._clock = clock
        self._keys: dict[str, tuple[float, float, dict[str, Any]]] = {}  # url -> (fetched, expires, kid->jwk)
        self._lock = threading.Lock()

    def verify(self, id_token: str, config: SmartConfiguration, *, client_id: str, nonce: str | None) -> dict:
        if not config.jwks_uri:
            raise InvalidUpstreamData("the EHR publishes no jwks_uri, so its id_token cannot be verified")
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError:
            raise NotAuthenticated("the id_token is not a JWT") from None
        algorithm, kid = header.get("alg"), header.get("kid")
        if algorithm not in ID_TOKEN_ALGORITHMS:
            raise NotAuthenticated("the id_token is not signed with an accepted algorithm")
        key = self._key(config.jwks_uri, kid if isinstance(kid, str) else None)
        if key.get("alg") not in (None, algorithm):
            raise NotAuthenticated("the id_token's algorithm is not its key's")
        try:
            public_key = jwt.PyJWK(key, algorithm=algorithm).key
            claims = jwt.decode(
                id_token, public_key, algorithms=[algorithm], audience=client_id, leeway=CLOCK_SKEW_SECONDS,
                issuer=config.issuer or None, options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.InvalidAudienceError:
            raise NotAuthenticated("the id_token was issued for another application") from None
        except jwt.ExpiredSignatureError:
            raise NotAuthenticated("the id_token has expired") from None
        except jwt.InvalidIssuerError:
            raise NotAuthenticated("the id_token comes from another issuer") from None
        except jwt.PyJWTError:
            raise NotAuthenticated("the id_token's signature or claims are not valid") from None
        if nonce is not None and claims.get("nonce") != nonce:  # OpenID Connect Core 3.1.3.7, step 11
            raise NotAuthenticated("the id_token belongs to another sign-in (nonce)")
        if not config.issuer and _origin(str(claims["iss"])) != _origin(config.token_endpoint):
            # SMART discovery names no issuer (Cerner's does not): the issuer must at least be the
            # authorization server whose token endpoint we just called.
            raise NotAuthenticated("the id_token comes from another issuer")
        return claims

    def _key(self, jwks_uri: str, kid: str | None) -> dict[str, Any]:
        now = self._clock()
        with self._lock:
            cached = self._keys.get(jwks_uri)
        keys = cached[2] if cached and cached[1] > now else None
        if keys is None or (kid not in keys and now - cached[0] > self.REFETCH_INTERVAL):
            keys = self._fetch(jwks_uri)
            with self._lock:
                self._keys[jwks_uri] = (now, now + JWKS_TTL_SECONDS, keys)
        if kid is None and len(keys) == 1:
            return next(iter(keys.values()))
        if kid not in keys:
            raise NotAuthenticated("the id_token is signed with a key the EHR does not publish")
        return keys[kid]

    def _fetch(self, jwks_uri: str) -> dict[str, dict[str, Any]]:
        response = self._http.get(jwks_uri, accept="application/json", allow_loopback=self._allow_loopback)
        if response.status_code == 429 or response.status_code >= 500:
            raise UpstreamUnavailable(f"the EHR's signing keys could not be read (HTTP {response.status_code})",
                                      retry_after=retry_after_seconds(response.headers))
        if response.status_code != 200:
            raise InvalidUpstreamData(f"the EHR's jwks_uri answered HTTP {response.status_code}")
        try:
            document = response.json()
        except ValueError:
            document = None
        keys = document.get("keys") if isinstance(document, dict) else None
        if not isinstance(keys, list):
            raise InvalidUpstreamData("the EHR's jwks_uri does not hold a JWK Set")
        found = {}
        for index, key in enumerate(keys):
            if isinstance(key, dict) and key.get("use", "sig") == "sig":
                found[str(key.get("kid", f"#{index}"))] = key
        return found

