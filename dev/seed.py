"""Seed a demo tenant into the stamp: idempotent, so `make run` can run it at every start.

The demo tenant is ready for the clinical flow: its test FHIR endpoint has the connector's
client ids, a Teams meeting organizer and write-back on; SMS is consented (by the demo admin)
and a toll-free number the ACS sandbox owns is linked to the endpoint.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

from connector.composition import Container
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.phone_number import PhoneNumber
from connector.domain.reminders import ReminderPolicy
from connector.domain.tenant import Consent, Tenant


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
    meeting_organizer: str | None = None
    sms_number: str | None = None
    consent_by_oid: str | None = None  # the demo admin who gave the SMS consents
    reminders: bool = False  # SMS confirmations and reminders on for the demo endpoint


def seed_demo_tenant(deps: Container, demo: DemoTenant) -> FhirEndpoint:
    """Create the stamp's tables, the demo tenant, its number and its test FHIR endpoint (if missing)."""
    deps.tables.create_missing()
    now = datetime.now(timezone.utc)
    deps.tenants.onboard_tenant(Tenant(tenant_id=demo.tenant_id, region=deps.settings.stamp_region, created_at=now))
    if demo.consent_by_oid:
        _consent(deps, demo, now)
    if demo.sms_number:
        deps.phone_numbers.record_number(PhoneNumber(tenant_id=demo.tenant_id, phone_number=demo.sms_number,
                                                     acquired_at=now))
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
        linked_number=demo.sms_number,
        meeting_organizer=demo.meeting_organizer,
        write_back_links=demo.meeting_organizer is not None,
        reminder_policy=ReminderPolicy(enabled=demo.reminders),
        created_at=now,
    )
    existing = deps.endpoints.get_endpoint(demo.tenant_id, endpoint.endpoint_id)
    if existing is None:
        deps.endpoints.add_endpoint(endpoint)
    elif existing.item != endpoint.model_copy(update={"created_at": existing.item.created_at}):
        # seeded by an earlier start with other ports or ids: bring it up to date
        refreshed = endpoint.model_copy(update={"created_at": existing.item.created_at})
        deps.endpoints.save_endpoint(refreshed, existing.etag, previous_base_url=existing.item.base_url)
    return deps.endpoints.get_endpoint(demo.tenant_id, endpoint.endpoint_id).item


def _consent(deps: Container, demo: DemoTenant, now: datetime) -> None:
    stored = deps.tenants.get_tenant(demo.tenant_id)
    if stored.item.sms_allowed:
        return
    consent = Consent(by_oid=demo.consent_by_oid, at=now)
    deps.tenants.save_tenant(stored.item.model_copy(update={"sms_terms_consent": consent,
                                                            "sms_data_consent": consent}), stored.etag)
