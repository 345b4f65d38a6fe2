"""Minting Entra-shaped v2.0 tokens: the issuer behind the endpoints and the test API.

:meth:`TokenIssuer.mint_access_token` is what tests and the local stack call directly
(``app.state.issuer``). Its options make the tokens an API must refuse: expired
(``expires_in <= 0``), not yet valid (``not_before_offset > 0``), for another audience
(``audience=...``), from another tenant's issuer (``claims={"iss": ...}``), or signed by
a key the JWKS does not publish (``signed_by="foreign"``: unknown ``kid``;
``signed_by="forged"``: a published ``kid`` over a signature it cannot verify).
"""

from __future__ import annotations

import hashlib
import json
import secrets
import time
import uuid
from collections.abc import Iterable, Mapping
from typing import Any, Literal

import jwt

from .directory import MICROSOFT_GRAPH_RESOURCE, AppRegistration, Directory, Tenant, User
from .keys import KeySet, SigningKey, b64url

SignedBy = Literal["current", "previous", "foreign", "forged"]

ACCESS_TOKEN_LIFETIME = 3600
ID_TOKEN_LIFETIME = 3600


class UnknownPrincipal(LookupError):
    """No such tenant or user in the directory."""


def client_info(tenant: Tenant, user: User) -> str:
    """MSAL's ``client_info``: base64url JSON naming the home account (uid.utid)."""
    return b64url(json.dumps({"uid": user.oid, "utid": tenant.tid}).encode())


def pairwise_sub(user: User, client_id: str) -> str:
    """``sub`` differs per app for the same user, as in Entra; ``oid`` does not."""
    return b64url(hashlib.sha256(f"{user.oid}:{client_id}".encode()).digest())


