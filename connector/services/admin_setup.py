"""The admin's setup journey: onboard the tenant, register and validate FHIR base URLs,
record SMS consents, and derive the integration records for Cerner's code console.

:class:`AdminSetup` is bound to its ports (the composition root builds it); every method
takes the authenticated tenant id (from the token, never from a body), and another tenant's
records are simply not found.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable

from pydantic import ValidationError

from connector.domain.endpoint import EndpointChange, EndpointDraft, Environment, FhirEndpoint
from connector.domain.integration import IntegrationRecord
from connector.domain.integration import integration_record as derive_integration_record
from connector.domain.tenant import Consent, Tenant
from connector.domain.validation import ValidationReport
from connector.errors import (
    InvalidInput, NotFound, PreconditionRequired, Problem, UnprocessableInput, problems_from,
)
from connector.services.ports import (
    Clock, EndpointRepository, IdSource, SecretsIdSource, SystemClock, TenantRepository, Versioned,
)

# What admins changed, for the clinic's IT and support: ids and outcomes only, never a name,
# a URL's query, a token or a body.
audit = logging.getLogger("connector.audit")

ENDPOINT_ID = re.compile(FhirEndpoint.model_fields["endpoint_id"].metadata[0].pattern)
Validate = Callable[[str, Environment], ValidationReport]


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


# -- helpers other use cases share -----------------------------------------------------------


def stored_tenant(tenants: TenantRepository, tenant_id: str) -> Versioned[Tenant]:
    """The tenant as stored in this stamp; :class:`NotFound` before onboarding."""
    stored = tenants.get_tenant(tenant_id)
    if stored is None:
        raise NotFound("this tenant is not set up in this stamp")
    return stored


def stored_endpoint(endpoints: EndpointRepository, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint]:
    """The tenant's endpoint; :class:`NotFound` for an odd id, an unknown one or another tenant's."""
    if not ENDPOINT_ID.fullmatch(endpoint_id):
        raise NotFound("no such FHIR endpoint")
    stored = endpoints.get_endpoint(tenant_id, endpoint_id)
    if stored is None:
        raise NotFound("no such FHIR endpoint")
    return stored


def require_sms_consents(tenant: Tenant) -> None:
    if not tenant.sms_allowed:
        missing = [
            Problem(field, "consent is required before SMS can be enabled")
            for field, given in (("terms", tenant.sms_terms_consent), ("data", tenant.sms_data_consent))
            if given is None
        ]
        raise UnprocessableInput("SMS needs both consents first", problems=missing)


# Table Storage ETags, as this API hands them out in ETag headers and views.
# The ETags this API hands out (Table Storage's weak ETags); the document's If-Match pattern.
ETAG = r"""^W/"[A-Za-z0-9%:._'-]{1,120}"$"""
_ETAG = re.compile(ETAG)


def required_etag(if_match: str | None) -> str:
    """Changes and removals must say which version they saw: no silent lost updates."""
    if not if_match:
        raise PreconditionRequired(
            "send the endpoint's ETag in If-Match", problems=[Problem("If-Match", "is required")])
    if not _ETAG.fullmatch(if_match):
        raise InvalidInput("If-Match is not an ETag this API gave out",
                           problems=[Problem("If-Match", "is not an ETag this API gave out")])
    return if_match


def _discovered(report: ValidationReport) -> dict:
    return {
        "base_url": report.base_url,
        "authorize_url": report.authorize_url,
        "token_url": report.token_url,
        "cerner_tenant_id": report.cerner_tenant_id,
    }


# -- the use cases ----------------------------------------------------------------------------


class AdminSetup:
    """The admin's setup use cases, bound to the stamp's tenants and endpoints, the FHIR URL
    validation, and the stamp's region and public base URL."""

    def __init__(
        self, tenants: TenantRepository, endpoints: EndpointRepository, validate: Validate, *,
        region: str, public_base_url: str, clock: Clock = SystemClock(), ids: IdSource = SecretsIdSource(),
    ):
        self._tenants = tenants
        self._endpoints = endpoints
        self._validate = validate
        self._region = region
        self._public_base_url = public_base_url
        self._clock = clock
        self._ids = ids

    # -- tenant ---------------------------------------------------------------------------

    def onboard_tenant(self, tenant_id: str) -> tuple[Tenant, bool]:
        """Create the tenant in this stamp on first setup. Returns (tenant, created)."""
        created = self._tenants.onboard_tenant(
            Tenant(tenant_id=tenant_id, region=self._region, created_at=self._clock.now()))
        if created:
            audit.info("tenant %s onboarded in stamp %s", tenant_id, self._region)
        return self._tenants.get_tenant(tenant_id).item, created

    def get_tenant(self, tenant_id: str) -> Versioned[Tenant]:
        return stored_tenant(self._tenants, tenant_id)

    def record_sms_consents(self, tenant_id: str, by_oid: str, *, terms: bool, data: bool) -> Tenant:
        """Give or withdraw the two SMS consents; a consent already given keeps its who and when."""
        stored = self.get_tenant(tenant_id)
        tenant: Tenant = stored.item
        consent = Consent(by_oid=by_oid, at=self._clock.now())
        changed = tenant.model_copy(update={
            "sms_terms_consent": (tenant.sms_terms_consent or consent) if terms else None,
            "sms_data_consent": (tenant.sms_data_consent or consent) if data else None,
        })
        self._tenants.save_tenant(changed, stored.etag)
        audit.info("tenant %s SMS consents set by %s: terms=%s data=%s", tenant_id, by_oid, terms, data)
        return changed

    # -- endpoints --------------------------------------------------------------------------

    def list_endpoints(self, tenant_id: str) -> list[Versioned[FhirEndpoint]]:
        return self._endpoints.list_endpoints(tenant_id)

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint]:
        return stored_endpoint(self._endpoints, tenant_id, endpoint_id)

    def validate(self, base_url: str, environment: Environment) -> ValidationReport:
        """Every check on ``base_url``, passed or not (nothing is saved)."""
        return self._validate(base_url, environment)

    def _validated(self, base_url: str, environment: Environment) -> ValidationReport:
        report = self._validate(base_url, environment)
        if not report.ok:
            raise ValidationFailed(report)
        return report

    def add_endpoint(self, tenant_id: str, draft: EndpointDraft) -> Versioned[FhirEndpoint]:
        """Validate, then register. Nothing is written unless every check passed."""
        self.get_tenant(tenant_id)
        report = self._validated(draft.base_url, draft.environment)
        endpoint = FhirEndpoint(
            tenant_id=tenant_id,
            endpoint_id=f"ep-{self._ids.hex(4)}",
            created_at=self._clock.now(),
            **{**draft.model_dump(), **_discovered(report)},
        )
        self._endpoints.add_endpoint(endpoint)
        audit.info("tenant %s added endpoint %s (%s)", tenant_id, endpoint.endpoint_id, endpoint.environment.value)
        return self._endpoints.get_endpoint(tenant_id, endpoint.endpoint_id)

    def change_endpoint(
        self, tenant_id: str, endpoint_id: str, change: EndpointChange, if_match: str | None,
    ) -> Versioned[FhirEndpoint]:
        """Apply a partial change, optimistically: a stale ``if_match`` is a 409, not a lost update."""
        stored = self.get_endpoint(tenant_id, endpoint_id)  # another tenant's: 404 before anything
        etag = required_etag(if_match)
        current: FhirEndpoint = stored.item
        try:  # re-run the stored model's own rules on the merged result
            updated = FhirEndpoint.model_validate({**current.model_dump(), **change.given()})
        except ValidationError as exc:
            raise UnprocessableInput(
                "the change would leave the endpoint invalid",
                problems=problems_from(exc),
            ) from None
        if change.needs_validation:
            report = self._validated(updated.base_url, updated.environment)
            updated = updated.model_copy(update=_discovered(report))
        self._endpoints.save_endpoint(updated, etag, previous_base_url=current.base_url)
        audit.info("tenant %s changed endpoint %s (%s)", tenant_id, endpoint_id, ",".join(sorted(change.given())))
        return self._endpoints.get_endpoint(tenant_id, endpoint_id)

    def remove_endpoint(self, tenant_id: str, endpoint_id: str, if_match: str | None) -> None:
        stored = self.get_endpoint(tenant_id, endpoint_id)
        self._endpoints.remove_endpoint(stored.item, required_etag(if_match))
        audit.info("tenant %s removed endpoint %s", tenant_id, endpoint_id)

    def integration_record(self, tenant_id: str, endpoint_id: str) -> IntegrationRecord:
        """What Cerner's code console needs, with URLs on this stamp's public base URL."""
        return derive_integration_record(self.get_endpoint(tenant_id, endpoint_id).item, self._public_base_url)
