"""Cerner (Oracle Health) SMART + FHIR R4 simulator.

``create_app(public_url=...)`` returns a Starlette app speaking Cerner's wire protocol on
loopback, with Cerner's URL layout and quirks (tenant in the path, persona in the
authorize URL, SMART v1 scopes only, Appointment search rules, If-Match patch including the
Video Visit links). Like Cerner's hosts it serves several tenants (domains), by default
``SANDBOX_TENANTS`` (Cerner's public sandbox tenant and a second, fictional one), each with
its own FHIR base, SMART configuration, OAuth endpoints, launches and seeded clinic day:

=====================  ==============================================================
FHIR base (``iss``)    ``{public_url}/r4/{tenant_id}``
discovery              ``{base}/.well-known/smart-configuration``, ``{base}/metadata``
authorize              ``{public_url}/tenants/{tenant_id}/protocols/oauth2/profiles/``
                       ``smart-v1/personas/{provider|patient}/authorize``
token / revoke         ``.../profiles/smart-v1/token``, ``.../token/revoke``
id_token issuer        ``{public_url}/tenants/{tenant_id}/oidc/idsps/{tenant_id}/`` (with its
                       ``.well-known/openid-configuration``); keys at ``{public_url}/jwk``
EHR launch (sandbox)   ``POST {public_url}/_sandbox/launch``
PowerChart (sandbox)   ``GET {public_url}/_sandbox/powerchart``: today's schedule, a Teams
                       button per booked video visit that launches the client whose
                       ``launch_url`` is set (same window, ``?iss=&launch=``)
=====================  ==============================================================

The app's state is ``app.state.cerner_tenants`` (:class:`CernerTenants`: one
:class:`CernerSimulator` per tenant) and ``app.state.cerner``, the first (primary) tenant's:
register clients (shared by every tenant, as Cerner's code console issues them once), mint
launches, read the store and the audit trail, reschedule / cancel appointments and seed a
bulk "week" of them (``sim.reschedule``, ``sim.cancel``, ``sim.bulk_appointments``, or
``/_sandbox/appointments/...``: see control.py and changes.py; the ``/_sandbox`` routes act on
the primary tenant unless given ``?tenant=<id>``). Fault switches (429 / 5xx / latency), shared
by every tenant, are mounted at ``/_sandbox/faults`` like in every simulator.

Backend services (``client_credentials`` + ``private_key_jwt``) are verified as SMART's
asymmetric client authentication says (see client_auth.py): RS384 / ES384 only, ``aud`` =
the token URL, ``exp`` at most five minutes ahead, each ``jti`` once; a client registered
with a JWK Set URL has it fetched, cached per its ``Cache-Control`` and fetched again when an
assertion names a ``kid`` the cached copy lacks, so key rotation works as it does at Cerner.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import date, datetime
from zoneinfo import ZoneInfo

from starlette.applications import Starlette
from starlette.middleware import Middleware
from starlette.middleware.cors import CORSMiddleware
from starlette.routing import Route

from ..faults import FaultInjectionMiddleware, control_routes
from . import control, fhir, powerchart
from .authorize import authorize
from .clients import ClientRegistry, RegisteredClient
from .seed import DEFAULT_TENANT, SANDBOX_TENANTS, SECOND_TENANT, SeedData, build_seed
from .state import CernerSimulator, CernerTenants
from .token import revoke, token
from .urls import CernerUrls

__all__ = ["DEFAULT_TENANT", "SANDBOX_TENANTS", "SECOND_TENANT", "CernerSimulator", "CernerTenants", "CernerUrls",
           "RegisteredClient", "SeedData", "build_seed", "create_app"]


def create_app(*, public_url: str, tenant_ids: Sequence[str] = SANDBOX_TENANTS,
               clients: list[RegisteredClient] | None = None, today: date | None = None, tz: str = "America/Chicago",
               quirks: bool = True) -> Starlette:
    """The simulator for the Cerner tenants ``tenant_ids`` (the first is the primary), each
    seeded for ``today`` (default: today in ``tz``); ``clients`` are registered for all of them.

    ``quirks=False`` leaves out the one seeded artefact that fhir.resources rejects (an
    empty ``valueString`` on the cancelled appointment, as Cerner publishes it).
    """
    zone = ZoneInfo(tz)
    day = today or datetime.now(zone).date()
    registry = ClientRegistry.of(clients or ())
    simulators: list[CernerSimulator] = []
    for tenant_id in tenant_ids:
        seed = build_seed(tenant_id=tenant_id, today=day, tz=zone, quirks=quirks)
        simulators.append(CernerSimulator(urls=CernerUrls(public_url, tenant_id), seed=seed, clients=registry,
                                          faults=simulators[0].faults if simulators else None))
    tenants = CernerTenants(simulators)
    sim = tenants.primary
    # Route templates: every tenant's URLs, with the tenant id as a path parameter.
    urls = CernerUrls(public_url, "{tenant}")
    root = urls.path(urls.public_url)
    fhir_root = f"{root}/r4/{{tenant}}"
    # The id_token issuer names the tenant twice (its idsp is the tenant): a route names it once.
    openid_configuration = f"{root}/tenants/{{tenant}}/oidc/idsps/{{idsp}}/.well-known/openid-configuration"
    routes = [
        *control_routes(sim.faults),
        Route("/_sandbox/launch", control.launch, methods=["POST"]),
        Route(urls.path(urls.powerchart), powerchart.page, methods=["GET"]),
        Route(powerchart.LAUNCH_PATH, powerchart.launch, methods=["POST"]),
        Route("/_sandbox/schedule", control.schedule, methods=["GET"]),
        Route("/_sandbox/clients", control.clients, methods=["GET", "POST"]),
        Route("/_sandbox/audit", control.audit, methods=["GET"]),
        Route("/_sandbox/appointments/bulk", control.bulk_appointments, methods=["POST"]),
        Route("/_sandbox/appointments/{id}/reschedule", control.reschedule_appointment, methods=["POST"]),
        Route("/_sandbox/appointments/{id}/cancel", control.cancel_appointment, methods=["POST"]),
        Route(urls.path(urls.jwks), control.jwks, methods=["GET"]),
        Route(openid_configuration, control.openid_configuration, methods=["GET"]),
        Route(urls.path(urls.smart_style), control.smart_style, methods=["GET"]),
        Route(urls.path(urls.authorize("{persona}")), authorize, methods=["GET", "POST"]),
        Route(urls.path(urls.token), token, methods=["POST"]),
        Route(urls.path(urls.revoke), revoke, methods=["POST"]),
        Route(f"{fhir_root}/metadata", fhir.metadata, methods=["GET"]),
        Route(f"{fhir_root}/.well-known/smart-configuration", fhir.smart_config, methods=["GET"]),
        Route(f"{fhir_root}/{{type}}", fhir.search, methods=["GET"]),
        Route(f"{fhir_root}/{{type}}/{{id}}", fhir.read, methods=["GET"]),
        Route(f"{fhir_root}/{{type}}/{{id}}", fhir.patch, methods=["PATCH"]),
    ]
    middleware = [
        # Faults first, so an injected 429 looks like the gateway's, before any app logic.
        Middleware(FaultInjectionMiddleware, switches=sim.faults),
        # Browser pages (the sandbox PowerChart) call /_sandbox/launch cross-origin.
        Middleware(CORSMiddleware, allow_origins=["*"], allow_methods=["GET", "POST", "PATCH"],
                   allow_headers=["*"], expose_headers=["ETag", "Retry-After"]),
    ]
    app = Starlette(routes=routes, middleware=middleware)
    app.state.cerner_tenants = tenants
    app.state.cerner = sim
    return app
