"""GET /api/openapi.json (OpenAPI 3.1) and GET /api/portal-config, both anonymous.

The document is built from the same pydantic models the triggers parse and answer with,
so a schema cannot drift from the code; a test checks its paths against the registered routes.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import azure.functions as func
from pydantic import BaseModel

from connector import __version__
from connector.composition import container
from connector.domain.endpoint import ENDPOINT_ID, EndpointChange, EndpointDraft
from connector.domain.phone_number import OPERATION_ID
from connector.domain.integration import IntegrationRecord
from connector.domain.validation import ValidationReport
from connector.functions.admin.common import EndpointList, EndpointView, TenantView
from connector.functions.admin.endpoints import ValidationRequest
from connector.functions.admin.numbers import LinkNumber, NumberList, OperationView, ProvisionNumber
from connector.functions.admin.tenant import SmsConsents
from connector.functions.http import handles_errors, json_response
from connector.domain.notification import NotificationRef
from connector.domain.reminders import ReminderPolicy
from connector.functions.admin.reminders import NotificationList, NotificationView, PolicyView, PreviewRequest, PreviewView
from connector.functions.graph_webhook import VALIDATION_TOKEN_SCHEMA
from connector.functions.visit import LinkSentView, StatusView
from connector.services.admin_setup import ETAG
from connector.services.health import HealthReport

bp = func.Blueprint()


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    operation_id: str
    summary: str
    responses: dict[int, type[BaseModel] | None]
    body: type[BaseModel] | None = None
    admin: bool = True
    if_match: bool = False  # needs the ETag it read (428 without it)
    page: bool = False  # answers text/html (a page or a redirect to one), not JSON
    query: tuple[str, ...] = ()  # query parameters, optional strings unless listed in ``required_query``
    required_query: tuple[str, ...] = ()
    session: bool = False  # needs the launch's sealed session cookie (vv_session)
    raw_body: dict | None = None  # a request body no model of ours parses (a webhook's): its media type's schema
    body_optional: bool = False  # the request body may be left out (Graph's validation handshake has none)
    text: tuple[int, ...] = ()  # statuses answered text/plain
    empty: tuple[int, ...] = ()  # statuses answered without a body
    links: dict[int, dict[str, dict]] | None = None  # OpenAPI links per status (the stateful fuzz phase follows them)


# The webhooks' bodies are Microsoft's formats, read by hand-written parsers (their limits are these).
GRAPH_NOTIFICATIONS = {"type": "object", "required": ["value"], "properties": {
    "value": {"type": "array", "maxItems": 100, "items": {"type": "object"},
              "description": "Graph change notifications (callRecords / onlineMeeting call events)"}}}
EVENT_GRID_EVENTS = {"type": "array", "minItems": 1, "items": {"type": "object"},
                     "description": "Event Grid events (event grid schema): SMS delivery reports and received SMS"}
# Path and query parameters that have a form (any other is a plain string).
PARAMETER_SCHEMAS = {
    "endpoint_id": {"type": "string", "pattern": ENDPOINT_ID},
    "operation_id": {"type": "string", "pattern": OPERATION_ID},
    "iss": {"type": "string", "minLength": 1},
    "launch": {"type": "string", "minLength": 1},
    "validationToken": VALIDATION_TOKEN_SCHEMA,
}
IF_MATCH = {"name": "If-Match", "in": "header", "required": True,
            "description": "The ETag the endpoint was read with (428 without it, 409 when it is stale)",
            "schema": {"type": "string", "pattern": ETAG}}

OPERATIONS: list[Operation] = [
    Operation("get", "/health", "health", "Version, stamp region and storage reachability",
              {200: HealthReport, 503: HealthReport}, admin=False),
    Operation("get", "/portal-config", "portal_config", "What the portal needs to sign in and find stamps",
              {200: None}, admin=False),
    Operation("get", "/openapi.json", "openapi", "This document", {200: None}, admin=False),
    Operation("get", "/admin/tenant", "get_tenant", "The caller's tenant in this stamp", {200: TenantView, 404: None}),
    Operation("post", "/admin/tenant", "onboard_tenant", "Set the caller's tenant up in this stamp",
              {200: TenantView, 201: TenantView}),
    Operation("put", "/admin/sms/consents", "put_sms_consents", "Give or withdraw the two SMS consents",
              {200: TenantView}, SmsConsents),
    Operation("get", "/admin/endpoints", "list_endpoints", "The tenant's FHIR base URLs", {200: EndpointList}),
    Operation("post", "/admin/endpoints", "add_endpoint", "Validate and register a FHIR base URL",
              {201: EndpointView, 409: None, 422: None}, EndpointDraft, links={201: {
                  "GetEndpoint": {"operationId": "get_endpoint", "parameters": {
                      "endpoint_id": "$response.body#/endpoint_id"}},
                  "ChangeEndpoint": {"operationId": "change_endpoint", "parameters": {
                      "endpoint_id": "$response.body#/endpoint_id", "header.If-Match": "$response.header.ETag"}},
                  "RemoveEndpoint": {"operationId": "remove_endpoint", "parameters": {
                      "endpoint_id": "$response.body#/endpoint_id", "header.If-Match": "$response.header.ETag"}},
              }}),
    Operation("post", "/admin/endpoints/validate", "validate_endpoint", "Validate a FHIR base URL, check by check",
              {200: ValidationReport}, ValidationRequest),
    Operation("get", "/admin/endpoints/{endpoint_id}", "get_endpoint", "One FHIR endpoint", {200: EndpointView, 404: None}),
    Operation("patch", "/admin/endpoints/{endpoint_id}", "change_endpoint",
              "Change an endpoint (If-Match: its ETag); a new URL is validated again",
              {200: EndpointView, 404: None, 409: None, 422: None, 428: None}, EndpointChange, if_match=True),
    Operation("delete", "/admin/endpoints/{endpoint_id}", "remove_endpoint", "Remove an endpoint (If-Match: its ETag)",
              {204: None, 404: None, 409: None, 428: None}, if_match=True),
    Operation("get", "/admin/endpoints/{endpoint_id}/integration-record", "get_integration_record",
              "Everything Cerner's code console needs (?download=true for an attachment)",
              {200: IntegrationRecord, 404: None}),
    Operation("post", "/admin/phone-numbers", "provision_number",
              "Start provisioning a toll-free SMS number (poll the operation in Location). "
              "While one is running: 409 with its operation_id",
              {202: OperationView, 409: None, 422: None}, ProvisionNumber, links={202: {
                  "GetOperation": {"operationId": "get_operation", "parameters": {
                      "operation_id": "$response.body#/operation_id"}},
              }}),
    Operation("get", "/admin/phone-numbers", "list_numbers", "The tenant's numbers and provisioning operations",
              {200: NumberList}),
    Operation("get", "/admin/operations/{operation_id}", "get_operation", "A provisioning operation's progress",
              {200: OperationView, 404: None}),
    Operation("put", "/admin/endpoints/{endpoint_id}/phone-number", "link_number",
              "Send this endpoint's SMS from a number (If-Match: the endpoint's ETag)",
              {200: EndpointView, 404: None, 409: None, 422: None, 428: None}, LinkNumber, if_match=True),
    Operation("delete", "/admin/endpoints/{endpoint_id}/phone-number", "unlink_number",
              "Stop sending this endpoint's SMS from its number (If-Match: the endpoint's ETag)",
              {200: EndpointView, 404: None, 409: None, 428: None}, if_match=True),
    # The clinical flows: pages and redirects for browsers (PowerChart's window, the patient's phone).
    Operation("get", "/launch/provider", "launch_provider",
              "SMART EHR launch from PowerChart: 302 to the EHR's authorize endpoint (and a vv_launch_* cookie "
              "for the callback); 400 page for an unknown iss",
              {302: None, 400: None}, admin=False, page=True, query=("iss", "launch"),
              required_query=("iss", "launch")),
    Operation("get", "/launch/patient", "launch_patient",
              "SMART launch from the patient portal: 302 to the EHR's authorize endpoint",
              {302: None, 400: None}, admin=False, page=True, query=("iss", "launch"),
              required_query=("iss", "launch")),
    Operation("get", "/launch/callback", "launch_callback",
              "The SMART redirect URI (needs the browser's vv_launch_* cookie): 303 to the visit page (provider) "
              "or the join page (patient)",
              {303: None, 400: None, 401: None, 409: None, 502: None, 503: None}, admin=False, page=True,
              query=("code", "state", "error")),
    Operation("get", "/visit/{session_id}", "provider_visit_page", "The clinician's visit page (or appointment picker)",
              {200: None, 401: None}, admin=False, page=True, session=True),
    Operation("post", "/visit/{session_id}/pick", "pick_appointment",
              "Pick one of the launch's appointments (form field appointment): 303 to the visit page",
              {303: None, 401: None, 403: None}, admin=False, page=True, session=True),
    Operation("get", "/visit/{session_id}/status", "visit_status", "The patient's live state in the meeting",
              {200: StatusView, 401: None, 404: None}, admin=False, session=True),
    Operation("post", "/visit/{session_id}/send-link", "send_visit_link",
              "Text the patient their join link (header X-Requested-With: fetch)",
              {200: LinkSentView, 401: None, 403: None, 422: None, 502: None, 503: None}, admin=False, session=True),
    Operation("get", "/j/{token}", "patient_join_page", "The patient's join page (404 unknown, 410 expired)",
              {200: None, 404: None, 410: None}, admin=False, page=True, query=("hl",)),
    Operation("post", "/notifications/graph", "graph_notifications",
              "Microsoft Graph change notifications, 202 (the validation handshake: ?validationToken and no body, "
              "200 text/plain)",
              {200: None, 202: None, 400: None, 403: None, 413: None, 415: None}, admin=False,
              query=("validationToken",), raw_body=GRAPH_NOTIFICATIONS, body_optional=True, text=(200,), empty=(202,)),
    Operation("get", "/.well-known/jwks.json", "jwks", "The stamp's public keys for private_key_jwt",
              {200: None}, admin=False),
    # Reminders: the policy per endpoint, a preview, failed messages and their replay; ACS's events.
    Operation("get", "/admin/endpoints/{endpoint_id}/reminder-policy", "get_reminder_policy",
              "The endpoint's SMS confirmation and reminder policy (ETag: the endpoint's)", {200: PolicyView, 404: None}),
    Operation("put", "/admin/endpoints/{endpoint_id}/reminder-policy", "put_reminder_policy",
              "Replace the endpoint's reminder policy (If-Match: the endpoint's ETag). Quiet hours need a start "
              "and an end that differ, or both 00:00 for none (422)",
              {200: PolicyView, 404: None, 409: None, 422: None, 428: None}, ReminderPolicy, if_match=True),
    Operation("post", "/admin/endpoints/{endpoint_id}/reminder-policy/preview", "preview_reminders",
              "Every message in every language for a sample appointment, with its SMS segments",
              {200: PreviewView, 404: None}, PreviewRequest),
    Operation("get", "/admin/notifications/failed", "list_failed_notifications",
              "Messages the queue gave up on (ids and outcomes only)", {200: NotificationList}),
    Operation("post", "/admin/notifications/replay", "replay_notification",
              "Send a failed message again, once (409 unless it is failed)",
              {202: NotificationView, 404: None, 409: None}, NotificationRef),
    Operation("post", "/events/acs", "acs_events",
              "Azure Communication Services SMS events through Event Grid (header X-Connector-Events-Key)",
              {200: None, 400: None, 401: None, 413: None}, admin=False, raw_body=EVENT_GRID_EVENTS),
]

ERROR_SCHEMA = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string"},
        "message": {"type": "string"},
        "operation_id": {"type": "string", "description": "the running operation (409 on provisioning)"},
        "problems": {"type": "array", "items": {
            "type": "object", "required": ["field", "message"],
            "properties": {"field": {"type": "string"}, "message": {"type": "string"}}}},
    },
}


def _schema_ref(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="serialization")
    components.update(schema.pop("$defs", {}))
    components[model.__name__] = schema
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _input_ref(model: type[BaseModel], components: dict) -> dict:
    schema = model.model_json_schema(ref_template="#/components/schemas/{model}", mode="validation")
    for name, definition in schema.pop("$defs", {}).items():
        components[name] = _as_input(definition)
    components[model.__name__] = _as_input(schema)
    return {"$ref": f"#/components/schemas/{model.__name__}"}


def _as_input(schema):
    """What the request models accept, said exactly: a default of null on a field that refuses
    null is dropped (left out is not null), and a dict's key pattern binds every key
    (pydantic writes it as patternProperties, which would let other keys through)."""
    if isinstance(schema, list):
        return [_as_input(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: _as_input(value) for key, value in schema.items()}
    if "default" in schema and schema["default"] is None and not _allows_null(schema):
        del schema["default"]
    patterns = schema.get("patternProperties")
    if isinstance(patterns, dict) and len(patterns) == 1 and "additionalProperties" not in schema:
        [(key_pattern, value_schema)] = patterns.items()
        del schema["patternProperties"]
        schema["propertyNames"] = {**schema.get("propertyNames", {}), "pattern": key_pattern}
        schema["additionalProperties"] = value_schema
    return schema


def _allows_null(schema: dict) -> bool:
    return schema.get("type") == "null" or any(_allows_null(s) for s in schema.get("anyOf", []) if isinstance(s, dict))


def _operation(op: Operation, components: dict) -> dict:
    responses: dict[str, dict] = {}
    for status, model in op.responses.items():
        content = None
        if status in op.empty:
            content = None
        elif status in op.text:
            content = {"text/plain": {"schema": {"type": "string"}}}
        elif model is not None:
            content = {"application/json": {"schema": _schema_ref(model, components)}}
        elif op.page and status not in (302, 303):
            content = {"text/html": {"schema": {"type": "string"}}}
        elif op.page:
            content = None  # a redirect: the Location header says where
        elif status >= 400:
            content = {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}
        elif status != 204:
            content = {"application/json": {"schema": {"type": "object"}}}
        responses[str(status)] = {"description": "", **({"content": content} if content else {})}
    document: dict = {"operationId": op.operation_id, "summary": op.summary, "responses": responses}
    if op.admin:
        document["security"] = [{"entraId": []}]
        for status, text in ((400, "bad input"), (401, "no valid bearer token"), (403, "not an admin")):
            responses.setdefault(str(status), {"description": text, "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}})
    parameters = [name for name in ("endpoint_id", "operation_id", "session_id", "token") if f"{{{name}}}" in op.path]
    document["parameters"] = [
        {"name": name, "in": "path", "required": True, "schema": PARAMETER_SCHEMAS.get(name, {"type": "string"})}
        for name in parameters]
    document["parameters"] += [
        {"name": name, "in": "query", "required": name in op.required_query,
         "schema": PARAMETER_SCHEMAS.get(name, {"type": "string"})} for name in op.query]
    if op.session:
        document["parameters"].append({"name": "vv_session", "in": "cookie", "required": True,
                                       "description": "The launch's sealed session (set by the callback)",
                                       "schema": {"type": "string"}})
    if op.if_match:
        document["parameters"].append(IF_MATCH)
    if not document["parameters"]:
        del document["parameters"]
    if op.body is not None:
        document["requestBody"] = {"required": True, "content": {"application/json": {"schema": _input_ref(op.body, components)}}}
    elif op.raw_body is not None:
        document["requestBody"] = {"required": not op.body_optional,
                                   "content": {"application/json": {"schema": op.raw_body}}}
    for status, links in (op.links or {}).items():
        responses[str(status)]["links"] = links
    return document


@lru_cache(maxsize=1)
def openapi_document() -> dict:
    components: dict = {"Error": ERROR_SCHEMA}
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op, components)
    return {
        "openapi": "3.1.0",
        "info": {"title": "Virtual visits connector API", "version": __version__},
        "servers": [{"url": "/api"}],
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"entraId": {"type": "http", "scheme": "bearer", "bearerFormat": "JWT",
                                            "description": "An Entra ID v2.0 access token for the admin API"}},
        },
    }


@bp.route(route="openapi.json", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def openapi(req: func.HttpRequest) -> func.HttpResponse:
    return json_response(openapi_document())


@bp.route(route="portal-config", methods=["GET"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def portal_config(req: func.HttpRequest) -> func.HttpResponse:
    settings = container().settings
    host = settings.admin_authority_host
    return json_response({
        "region": settings.stamp_region,
        "stamps": [stamp.model_dump() for stamp in settings.portal_stamps],
        "msal": {
            "clientId": settings.portal_client_id,
            "authority": f"{host}/organizations",
            "knownAuthorities": [host.split("://", 1)[1]],
            "scopes": [settings.admin_api_scope] if settings.admin_api_scope else [],
        },
    }, headers={"Cache-Control": "no-store"})
