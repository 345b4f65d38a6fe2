"""The admin's setup journey as use cases: onboarding, SMS consents, FHIR endpoints (validated,
unique per stamp, changed and removed only with the ETag they were read with) and integration
records, against the in-memory fakes of their ports.
"""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from connector.domain.endpoint import EndpointChange, EndpointDraft, Environment
from connector.domain.tenant import Consent
from connector.domain.validation import CheckName
from connector.errors import (
    BaseUrlRegistered, ConcurrencyConflict, Conflict, InvalidInput, NotFound, PreconditionRequired, Problem,
    UnprocessableInput,
)
from connector.functions.http import error_response
from connector.services.admin_setup import AdminSetup, ValidationFailed
from tests.fakes import FakeClock, FakeEndpointRepository, FakeIdSource, FakeTenantRepository, FakeValidator

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER_TENANT = "99999999-8888-7777-6666-555555555555"
ADMIN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
OTHER_ADMIN = "ffffffff-bbbb-cccc-dddd-eeeeeeeeeeee"
BASE = "https://fhir-ehr.cerner.example/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
OTHER_BASE = "https://fhir-ehr.cerner.example/r4/0b8a0111-e8e6-4c26-a91c-5069cbc6b1ca"
PUBLIC_BASE_URL = "https://connector-us.contoso.example"
AUDIT = "connector.audit"


class Setup:
    """AdminSetup bound to fakes, and the fakes to look at."""

    def __init__(self, *tenant_ids: str):
        self.clock = FakeClock()
        self.ids = FakeIdSource()
        self.tenants = FakeTenantRepository()
        self.endpoints = FakeEndpointRepository()
        self.validate = FakeValidator()
        self.use_case = AdminSetup(self.tenants, self.endpoints, self.validate, region="us",
                                   public_base_url=PUBLIC_BASE_URL, clock=self.clock, ids=self.ids)
        for tenant_id in tenant_ids:
            self.use_case.onboard_tenant(tenant_id)


@pytest.fixture
def setup() -> Setup:
    return Setup(TENANT)


def draft(base_url: str = BASE, environment: Environment = Environment.test, **fields) -> EndpointDraft:
    return EndpointDraft(base_url=base_url, environment=environment, **fields)


def audit_lines(caplog) -> list[str]:
    return [r.getMessage() for r in caplog.records if r.name == AUDIT]


# -- tenant ----------------------------------------------------------------------------------


