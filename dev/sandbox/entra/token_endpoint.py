"""``/{tenant}/oauth2/v2.0/token``: redeem a code (with PKCE) or a refresh token, or the
client credentials grant of a confidential app.

SPA rules as Entra enforces them: the request must be cross-origin (an ``Origin``
header, i.e. made by the browser with fetch), PKCE is mandatory, the code is single use
and bound to its client and redirect URI, and refresh tokens live 24 hours.

Client credentials (``grant_type=client_credentials``), for the connector's Graph app:
the client authenticates with its secret (``client_secret`` in the form, or HTTP Basic
as RFC 6749 2.3.1 allows), the authority must name one tenant (a tenant id or domain:
app-only tokens are always issued in a tenant), the app must be consented there (else
AADSTS7000229), and ``scope`` must be ``{resource}/.default`` for Microsoft Graph. The
answer has no refresh token and no id token; a wrong secret is Entra's ``invalid_client``
with AADSTS7000215 and status 401.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
from dataclasses import replace
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .authority import Authority, resolve_authority
from .directory import MICROSOFT_GRAPH_RESOURCES, AppRegistration
from .errors import (
    APP_NOT_FOUND,
    CLIENT_SECRET_INVALID,
    CLIENT_SECRET_MISSING,
    CODE_EXPIRED,
    CODE_REDEEMED,
    DEFAULT_SCOPE_REQUIRED,
    GRANT_MALFORMED,
    GRANT_MISMATCH,
    MISSING_PARAMETER,
    PKCE_MISMATCH,
    PKCE_REQUIRED,
    PUBLIC_CLIENT_SECRET,
    RESOURCE_NOT_FOUND,
    SERVICE_PRINCIPAL_MISSING,
    SPA_NOT_CROSS_ORIGIN,
    SPA_REFRESH_TOKEN_EXPIRED,
    TENANT_NOT_FOUND,
    TENANT_REQUIRED,
    UNSUPPORTED_GRANT_TYPE,
    USER_NOT_FOUND,
    OAuthError,
)
from .forms import form_params
from .grants import SPA_REFRESH_TOKEN_LIFETIME, AuthorizationGrant, GrantStore
from .scopes import resolve_scopes
from .tokens import ACCESS_TOKEN_LIFETIME, TokenIssuer, client_info

_REFUSED_CODE = {"unknown": GRANT_MALFORMED, "expired": CODE_EXPIRED, "redeemed": CODE_REDEEMED}
_REFUSED_REFRESH_TOKEN = {"unknown": GRANT_MALFORMED, "expired": SPA_REFRESH_TOKEN_EXPIRED}


def _s256(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii", "replace")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


def _required(form: dict[str, str], name: str) -> str:
    value = form.get(name, "")
    if not value:
        raise OAuthError(MISSING_PARAMETER, name=name)
    return value


def _check_bound(grant: AuthorizationGrant, client: AppRegistration, authority: Authority) -> None:
    """A grant is only good for the client it was issued to, at a matching authority."""
    if grant.client_id != client.client_id:
        raise OAuthError(GRANT_MISMATCH, reason="it was issued to another client")
    if authority.tenant is not None and authority.tenant.tid != grant.tid:
        raise OAuthError(GRANT_MISMATCH, reason="it was issued in another tenant")


def redeem_code(
    form: dict[str, str], client: AppRegistration, authority: Authority, grants: GrantStore
) -> AuthorizationGrant:
    grant, outcome = grants.redeem_code(_required(form, "code"))
    if grant is None:
        raise OAuthError(_REFUSED_CODE[outcome])
    _check_bound(grant, client, authority)
    if form.get("redirect_uri") != grant.redirect_uri:
        raise OAuthError(GRANT_MISMATCH, reason="redirect_uri differs from the authorize request's")
    verifier = form.get("code_verifier", "")
    if not verifier:
        raise OAuthError(PKCE_REQUIRED)
    if not hmac.compare_digest(_s256(verifier), grant.code_challenge):
        raise OAuthError(PKCE_MISMATCH)
    return grant


def redeem_refresh_token(
    form: dict[str, str], client: AppRegistration, authority: Authority, grants: GrantStore
) -> AuthorizationGrant:
    grant, outcome = grants.refresh(_required(form, "refresh_token"))
    if grant is None:
        raise OAuthError(_REFUSED_REFRESH_TOKEN[outcome])
    _check_bound(grant, client, authority)
    return grant


def token_response(
    issuer: TokenIssuer, grants: GrantStore, grant: AuthorizationGrant, scope: str
) -> dict[str, Any]:
    directory = issuer.directory
    resolved = resolve_scopes(scope, directory)
    found = directory.find_user(grant.oid)
    if found is None:
        raise OAuthError(USER_NOT_FOUND)
    tenant, user = found
    api = resolved.api
    claims = issuer.access_token_claims(
        tenant,
        user,
        audience=resolved.audience,
        scp=" ".join(resolved.names),
        roles=tuple(r for r in user.app_roles if api and r in api.app_roles),
        client_id=grant.client_id,
        wids=bool(api and api.emits_wids),
    )
    body: dict[str, Any] = {
        "token_type": "Bearer",
        "scope": resolved.response_scope,
        "expires_in": ACCESS_TOKEN_LIFETIME,
        "ext_expires_in": ACCESS_TOKEN_LIFETIME,
        "access_token": issuer.sign(claims),
        "client_info": client_info(tenant, user),
    }
    if "openid" in resolved.oidc:
        body["id_token"] = issuer.id_token(
            tenant, user, grant.client_id, grant.nonce, grant.session_id
        )
    if "offline_access" in resolved.oidc:
        # The refresh token carries the user's grant, not the code's one-time parts.
        lasting = replace(grant, nonce=None, code_challenge="", scope=scope)
        body["refresh_token"] = grants.issue_refresh_token(lasting)
        body["refresh_token_expires_in"] = SPA_REFRESH_TOKEN_LIFETIME
    return body


def basic_credentials(authorization: str | None) -> tuple[str, str] | None:
    """``Authorization: Basic`` client credentials (each part form-urlencoded, RFC 6749 2.3.1)."""
    scheme, _, value = (authorization or "").partition(" ")
    if scheme.lower() != "basic" or not value:
        return None
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    client_id, sep, secret = decoded.partition(":")
    return (unquote(client_id), unquote(secret)) if sep else None


def authenticate_confidential_client(client: AppRegistration, secret: str | None) -> None:
    if not client.is_confidential:
        if secret:
            raise OAuthError(PUBLIC_CLIENT_SECRET, status=401)
        raise OAuthError(CLIENT_SECRET_MISSING, status=401)
    if not secret:
        raise OAuthError(CLIENT_SECRET_MISSING, status=401)
    if not any(hmac.compare_digest(secret.encode(), known.encode()) for known in client.client_secrets):
        raise OAuthError(CLIENT_SECRET_INVALID, status=401, client_id=client.client_id)


def client_credentials_response(
    issuer: TokenIssuer, authority: Authority, client: AppRegistration, scope: str
) -> dict[str, Any]:
    """An app-only Microsoft Graph token for ``client`` in the authority's tenant."""
    if authority.tenant is None:
        raise OAuthError(TENANT_REQUIRED, tenant=authority.segment)
    if not scope:
        raise OAuthError(MISSING_PARAMETER, name="scope")
    requested = scope.split()
    if len(requested) != 1 or not requested[0].endswith("/.default"):
        raise OAuthError(DEFAULT_SCOPE_REQUIRED, scope=scope)
    resource = requested[0].removesuffix("/.default")
    if resource not in MICROSOFT_GRAPH_RESOURCES:
        raise OAuthError(RESOURCE_NOT_FOUND, resource=resource)
    if not client.consented_in(authority.tenant.tid):
        raise OAuthError(SERVICE_PRINCIPAL_MISSING, client_id=client.client_id, tenant=authority.tenant.tid)
    claims = issuer.app_token_claims(authority.tenant, client)
    return {
        "token_type": "Bearer",
        "expires_in": ACCESS_TOKEN_LIFETIME,
        "ext_expires_in": ACCESS_TOKEN_LIFETIME,
        "access_token": issuer.sign(claims),
    }


