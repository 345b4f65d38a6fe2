"""Seed a demo tenant into the stamp: idempotent, so `make run` can run it at every start."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from connector.composition import Container
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.tenant import Tenant


@dataclass(frozen=True)
class DemoTenant:
    tenant_id: str
    fhir_base_url: str
    location_ids: list[str]
    timezone: str
    provider_client_id: str
    patient_client_id: str
    backend_client_id: str
    cerner_tenant_id: str
    authorize_url: str
    token_url: str


def seed_demo_tenant(deps: Container, demo: DemoTenant) -> FhirEndpoint:
    """Create the stamp's tables, the demo tenant and its test FHIR endpoint (if missing)."""
    deps.tables.create_missing()
    now = datetime.now(timezone.utc)
    deps.tenants.onboard_tenant(Tenant(tenant_id=demo.tenant_id, region=deps.settings.stamp_region, created_at=now))
    endpoint = FhirEndpoint(
        tenant_id=demo.tenant_id,
        endpoint_id="demo-clinic",
        display_name="Demo clinic (Cerner sandbox)",
        base_url=demo.fhir_base_url,
        environment=Environment.test,
        cerner_tenant_id=demo.cerner_tenant_id,
        authorize_url=demo.authorize_url,
        token_url=demo.token_url,
        provider_client_id=demo.provider_client_id,
        patient_client_id=demo.patient_client_id,
        backend_client_id=demo.backend_client_id,
        location_ids=demo.location_ids,
        timezone=demo.timezone,
        created_at=now,
    )
    existing = deps.endpoints.get_endpoint(demo.tenant_id, endpoint.endpoint_id)
    if existing is None:
        deps.endpoints.add_endpoint(endpoint)
    elif existing.item != endpoint.model_copy(update={"created_at": existing.item.created_at}):
        # seeded by an earlier start with other ports or ids: bring it up to date
        refreshed = endpoint.model_copy(update={"created_at": existing.item.created_at,
                                                "linked_number": existing.item.linked_number})
        deps.endpoints.save_endpoint(refreshed, existing.etag, previous_base_url=existing.item.base_url)
    return deps.endpoints.get_endpoint(demo.tenant_id, endpoint.endpoint_id).item
