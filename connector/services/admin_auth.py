"""Who is calling the admin API: ``Authorization`` header -> verified token -> admin principal.

    principal = authenticate_admin(request.headers.get("Authorization"), validator,
                                   admin_role=settings.admin_app_role,
                                   required_scope=settings.admin_api_scope or None)

The tenant is always the token's ``tid``: nothing in a request body or path can name another
tenant. Authority is either Entra's Global Administrator directory role (its template id in
``wids``, which Entra emits when the API's app registration sets groupMembershipClaims to
"DirectoryRole") or the connector's own app role in ``roles``.

With ``required_scope`` (the configured ``api://<api>/Admin.ReadWrite``), a delegated token
must also carry that scope's name in ``scp``: the user consented to let the calling app act
on the admin API, not merely to sign in to it. An app-only token (client credentials) has no
``scp``; it is accepted only with the admin app role in ``roles``.
"""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import BaseModel, ConfigDict

from connector.errors import ConfigurationError, NotAuthenticated, NotAuthorized

# The Global Administrator role template id: the same in every Entra tenant.
GLOBAL_ADMINISTRATOR = "62e90394-69f5-4237-9190-012177145e10"


class TokenValidator(Protocol):
    def validate(self, token: str) -> dict[str, Any]:
        """The verified claims; raises NotAuthenticated for an invalid token."""
        ...


class AdminPrincipal(BaseModel):
    model_config = ConfigDict(frozen=True)

    tenant_id: str
    oid: str
    is_global_admin: bool
    roles: tuple[str, ...]


def bearer_token(authorization_header: str | None) -> str:
    """The token of ``Bearer <token>`` (scheme case-insensitive, RFC 7235); NotAuthenticated otherwise."""
    if not authorization_header:
        raise NotAuthenticated("an Authorization: Bearer <token> header is required")
    scheme, _, token = authorization_header.strip().partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer":
        raise NotAuthenticated("the Authorization header must use the Bearer scheme")
    if not token or any(c.isspace() for c in token):
        raise NotAuthenticated("the Authorization header must carry exactly one bearer token")
    return token


def authenticate_admin(
    authorization_header: str | None,
    validator: TokenValidator,
    *,
    admin_role: str,
    required_scope: str | None = None,
) -> AdminPrincipal:
    """The calling admin; NotAuthenticated (401) without a valid token, NotAuthorized (403)
    for a valid token that carries neither Global Administrator nor ``admin_role``, or that
    lacks ``required_scope`` (see the module docstring)."""
    claims = validator.validate(bearer_token(authorization_header))
    tenant_id, oid = claims.get("tid"), claims.get("oid")
    if not isinstance(tenant_id, str) or not tenant_id or not isinstance(oid, str) or not oid:
        raise NotAuthenticated("the token names no tenant (tid) or user (oid)")
    roles = _strings(claims.get("roles"))
    is_global_admin = GLOBAL_ADMINISTRATOR in _strings(claims.get("wids"))
    if not is_global_admin and not (admin_role and admin_role in roles):
        raise NotAuthorized(f"this needs a Global Administrator or the {admin_role} app role")
    if required_scope:
        app_only_ok = bool(admin_role) and admin_role in roles
        _check_scope(claims, _scope_name(required_scope), app_only_ok=app_only_ok)
    return AdminPrincipal(tenant_id=tenant_id, oid=oid, is_global_admin=is_global_admin, roles=roles)


def _scope_name(configured: str) -> str:
    """``Admin.ReadWrite`` of ``api://connector-local/Admin.ReadWrite``: what ``scp`` carries."""
    name = configured.rsplit("/", 1)[-1]
    if not name or any(c.isspace() for c in name):
        raise ConfigurationError(
            "CONNECTOR_ADMIN_API_SCOPE must end with the scope's name, "
            "e.g. api://<api client id>/Admin.ReadWrite"
        )
    return name


def _check_scope(claims: dict[str, Any], name: str, *, app_only_ok: bool) -> None:
    scp = claims.get("scp")
    if scp is None and app_only_ok:
        return  # an app-only token: its authority is the app role, there is no delegated scope
    if not isinstance(scp, str) or name not in scp.split():
        raise NotAuthorized(f"the token was not issued for this API's {name} scope")


def _strings(value: object) -> tuple[str, ...]:
    # A list claim only: `in` on a string would match substrings of a forged scalar claim.
    if not isinstance(value, list):
        return ()
    return tuple(item for item in value if isinstance(item, str))
