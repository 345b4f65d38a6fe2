"""Resolve a requested ``scope`` string to the one resource (API) a token is for.

Entra issues an access token for exactly one resource per request. OpenID scopes ride
along; everything else must name scopes of a single API, written as
``{identifier URI or client id}/{scope}`` (or ``/.default`` for all of them). With no
API scope at all the token is for Microsoft Graph, as when an app signs in with just
``openid profile``.
"""

from __future__ import annotations

from dataclasses import dataclass

from .directory import MICROSOFT_GRAPH_APP_ID, AppRegistration, Directory
from .errors import (
    RESOURCE_NOT_FOUND,
    SCOPE_INVALID,
    SCOPE_MULTIPLE_RESOURCES,
    SCOPE_NOT_EXPOSED,
    OAuthError,
)

OIDC_SCOPES = frozenset({"openid", "profile", "email", "offline_access"})
GRAPH_DEFAULT_SCOPES = ("User.Read",)


@dataclass(frozen=True)
class ResolvedScopes:
    oidc: frozenset[str]
    api: AppRegistration | None  # None: Microsoft Graph
    resource: str  # as the client wrote it, so the response's scope matches MSAL's cache key
    names: tuple[str, ...]  # scope names without the resource prefix: the ``scp`` claim

    @property
    def audience(self) -> str:
        # v2.0 access tokens always carry the API's client id as ``aud``.
        return self.api.client_id if self.api else MICROSOFT_GRAPH_APP_ID

    @property
    def response_scope(self) -> str:
        if self.api is None:
            return " ".join((*self.names, *sorted(self.oidc - {"offline_access"})))
        return " ".join(f"{self.resource}/{name}" for name in self.names)


def resolve_scopes(scope: str, directory: Directory) -> ResolvedScopes:
    requested = scope.split()
    oidc = frozenset(s.lower() for s in requested if s.lower() in OIDC_SCOPES)
    by_resource: dict[str, list[str]] = {}
    for item in requested:
        if item.lower() in OIDC_SCOPES:
            continue
        resource, _, name = item.rpartition("/")
        if not resource or not name:
            raise OAuthError(SCOPE_INVALID, scope=item)
        by_resource.setdefault(resource, []).append(name)
    if not by_resource:
        return ResolvedScopes(oidc, None, "https://graph.microsoft.com", GRAPH_DEFAULT_SCOPES)
    if len(by_resource) > 1:
        raise OAuthError(SCOPE_MULTIPLE_RESOURCES)
    resource, names = next(iter(by_resource.items()))
    api = directory.api_for_resource(resource)
    if api is None:
        raise OAuthError(RESOURCE_NOT_FOUND, resource=resource)
    if names == [".default"]:
        return ResolvedScopes(oidc, api, resource, api.scopes)
    unknown = [n for n in names if n not in api.scopes]
    if unknown:
        raise OAuthError(SCOPE_NOT_EXPOSED, scope=unknown[0], resource=api.client_id)
    return ResolvedScopes(oidc, api, resource, tuple(dict.fromkeys(names)))
