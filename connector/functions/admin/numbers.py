"""SMS numbers: provision (202 + an operation to poll), list, link to and unlink from endpoints
(If-Match: the endpoint's ETag, as for every change of an endpoint)."""

from datetime import datetime

import azure.functions as func
from pydantic import BaseModel, ConfigDict, Field

from connector.composition import container
from connector.domain.phone_number import E164, NumberProvisioning, ProvisioningStatus, ProvisioningStep
from connector.functions.admin.common import admin_principal, endpoint_response
from connector.functions.http import handles_errors, json_response, parse_body
from connector.services.sms_numbers import NumberView

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


class ProvisionNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")
    # Toll-free numbers for SMS are sold in the US (and Canada) only.
    country_code: str = Field(default="US", pattern=r"^(US|CA)$")


class LinkNumber(BaseModel):
    model_config = ConfigDict(extra="forbid")  # taken as sent: what the pattern says is what is accepted
    phone_number: str = Field(pattern=E164)


class OperationView(BaseModel):
    """A provisioning operation as the admin sees it (no ACS ids, no worker bookkeeping)."""

    operation_id: str
    status: ProvisioningStatus
    step: ProvisioningStep
    phone_number: str | None
    error: str | None
    country_code: str
    created_at: datetime
    updated_at: datetime

    @classmethod
    def of(cls, operation: NumberProvisioning) -> "OperationView":
        return cls.model_validate(operation.model_dump(include=set(cls.model_fields)))


class NumberList(BaseModel):
    phone_numbers: list[NumberView]
    operations: list[OperationView]


@bp.route(route="admin/phone-numbers", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def provision_number(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    body = parse_body(req, ProvisionNumber)
    deps = container()
    operation = deps.sms_numbers.start_provisioning(principal.tenant_id, body.country_code)
    location = f"{deps.settings.public_base_url}/api/admin/operations/{operation.operation_id}"
    return json_response(OperationView.of(operation), 202, headers={"Location": location})


@bp.route(route="admin/operations/{operation_id}", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def get_operation(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    operation = container().sms_numbers.get_provisioning(principal.tenant_id, req.route_params["operation_id"])
    return json_response(OperationView.of(operation), headers={"Cache-Control": "no-store"})


@bp.route(route="admin/phone-numbers", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def list_numbers(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    numbers, operations = container().sms_numbers.list_numbers(principal.tenant_id)
    return json_response(NumberList(phone_numbers=numbers, operations=[OperationView.of(o) for o in operations]))


@bp.route(route="admin/endpoints/{endpoint_id}/phone-number", methods=["PUT"], auth_level=ANONYMOUS)
@handles_errors
def link_number(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    body = parse_body(req, LinkNumber)
    stored = container().sms_numbers.link_number(
        principal.tenant_id, req.route_params["endpoint_id"], body.phone_number, req.headers.get("If-Match"))
    return endpoint_response(stored)


@bp.route(route="admin/endpoints/{endpoint_id}/phone-number", methods=["DELETE"], auth_level=ANONYMOUS)
@handles_errors
def unlink_number(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    stored = container().sms_numbers.link_number(
        principal.tenant_id, req.route_params["endpoint_id"], None, req.headers.get("If-Match"))
    return endpoint_response(stored)