class TokenIssuer:
    def __init__(self, public_url: str, directory: Directory, keys: KeySet) -> None:
        self.public_url = public_url.rstrip("/")
        self.directory = directory
        self.keys = keys

    # --- names -----------------------------------------------------------------
    def issuer(self, tid: str) -> str:
        return f"{self.public_url}/{tid}/v2.0"

    def issuer_v1(self, tid: str) -> str:
        """The v1.0 issuer, ``https://sts.windows.net/{tid}/`` in Entra: resources that accept
        only v1.0 tokens (Microsoft Graph) get tokens from it, whichever endpoint was asked."""
        return f"{self.public_url}/{tid}/"

    @property
    def issuer_template(self) -> str:
        """What multi-tenant (``common``/``organizations``) discovery advertises."""
        return self.issuer("{tenantid}")

    def principal(self, tenant: str, user: str) -> tuple[Tenant, User]:
        """Resolve a tenant (id or domain) and a user (oid, UPN or alias such as "admin")."""
        found_tenant = self.directory.tenant(tenant)
        if found_tenant is None:
            raise UnknownPrincipal(f"no tenant {tenant!r} in the sandbox directory")
        found_user = found_tenant.user(user)
        if found_user is None:
            raise UnknownPrincipal(f"no user {user!r} in tenant {found_tenant.display_name}")
        return found_tenant, found_user

    # --- tokens ----------------------------------------------------------------
    def mint_access_token(
        self,
        tenant: str,
        user: str = "admin",
        *,
        audience: str | None = None,
        scopes: Iterable[str] = ("Admin.ReadWrite",),
        roles: Iterable[str] | None = None,
        client_id: str | None = None,
        expires_in: int = ACCESS_TOKEN_LIFETIME,
        not_before_offset: int = 0,
        signed_by: SignedBy = "current",
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """A v2.0 delegated access token, by default for the connector's admin API.

        ``roles`` defaults to the user's app roles; ``claims`` overrides or adds any claim
        last (use ``None`` values to drop one).
        """
        found_tenant, found_user = self.principal(tenant, user)
        api = next((a for a in self.directory.apps if a.scopes), None)
        portal = next((a for a in self.directory.apps if a.is_spa), None)
        payload = self.access_token_claims(
            found_tenant,
            found_user,
            audience=audience or (api.client_id if api else "api://unknown"),
            scp=" ".join(scopes),
            roles=found_user.app_roles if roles is None else tuple(roles),
            client_id=client_id or (portal.client_id if portal else str(uuid.uuid4())),
            wids=True,
            expires_in=expires_in,
            not_before_offset=not_before_offset,
        )
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return self.sign(payload, signed_by)

    def access_token_claims(
        self,
        tenant: Tenant,
        user: User,
        *,
        audience: str,
        scp: str,
        roles: tuple[str, ...],
        client_id: str,
        wids: bool,
        expires_in: int = ACCESS_TOKEN_LIFETIME,
        not_before_offset: int = 0,
    ) -> dict[str, Any]:
        now = int(time.time())
        exp = now + expires_in
        # An already expired token was issued a normal lifetime before it expired.
        iat = now if expires_in > 0 else exp - ACCESS_TOKEN_LIFETIME
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer(tenant.tid),
            "iat": iat,
            "nbf": iat + not_before_offset if expires_in > 0 else iat,
            "exp": exp,
            "azp": client_id,
            "azpacr": "0",  # public client (SPA): no client secret or certificate
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.user_principal_name,
            "scp": scp,
            "sub": pairwise_sub(user, audience),
            "tid": tenant.tid,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if roles:
            claims["roles"] = list(roles)
        if wids:
            claims["wids"] = list(user.wids)
        return claims

    def app_token_claims(
        self,
        tenant: Tenant,
        app: AppRegistration,
        *,
        audience: str = MICROSOFT_GRAPH_RESOURCE,
        roles: tuple[str, ...] | None = None,
        expires_in: int = ACCESS_TOKEN_LIFETIME,
        not_before_offset: int = 0,
    ) -> dict[str, Any]:
        """An app-only (client credentials) access token for Microsoft Graph, as Entra issues it.

        Graph accepts v1.0 tokens only, so even the v2.0 token endpoint answers with one:
        ``ver`` "1.0", ``iss``/``idp`` the v1.0 issuer, ``aud`` Graph's application ID URI
        ``https://graph.microsoft.com``, the app in ``appid`` (``appidacr`` "1": a client
        secret), ``idtyp`` "app", the service principal as ``oid``/``sub``, the consented
        application permissions in ``roles``, and no ``scp`` (nobody signed in).
        """
        now = int(time.time())
        exp = now + expires_in
        iat = now if expires_in > 0 else exp - ACCESS_TOKEN_LIFETIME
        sp_oid = app.service_principal_oid(tenant.tid)
        claims: dict[str, Any] = {
            "aud": audience,
            "iss": self.issuer_v1(tenant.tid),
            "iat": iat,
            "nbf": iat + not_before_offset if expires_in > 0 else iat,
            "exp": exp,
            "app_displayname": app.display_name,
            "appid": app.client_id,
            "appidacr": "1",
            "idp": self.issuer_v1(tenant.tid),
            "idtyp": "app",
            "oid": sp_oid,
            "sub": sp_oid,
            "tid": tenant.tid,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "1.0",
        }
        granted = app.graph_app_roles if roles is None else roles
        if granted:
            claims["roles"] = list(granted)
        return claims

    def mint_app_token(
        self,
        tenant: str,
        client_id: str,
        *,
        audience: str = MICROSOFT_GRAPH_RESOURCE,
        roles: Iterable[str] | None = None,
        expires_in: int = ACCESS_TOKEN_LIFETIME,
        not_before_offset: int = 0,
        signed_by: SignedBy = "current",
        claims: Mapping[str, Any] | None = None,
    ) -> str:
        """An app-only Graph token for ``client_id`` in ``tenant`` without the token endpoint
        (tests make the tokens Graph must refuse with the same options as :meth:`mint_access_token`)."""
        found_tenant = self.directory.tenant(tenant)
        if found_tenant is None:
            raise UnknownPrincipal(f"no tenant {tenant!r} in the sandbox directory")
        app = self.directory.app(client_id)
        if app is None:
            raise UnknownPrincipal(f"no app {client_id!r} in the sandbox directory")
        payload = self.app_token_claims(
            found_tenant, app, audience=audience, roles=None if roles is None else tuple(roles),
            expires_in=expires_in, not_before_offset=not_before_offset,
        )
        for name, value in (claims or {}).items():
            if value is None:
                payload.pop(name, None)
            else:
                payload[name] = value
        return self.sign(payload, signed_by)

    def id_token(
        self, tenant: Tenant, user: User, client_id: str, nonce: str | None, sid: str | None
    ) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "aud": client_id,
            "iss": self.issuer(tenant.tid),
            "iat": now,
            "nbf": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "name": user.display_name,
            "oid": user.oid,
            "preferred_username": user.user_principal_name,
            "sub": pairwise_sub(user, client_id),
            "tid": tenant.tid,
            "uti": b64url(secrets.token_bytes(16)),
            "ver": "2.0",
        }
        if nonce is not None:
            claims["nonce"] = nonce
        if sid is not None:
            claims["sid"] = sid  # lets MSAL's silent (prompt=none) requests name the session
        return self.sign(claims)

    def sign(self, claims: Mapping[str, Any], signed_by: SignedBy = "current") -> str:
        key, kid = self._signing_key(signed_by)
        headers = {"kid": kid, "typ": "JWT"}
        return jwt.encode(dict(claims), key.private_key, algorithm="RS256", headers=headers)

    def _signing_key(self, signed_by: SignedBy) -> tuple[SigningKey, str]:
        if signed_by == "current":
            return self.keys.current, self.keys.current.kid
        if signed_by == "previous":
            previous = self.keys.previous
            if previous is None:
                raise ValueError("no previous key: call keys.rotate() first")
            return previous, previous.kid
        if signed_by == "foreign":
            return self.keys.foreign, self.keys.foreign.kid
        if signed_by == "forged":
            return self.keys.foreign, self.keys.current.kid
        raise ValueError(f"unknown signed_by {signed_by!r}")
