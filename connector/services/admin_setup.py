"""The admin's setup journey: onboard the tenant, register and validate FHIR base URLs,
record SMS consents, and derive the integration records for Cerner's code console.

Every use case takes the authenticated tenant id (from the token, never from a body) and
the repositories it needs; another tenant's records are simply not found.
"""

from __future__ import annotations

import logging
import re
import secrets
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Protocol

from pydantic import ValidationError

from connector.domain.endpoint import EndpointChange, EndpointDraft, Environment, FhirEndpoint
from connector.domain.integration import IntegrationRecord, integration_record
from connector.domain.tenant import Consent, Tenant
from connector.domain.validation import ValidationReport
from connector.errors import (
    InvalidInput, NotFound, PreconditionRequired, Problem, UnprocessableInput, problems_from,
)

# What admins changed, for the clinic's IT and support: ids and outcomes only, never a name,
# a URL's query, a token or a body.
audit = logging.getLogger("connector.audit")

ENDPOINT_ID = re.compile(FhirEndpoint.model_fields["endpoint_id"].metadata[0].pattern)
Validate = Callable[[str, Environment], ValidationReport]


class TenantRepository(Protocol):
    def get_tenant(self, tenant_id: str): ...
    def onboard_tenant(self, tenant: Tenant) -> bool: ...
    def save_tenant(self, tenant: Tenant, etag: str) -> str: ...


class EndpointRepository(Protocol):
    def get_endpoint(self, tenant_id: str, endpoint_id: str): ...
    def list_endpoints(self, tenant_id: str) -> list: ...
    def add_endpoint(self, endpoint: FhirEndpoint) -> str: ...
    def save_endpoint(self, endpoint: FhirEndpoint, etag: str, *, previous_base_url: str | None = None) -> str: ...
    def remove_endpoint(self, endpoint: FhirEndpoint, etag: str) -> None: ...


class ValidationFailed(UnprocessableInput):
    """The URL did not pass validation: nothing was saved; the report says why."""

    code = "validation_failed"

    def __init__(self, report: ValidationReport):
        failed = [c for c in report.checks if c.passed is False]
        super().__init__(
            "the FHIR base URL did not pass validation",
            problems=[Problem("base_url", f"{c.name.value}: {c.message}") for c in failed],
        )
        self.report = report

    def as_dict(self) -> dict:
        return {**super().as_dict(), "validation": self.report.model_dump(mode="json")}


def _now() -> datetime:
    return datetime.now(timezone.utc)


# -- tenant -------------------------------------------------------------------------------


def onboard_tenant(tenants: TenantRepository, tenant_id: str, region: str) -> tuple[Tenant, bool]:
    """Create the tenant in this stamp on first setup. Returns (tenant, created)."""
    created = tenants.onboard_tenant(Tenant(tenant_id=tenant_id, region=region, created_at=_now()))
    if created:
        audit.info("tenant %s onboarded in stamp %s", tenant_id, region)
    return tenants.get_tenant(tenant_id).item, created


def get_tenant(tenants: TenantRepository, tenant_id: str):
    stored = tenants.get_tenant(tenant_id)
    if stored is None:
        raise NotFound("this tenant is not set up in this stamp")
    return stored


def record_sms_consents(tenants: TenantRepository, tenant_id: str, by_oid: str, *, terms: bool, data: bool) -> Tenant:
    """Give or withdraw the two SMS consents; a consent already given keeps its who and when."""
    stored = get_tenant(tenants, tenant_id)
    tenant: Tenant = stored.item
    consent = Consent(by_oid=by_oid, at=_now())
    changed = tenant.model_copy(update={
        "sms_terms_consent": (tenant.sms_terms_consent or consent) if terms else None,
        "sms_data_consent": (tenant.sms_data_consent or consent) if data else None,
    })
    tenants.save_tenant(changed, stored.etag)
    audit.info("tenant %s SMS consents set by %s: terms=%s data=%s", tenant_id, by_oid, terms, data)
    return changed


# -- endpoints ----------------------------------------------------------------------------


def list_endpoints(endpoints: EndpointRepository, tenant_id: str) -> list:
    return endpoints.list_endpoints(tenant_id)


