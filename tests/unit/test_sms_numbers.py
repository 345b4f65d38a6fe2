"""Toll-free number provisioning: one at a time per tenant, never bought twice, and only a
definite "no" from ACS fails an operation (everything else is retried by the queue).

The use cases run against in-memory fakes of their ports; the ACS adapter's error mapping
runs against a fake of the SDK client (no network, and never the real, scarce, service).
"""

from __future__ import annotations

import json
import logging
from datetime import timedelta

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError,
)
from azure.core.polling.base_polling import OperationFailed

from connector.adapters.acs.phone_numbers import AcsPhoneNumbers, NumberNotAvailable, PurchaseAlreadyStarted
from connector.adapters.storage.tables import StorageUnavailable
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.phone_number import (
    NumberProvisioning, PhoneNumber, PhoneNumberState, ProvisioningStatus, ProvisioningStep,
)
from connector.domain.tenant import Consent, Tenant
from connector.errors import (
    ConcurrencyConflict, InvalidInput, NotFound, PreconditionRequired, Problem, UnprocessableInput,
    UpstreamUnavailable,
)
from connector.functions.http import error_response
from connector.services import sms_numbers
from connector.services.sms_numbers import (
    NumberProvisioningWorker, ProvisioningInProgress, ProvisioningRequest, SmsNumbers,
)
from tests.fakes import (
    Crash, FakeClock, FakeEndpointRepository, FakeIdSource, FakePhoneNumberProvider, FakePhoneNumberRepository,
    FakeQueue, FakeTenantRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
ADMIN_OID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
NUMBER = "+18005550100"
LOGGER = "connector.provisioning"


# --- helpers --------------------------------------------------------------------------


def consenting_tenants(clock: FakeClock) -> FakeTenantRepository:
    consent = Consent(by_oid=ADMIN_OID, at=clock.now())
    return FakeTenantRepository(Tenant(tenant_id=TENANT, region="us", created_at=clock.now(),
                                       sms_terms_consent=consent, sms_data_consent=consent))


@pytest.fixture
def clock():
    return FakeClock()


@pytest.fixture
def repo():
    return FakePhoneNumberRepository()


@pytest.fixture
def start(repo, clock):
    """Start an operation for TENANT (both consents given) through the admin use case."""
    ids = FakeIdSource()

    def start(queue=None) -> NumberProvisioning:
        use_case = SmsNumbers(consenting_tenants(clock), repo, FakeEndpointRepository(), queue or FakeQueue(),
                              clock=clock, ids=ids)
        return use_case.start_provisioning(TENANT, "US")

    return start


@pytest.fixture
def run(repo, clock):
    """Deliver the queue message of ``operation`` to the worker."""

    def run(provider, operation: NumberProvisioning) -> None:
        NumberProvisioningWorker(repo, provider, clock=clock).run(request_for(operation))

    return run


@pytest.fixture
def stored_operation(repo, clock):
    """An operation written straight to storage, last moved on ``minutes_ago``."""

    def stored_operation(*, operation_id="op00000001", minutes_ago=0, **fields) -> NumberProvisioning:
        when = clock.now() - timedelta(minutes=minutes_ago)
        operation = NumberProvisioning(tenant_id=TENANT, operation_id=operation_id, country_code="US",
                                       created_at=when, updated_at=when, **fields)
        repo.start_provisioning(operation)
        return operation

    return stored_operation


def request_for(operation: NumberProvisioning) -> ProvisioningRequest:
    return ProvisioningRequest(tenant_id=operation.tenant_id, operation_id=operation.operation_id)


def log_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)


# --- the worker -----------------------------------------------------------------------


