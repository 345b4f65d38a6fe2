"""Toll-free number provisioning: one at a time per tenant, never bought twice, and only a
definite "no" from ACS fails an operation (everything else is retried by the queue).

The use cases run against in-memory fakes of their ports; the ACS adapter's error mapping
runs against a fake of the SDK client (no network, and never the real, scarce, service).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import pytest
from azure.core.exceptions import (
    ClientAuthenticationError, HttpResponseError, ResourceExistsError, ResourceNotFoundError, ServiceRequestError,
)
from azure.core.polling.base_polling import OperationFailed

from connector.adapters.acs.phone_numbers import (
    AcsPhoneNumbers, NumberNotAvailable, PurchaseAlreadyStarted, SearchedNumbers,
)
from connector.adapters.storage.tables import StorageUnavailable
from connector.domain.phone_number import NumberProvisioning, PhoneNumber, ProvisioningStatus, ProvisioningStep
from connector.domain.tenant import Consent, Tenant
from connector.errors import ConcurrencyConflict, Conflict, NotFound, UpstreamUnavailable
from connector.functions.http import error_response
from connector.services import sms_numbers
from connector.services.sms_numbers import ProvisioningInProgress, ProvisioningRequest, run_provisioning

TENANT = "11111111-2222-3333-4444-555555555555"
ADMIN_OID = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
NUMBER = "+18005550100"
LOGGER = "connector.provisioning"


# --- fakes of the ports --------------------------------------------------------------


@dataclass(frozen=True)
class Stored:
    item: object
    etag: str


class FakeTenantRepository:
    def __init__(self, consented: bool = True):
        now = datetime.now(timezone.utc)
        consent = Consent(by_oid=ADMIN_OID, at=now) if consented else None
        self.tenant = Tenant(tenant_id=TENANT, region="us", created_at=now,
                             sms_terms_consent=consent, sms_data_consent=consent)

    def get_tenant(self, tenant_id):
        return Stored(self.tenant, "t1") if tenant_id == TENANT else None


class FakePhoneNumberRepository:
    """Operations with ETags (a save with an old one is a ConcurrencyConflict), numbers by E.164."""

    def __init__(self):
        self.operations: dict[tuple[str, str], Stored] = {}
        self.numbers: dict[tuple[str, str], PhoneNumber] = {}
        self.gets: list[str] = []
        self._version = 0

    def _etag(self) -> str:
        self._version += 1
        return f"e{self._version}"

    def list_numbers(self, tenant_id):
        return [n for (t, _), n in sorted(self.numbers.items()) if t == tenant_id]

    def get_number(self, tenant_id, phone_number):
        return self.numbers.get((tenant_id, phone_number))

    def record_number(self, number):
        self.numbers[(number.tenant_id, number.phone_number)] = number

    def start_provisioning(self, operation):
        key = (operation.tenant_id, operation.operation_id)
        if key in self.operations:
            raise Conflict("NumberProvisioning already exists")
        etag = self._etag()
        self.operations[key] = Stored(operation, etag)
        return etag

    def get_provisioning(self, tenant_id, operation_id):
        self.gets.append(operation_id)
        return self.operations.get((tenant_id, operation_id))

    def list_provisioning(self, tenant_id):
        return sorted((s.item for (t, _), s in self.operations.items() if t == tenant_id), key=lambda o: o.created_at)

    def save_provisioning(self, operation, etag):
        key = (operation.tenant_id, operation.operation_id)
        if key not in self.operations or self.operations[key].etag != etag:
            raise ConcurrencyConflict("NumberProvisioning changed or vanished since it was read; read it again")
        new = self._etag()
        self.operations[key] = Stored(operation, new)
        return new

    # for the tests
    def operation(self, operation_id) -> NumberProvisioning:
        return self.operations[(TENANT, operation_id)].item


class Crash(BaseException):
    """The worker process dying mid-call (not an Exception: nothing in the code may catch it)."""


class FakePhoneNumberProvider:
    """ACS as the use case sees it: searches hold one number each; a search is bought at most
    once (asked again: 409, PurchaseAlreadyStarted); a purchase may finish at once or later."""

    def __init__(self, numbers=(NUMBER,), *, finish_purchases=True):
        self.available = list(numbers)
        self.finish_purchases = finish_purchases
        self.searches: dict[str, str] = {}  # search id -> number
        self.purchases: dict[str, str] = {}  # search id -> "running" | "succeeded"
        self.owned: set[str] = set()
        self.search_calls = 0
        self.purchase_calls = 0
        self.owned_calls = 0
        self.search_errors: list[BaseException] = []
        self.purchase_errors: list[BaseException] = []
        self.crash_after_purchase_starts = False
        self.before_purchase = None  # called with the search id before ACS is asked

    def search_toll_free(self, country_code):
        self.search_calls += 1
        if self.search_errors:
            raise self.search_errors.pop(0)
        search_id = f"search-{self.search_calls}"
        found = tuple(self.available[:1])
        self.searches[search_id] = found[0] if found else ""
        return SearchedNumbers(search_id, found)

    def purchase(self, search_id):
        self.purchase_calls += 1
        if self.before_purchase:
            self.before_purchase(search_id)
        if self.purchase_errors:
            raise self.purchase_errors.pop(0)
        if search_id in self.purchases:
            raise PurchaseAlreadyStarted("Azure Communication Services is already buying this number")
        self.purchases[search_id] = "running"
        if self.crash_after_purchase_starts:
            self.crash_after_purchase_starts = False
            raise Crash()
        if self.finish_purchases:
            self.finish(search_id)

    def finish(self, search_id):
        """ACS completes a purchase it accepted (in the background, whether anyone polls or not)."""
        self.purchases[search_id] = "succeeded"
        self.owned.add(self.searches[search_id])

    def owned_numbers(self):
        self.owned_calls += 1
        return set(self.owned)

    @property
    def bought(self) -> int:
        return sum(1 for state in self.purchases.values() if state == "succeeded")


class FakeQueue:
    def __init__(self, error: Exception | None = None):
        self.error = error
        self.sent: list = []

    def send(self, message):
        if self.error is not None:
            raise self.error
        self.sent.append(message)
        return f"m{len(self.sent)}"


# --- helpers --------------------------------------------------------------------------


@pytest.fixture
def repo():
    return FakePhoneNumberRepository()


def start(repo, queue=None) -> NumberProvisioning:
    return sms_numbers.start_provisioning(FakeTenantRepository(), repo, queue or FakeQueue(), TENANT, "US")


def request_for(operation: NumberProvisioning) -> ProvisioningRequest:
    return ProvisioningRequest(tenant_id=operation.tenant_id, operation_id=operation.operation_id)


def stored_operation(repo, *, operation_id="op00000001", minutes_ago=0, **fields) -> NumberProvisioning:
    when = datetime.now(timezone.utc) - timedelta(minutes=minutes_ago)
    operation = NumberProvisioning(tenant_id=TENANT, operation_id=operation_id, country_code="US",
                                   created_at=when, updated_at=when, **fields)
    repo.start_provisioning(operation)
    return operation


def log_text(caplog) -> str:
    return "\n".join(r.getMessage() for r in caplog.records if r.name == LOGGER)


# --- the worker -----------------------------------------------------------------------


def test_happy_path_searches_records_the_purchase_start_then_buys_once(repo, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    seen_at_purchase = []
    provider.before_purchase = lambda search_id: seen_at_purchase.append(repo.operation(operation.operation_id))

    run_provisioning(repo, provider, request_for(operation))

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


def test_a_crash_after_the_purchase_started_is_not_bought_again_when_acs_owns_the_number(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider(finish_purchases=False)
    provider.crash_after_purchase_starts = True
    with pytest.raises(Crash):
        run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).purchase_started_at is not None
    provider.finish("search-1")  # ACS finished the purchase while no worker was listening

    run_provisioning(repo, provider, request_for(operation))

    assert (provider.search_calls, provider.purchase_calls, provider.bought) == (1, 1, 1)
    assert provider.owned_calls == 1
    done = repo.operation(operation.operation_id)
    assert done.status is ProvisioningStatus.succeeded and done.phone_number == NUMBER
    assert [n.phone_number for n in repo.list_numbers(TENANT)] == [NUMBER]


def test_a_crash_while_acs_is_still_buying_is_retried_until_owned_never_bought_twice(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider(finish_purchases=False)
    provider.crash_after_purchase_starts = True
    with pytest.raises(Crash):
        run_provisioning(repo, provider, request_for(operation))

    # Retry: not owned yet, asking again gets ACS's 409 -> transient, the operation keeps running.
    with pytest.raises(PurchaseAlreadyStarted):
        run_provisioning(repo, provider, request_for(operation))
    still = repo.operation(operation.operation_id)
    assert (still.status, still.step, still.error) == (ProvisioningStatus.running, ProvisioningStep.purchasing, None)
    assert repo.list_numbers(TENANT) == []

    provider.finish("search-1")
    run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert provider.search_calls == 1 and provider.purchases == {"search-1": "succeeded"}
    assert provider.purchase_calls == 2  # the second ask was refused by ACS, nothing bought twice


def test_acs_409_on_purchase_is_transient_not_a_failure(repo, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    provider.purchase_errors = [PurchaseAlreadyStarted("Azure Communication Services is already buying this number")]

    with pytest.raises(PurchaseAlreadyStarted):
        run_provisioning(repo, provider, request_for(operation))

    seen = repo.operation(operation.operation_id)
    assert seen.status is ProvisioningStatus.running and seen.error is None
    assert provider.owned_calls == 1  # looked before asking for a retry
    assert f"provisioning {operation.operation_id} will be retried: PurchaseAlreadyStarted" in log_text(caplog)


def test_acs_409_on_purchase_succeeds_when_the_number_is_already_owned(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    provider.owned.add(NUMBER)  # the purchase went through; only its answer was lost
    provider.purchase_errors = [PurchaseAlreadyStarted("Azure Communication Services is already buying this number")]

    run_provisioning(repo, provider, request_for(operation))

    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert repo.get_number(TENANT, NUMBER) is not None and provider.purchase_calls == 1


def test_an_auth_outage_is_transient_and_the_retry_carries_on(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    provider.search_errors = [UpstreamUnavailable(
        "Azure Communication Services could not be signed in to for the number search")]

    with pytest.raises(UpstreamUnavailable):
        run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running

    run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert (provider.search_calls, provider.purchase_calls) == (2, 1)


def test_a_definite_no_fails_the_operation_with_a_sentence_and_logs_no_numbers(repo, caplog):
    caplog.set_level(logging.INFO, logger=LOGGER)
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    provider.purchase_errors = [NumberNotAvailable("Azure Communication Services refused the number purchase")]

    run_provisioning(repo, provider, request_for(operation))  # handled: the message is done

    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed
    assert failed.error == (
        "The number could not be provisioned: Azure Communication Services refused the number purchase.")
    assert repo.list_numbers(TENANT) == []
    [record] = [r for r in caplog.records if r.name == LOGGER and r.levelno == logging.WARNING]
    assert record.getMessage() == f"provisioning {operation.operation_id} failed: NumberNotAvailable"
    logged = log_text(caplog)
    assert NUMBER not in logged and NUMBER[2:] not in logged and "search-1" not in logged


def test_no_number_to_be_had_fails_the_operation(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider(numbers=())
    run_provisioning(repo, provider, request_for(operation))
    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed
    assert failed.error == "The number could not be provisioned: no toll-free number is available."
    assert provider.purchase_calls == 0


def test_a_programming_error_propagates_with_a_log_line_and_leaves_the_operation_running(repo, caplog):
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    provider.search_errors = [TypeError("search_toll_free() got an unexpected keyword argument")]

    with pytest.raises(TypeError):
        run_provisioning(repo, provider, request_for(operation))

    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running
    [record] = [r for r in caplog.records if r.name == LOGGER]
    assert record.levelno == logging.ERROR
    assert record.getMessage() == f"provisioning {operation.operation_id} stopped by an unexpected error: TypeError"


def test_a_lost_etag_race_is_retried_not_failed(repo):
    operation = start(repo)
    provider = FakePhoneNumberProvider()
    # Another delivery of the same message moved the operation on under this worker's feet.
    provider.before_purchase = lambda _: repo.save_provisioning(
        repo.operation(operation.operation_id), repo.operations[(TENANT, operation.operation_id)].etag)

    with pytest.raises(ConcurrencyConflict):
        run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.running


def test_a_stale_operation_that_never_started_buying_is_failed_not_bought(repo):
    operation = stored_operation(repo, minutes_ago=20)
    provider = FakePhoneNumberProvider()
    run_provisioning(repo, provider, request_for(operation))
    failed = repo.operation(operation.operation_id)
    assert failed.status is ProvisioningStatus.failed and failed.error == sms_numbers.STALE
    assert (provider.search_calls, provider.purchase_calls) == (0, 0)


def test_a_stale_operation_whose_purchase_went_through_is_recorded(repo):
    long_ago = datetime.now(timezone.utc) - timedelta(minutes=20)
    operation = stored_operation(repo, minutes_ago=20, step=ProvisioningStep.purchasing, search_id="search-9",
                                 phone_number=NUMBER, purchase_started_at=long_ago)
    provider = FakePhoneNumberProvider()
    provider.owned.add(NUMBER)
    run_provisioning(repo, provider, request_for(operation))
    assert repo.operation(operation.operation_id).status is ProvisioningStatus.succeeded
    assert repo.get_number(TENANT, NUMBER) is not None and provider.purchase_calls == 0


def test_of_two_racing_operations_only_the_earlier_one_buys(repo):
    first = stored_operation(repo, operation_id="aaaaaaaa")
    second = stored_operation(repo, operation_id="bbbbbbbb")  # both got past the POST guard
    provider = FakePhoneNumberProvider()

    run_provisioning(repo, provider, request_for(second))
    run_provisioning(repo, provider, request_for(first))

    assert repo.operation("bbbbbbbb").status is ProvisioningStatus.failed
    assert repo.operation("bbbbbbbb").error == sms_numbers.DUPLICATE
    assert repo.operation("aaaaaaaa").status is ProvisioningStatus.succeeded
    assert (provider.search_calls, provider.purchase_calls, provider.bought) == (1, 1, 1)


def test_a_finished_message_is_ignored(repo):
    operation = stored_operation(repo, status=ProvisioningStatus.succeeded)
    provider = FakePhoneNumberProvider()
    run_provisioning(repo, provider, request_for(operation))
    assert (provider.search_calls, provider.purchase_calls, provider.owned_calls) == (0, 0, 0)


# --- starting -------------------------------------------------------------------------


def test_a_second_start_while_one_runs_is_a_409_naming_it(repo):
    queue = FakeQueue()
    first = start(repo, queue)
    with pytest.raises(ProvisioningInProgress) as raised:
        start(repo, queue)
    assert raised.value.operation_id == first.operation_id
    assert len(queue.sent) == 1 and len(repo.operations) == 1
    resp = error_response(raised.value)
    assert resp.status_code == 409
    body = json.loads(resp.get_body())
    assert body["error"] == "provisioning_in_progress" and body["operation_id"] == first.operation_id


def test_a_new_start_is_accepted_once_the_running_one_finished(repo):
    first = start(repo)
    run_provisioning(repo, FakePhoneNumberProvider(), request_for(first))
    second = start(repo)
    assert second.operation_id != first.operation_id
    assert [o.status for o in repo.list_provisioning(TENANT)] == [ProvisioningStatus.succeeded,
                                                                  ProvisioningStatus.running]


def test_a_stale_operation_does_not_block_a_new_start(repo):
    stale = stored_operation(repo, operation_id="stale0001", minutes_ago=20)
    fresh = start(repo)
    assert fresh.operation_id != stale.operation_id and fresh.status is ProvisioningStatus.running


def test_a_queue_failure_marks_the_operation_failed_and_does_not_block_the_next(repo, caplog):
    with pytest.raises(StorageUnavailable):
        start(repo, FakeQueue(error=StorageUnavailable("queue provision could not be written")))
    [operation] = repo.list_provisioning(TENANT)
    assert operation.status is ProvisioningStatus.failed
    assert operation.error == "Provisioning could not be queued. Try again."
    assert f"provisioning {operation.operation_id} could not be queued: StorageUnavailable" in log_text(caplog)

    queue = FakeQueue()
    retried = start(repo, queue)
    assert [m.operation_id for m in queue.sent] == [retried.operation_id]


def test_an_overlong_or_odd_operation_id_is_not_found_without_reaching_storage(repo):
    for operation_id in ("a" * 600, "../x", "abc", "a" * 8 + "\n"):
        with pytest.raises(NotFound):
            sms_numbers.get_provisioning(repo, TENANT, operation_id)
    assert repo.gets == []


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