def get_endpoint(endpoints: EndpointRepository, tenant_id: str, endpoint_id: str):
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise NotFound("no such FHIR endpoint")
    stored = endpoints.get_endpoint(tenant_id, endpoint_id)
    if stored is None:
        raise NotFound("no such FHIR endpoint")
    return stored


def _validated(validate: Validate, base_url: str, environment: Environment) -> ValidationReport:
    report = validate(base_url, environment)
    if not report.ok:
        raise ValidationFailed(report)
    return report


def _discovered(report: ValidationReport) -> dict:
    return {
        "base_url": report.base_url,
        "authorize_url": report.authorize_url,
        "token_url": report.token_url,
        "cerner_tenant_id": report.cerner_tenant_id,
    }


def add_endpoint(
    tenants: TenantRepository, endpoints: EndpointRepository, validate: Validate, tenant_id: str, draft: EndpointDraft
):
    """Validate, then register. Nothing is written unless every check passed."""
    get_tenant(tenants, tenant_id)
    report = _validated(validate, draft.base_url, draft.environment)
    endpoint = FhirEndpoint(
        tenant_id=tenant_id,
        endpoint_id=f"ep-{secrets.token_hex(4)}",
        created_at=_now(),
        **{**draft.model_dump(), **_discovered(report)},
    )
    endpoints.add_endpoint(endpoint)
    audit.info("tenant %s added endpoint %s (%s)", tenant_id, endpoint.endpoint_id, endpoint.environment.value)
    return endpoints.get_endpoint(tenant_id, endpoint.endpoint_id)


def change_endpoint(
    endpoints: EndpointRepository, validate: Validate, tenant_id: str, endpoint_id: str,
    change: EndpointChange, if_match: str | None,
):
    """Apply a partial change, optimistically: a stale ``if_match`` is a 409, not a lost update."""
    stored = get_endpoint(endpoints, tenant_id, endpoint_id)  # another tenant's: 404 before anything
    etag = _required_etag(if_match)
    current: FhirEndpoint = stored.item
    try:  # re-run the stored model's own rules on the merged result
        updated = FhirEndpoint.model_validate({**current.model_dump(), **change.given()})
    except ValidationError as exc:
        raise UnprocessableInput(
            "the change would leave the endpoint invalid",
            problems=problems_from(exc),
        ) from None
    if change.needs_validation:
        report = _validated(validate, updated.base_url, updated.environment)
        updated = updated.model_copy(update=_discovered(report))
    endpoints.save_endpoint(updated, etag, previous_base_url=current.base_url)
    audit.info("tenant %s changed endpoint %s (%s)", tenant_id, endpoint_id, ",".join(sorted(change.given())))
    return endpoints.get_endpoint(tenant_id, endpoint_id)


def remove_endpoint(endpoints: EndpointRepository, tenant_id: str, endpoint_id: str, if_match: str | None) -> None:
    stored = get_endpoint(endpoints, tenant_id, endpoint_id)
    endpoints.remove_endpoint(stored.item, _required_etag(if_match))
    audit.info("tenant %s removed endpoint %s", tenant_id, endpoint_id)


# Table Storage ETags, as this API hands them out in ETag headers and views.
_ETAG = re.compile(r'^W/"[A-Za-z0-9%:._\'-]{1,120}"$')


def _required_etag(if_match: str | None) -> str:
    """Changes and removals must say which version they saw: no silent lost updates."""
    if not if_match:
        raise PreconditionRequired(
            "send the endpoint's ETag in If-Match", problems=[Problem("If-Match", "is required")])
    if not _ETAG.fullmatch(if_match):
        raise InvalidInput("If-Match is not an ETag this API gave out",
                           problems=[Problem("If-Match", "is not an ETag this API gave out")])
    return if_match


def endpoint_integration_record(
    endpoints: EndpointRepository, tenant_id: str, endpoint_id: str, public_base_url: str
) -> IntegrationRecord:
    return integration_record(get_endpoint(endpoints, tenant_id, endpoint_id).item, public_base_url)


def require_sms_consents(tenant: Tenant) -> None:
    if not tenant.sms_allowed:
        missing = [
            Problem(field, "consent is required before SMS can be enabled")
            for field, given in (("terms", tenant.sms_terms_consent), ("data", tenant.sms_data_consent))
            if given is None
        ]
        raise UnprocessableInput("SMS needs both consents first", problems=missing)