def test_happy_path_searches_records_the_purchase_start_then_buys_once(repo, caplog, start, run):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start()
    provider = FakePhoneNumberProvider()
    seen_at_purchase = []
    provider.before_purchase = lambda search_id: seen_at_purchase.append(repo.operation(operation.operation_id))

    run(provider, operation)

    # Before ACS was asked to buy, the operation said so (step, search, number, start time).
    [before] = seen_at_purchase
    assert before.step is ProvisioningStep.purchasing and before.search_id == "search-1"
    assert before.phone_number == NUMBER and before.purchase_started_at is not None
    done = repo.operation(operation.operation_id)
    assert (done.status, done.step, done.error) == (ProvisioningStatus.succeeded, ProvisioningStep.done, None)
    assert repo.get_number(TENANT, NUMBER).operation_id == operation.operation_id
    assert (provider.search_calls, provider.purchase_calls, provider.bought) == (1, 1, 1)
    assert provider.owned_calls == 0  # a fresh search cannot be owned yet: no listing needed
    assert f"provisioning {operation.operation_id} succeeded" in log_text(caplog)


def test_a_crash_after_the_purchase_started_is_not_bought_again_when_acs_owns_the_number(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider(finish_purchases=False)
    provider.crash_after_purchase_starts = True
    with pytest.raises(Crash):
        run(provider, operation)
    assert repo.operation(operation.operation_id).purchase_started_at is not None
    provider.finish("search-1")  # ACS finished the purchase while no worker was listening

    run(provider, operation)

    assert (provider.search_calls, provider.purchase_calls, provider.bought) == (1, 1, 1)
    assert provider.owned_calls == 1
    done = repo.operation(operation.operation_id)
    assert done.status is ProvisioningStatus.succeeded and done.phone_number == NUMBER
    assert [n.phone_number for n in repo.list_numbers(TENANT)] == [NUMBER]


def test_a_crash_while_acs_is_still_buying_is_retried_until_owned_never_bought_twice(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider(finish_purchases=False)
    provider.crash_after_purchase_starts = True
    with pytest.raises(Crash):
        run(provider, operation)

    # Retry: not owned yet, asking again gets ACS's 409 -> transient, the operation keeps running.
    with pytest.raises(PurchaseAlreadyStarted):
        run(provider, operation)
    still = repo.operation(operation.operation_id)
    assert (still.status, still.step, still.error) == (ProvisioningStatus.running, ProvisioningStep.purchasing, None)
    assert repo.list_numbers(TENANT) == []

    provider.finish("search-1")
    run(provider, operation)
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert provider.search_calls == 1 and provider.purchases == {"search-1": "succeeded"}
    assert provider.purchase_calls == 2  # the second ask was refused by ACS, nothing bought twice


def test_acs_409_on_purchase_is_transient_not_a_failure(repo, caplog, start, run):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start()
    provider = FakePhoneNumberProvider()
    provider.purchase_errors = [PurchaseAlreadyStarted("Azure Communication Services is already buying this number")]

    with pytest.raises(PurchaseAlreadyStarted):
        run(provider, operation)

    seen = repo.operation(operation.operation_id)
    assert seen.status is ProvisioningStatus.running and seen.error is None
    assert provider.owned_calls == 1  # looked before asking for a retry
    assert f"provisioning {operation.operation_id} will be retried: PurchaseAlreadyStarted" in log_text(caplog)


def test_acs_409_on_purchase_succeeds_when_the_number_is_already_owned(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider()
    provider.owned.add(NUMBER)  # the purchase went through; only its answer was lost
    provider.purchase_errors = [PurchaseAlreadyStarted("Azure Communication Services is already buying this number")]

    run(provider, operation)

    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert repo.get_number(TENANT, NUMBER) is not None and provider.purchase_calls == 1


def test_an_auth_outage_is_transient_and_the_retry_carries_on(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider()
    provider.search_errors = [UpstreamUnavailable(
        "Azure Communication Services could not be signed in to for the number search")]

    with pytest.raises(UpstreamUnavailable):
        run(provider, operation)
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running

    run(provider, operation)
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert (provider.search_calls, provider.purchase_calls) == (2, 1)


def test_a_definite_no_fails_the_operation_with_a_sentence_and_logs_no_numbers(repo, caplog, start, run):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start()
    provider = FakePhoneNumberProvider()
    provider.purchase_errors = [NumberNotAvailable("Azure Communication Services refused the number purchase")]

    run(provider, operation)  # handled: the message is done

    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed
    assert failed.error == (
        "The number could not be provisioned: Azure Communication Services refused the number purchase.")
    assert repo.list_numbers(TENANT) == []
    [record] = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert record.getMessage() == f"provisioning {operation.operation_id} failed: NumberNotAvailable"
    logged = log_text(caplog)
    assert NUMBER not in logged and NUMBER[2:] not in logged and "search-1" not in logged


def test_no_number_to_be_had_fails_the_operation(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider(numbers=())
    run(provider, operation)
    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed
    assert failed.error == "The number could not be provisioned: no toll-free number is available."
    assert provider.purchase_calls == 0


def test_a_programming_error_propagates_with_a_log_line_and_leaves_the_operation_running(repo, caplog, start, run):
    operation = start()
    provider = FakePhoneNumberProvider()
    provider.search_errors = [TypeError("search_toll_free() got an unexpected keyword argument")]

    with pytest.raises(TypeError):
        run(provider, operation)

    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"provisioning {operation.operation_id} stopped by an unexpected error: TypeError"


def test_a_lost_etag_race_is_retried_not_failed(repo, start, run):
    operation = start()
    provider = FakePhoneNumberProvider()
    # Another delivery of the same message moved the operation on under this worker's feet.
    provider.before_purchase = lambda _: repo.save_provisioning(
        repo.operation(operation.operation_id), repo.etag_of(operation.operation_id))

    with pytest.raises(ConcurrencyConflict):
        run(provider, operation)
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running


def test_a_stale_operation_that_never_started_buying_is_failed_not_bought(repo, run, stored_operation):
    operation = stored_operation(minutes_ago=20)
    provider = FakePhoneNumberProvider()
    run(provider, operation)
    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed and failed.error == sms_numbers.STALE
    assert (provider.search_calls, provider.purchase_calls) == (0, 0)


def test_a_stale_operation_whose_purchase_went_through_is_recorded(repo, run, stored_operation, clock):
    long_ago = clock.now() - timedelta(minutes=20)
    operation = stored_operation(minutes_ago=20, step=ProvisioningStep.purchasing, search_id="search-9",
                                 phone_number=NUMBER, purchase_started_at=long_ago)
    provider = FakePhoneNumberProvider()
    provider.owned.add(NUMBER)
    run(provider, operation)
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert repo.get_number(TENANT, NUMBER) is not None and provider.purchase_calls == 0


def test_of_two_racing_operations_only_the_earlier_one_buys(repo, run, stored_operation, clock):
    first = stored_operation(operation_id="bbbbbbbb")
    clock.advance(milliseconds=3)
    second = stored_operation(operation_id="aaaaaaaa")  # both got past the POST guard (a smaller id, later)
    provider = FakePhoneNumberProvider()

    run(provider, second)
    run(provider, first)

    assert repo.operation(second.operation_id).status is ProvisioningStatus.failed
    assert repo.operation(second.operation_id).error == sms_numbers.DUPLICATE
    assert repo.operation(first.operation_id).status is ProvisioningStatus.succeeded
    assert (provider.search_calls, provider.purchase_calls, provider.bought) == (1, 1, 1)


def test_a_finished_message_is_ignored(repo, run, stored_operation):
    operation = stored_operation(status=ProvisioningStatus.succeeded)
    provider = FakePhoneNumberProvider()
    run(provider, operation)
    assert (provider.search_calls, provider.purchase_calls, provider.owned_calls) == (0, 0, 0)


# --- starting -------------------------------------------------------------------------


def test_a_second_start_while_one_runs_is_a_409_naming_it(repo, start):
    queue = FakeQueue()
    first = start(queue)
    with pytest.raises(ProvisioningInProgress) as raised:
        start(queue)
    assert raised.value.operation_id == first.operation_id
    assert len(queue.sent) == 1 and len(repo.operations) == 1
    resp = error_response(raised.value)
    assert resp.status_code == 409
    body = json.loads(resp.get_body())
    assert body["error"] == "provisioning_in_progress" and body["operation_id"] == first.operation_id


def test_a_new_start_is_accepted_once_the_running_one_finished(repo, start, run):
    first = start()
    run(FakePhoneNumberProvider(), first)
    second = start()
    assert second.operation_id != first.operation_id
    assert [o.status for o in repo.list_provisioning(TENANT)] == [ProvisioningStatus.succeeded,
                                                                  ProvisioningStatus.running]


def test_a_stale_operation_does_not_block_a_new_start(start, stored_operation):
    stale = stored_operation(operation_id="stale0001", minutes_ago=20)
    fresh = start()
    assert fresh.operation_id != stale.operation_id and fresh.status is ProvisioningStatus.running


def test_a_queue_failure_marks_the_operation_failed_and_does_not_block_the_next(repo, caplog, start):
    with pytest.raises(StorageUnavailable):
        start(FakeQueue(error=StorageUnavailable("queue provision could not be written")))
    [operation] = repo.list_provisioning(TENANT)
    assert operation.status is ProvisioningStatus.failed
    assert operation.error == "Provisioning could not be queued. Try again."
    assert f"provisioning {operation.operation_id} could not be queued: StorageUnavailable" in log_text(caplog)

    queue = FakeQueue()
    retried = start(queue)
    assert [m.operation_id for m in queue.sent] == [retried.operation_id]


def test_an_overlong_or_odd_operation_id_is_not_found_without_reaching_storage(repo, clock):
    use_case = SmsNumbers(consenting_tenants(clock), repo, FakeEndpointRepository(), FakeQueue(), clock=clock)
    for operation_id in ("a" * 600, "../x", "abc", "a" * 8 + "\n"):
        with pytest.raises(NotFound):
            use_case.get_provisioning(TENANT, operation_id)
    assert repo.gets == []


def test_operation_ids_come_from_the_id_source_and_times_from_the_clock(repo, start, clock):
    queue = FakeQueue()
    operation = start(queue)
    assert operation.operation_id == "000000000000000000000001"  # FakeIdSource's first hex(12)
    assert operation.created_at == operation.updated_at == clock.now()
    assert queue.sent == [ProvisioningRequest(tenant_id=TENANT, operation_id=operation.operation_id)]
    assert repo.operation(operation.operation_id) == operation


def test_an_operation_nobody_moved_on_for_15_minutes_is_shown_failed(repo, start, clock):
    operation = start()
    use_case = SmsNumbers(consenting_tenants(clock), repo, FakeEndpointRepository(), FakeQueue(), clock=clock)
    clock.advance(sms_numbers.STALE_AFTER)
    assert use_case.get_provisioning(TENANT, operation.operation_id).status is ProvisioningStatus.running

    clock.advance(seconds=1)
    seen = use_case.get_provisioning(TENANT, operation.operation_id)
    assert (seen.status, seen.error) == (ProvisioningStatus.failed, sms_numbers.STALE)
    _, listed = use_case.list_numbers(TENANT)
    assert [(o.operation_id, o.status) for o in listed] == [(operation.operation_id, ProvisioningStatus.failed)]
    # Only shown so: the worker decides what is stored (and still finds it running).
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running


# --- linking --------------------------------------------------------------------------


ENDPOINT = "ep-00000001"


@pytest.fixture
def endpoints(clock):
    return FakeEndpointRepository(FhirEndpoint(
        tenant_id=TENANT, endpoint_id=ENDPOINT, base_url="https://fhir.example.org/r4/abc",
        environment=Environment.test, created_at=clock.now()))


def test_an_active_number_of_the_tenant_links_and_unlinks(repo, endpoints, clock):
    repo.record_number(PhoneNumber(tenant_id=TENANT, phone_number=NUMBER, acquired_at=clock.now()))
    use_case = SmsNumbers(consenting_tenants(clock), repo, endpoints, FakeQueue(), clock=clock)

    linked = use_case.link_number(TENANT, ENDPOINT, NUMBER, endpoints.get_endpoint(TENANT, ENDPOINT).etag)
    assert linked.item.linked_number == NUMBER and linked == endpoints.get_endpoint(TENANT, ENDPOINT)
    [view], _ = use_case.list_numbers(TENANT)
    assert (view.phone_number, view.linked_endpoint_ids) == (NUMBER, [ENDPOINT])

    unlinked = use_case.link_number(TENANT, ENDPOINT, None, linked.etag)
    assert unlinked.item.linked_number is None and unlinked.etag != linked.etag
    [view], _ = use_case.list_numbers(TENANT)
    assert view.linked_endpoint_ids == []


def test_linking_needs_both_consents_and_an_active_number_of_the_tenant(repo, endpoints, clock):
    repo.record_number(PhoneNumber(tenant_id=TENANT, phone_number=NUMBER, acquired_at=clock.now(),
                                   state=PhoneNumberState.released))
    before = endpoints.get_endpoint(TENANT, ENDPOINT)
    no_consent = FakeTenantRepository(Tenant(tenant_id=TENANT, region="us", created_at=clock.now()))
    with pytest.raises(UnprocessableInput) as raised:
        SmsNumbers(no_consent, repo, endpoints, FakeQueue(), clock=clock).link_number(
            TENANT, ENDPOINT, NUMBER, before.etag)
    assert [p.field for p in raised.value.problems] == ["terms", "data"]

    use_case = SmsNumbers(consenting_tenants(clock), repo, endpoints, FakeQueue(), clock=clock)
    for number in (NUMBER, "+18005550199"):  # released; never ours
        with pytest.raises(UnprocessableInput) as raised:
            use_case.link_number(TENANT, ENDPOINT, number, before.etag)
        assert [p.field for p in raised.value.problems] == ["phone_number"]
    assert endpoints.get_endpoint(TENANT, ENDPOINT) == before


def test_a_stale_etag_on_link_is_a_concurrency_conflict(repo, endpoints, clock):
    repo.record_number(PhoneNumber(tenant_id=TENANT, phone_number=NUMBER, acquired_at=clock.now()))
    use_case = SmsNumbers(consenting_tenants(clock), repo, endpoints, FakeQueue(), clock=clock)
    old = endpoints.get_endpoint(TENANT, ENDPOINT).etag
    use_case.link_number(TENANT, ENDPOINT, NUMBER, old)
    with pytest.raises(ConcurrencyConflict) as raised:
        use_case.link_number(TENANT, ENDPOINT, None, old)
    assert error_response(raised.value).status_code == 409  # as a stale change of the endpoint is
    assert endpoints.get_endpoint(TENANT, ENDPOINT).item.linked_number == NUMBER


@pytest.mark.parametrize("number", [NUMBER, None], ids=["link", "unlink"])
def test_link_and_unlink_need_if_match_as_endpoint_changes_do(repo, endpoints, clock, number):
    """No fallback to the stored ETag: a portal that read the endpoint before someone else changed
    it must not overwrite that change without knowing."""
    repo.record_number(PhoneNumber(tenant_id=TENANT, phone_number=NUMBER, acquired_at=clock.now()))
    use_case = SmsNumbers(consenting_tenants(clock), repo, endpoints, FakeQueue(), clock=clock)
    before = endpoints.get_endpoint(TENANT, ENDPOINT)
    with pytest.raises(PreconditionRequired) as raised:
        use_case.link_number(TENANT, ENDPOINT, number, None)
    assert error_response(raised.value).status_code == 428
    assert raised.value.problems == [Problem("If-Match", "is required")]
    with pytest.raises(InvalidInput) as raised:
        use_case.link_number(TENANT, ENDPOINT, number, "garbage")
    assert type(raised.value) is InvalidInput and error_response(raised.value).status_code == 400
    assert raised.value.problems == [Problem("If-Match", "is not an ETag this API gave out")]
    assert endpoints.get_endpoint(TENANT, ENDPOINT) == before and endpoints.writes == 1  # the seed's add only


def test_another_tenants_endpoint_is_not_found_before_if_match_is_asked_for(repo, endpoints, clock):
    use_case = SmsNumbers(consenting_tenants(clock), repo, endpoints, FakeQueue(), clock=clock)
    with pytest.raises(NotFound):
        use_case.link_number("99999999-2222-3333-4444-555555555555", ENDPOINT, None, None)


# --- the ACS adapter's answers --------------------------------------------------------


class FakePoller:
    def __init__(self, error=None, value=None):
        self._error, self._value = error, value

    def result(self):
        if self._error is not None:
            raise self._error
        return self._value


class FakePhoneNumbersClient:
    """The slice of azure-communication-phonenumbers' PhoneNumbersClient the adapter calls."""

    def __init__(self, error: Exception):
        self.error = error

    def begin_search_available_phone_numbers(self, *args, **kwargs):
        return FakePoller(self.error)

    def begin_purchase_phone_numbers(self, search_id, **kwargs):
        return FakePoller(self.error)

    def list_purchased_phone_numbers(self):
        raise self.error


def http_error(status: int, cls=HttpResponseError) -> HttpResponseError:
    error = cls(message=f"status {status}")
    error.status_code = status
    return error


def lro_failed() -> HttpResponseError:
    """What azure-core raises when the long-running operation ends ``failed`` (polled with 200)."""
    try:
        try:
            raise OperationFailed("Operation failed or canceled")
        except OperationFailed as cause:
            raise http_error(200) from cause
    except HttpResponseError as error:
        return error


@pytest.mark.parametrize(("error", "expected"), [
    (ClientAuthenticationError("ManagedIdentityCredential: no response from the IMDS endpoint"), UpstreamUnavailable),
    (http_error(401, ClientAuthenticationError), UpstreamUnavailable),
    (http_error(403), UpstreamUnavailable),
    (http_error(429), UpstreamUnavailable),
    (http_error(503), UpstreamUnavailable),
    (ServiceRequestError("connection refused"), UpstreamUnavailable),
    (http_error(409, ResourceExistsError), PurchaseAlreadyStarted),
    (http_error(400), NumberNotAvailable),
    (http_error(404, ResourceNotFoundError), NumberNotAvailable),
    (lro_failed(), NumberNotAvailable),
])
def test_purchase_errors_are_transient_unless_acs_said_no(error, expected):
    with pytest.raises(expected) as raised:
        AcsPhoneNumbers(FakePhoneNumbersClient(error)).purchase("search-1")
    assert type(raised.value) is expected


@pytest.mark.parametrize(("error", "expected"), [
    (ClientAuthenticationError("DefaultAzureCredential failed to retrieve a token"), UpstreamUnavailable),
    (http_error(409, ResourceExistsError), NumberNotAvailable),  # only a purchase's 409 means "already buying"
    (lro_failed(), NumberNotAvailable),
])
def test_search_errors_are_transient_unless_acs_said_no(error, expected):
    with pytest.raises(expected) as raised:
        AcsPhoneNumbers(FakePhoneNumbersClient(error)).search_toll_free("US")
    assert type(raised.value) is expected


def test_listing_owned_numbers_through_an_auth_outage_is_transient():
    with pytest.raises(UpstreamUnavailable) as raised:
        AcsPhoneNumbers(FakePhoneNumbersClient(ClientAuthenticationError("token expired"))).owned_numbers()
    assert type(raised.value) is UpstreamUnavailable and "signed in" in raised.value.message
