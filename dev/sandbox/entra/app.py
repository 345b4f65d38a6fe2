"""The Entra-ID-like issuer as one Starlette application."""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware

from ..faults import FaultInjectionMiddleware, FaultSwitches, control_routes
from .authorize import authorize_routes
from .directory import Directory, demo_directory
from .discovery import discovery_routes
from .grants import GrantStore
from .keys import KeySet
from .sandbox_api import sandbox_routes
from .token_endpoint import token_routes
from .tokens import TokenIssuer

# MSAL fetches discovery, keys and the token endpoint from the portal's origin; the local
# portal is always on loopback (http://127.0.0.1:7071 like ``func start``), any port.
LOOPBACK_ORIGINS = r"https?://(127\.0\.0\.1|localhost|\[::1\])(:\d+)?"


def create_app(*, public_url: str, directory: Directory | None = None) -> Starlette:
    """The issuer at ``public_url`` (e.g. https://127.0.0.1:8443), for ``directory``.

    ``app.state.issuer`` is the in-process :class:`TokenIssuer` (minting, keys),
    ``app.state.grants`` its sessions and codes, ``app.state.faults`` the fault switches.
    Signing keys are made here, so each app instance has its own.
    """
    issuer = TokenIssuer(public_url, directory or demo_directory(), KeySet())
    grants = GrantStore()
    switches = FaultSwitches()
    routes = [
        *control_routes(switches),
        *sandbox_routes(issuer),
        *discovery_routes(issuer),
        *authorize_routes(issuer, grants),
        *token_routes(issuer, grants),
    ]
    middleware = [
        # Outermost, so injected faults still carry CORS headers the browser can read.
        Middleware(
            CORSMiddleware,
            allow_origin_regex=LOOPBACK_ORIGINS,
            allow_methods=["GET", "POST"],
            allow_headers=["*"],
            max_age=86400,
        ),
        Middleware(FaultInjectionMiddleware, switches=switches),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.issuer = issuer
    app.state.directory = issuer.directory
    app.state.grants = grants
    app.state.faults = switches
    return app
