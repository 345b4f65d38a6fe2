"""``/{tenant}/oauth2/v2.0/token``: redeem a code (with PKCE) or a refresh token.

SPA rules as Entra enforces them: the request must be cross-origin (an ``Origin``
header, i.e. made by the browser with fetch), PKCE is mandatory, the code is single use
and bound to its client and redirect URI, and refresh tokens live 24 hours.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from dataclasses import replace
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .authority import Authority, resolve_authority
from .directory import AppRegistration
from .errors import (
    APP_NOT_FOUND,
    CODE_EXPIRED,
    CODE_REDEEMED,
    GRANT_MALFORMED,
    GRANT_MISMATCH,
    MISSING_PARAMETER,
    PKCE_MISMATCH,
    PKCE_REQUIRED,
    SPA_NOT_CROSS_ORIGIN,
    SPA_REFRESH_TOKEN_EXPIRED,
    TENANT_NOT_FOUND,
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


def token_routes(issuer: TokenIssuer, grants: GrantStore) -> list[Route]:
    directory = issuer.directory

    async def token(request: Request) -> JSONResponse:
        try:
            segment = request.path_params["tenant"]
            authority = resolve_authority(segment, directory)
            if authority is None:
                raise OAuthError(TENANT_NOT_FOUND, tenant=segment)
            form = await form_params(request)
            client_id = _required(form, "client_id")
            client = directory.app(client_id)
            if client is None:
                raise OAuthError(APP_NOT_FOUND, client_id=client_id)
            if client.is_spa and "origin" not in request.headers:
                raise OAuthError(SPA_NOT_CROSS_ORIGIN)
            grant_type = form.get("grant_type", "")
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
