"""What every admin trigger shares: who is calling, and how records are shown."""

from __future__ import annotations

from datetime import datetime

import azure.functions as func
from pydantic import BaseModel

from connector import telemetry
from connector.composition import container
from connector.domain.endpoint import ClientAuth, Environment
from connector.domain.tenant import Consent, Tenant
from connector.functions.http import json_response
from connector.services.admin_auth import AdminPrincipal, authenticate_admin


def admin_principal(req: func.HttpRequest) -> AdminPrincipal:
    """The calling admin, from ``Authorization: Bearer``; 401 / 403 otherwise."""
    deps = container()
    principal = authenticate_admin(
        req.headers.get("Authorization"), deps.admin_token_validator,
        admin_role=deps.settings.admin_app_role, required_scope=deps.settings.admin_api_scope or None,
    )
    telemetry.tag(tenant=principal.tenant_id)
    return principal


class EndpointView(BaseModel):
    endpoint_id: str
    base_url: str
    environment: Environment
    display_name: str
    cerner_tenant_id: str | None
    authorize_url: str | None
    token_url: str | None
    provider_client_id: str | None
    patient_client_id: str | None
    backend_client_id: str | None
    location_ids: list[str]
    timezone: str
    linked_number: str | None
    meeting_organizer: str | None
    department_organizers: dict[str, str]
    client_auth: ClientAuth
    client_secret_name: str | None
    write_back_links: bool
    created_at: datetime
    etag: str

    @classmethod
    def of(cls, stored) -> "EndpointView":
        return cls(**stored.item.model_dump(exclude={"tenant_id"}), etag=stored.etag)


class EndpointList(BaseModel):
    endpoints: list[EndpointView]


class SmsView(BaseModel):
    terms_consent: Consent | None
    data_consent: Consent | None
    enabled: bool


class TenantView(BaseModel):
    tenant_id: str
    region: str
    sms: SmsView

    @classmethod
    def of(cls, tenant: Tenant) -> "TenantView":
        return cls(
            tenant_id=tenant.tenant_id, region=tenant.region,
            sms=SmsView(terms_consent=tenant.sms_terms_consent, data_consent=tenant.sms_data_consent,
                        enabled=tenant.sms_allowed),
        )


def endpoint_response(stored, status: int = 200) -> func.HttpResponse:
    return json_response(EndpointView.of(stored), status, headers={"ETag": stored.etag})
