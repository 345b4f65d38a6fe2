"""FHIR R4 routes under ``/r4/{tenant}``: metadata, discovery, read, search, Appointment patch.
Each tenant the app serves answers with its own resources and accepts only its own tokens.

Every resource interaction needs a bearer token this simulator issued whose scopes cover
the resource type (``patient|user|system/Type.read``; ``.write`` for patch). Scopes are
checked loosely: a ``patient/`` token is not confined to its patient's compartment.
"""

from __future__ import annotations

import functools
import json
import uuid
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timezone
from email.utils import format_datetime
from urllib.parse import quote, urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from . import scopes
from .discovery import capability_statement, smart_configuration
from .errors import FhirError, fhir_response
from .grants import AccessToken
from .paging import PAGING_PARAMS, Page, parse_count
from .patch import apply_appointment_patch, touches_video_links
from .search import SearchError, build_query
from .state import CernerSimulator, tenant_of

RESOURCE_TYPES = ("Appointment", "Encounter", "Location", "Patient", "Practitioner")


def interaction(handler: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """Answer FhirErrors as OperationOutcomes and audit every interaction with its status."""

    @functools.wraps(handler)
    async def endpoint(request: Request) -> Response:
        try:
            response = await handler(request)
        except FhirError as error:
            response = error.response()
        token: AccessToken | None = getattr(request.state, "token", None)
        (tenant_of(request) or request.app.state.cerner).record(
            "fhir", method=request.method, path=request.url.path, query=request.url.query,
            status=response.status_code, client_id=token.client_id if token else None)
        return response

    return endpoint


def _sim(request: Request) -> CernerSimulator:
    sim = tenant_of(request)
    if sim is None:
        raise FhirError(404, "not-found", f"Unknown tenant {request.path_params['tenant']!r}.")
    return sim


@interaction
async def metadata(request: Request) -> Response:
    sim = _sim(request)
    return fhir_response(capability_statement(sim.urls, sim.seed.today))


@interaction
async def smart_config(request: Request) -> Response:
    return JSONResponse(smart_configuration(_sim(request).urls))


def _authorize(request: Request, sim: CernerSimulator, resource_type: str, access: str) -> AccessToken:
    if resource_type not in RESOURCE_TYPES:
        raise FhirError(404, "not-supported", f"Resource type {resource_type!r} is not supported by this simulator.")
    scheme, _, value = request.headers.get("authorization", "").partition(" ")
    token = sim.grants.token(value) if scheme.lower() == "bearer" and value else None
    if token is None:
        challenge = f'Bearer realm="{sim.urls.fhir_base}", error="invalid_token"'
        raise FhirError(401, "login", "A valid bearer access token is required.", {"WWW-Authenticate": challenge})
    if not scopes.covers(token.scopes, resource_type, access):
        raise FhirError(403, "forbidden", f"The access token's scopes do not allow {access} of {resource_type}.")
    request.state.token = token
    return token


@interaction
async def read(request: Request) -> Response:
    sim = _sim(request)
    resource_type, resource_id = request.path_params["type"], request.path_params["id"]
    _authorize(request, sim, resource_type, "read")
    resource = sim.store.get(resource_type, resource_id)
    if resource is None:
        raise FhirError(404, "not-found", f"{resource_type}/{resource_id} was not found.")
    return fhir_response(resource, headers=_version_headers(resource))


@interaction
async def search(request: Request) -> Response:
    sim = _sim(request)
    resource_type = request.path_params["type"]
    _authorize(request, sim, resource_type, "read")
    params = list(request.query_params.multi_items())
    # The query a page context belongs to: everything but the paging parameters, in order.
    query = tuple(sorted((k, v) for k, v in params if k not in PAGING_PARAMS))
    try:
        page = _page(sim, resource_type, query, request.query_params)
    except (SearchError, ValueError) as error:
        raise FhirError(400, "invalid", str(error)) from None
    base = f"{sim.urls.fhir_base}/{resource_type}"
    links = [{"relation": "self", "url": f"{base}?{urlencode(params, quote_via=quote)}"}]
    if page.next_context is not None:
        next_params = [*query, ("-pageContext", page.next_context), ("-pageDirection", "NEXT")]
        links.append({"relation": "next", "url": f"{base}?{urlencode(next_params, quote_via=quote)}"})
    entries = [{"fullUrl": f"{base}/{rid}", "resource": r}
               for rid in page.ids if (r := sim.store.get(resource_type, rid)) is not None]
    return fhir_response({"resourceType": "Bundle", "id": str(uuid.uuid4()), "type": "searchset",
                          "link": links, "entry": entries})


def _page(sim: CernerSimulator, resource_type: str, query: tuple[tuple[str, str], ...],
          params: Mapping[str, str]) -> Page:
    """The first page of a new search, or the page a ``-pageContext`` points at."""
    context = params.get("-pageContext")
    if context is not None:
        if params.get("-pageDirection", "NEXT") != "NEXT":
            raise SearchError("Only '-pageDirection=NEXT' is supported.")
        page = sim.pages.resume(context, resource_type, query)
        if page is None:
            raise SearchError("The '-pageContext' is unknown or belongs to another query; follow the 'next' "
                              "link as given.")
        return page
    count = parse_count(params.get("_count"))
    rules = build_query(resource_type, [(k, v) for k, v in query if k != "_count"], sim.tz)
    matches = sorted((r for r in sim.store.all(resource_type) if rules.predicate(r)), key=_sort_key)
    ids = [r["id"] for r in matches]
    return sim.pages.first(resource_type, query, ids, count if rules.honours_count else max(len(ids), 1))


def _sort_key(resource: dict) -> tuple:
    start = resource.get("start")
    when = datetime.fromisoformat(start) if start else datetime.min.replace(tzinfo=timezone.utc)
    return when, resource["id"]


@interaction
async def patch(request: Request) -> Response:
    """Cerner's Appointment PATCH: If-Match required (412 without it, 409 when stale); the
    operations are :mod:`.patch`'s. 200 with no body and the new ETag, as Cerner answers."""
    sim = _sim(request)
    resource_type, resource_id = request.path_params["type"], request.path_params["id"]
    token = _authorize(request, sim, resource_type, "write")
    if resource_type != "Appointment":
        raise FhirError(405, "not-supported", "PATCH is simulated for Appointment only.")
    if not scopes.covers([s for s in token.scopes if not s.startswith("patient/")], resource_type, "write"):
        # Appointment Patch's authorization types are provider and system, not patient.
        raise FhirError(403, "forbidden", "Appointment PATCH needs a user/ or system/ Appointment.write scope.")
    if request.headers.get("content-type", "").split(";")[0].strip() != "application/json-patch+json":
        raise FhirError(415, "not-supported", "PATCH needs Content-Type: application/json-patch+json.")
    current = sim.store.get(resource_type, resource_id)
    if current is None:
        raise FhirError(404, "not-found", f"{resource_type}/{resource_id} was not found.")
    if_match = request.headers.get("if-match")
    if if_match is None:
        raise FhirError(412, "required", "The If-Match header is required, e.g. If-Match: W/\"1\".")
    expected = if_match.strip().removeprefix("W/").strip('"')
    if expected != current["meta"]["versionId"]:
        raise FhirError(409, "conflict", f"If-Match {if_match} is not the current version "
                                         f"(W/\"{current['meta']['versionId']}\").")
    try:
        operations = json.loads(await request.body())
    except ValueError:
        raise FhirError(400, "structure", "The body is not valid JSON.") from None
    if touches_video_links(operations) and not scopes.covers(token.scopes, resource_type, "read"):
        # "For Video Visit link patch operations, both Appointment.read and Appointment.write
        # scopes are required."
        raise FhirError(403, "forbidden", "Video Visit link patch operations need both Appointment.read and "
                                          "Appointment.write scopes.")
    outcome = apply_appointment_patch(current, operations)
    stored = sim.store.replace_versioned(outcome.resource, expected, datetime.now(timezone.utc),
                                         video_links=outcome.video_links)
    if stored is None:  # changed between our read and our write
        raise FhirError(409, "conflict", "The Appointment was modified concurrently; read it again.")
    # Cerner answers a successful patch with an empty 200 and the new ETag.
    return Response(status_code=200, headers=_version_headers(stored))


def _version_headers(resource: dict) -> dict[str, str]:
    updated = datetime.fromisoformat(resource["meta"]["lastUpdated"])
    return {"ETag": f'W/"{resource["meta"]["versionId"]}"', "Last-Modified": format_datetime(updated, usegmt=True)}
