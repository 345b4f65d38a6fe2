"""The admin's tenant in this stamp: who am I, onboard, SMS consents."""

import azure.functions as func
from pydantic import BaseModel, ConfigDict

from connector.composition import container
from connector.functions.admin.common import TenantView, admin_principal
from connector.functions.http import handles_errors, json_response, parse_body

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS


class SmsConsents(BaseModel):
    model_config = ConfigDict(extra="forbid")
    terms: bool
    data: bool


@bp.route(route="admin/tenant", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def get_tenant(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    return json_response(TenantView.of(container().admin_setup.get_tenant(principal.tenant_id).item))


@bp.route(route="admin/tenant", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def onboard_tenant(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    tenant, created = container().admin_setup.onboard_tenant(principal.tenant_id)
    return json_response(TenantView.of(tenant), 201 if created else 200)


@bp.route(route="admin/sms/consents", methods=["PUT"], auth_level=ANONYMOUS)
@handles_errors
def put_sms_consents(req: func.HttpRequest) -> func.HttpResponse:
    principal = admin_principal(req)
    consents = parse_body(req, SmsConsents)
    tenant = container().admin_setup.record_sms_consents(
        principal.tenant_id, principal.oid, terms=consents.terms, data=consents.data
    )
    return json_response(TenantView.of(tenant))
