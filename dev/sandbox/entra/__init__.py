"""An Entra-ID-like OpenID Connect issuer for admin sign-in, on loopback.

It speaks the Microsoft identity platform v2.0 endpoints under a tenant segment (a tenant
id, a tenant domain, ``organizations`` or ``common``), so @azure/msal-browser and the admin
API's JWKS validator run against it unchanged:

- ``GET  /{tenant}/v2.0/.well-known/openid-configuration``  discovery (issuer
  ``{public_url}/{tid}/v2.0``; ``{tenantid}`` template for the multi-tenant segments)
- ``GET  /{tenant}/discovery/v2.0/keys``                    JWKS (RS256, selected by kid)
- ``GET|POST /{tenant}/oauth2/v2.0/authorize``              account picker, auth code + PKCE
- ``POST /{tenant}/oauth2/v2.0/token``                      code and refresh_token grants, and
  client_credentials for the connector's Graph app (app-only Microsoft Graph tokens)
- ``GET  /{tenant}/oauth2/v2.0/logout``                     end session
- ``/_sandbox/tokens``, ``/_sandbox/app-tokens``, ``/_sandbox/directory``, ``/_sandbox/keys/rotate``, ``/_sandbox/faults``

Build it with :func:`create_app`; mint tokens in-process with
``app.state.issuer.mint_access_token(...)`` (delegated, for the admin API) or
``app.state.issuer.mint_app_token(...)`` (app-only, for the Graph simulator). Serve it over https (MSAL refuses http
authorities) with :class:`dev.sandbox.server.LoopbackServer` and
:func:`dev.sandbox.tls.ensure_local_tls`, or with the whole sandbox: ``python -m dev.stack --no-host``.
"""

from .app import create_app
from .directory import (
    API_ADMIN_ROLE,
    API_APP_ID_URI,
    API_CLIENT_ID,
    API_SCOPE,
    CONTOSO_ORGANIZER_OID,
    CONTOSO_TID,
    FABRIKAM_ORGANIZER_OID,
    FABRIKAM_TID,
    GLOBAL_ADMINISTRATOR,
    GRAPH_APP_CLIENT_ID,
    GRAPH_APP_CLIENT_SECRET,
    MICROSOFT_GRAPH_APP_ID,
    MICROSOFT_GRAPH_RESOURCE,
    ONLINE_MEETINGS_ROLE,
    PORTAL_CLIENT_ID,
    AppRegistration,
    Directory,
    Tenant,
    User,
    demo_directory,
)
from .tokens import TokenIssuer

__all__ = [
    "API_ADMIN_ROLE",
    "API_APP_ID_URI",
    "API_CLIENT_ID",
    "API_SCOPE",
    "CONTOSO_ORGANIZER_OID",
    "CONTOSO_TID",
    "FABRIKAM_ORGANIZER_OID",
    "FABRIKAM_TID",
    "GLOBAL_ADMINISTRATOR",
    "GRAPH_APP_CLIENT_ID",
    "GRAPH_APP_CLIENT_SECRET",
    "MICROSOFT_GRAPH_APP_ID",
    "MICROSOFT_GRAPH_RESOURCE",
    "ONLINE_MEETINGS_ROLE",
    "PORTAL_CLIENT_ID",
    "AppRegistration",
    "Directory",
    "Tenant",
    "TokenIssuer",
    "User",
    "create_app",
    "demo_directory",
]