def token_routes(issuer: TokenIssuer, grants: GrantStore) -> list[Route]:
    directory = issuer.directory

    async def token(request: Request) -> JSONResponse:
        try:
            segment = request.path_params["tenant"]
            authority = resolve_authority(segment, directory)
            if authority is None:
                raise OAuthError(TENANT_NOT_FOUND, tenant=segment)
            form = await form_params(request)
            basic = basic_credentials(request.headers.get("authorization"))
            client_id = basic[0] if basic and not form.get("client_id") else _required(form, "client_id")
            client = directory.app(client_id)
            if client is None:
                raise OAuthError(APP_NOT_FOUND, client_id=client_id)
            if client.is_spa and "origin" not in request.headers:
                raise OAuthError(SPA_NOT_CROSS_ORIGIN)
            grant_type = form.get("grant_type", "")
            if grant_type == "client_credentials":
                authenticate_confidential_client(client, form.get("client_secret") or (basic[1] if basic else None))
                body = client_credentials_response(issuer, authority, client, form.get("scope", ""))
                return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})
            if grant_type == "authorization_code":
                grant = redeem_code(form, client, authority, grants)
            elif grant_type == "refresh_token":
                grant = redeem_refresh_token(form, client, authority, grants)
            else:
                raise OAuthError(UNSUPPORTED_GRANT_TYPE, grant_type=grant_type)
            body = token_response(issuer, grants, grant, form.get("scope") or grant.scope)
        except OAuthError as exc:
            return exc.response()
        return JSONResponse(body, headers={"Cache-Control": "no-store", "Pragma": "no-cache"})

    return [Route("/{tenant}/oauth2/v2.0/token", token, methods=["POST"])]