def test_onboarding_twice_creates_the_tenant_once(caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    setup = Setup()
    first_at = setup.clock.now()

    tenant, created = setup.use_case.onboard_tenant(TENANT)
    assert created is True
    assert (tenant.tenant_id, tenant.region, tenant.created_at) == (TENANT, "us", first_at)

    setup.clock.advance(days=3)
    again, created = setup.use_case.onboard_tenant(TENANT)
    assert created is False
    assert again == tenant and again.created_at == first_at
    assert setup.use_case.get_tenant(TENANT).item == tenant
    assert audit_lines(caplog) == [f"tenant {TENANT} onboarded in stamp us"]


def test_a_tenant_not_onboarded_is_not_found():
    setup = Setup()
    with pytest.raises(NotFound) as raised:
        setup.use_case.get_tenant(TENANT)
    assert raised.value.message == "this tenant is not set up in this stamp"
    with pytest.raises(NotFound):
        setup.use_case.record_sms_consents(TENANT, ADMIN, terms=True, data=True)
    with pytest.raises(NotFound):
        setup.use_case.add_endpoint(TENANT, draft())
    assert setup.validate.calls == [] and setup.endpoints.endpoints == {}


def test_consents_keep_who_and_when_when_given_again_and_are_cleared_when_withdrawn(setup, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    given_at = setup.clock.now()
    tenant = setup.use_case.record_sms_consents(TENANT, ADMIN, terms=True, data=True)
    original = Consent(by_oid=ADMIN, at=given_at)
    assert (tenant.sms_terms_consent, tenant.sms_data_consent) == (original, original)
    assert tenant.sms_allowed

    setup.clock.advance(hours=1)
    again = setup.use_case.record_sms_consents(TENANT, OTHER_ADMIN, terms=True, data=True)
    assert (again.sms_terms_consent, again.sms_data_consent) == (original, original)

    setup.clock.advance(hours=1)
    withdrawn = setup.use_case.record_sms_consents(TENANT, OTHER_ADMIN, terms=True, data=False)
    assert (withdrawn.sms_terms_consent, withdrawn.sms_data_consent) == (original, None)
    assert not withdrawn.sms_allowed
    assert setup.tenants.get_tenant(TENANT).item == withdrawn  # saved, not just returned

    setup.clock.advance(hours=1)
    regiven = setup.use_case.record_sms_consents(TENANT, OTHER_ADMIN, terms=True, data=True)
    assert regiven.sms_data_consent == Consent(by_oid=OTHER_ADMIN, at=setup.clock.now())
    assert regiven.sms_terms_consent == original
    assert audit_lines(caplog)[-2:] == [
        f"tenant {TENANT} SMS consents set by {OTHER_ADMIN}: terms=True data=False",
        f"tenant {TENANT} SMS consents set by {OTHER_ADMIN}: terms=True data=True",
    ]


def test_consents_on_a_tenant_changed_meanwhile_are_a_concurrency_conflict(setup):
    stored = setup.tenants.get_tenant(TENANT)
    setup.tenants.save_tenant(stored.item, stored.etag)  # someone else saved it in between
    real_get = setup.tenants.get_tenant
    setup.tenants.get_tenant = lambda tenant_id: stored  # ... after this use case read it
    with pytest.raises(ConcurrencyConflict):
        setup.use_case.record_sms_consents(TENANT, ADMIN, terms=True, data=True)
    assert real_get(TENANT).item.sms_terms_consent is None


# -- adding endpoints ----------------------------------------------------------------------------


def test_add_endpoint_stores_the_draft_with_discovered_fields_an_id_and_a_time(setup, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    setup.clock.advance(minutes=5)
    typed = BASE.replace("https://fhir-ehr.cerner.example", "HTTPS://FHIR-EHR.Cerner.EXAMPLE") + "/"
    stored = setup.use_case.add_endpoint(TENANT, draft(
        typed, display_name="Main clinic", location_ids=["32216049"], timezone="America/Chicago",
        provider_client_id="prov-1"))

    endpoint = stored.item
    assert setup.validate.calls == [(typed, Environment.test)]
    assert (endpoint.tenant_id, endpoint.endpoint_id, endpoint.created_at) == (TENANT, "ep-00000001", setup.clock.now())
    assert setup.ids.issued == ["00000001"]
    # The normalised URL and what validation discovered are stored with the admin's fields.
    assert endpoint.base_url == BASE
    discovered = FakeValidator.discovered(BASE)
    assert (endpoint.authorize_url, endpoint.token_url, endpoint.cerner_tenant_id) == (
        discovered["authorize_url"], discovered["token_url"], "ec2458f2-1e24-41c8-b71b-0e701af7583d")
    assert (endpoint.display_name, endpoint.location_ids, endpoint.timezone, endpoint.provider_client_id) == (
        "Main clinic", ["32216049"], "America/Chicago", "prov-1")
    assert endpoint.linked_number is None
    assert stored == setup.endpoints.get_endpoint(TENANT, "ep-00000001")
    assert setup.endpoints.find_by_base_url(typed) == stored
    assert audit_lines(caplog)[-1] == f"tenant {TENANT} added endpoint ep-00000001 (test)"


def test_endpoint_ids_come_from_the_id_source_and_times_from_the_clock(setup):
    first = setup.use_case.add_endpoint(TENANT, draft(BASE)).item
    setup.clock.advance(seconds=90)
    second = setup.use_case.add_endpoint(TENANT, draft(OTHER_BASE, Environment.production)).item
    assert (first.endpoint_id, second.endpoint_id) == ("ep-00000001", "ep-00000002")
    assert second.created_at - first.created_at == timedelta(seconds=90)
    assert [s.item.endpoint_id for s in setup.use_case.list_endpoints(TENANT)] == ["ep-00000001", "ep-00000002"]
    assert setup.use_case.list_endpoints(OTHER_TENANT) == []


def test_add_endpoint_writes_nothing_when_validation_fails(setup):
    setup.validate.fail(BASE, CheckName.metadata, "The server did not answer /metadata with a CapabilityStatement.")
    setup.validate.fail(BASE, CheckName.cerner_tenant, "The URL does not name a Cerner tenant.")

    with pytest.raises(ValidationFailed) as raised:
        setup.use_case.add_endpoint(TENANT, draft())

    # Only the failed checks are problems (the skipped ones in between are not).
    assert raised.value.problems == [
        Problem("base_url", "metadata: The server did not answer /metadata with a CapabilityStatement."),
        Problem("base_url", "cerner_tenant: The URL does not name a Cerner tenant."),
    ]
    assert raised.value.http_status == 422 and raised.value.code == "validation_failed"
    assert raised.value.as_dict()["validation"]["ok"] is False
    assert setup.endpoints.writes == 0 and setup.endpoints.endpoints == {} and setup.endpoints.urls == {}
    assert setup.ids.issued == []


def test_a_url_registered_in_the_stamp_is_a_conflict_whatever_its_spelling_or_tenant(setup):
    setup.use_case.onboard_tenant(OTHER_TENANT)
    first = setup.use_case.add_endpoint(TENANT, draft())

    for tenant_id, url in ((TENANT, BASE), (OTHER_TENANT, BASE + "/"), (OTHER_TENANT, BASE.replace("https", "HTTPS"))):
        with pytest.raises(Conflict) as raised:
            setup.use_case.add_endpoint(tenant_id, draft(url))
        assert type(raised.value) is BaseUrlRegistered and raised.value.http_status == 409
        assert raised.value.code == "base_url_registered" and raised.value.ours is (tenant_id == TENANT)
        assert [p.field for p in raised.value.problems] == ["base_url"]

    assert [s.item.endpoint_id for s in setup.use_case.list_endpoints(TENANT)] == [first.item.endpoint_id]
    assert setup.use_case.list_endpoints(OTHER_TENANT) == []
    assert setup.endpoints.find_by_base_url(BASE + "/") == first


def test_a_url_another_organisation_registered_says_what_to_do_and_never_whose_it_is(setup):
    """The admin learns what to do next (check the URL: each Cerner domain has its own tenant id;
    ask their Oracle Health contact) and nothing about who holds it: the same answer whichever
    organisation it is, with no tenant id, endpoint id or display name of theirs."""
    third = "33333333-4444-5555-6666-777777777777"
    for tenant_id in (OTHER_TENANT, third):
        setup.use_case.onboard_tenant(tenant_id)
    theirs = setup.use_case.add_endpoint(OTHER_TENANT, draft(display_name="Fabrikam North"))
    answers = []
    for tenant_id in (TENANT, third):
        with pytest.raises(BaseUrlRegistered) as raised:
            setup.use_case.add_endpoint(tenant_id, draft(BASE + "/"))
        assert raised.value.ours is False
        answers.append(error_response(raised.value).get_body().decode())
    assert answers[0] == answers[1]  # whoever asks, whoever holds it
    body = answers[0]
    for secret in (OTHER_TENANT, theirs.item.endpoint_id, "Fabrikam", BASE):
        assert secret not in body
    problem = raised.value.problems[0]
    assert problem.field == "base_url" and problem.message.startswith("This URL is already registered to another organisation")
    for advice in ("each Cerner domain has its own tenant id", "Oracle Health contact"):
        assert advice in problem.message
    assert "another organisation" in raised.value.message and "Oracle Health contact" in raised.value.message


def test_a_url_the_organisation_registered_itself_says_so(setup):
    mine = setup.use_case.add_endpoint(TENANT, draft(display_name="Main clinic"))
    with pytest.raises(BaseUrlRegistered) as raised:
        setup.use_case.add_endpoint(TENANT, draft(BASE + "/"))
    assert raised.value.ours is True and "another organisation" not in raised.value.message
    assert "already registered for your organisation" in raised.value.message
    assert raised.value.problems[0].message.startswith("This URL is already one of your organisation's FHIR base URLs")
    assert setup.use_case.list_endpoints(TENANT) == [mine]


def test_validate_returns_the_report_without_saving(setup):
    setup.validate.fail(BASE, CheckName.public_address, "The host resolves to a private address.")
    report = setup.use_case.validate(BASE, Environment.production)
    assert report.ok is False and report.check(CheckName.public_address).passed is False
    assert setup.validate.calls == [(BASE, Environment.production)]
    assert setup.use_case.validate(OTHER_BASE, Environment.test).ok is True
    assert setup.endpoints.writes == 0


# -- changing endpoints ----------------------------------------------------------------------


@pytest.fixture
def added(setup):
    stored = setup.use_case.add_endpoint(TENANT, draft(display_name="Main clinic"))
    setup.validate.calls.clear()
    return stored


def test_change_needs_if_match(setup, added):
    with pytest.raises(PreconditionRequired) as raised:
        setup.use_case.change_endpoint(TENANT, added.item.endpoint_id, EndpointChange(display_name="New"), None)
    assert raised.value.http_status == 428
    assert raised.value.problems == [Problem("If-Match", "is required")]
    assert setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == added


@pytest.mark.parametrize("if_match", ['"abc"', "W/abc", 'W/"a b"', "*", 'W/"' + "a" * 121 + '"'])
def test_change_rejects_a_malformed_if_match(setup, added, if_match):
    with pytest.raises(InvalidInput) as raised:
        setup.use_case.change_endpoint(TENANT, added.item.endpoint_id, EndpointChange(display_name="New"), if_match)
    assert type(raised.value) is InvalidInput and raised.value.http_status == 400
    assert raised.value.problems == [Problem("If-Match", "is not an ETag this API gave out")]
    assert setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == added


def test_change_with_a_stale_etag_is_a_concurrency_conflict(setup, added):
    endpoint_id = added.item.endpoint_id
    newer = setup.use_case.change_endpoint(TENANT, endpoint_id, EndpointChange(display_name="Newer"), added.etag)
    with pytest.raises(ConcurrencyConflict) as raised:
        setup.use_case.change_endpoint(TENANT, endpoint_id, EndpointChange(display_name="Lost"), added.etag)
    assert error_response(raised.value).status_code == 409
    assert setup.endpoints.get_endpoint(TENANT, endpoint_id) == newer
    assert newer.item.display_name == "Newer"


def test_a_change_without_a_new_url_or_environment_is_not_validated_again(setup, added, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    changed = setup.use_case.change_endpoint(
        TENANT, added.item.endpoint_id,
        EndpointChange(display_name="Renamed", location_ids=["1", "2"], timezone="Europe/Paris"), added.etag)

    assert setup.validate.calls == []
    assert (changed.item.display_name, changed.item.location_ids, changed.item.timezone) == (
        "Renamed", ["1", "2"], "Europe/Paris")
    assert changed.item.model_dump(exclude={"display_name", "location_ids", "timezone"}) == \
        added.item.model_dump(exclude={"display_name", "location_ids", "timezone"})
    assert changed.etag != added.etag
    assert audit_lines(caplog) == [
        f"tenant {TENANT} changed endpoint {added.item.endpoint_id} (display_name,location_ids,timezone)"]


def test_a_new_url_is_validated_and_its_discovered_fields_stored(setup, added):
    changed = setup.use_case.change_endpoint(
        TENANT, added.item.endpoint_id, EndpointChange(base_url=OTHER_BASE + "/"), added.etag)

    assert setup.validate.calls == [(OTHER_BASE, Environment.test)]  # the merged, normalised URL
    discovered = FakeValidator.discovered(OTHER_BASE)
    assert (changed.item.base_url, changed.item.authorize_url, changed.item.token_url,
            changed.item.cerner_tenant_id) == (OTHER_BASE, discovered["authorize_url"], discovered["token_url"],
                                               discovered["cerner_tenant_id"])
    assert changed.item.display_name == "Main clinic"
    # The URL's claim moved with it: the old URL is free, the new one finds this endpoint.
    assert setup.endpoints.find_by_base_url(BASE) is None
    assert setup.endpoints.find_by_base_url(OTHER_BASE) == changed


def test_a_new_environment_is_validated_again(setup, added):
    changed = setup.use_case.change_endpoint(
        TENANT, added.item.endpoint_id, EndpointChange(environment=Environment.production), added.etag)
    assert setup.validate.calls == [(BASE, Environment.production)]
    assert changed.item.environment is Environment.production


def test_a_change_that_fails_validation_saves_nothing(setup, added):
    setup.validate.fail(OTHER_BASE, CheckName.smart_discovery, "No SMART configuration was found.")
    with pytest.raises(ValidationFailed) as raised:
        setup.use_case.change_endpoint(TENANT, added.item.endpoint_id, EndpointChange(base_url=OTHER_BASE), added.etag)
    assert raised.value.problems == [Problem("base_url", "smart_discovery: No SMART configuration was found.")]
    assert setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == added
    assert setup.endpoints.find_by_base_url(BASE) == added and setup.endpoints.find_by_base_url(OTHER_BASE) is None


def test_a_change_that_would_leave_the_endpoint_invalid_is_unprocessable(setup, added):
    with pytest.raises(UnprocessableInput) as raised:
        setup.use_case.change_endpoint(
            TENANT, added.item.endpoint_id, EndpointChange(base_url="https://fhir.example:99999/r4"), added.etag)
    assert raised.value.message == "the change would leave the endpoint invalid"
    assert [p.field for p in raised.value.problems] == ["base_url"]
    assert setup.validate.calls == [] and setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == added


def test_changing_to_a_url_registered_elsewhere_is_a_conflict(setup, added):
    other = setup.use_case.add_endpoint(TENANT, draft(OTHER_BASE))
    with pytest.raises(BaseUrlRegistered) as raised:
        setup.use_case.change_endpoint(TENANT, added.item.endpoint_id, EndpointChange(base_url=OTHER_BASE), added.etag)
    assert raised.value.ours and "your organisation's FHIR base URLs" in raised.value.problems[0].message
    assert setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == added
    assert setup.endpoints.find_by_base_url(OTHER_BASE) == other


# -- tenancy, removal, integration records -------------------------------------------------------


def test_another_tenants_endpoint_is_not_found(setup, added):
    setup.use_case.onboard_tenant(OTHER_TENANT)
    endpoint_id = added.item.endpoint_id
    attempts = [
        lambda: setup.use_case.get_endpoint(OTHER_TENANT, endpoint_id),
        lambda: setup.use_case.change_endpoint(OTHER_TENANT, endpoint_id, EndpointChange(display_name="x"), added.etag),
        lambda: setup.use_case.remove_endpoint(OTHER_TENANT, endpoint_id, added.etag),
        lambda: setup.use_case.integration_record(OTHER_TENANT, endpoint_id),
    ]
    for attempt in attempts:
        with pytest.raises(NotFound) as raised:
            attempt()
        assert raised.value.message == "no such FHIR endpoint"
    assert setup.endpoints.get_endpoint(TENANT, endpoint_id) == added
    assert setup.endpoints.writes == 1  # the add only


@pytest.mark.parametrize("endpoint_id", ["EP-1", "../ep-00000001", "", "ep 1", "a" * 64])
def test_an_odd_endpoint_id_is_not_found(setup, endpoint_id):
    with pytest.raises(NotFound):
        setup.use_case.get_endpoint(TENANT, endpoint_id)


def test_remove_needs_if_match_and_frees_the_url(setup, added, caplog):
    caplog.set_level(logging.INFO, logger=AUDIT)
    endpoint_id = added.item.endpoint_id
    with pytest.raises(PreconditionRequired):
        setup.use_case.remove_endpoint(TENANT, endpoint_id, None)
    with pytest.raises(InvalidInput) as raised:
        setup.use_case.remove_endpoint(TENANT, endpoint_id, "not-an-etag")
    assert raised.value.http_status == 400
    assert setup.endpoints.get_endpoint(TENANT, endpoint_id) == added

    setup.use_case.remove_endpoint(TENANT, endpoint_id, added.etag)

    assert setup.endpoints.get_endpoint(TENANT, endpoint_id) is None
    assert setup.endpoints.find_by_base_url(BASE) is None
    with pytest.raises(NotFound):
        setup.use_case.remove_endpoint(TENANT, endpoint_id, added.etag)
    assert audit_lines(caplog) == [f"tenant {TENANT} removed endpoint {endpoint_id}"]
    again = setup.use_case.add_endpoint(TENANT, draft())  # the URL can be registered again
    assert again.item.endpoint_id != endpoint_id and again.item.base_url == BASE


def test_remove_with_a_stale_etag_is_a_concurrency_conflict(setup, added):
    newer = setup.use_case.change_endpoint(TENANT, added.item.endpoint_id, EndpointChange(display_name="x"),
                                           added.etag)
    with pytest.raises(ConcurrencyConflict):
        setup.use_case.remove_endpoint(TENANT, added.item.endpoint_id, added.etag)
    assert setup.endpoints.get_endpoint(TENANT, added.item.endpoint_id) == newer


def test_integration_record_urls_come_from_the_public_base_url(setup):
    stored = setup.use_case.add_endpoint(TENANT, draft(
        display_name="Main clinic", provider_client_id="prov-1", patient_client_id="pat-1"))
    record = setup.use_case.integration_record(TENANT, stored.item.endpoint_id)

    assert (record.endpoint_id, record.display_name, record.base_url, record.environment) == (
        stored.item.endpoint_id, "Main clinic", BASE, "test")
    assert (record.provider_launch_url, record.patient_launch_url, record.redirect_uri, record.jwks_url) == (
        f"{PUBLIC_BASE_URL}/api/launch/provider", f"{PUBLIC_BASE_URL}/api/launch/patient",
        f"{PUBLIC_BASE_URL}/api/launch/callback", f"{PUBLIC_BASE_URL}/api/.well-known/jwks.json")
    assert (record.client_ids.provider, record.client_ids.patient, record.client_ids.backend) == (
        "prov-1", "pat-1", None)
