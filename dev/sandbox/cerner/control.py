"""Sandbox-only routes (never part of Cerner's API), all under ``/_sandbox``:

- ``POST /_sandbox/launch`` ``{"appointment": "4826003"}`` or any of ``patient``,
  ``encounter``, ``user`` -> ``{"launch": "...", "iss": "<FHIR base>"}``: what PowerChart
  does before it opens ``<app launch URL>?iss=...&launch=...``;
- ``GET /_sandbox/schedule[?date=YYYY-MM-DD]``: that day's appointments (default today);
- ``GET|POST /_sandbox/clients``: list (no secrets) / register a client (the
  :class:`RegisteredClient` field names as JSON), for runners in another process;
- ``GET /_sandbox/audit[?event=token]``: what callers did, oldest first;
- ``POST /_sandbox/appointments/{id}/reschedule`` ``{"start": iso, "minutes": n, "reason": text}``
  (``minutes`` and ``reason`` optional) and ``POST /_sandbox/appointments/{id}/cancel``
  ``{"reason": text}`` (body optional): what a scheduler does inside Millennium; the
  Appointment keeps its id and gets its next version (200 with the resource and its ETag;
  404 unknown id, 409 when its status does not allow it, 400 bad input);
- ``POST /_sandbox/appointments/bulk`` ``{"location": id, "count": 500, "start": iso,
  "spread_hours": 72, "video_ratio": 0.5, "patients": n, "location_name": text}``: booked
  appointments and new patients for scale tests (201 with the ids made; see changes.py).
  A ``start`` without an offset is read in the clinic's zone.

Each acts on the app's primary tenant, or on the one ``?tenant=<Cerner tenant id>`` names
(404 for a tenant the app does not serve); clients are shared by every tenant.

Plus the jwks of every tenant's id_token key (``/jwk``, like Cerner's one for all domains), the
OpenID Provider Configuration of each tenant's id_token issuer and the SMART style document.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from datetime import date

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import changes, discovery
from .clients import RegisteredClient
from .state import CernerSimulator, CernerTenants, chosen_tenant, tenant_of

_LAUNCH_FIELDS = ("patient", "encounter", "appointment", "user")


def on_tenant(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Run a ``/_sandbox`` route on the tenant ``?tenant=`` names (default: the primary)."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        sim = chosen_tenant(request, request.query_params.get("tenant"))
        if sim is None:
            return JSONResponse({"error": "unknown_tenant", "detail": "this sandbox does not serve that tenant",
                                 "tenants": list(request.app.state.cerner_tenants.ids)}, 404)
        request.state.sim = sim
        return await handler(request)

    return endpoint


def _sim(request: Request) -> CernerSimulator:
    return request.state.sim


async def _json_object(request: Request) -> dict:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise ValueError("the body must be a JSON object")
    return body


@on_tenant
async def launch(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        unknown = set(body) - set(_LAUNCH_FIELDS)
        if unknown:
            raise ValueError(f"unknown fields {sorted(unknown)}; use {', '.join(_LAUNCH_FIELDS)}")
        code = sim.mint_launch(**{k: str(v) for k, v in body.items() if v is not None})
    except ValueError as error:
        return JSONResponse({"error": "invalid_launch", "detail": str(error)}, 400)
    return JSONResponse({"launch": code, "iss": sim.urls.fhir_base})


@on_tenant
async def schedule(request: Request) -> Response:
    sim = _sim(request)
    try:
        day = date.fromisoformat(request.query_params["date"]) if "date" in request.query_params else None
    except ValueError:
        return JSONResponse({"error": "invalid_date"}, 400)
    visits = [{**asdict(v), "start": v.start.isoformat(), "end": v.end.isoformat()} for v in sim.schedule(day)]
    return JSONResponse({"date": (day or sim.seed.today).isoformat(), "timezone": str(sim.tz), "visits": visits})


@on_tenant
async def clients(request: Request) -> Response:
    sim = _sim(request)
    if request.method == "POST":
        try:
            client = RegisteredClient.from_json(await _json_object(request))
        except (ValueError, TypeError) as error:
            return JSONResponse({"error": "invalid_client_metadata", "detail": str(error)}, 400)
        sim.register_client(client)
        return JSONResponse(client.summary(), 201)
    return JSONResponse({"clients": [c.summary() for c in sim.clients.all()]})


@on_tenant
async def audit(request: Request) -> Response:
    return JSONResponse({"events": _sim(request).audit(request.query_params.get("event"))})


async def jwks(request: Request) -> Response:
    tenants: CernerTenants = request.app.state.cerner_tenants
    return JSONResponse(tenants.jwks())


async def openid_configuration(request: Request) -> Response:
    sim = tenant_of(request)
    if sim is None or request.path_params["idsp"] != sim.urls.tenant_id:  # the sandbox's idsp id is the tenant id
        return JSONResponse({"error": "not_found"}, 404)
    return JSONResponse(discovery.openid_configuration(sim.urls))


async def smart_style(request: Request) -> Response:
    # The SMART "context-style" document; values are the SMART App Launch sample's shape.
    return JSONResponse({"color_background": "#edeae3", "color_error": "#9e2d2d", "color_highlight": "#69b5ce",
                         "color_modal_backdrop": "", "color_success": "#498e49", "color_text": "#303030",
                         "dim_border_radius": "6px", "dim_font_size": "13px", "dim_spacing_size": "20px",
                         "font_family_body": "Georgia, Times, 'Times New Roman', serif",
                         "font_family_heading": "'HelveticaNeue-Light', Helvetica, Arial, sans-serif"})


@on_tenant
async def reschedule_appointment(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request)
        unknown = set(body) - {"start", "minutes", "reason"}
        if unknown:
            raise changes.ChangeRefused(f"unknown fields {sorted(unknown)}; use start, minutes, reason")
        if "start" not in body:
            raise changes.ChangeRefused("'start' is required")
        changed = sim.reschedule(request.path_params["id"], changes.moment(body["start"], sim.tz),
                                 body.get("minutes"), reason=_text(body.get("reason")))
    except ValueError as error:  # changes.ChangeRefused among them, with its own status
        return _refused("invalid_change", error)
    return _changed(changed)


@on_tenant
async def cancel_appointment(request: Request) -> Response:
    sim = _sim(request)
    try:
        body = await _json_object(request) if await request.body() else {}
        unknown = set(body) - {"reason"}
        if unknown:
            raise changes.ChangeRefused(f"unknown fields {sorted(unknown)}; use reason")
        changed = sim.cancel(request.path_params["id"], reason=_text(body.get("reason")))
    except ValueError as error:  # changes.ChangeRefused among them, with its own status
        return _refused("invalid_change", error)
    return _changed(changed)


@on_tenant
async def bulk_appointments(request: Request) -> Response:
    sim = _sim(request)
    try:
        result = sim.seed_bulk(changes.BulkRequest.from_json(await _json_object(request), sim.tz))
    except ValueError as error:  # changes.ChangeRefused among them, with its own status
        return _refused("invalid_bulk", error)
    return JSONResponse(result.as_json(), 201)


def _text(value) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value.strip() or len(value) > 200:
        raise changes.ChangeRefused("'reason' must be a short text")
    return value.strip()


def _refused(code: str, error: ValueError) -> Response:
    return JSONResponse({"error": code, "detail": str(error)}, getattr(error, "status", 400))


def _changed(resource: dict) -> Response:
    return JSONResponse(resource, headers={"ETag": f'W/"{resource["meta"]["versionId"]}"'},
                        media_type="application/fhir+json")
