"""App-only tokens for Microsoft Graph: a client secret per customer tenant, or managed identity.

:class:`ClientSecretCredential` is the client credentials grant
(``POST {authority_host}/{tenant}/oauth2/v2.0/token``, ``scope=https://graph.microsoft.com/.default``)
over httpx, as an async ``TokenCredential`` for kiota's Azure authentication provider, with
the token cached until five minutes before it expires. We do not use azure-identity's
``ClientSecretCredential`` here, although it can be made to work against the sandbox issuer
(``disable_instance_discovery=True`` for a non-Microsoft authority, ``connection_verify`` for
the local CA): every failure comes out of it as ``ClientAuthenticationError`` with no status
code and no response (tried: a wrong secret, an unknown tenant and an unreachable issuer all
look alike but for the message text), and the connector must tell a wrong secret
(the stamp's configuration, AADSTS7000215) from a tenant that never consented
(AADSTS7000229, the customer's admin) from Entra being unavailable (429/5xx: retry later)
without reading message text. Here the status, ``error`` and ``error_codes`` decide, and the
same CA bundle as every other outbound call is used.

:func:`managed_identity_credential` wraps azure-identity's ``ManagedIdentityCredential`` (in
Azure, the Function App's identity holds the Graph application permissions; it can only get
tokens in its own tenant, which is the customer's when the connector runs in the customer's
subscription). Its blocking ``get_token`` runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx

from connector.errors import ConfigurationError, InvalidUpstreamData, UpstreamError, UpstreamUnavailable

from .errors import retry_after_seconds

REFRESH_MARGIN_SECONDS = 300
TOKEN_TIMEOUT_SECONDS = 10.0
# AADSTS codes that mean the stamp's own client id or secret are wrong (or expired).
_BAD_CLIENT = {7000215, 7000218, 7000222, 700023, 700027}
_NOT_CONSENTED = {7000229, 700016, 65001, 500011}
_UNKNOWN_TENANT = {90002, 900023, 90072}


def _access_token(token: str, expires_on: int):
    from azure.core.credentials import AccessToken

    return AccessToken(token, expires_on)


class ClientSecretCredential:
    """Client credentials for one tenant; async ``get_token(*scopes)`` as kiota calls it."""

    def __init__(self, authority_host: str, tenant_id: str, client_id: str, client_secret: str, *,
                 http: httpx.AsyncClient) -> None:
        self._token_url = f"{authority_host.rstrip('/')}/{tenant_id}/oauth2/v2.0/token"
        self._client_id = client_id
        self._client_secret = client_secret
        self._http = http
        self._cache: dict[tuple[str, ...], tuple[str, int]] = {}
        self._lock: asyncio.Lock | None = None

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any):
        key = tuple(sorted(scopes))
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            cached = self._cache.get(key)
            if cached is not None and cached[1] - REFRESH_MARGIN_SECONDS > time.time() and not claims:
                return _access_token(*cached)
            token, expires_on = await self._request(" ".join(scopes))
            self._cache[key] = (token, expires_on)
            return _access_token(token, expires_on)

    async def _request(self, scope: str) -> tuple[str, int]:
        form = {"grant_type": "client_credentials", "client_id": self._client_id,
                "client_secret": self._client_secret, "scope": scope}
        try:
            response = await self._http.post(self._token_url, data=form, headers={"Accept": "application/json"},
                                             timeout=TOKEN_TIMEOUT_SECONDS)
        except httpx.TimeoutException:
            raise UpstreamUnavailable("Microsoft Entra ID did not answer in time for a Microsoft Graph token; "
                                      "try again shortly") from None
        except httpx.HTTPError:
            raise UpstreamUnavailable("Microsoft Entra ID could not be reached for a Microsoft Graph token; "
                                      "try again shortly") from None
        if response.status_code == 429 or response.status_code >= 500:
            raise UpstreamUnavailable("Microsoft Entra ID is busy; the Microsoft Graph token will be asked for again",
                                      retry_after=retry_after_seconds(response.headers))
        try:
            body = response.json()
        except ValueError:
            body = None
        if not isinstance(body, dict):
            raise InvalidUpstreamData(f"Microsoft Entra ID answered the token request with something that is not "
                                      f"JSON (HTTP {response.status_code})")
        if response.status_code != 200:
            raise _refusal(response.status_code, body)
        token, expires_in = body.get("access_token"), body.get("expires_in")
        try:
            lifetime = int(expires_in)
        except (TypeError, ValueError):
            lifetime = 0
        if not isinstance(token, str) or not token or lifetime <= 0:
            raise InvalidUpstreamData("Microsoft Entra ID's token answer has no usable access_token or expires_in")
        return token, int(time.time()) + lifetime

    async def close(self) -> None:
        """The http client is shared and closed by its owner."""

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        await self.close()


def _refusal(status: int, body: dict[str, Any]) -> Exception:
    """Entra's refusal as an error; only its ``error`` and AADSTS number are kept."""
    codes = {c for c in body.get("error_codes") or [] if isinstance(c, int)}
    error = body.get("error") if isinstance(body.get("error"), str) else ""
    code = f"AADSTS{min(codes)}" if codes else (error or f"HTTP {status}")
    if codes & _BAD_CLIENT or (error == "invalid_client" and not codes & _NOT_CONSENTED):
        return ConfigurationError(
            f"Microsoft Entra ID refused the connector's Graph app credentials ({code}): check "
            "CONNECTOR_GRAPH_CLIENT_ID and CONNECTOR_GRAPH_CLIENT_SECRET (a secret's value, not its id, "
            "and not expired)")
    if codes & _NOT_CONSENTED:
        return UpstreamError(
            f"The connector's Graph app is not consented in this customer's tenant ({code}): a Global "
            "Administrator of the tenant must grant it admin consent")
    if codes & _UNKNOWN_TENANT or error == "invalid_tenant":
        return UpstreamError(f"Microsoft Entra ID does not know this customer's tenant ({code})")
    return UpstreamError(f"Microsoft Entra ID refused a Microsoft Graph token ({code})")


