"""Bearer tokens checked as Microsoft Graph checks them, against the Entra sandbox's keys.

Graph accepts v1.0 access tokens: the Entra sandbox's client credentials grant issues them
(:meth:`dev.sandbox.entra.TokenIssuer.app_token_claims`). A request is let in when its token

- is a JWT signed RS256 by a key the issuer publishes (selected by ``kid``);
- has ``aud`` Graph (``https://graph.microsoft.com``, with or without the trailing slash, or
  Graph's app id ``00000003-0000-0000-c000-000000000000``);
- has ``iss`` the v1.0 issuer of its own ``tid`` (``{issuer}/{tid}/``), a tenant of the directory;
- is within ``nbf``/``exp`` (five minutes of clock skew, as Entra-protected APIs allow);
- is app-only (``idtyp`` "app", ``roles``) and holds one of the roles the route needs.

401 ``InvalidAuthenticationToken`` for the first four, with Graph's ``WWW-Authenticate``
challenge; 403 ``Forbidden`` for a missing role.
"""

from __future__ import annotations

from dataclasses import dataclass

import jwt
from starlette.requests import Request

from ..entra import MICROSOFT_GRAPH_APP_ID, MICROSOFT_GRAPH_RESOURCE, TokenIssuer
from .errors import FORBIDDEN, INVALID_TOKEN, GraphError

AUDIENCES = [MICROSOFT_GRAPH_RESOURCE, f"{MICROSOFT_GRAPH_RESOURCE}/", MICROSOFT_GRAPH_APP_ID]
LEEWAY_SECONDS = 300
ONLINE_MEETINGS_READ_WRITE = "OnlineMeetings.ReadWrite.All"
ONLINE_MEETINGS_READ = "OnlineMeetings.Read.All"


@dataclass(frozen=True)
class AppCaller:
    """Who is calling: an app (``appid``) in a tenant (``tid``), with its Graph roles."""

    tid: str
    app_id: str
    service_principal_id: str
    roles: frozenset[str]


class GraphAuth:
    def __init__(self, issuer: TokenIssuer) -> None:
        self.issuer = issuer

    def _refuse(self, message: str) -> GraphError:
        challenge = (f'Bearer realm="", authorization_uri="{self.issuer.public_url}/common/oauth2/authorize", '
                     f'client_id="{MICROSOFT_GRAPH_APP_ID}"')
        return GraphError(401, INVALID_TOKEN, message, headers={"WWW-Authenticate": challenge})

    def authenticate(self, request: Request, *roles: str) -> AppCaller:
        """The caller, or :class:`GraphError` (401 / 403). ``roles``: any one of them suffices."""
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise self._refuse("Access token is empty.")
        try:
            kid = jwt.get_unverified_header(token).get("kid")
        except jwt.PyJWTError:
            raise self._refuse("Access token validation failure.") from None
        key = next((k for k in self.issuer.keys.published() if k.kid == kid), None)
        if key is None:
            raise self._refuse("Access token validation failure.")
        try:
            claims = jwt.decode(
                token, key.private_key.public_key(), algorithms=["RS256"], audience=AUDIENCES,
                leeway=LEEWAY_SECONDS, options={"require": ["exp", "nbf", "iss", "aud", "tid"]},
            )
        except jwt.ExpiredSignatureError:
            raise self._refuse("Lifetime validation failed, the token is expired.") from None
        except jwt.ImmatureSignatureError:
            raise self._refuse("Lifetime validation failed, the token is not yet valid.") from None
        except jwt.InvalidAudienceError:
            raise self._refuse("Access token validation failure. Invalid audience.") from None
        except jwt.PyJWTError:
            raise self._refuse("Access token validation failure.") from None
        tid = str(claims.get("tid", ""))
        if self.issuer.directory.tenant(tid) is None or claims.get("iss") != self.issuer.issuer_v1(tid):
            raise self._refuse("Access token validation failure. Invalid issuer.")
        granted = claims.get("roles") or []
        if claims.get("idtyp") != "app" or not isinstance(granted, list):
            raise GraphError(403, FORBIDDEN, "This API needs an application (app-only) token.")
        if roles and not set(roles) & set(granted):
            raise GraphError(403, FORBIDDEN, "Insufficient privileges to complete the operation.")
        return AppCaller(tid, str(claims.get("appid", "")), str(claims.get("oid", "")), frozenset(granted))
