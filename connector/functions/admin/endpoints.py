"""FHIR base URLs: add, list, read, change, remove, validate; and their integration records."""

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from connector.composition import container
from connector.domain.endpoint import MAX_URL_LENGTH, URL_CHARACTERS, EndpointChange, EndpointDraft, Environment
from connector.functions.admin.common import EndpointList, EndpointView, admin_principal, endpoint_response
from connector.functions.http import handles_errors, json_response, parse_body

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


class ValidationRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    base_url: str = Field(min_length=1, max_length=MAX_URL_LENGTH, pattern=URL_CHARACTERS)
    environment: Environment


@bp.route(route="admin/endpoints", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def list_endpoints(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    stored = container().admin_setup.list_endpoints(principal.tenant_id)
    return json_response(EndpointList(endpoints=[EndpointView.of(s) for s in stored]))


@bp.route(route="admin/endpoints", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def add_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    draft = parse_body(req, EndpointDraft)
    stored = container().admin_setup.add_endpoint(principal.tenant_id, draft)
    return endpoint_response(stored, 201)


@bp.route(route="admin/endpoints/validate", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def validate_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    admin_principal(req)
    body = parse_body(req, ValidationRequest)
    return json_response(container().admin_setup.validate(body.base_url, body.environment))


@bp.route(route="admin/endpoints/{endpoint_id}", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def get_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    stored = container().admin_setup.get_endpoint(principal.tenant_id, req.route_params["endpoint_id"])
    return endpoint_response(stored)


@bp.route(route="admin/endpoints/{endpoint_id}", methods=["PATCH"], auth_level=ANONYMOUS)
@handles_errors
def change_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    change = parse_body(req, EndpointChange)
    stored = container().admin_setup.change_endpoint(
        principal.tenant_id, req.route_params["endpoint_id"], change, req.headers.get("If-Match"),
    )
    return endpoint_response(stored)


@bp.route(route="admin/endpoints/{endpoint_id}", methods=["DELETE"], auth_level=ANONYMOUS)
@handles_errors
def remove_endpoint(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    container().admin_setup.remove_endpoint(
        principal.tenant_id, req.route_params["endpoint_id"], req.headers.get("If-Match")
    )
    return func.HttpResponse(status_code=204)


@bp.route(route="admin/endpoints/{endpoint_id}/integration-record", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def get_integration_record(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    endpoint_id = req.route_params["endpoint_id"]
    record = container().admin_setup.integration_record(principal.tenant_id, endpoint_id)
    headers = None
    if req.params.get("download") in ("true", "1"):
        headers = {"Content-Disposition": f'attachment; filename="integration-record-{endpoint_id}.json"'}
    return json_response(record, headers=headers)