class ManagedIdentityCredential:
    """azure-identity's managed identity, with ``get_token`` off the event loop."""

    def __init__(self, client_id: str | None = None) -> None:
        from azure.identity import ManagedIdentityCredential as Inner

        self._inner = Inner(client_id=client_id) if client_id else Inner()

    async def get_token(self, *scopes: str, claims: str | None = None, tenant_id: str | None = None,
                        enable_cae: bool = False, **kwargs: Any):
        from azure.core.exceptions import ClientAuthenticationError
        from azure.identity import CredentialUnavailableError

        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(None, lambda: self._inner.get_token(*scopes))
        except CredentialUnavailableError:
            raise ConfigurationError(
                "No Microsoft Graph credential: CONNECTOR_GRAPH_CLIENT_SECRET is not set and no managed identity "
                "is available here") from None
        except ClientAuthenticationError:
            raise UpstreamUnavailable("The managed identity could not get a Microsoft Graph token; "
                                      "try again shortly") from None

    async def close(self) -> None:
        self._inner.close()


class HomeTenantOnly:
    """A managed identity gets tokens in its own (home) tenant only: a meeting for a customer
    tenant that is not the home tenant would be made in the home tenant, for whatever organizer
    the customer's admin named. Refuse instead: such stamps need a multi-tenant app registration
    (CONNECTOR_GRAPH_CLIENT_ID + CONNECTOR_GRAPH_CLIENT_SECRET)."""

    def __init__(self, inner: ManagedIdentityCredential, tenant_id: str) -> None:
        self._inner = inner
        self._tenant_id = tenant_id.lower()

    async def get_token(self, *scopes: str, **kwargs: Any):
        token = await self._inner.get_token(*scopes, **kwargs)
        if _token_tenant(token.token) != self._tenant_id:
            raise ConfigurationError(
                "This stamp makes Teams meetings with its managed identity, which works in its own tenant only; "
                "serving another organisation needs a multi-tenant app registration "
                "(CONNECTOR_GRAPH_CLIENT_ID and CONNECTOR_GRAPH_CLIENT_SECRET)")
        return token

    async def close(self) -> None:
        await self._inner.close()


def _token_tenant(token: str) -> str | None:
    """The ``tid`` of an access token we were just given by Entra (read, not verified: it is ours)."""
    import base64
    import json

    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    except (IndexError, ValueError):
        return None
    tid = claims.get("tid") if isinstance(claims, dict) else None
    return tid.lower() if isinstance(tid, str) else None
