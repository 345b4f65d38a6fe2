"""OpenID Connect discovery, the JWKS, and Entra's cloud instance discovery.

MSAL (protocolMode "AAD") reads ``{authority}/v2.0/.well-known/openid-configuration``
and requires ``authorization_endpoint``, ``token_endpoint``, ``issuer`` and ``jwks_uri``;
it then checks that the issuer's host is the authority's host (or a knownAuthority).
Instance discovery is only ever asked of login.microsoftonline.com, so the portal lists
the sandbox host in ``knownAuthorities``; ``/common/discovery/instance`` is served anyway
for clients configured with ``cloudDiscoveryMetadata`` or pointed here explicitly.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .authority import resolve_authority
from .errors import TENANT_NOT_FOUND, OAuthError
from .tokens import TokenIssuer


def _unknown_tenant(segment: str) -> JSONResponse:
    return OAuthError(TENANT_NOT_FOUND, tenant=segment).response()


def openid_configuration(
    issuer: TokenIssuer, path_tenant: str, advertised_issuer: str
) -> dict[str, Any]:
    base = f"{issuer.public_url}/{path_tenant}"
    return {
        "issuer": advertised_issuer,
        "authorization_endpoint": f"{base}/oauth2/v2.0/authorize",
        "token_endpoint": f"{base}/oauth2/v2.0/token",
        "jwks_uri": f"{base}/discovery/v2.0/keys",
        "end_session_endpoint": f"{base}/oauth2/v2.0/logout",
        "response_types_supported": ["code"],
        "response_modes_supported": ["query", "fragment"],
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "code_challenge_methods_supported": ["S256"],
        "scopes_supported": ["openid", "profile", "email", "offline_access"],
        "subject_types_supported": ["pairwise"],
        "id_token_signing_alg_values_supported": ["RS256"],
        # The SPA is a public client; the connector's Graph app authenticates with a secret.
        "token_endpoint_auth_methods_supported": ["none", "client_secret_post", "client_secret_basic"],
        "claims_supported": [
            "sub", "iss", "aud", "exp", "iat", "nbf", "nonce", "name", "preferred_username",
            "oid", "tid", "ver", "sid",
        ],
        "request_uri_parameter_supported": False,
        "http_logout_supported": True,
        "frontchannel_logout_supported": True,
    }


def discovery_routes(issuer: TokenIssuer) -> list[Route]:
    directory = issuer.directory

    async def configuration(request: Request) -> JSONResponse:
        authority = resolve_authority(request.path_params["tenant"], directory)
        if authority is None:
            return _unknown_tenant(request.path_params["tenant"])
        # Multi-tenant segments advertise the template: the real issuer names the user's tenant.
        if authority.tenant is None:
            advertised = issuer.issuer_template
        else:
            advertised = issuer.issuer(authority.tenant.tid)
        return JSONResponse(openid_configuration(issuer, authority.path_tenant, advertised))

    async def keys(request: Request) -> JSONResponse:
        if resolve_authority(request.path_params["tenant"], directory) is None:
            return _unknown_tenant(request.path_params["tenant"])
        # Same keys for every tenant, as in Entra; validators select by kid.
        return JSONResponse(issuer.keys.jwks(issuer.issuer_template))

    async def instance(request: Request) -> JSONResponse:
        host = urlsplit(issuer.public_url).netloc
        endpoint = request.query_params.get("authorization_endpoint", "")
        segment = urlsplit(endpoint).path.strip("/").split("/")[0] or "common"
        discovery = f"{issuer.public_url}/{segment}/v2.0/.well-known/openid-configuration"
        return JSONResponse({
            "tenant_discovery_endpoint": discovery,
            "api-version": "1.1",
            "metadata": [{"preferred_network": host, "preferred_cache": host, "aliases": [host]}],
        })

    return [
        Route("/{tenant}/v2.0/.well-known/openid-configuration", configuration, methods=["GET"]),
        Route("/{tenant}/discovery/v2.0/keys", keys, methods=["GET"]),
        Route("/common/discovery/instance", instance, methods=["GET"]),
    ]
