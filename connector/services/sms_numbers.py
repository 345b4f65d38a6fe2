"""SMS numbers: provision a toll-free number (long-running), list them, link them to endpoints.

Provisioning is split like the rest of the product: the HTTP call records an operation and
enqueues it (answering 202 at once); the queue worker drives ACS's search and purchase and
records each step, so the portal can poll the operation and show progress. :class:`SmsNumbers`
is the HTTP side, :class:`NumberProvisioningWorker` the queue side; both take time from a
:class:`~connector.services.ports.Clock`.

Numbers are scarce (ACS sells a few a week) and cost money, so a tenant provisions one at a
time (a second request while one runs is a 409 naming it), a retry never buys twice, and
only a definite "no" from ACS fails an operation: everything else is retried.
"""

from __future__ import annotations

import logging
import re
from datetime import datetime, timedelta
from typing import Protocol

from pydantic import BaseModel

from connector.domain.endpoint import FhirEndpoint
from connector.domain.phone_number import (
    OPERATION_ID, NumberProvisioning, PhoneNumber, PhoneNumberState, ProvisioningStatus, ProvisioningStep,
)
from connector.errors import (
    ConcurrencyConflict, Conflict, ConnectorError, NotFound, Problem, UnprocessableInput, UpstreamError,
    UpstreamUnavailable,
)
from connector.services.admin_setup import require_sms_consents, required_etag, stored_endpoint, stored_tenant
from connector.services.ports import (
    Clock, EndpointRepository, IdSource, PhoneNumberRepository, Queue, SecretsIdSource, SystemClock,
    TenantRepository, Versioned,
)

# A worker that has not moved an operation on for this long has given up (poisoned message).
STALE_AFTER = timedelta(minutes=15)
OPERATION_ID_RE = re.compile(OPERATION_ID)

# Ids and outcomes only: never a phone number, never an exception's message.
log = logging.getLogger("connector.provisioning")


class FoundNumbers(Protocol):
    """A search's result: ACS holds ``phone_numbers`` under ``search_id`` until it is bought."""

    @property
    def search_id(self) -> str: ...
    @property
    def phone_numbers(self) -> tuple[str, ...]: ...


class PhoneNumberProvider(Protocol):
    """ACS phone numbers. Errors: ``UpstreamUnavailable`` (and subclasses) for "not now", which
    includes a 409 on purchasing a search that is already being bought; any other
    ``UpstreamError`` for a definite "no"."""

    def search_toll_free(self, country_code: str) -> FoundNumbers: ...
    def purchase(self, search_id: str) -> None: ...
    def owned_numbers(self) -> set[str]: ...


class ProvisioningRequest(BaseModel):
    """The queue message: ids only."""

    tenant_id: str
    operation_id: str


class ProvisioningInProgress(Conflict):
    """A number is already being provisioned for the tenant: follow that operation instead
    (its id is in the body), so a double click never buys two numbers."""

    code = "provisioning_in_progress"

    def __init__(self, operation_id: str):
        super().__init__(
            "a number is already being provisioned for this tenant; follow that operation until it finishes")
        self.operation_id = operation_id

    def as_dict(self) -> dict:
        return {**super().as_dict(), "operation_id": self.operation_id}


NOT_QUEUED = "Provisioning could not be queued. Try again."
STALE = "Provisioning did not finish in time. Start it again."
DUPLICATE = "Another number was already being provisioned for this organisation; follow that operation instead."


class NumberView(BaseModel):
    phone_number: str
    state: PhoneNumberState
    acquired_at: datetime
    linked_endpoint_ids: list[str]


# -- rules both sides share (pure: the moment is passed in) ---------------------------------


def _as_seen(operation: NumberProvisioning, now: datetime) -> NumberProvisioning:
    if not operation.finished and now - operation.updated_at > STALE_AFTER:
        return operation.model_copy(update={"status": ProvisioningStatus.failed, "error": STALE})
    return operation


def _running(operation: NumberProvisioning, now: datetime) -> bool:
    return not _as_seen(operation, now).finished


def _mark_failed(numbers: PhoneNumberRepository, operation: NumberProvisioning, etag: str, error: str,
                 now: datetime) -> None:
    numbers.save_provisioning(operation.model_copy(update={
        "status": ProvisioningStatus.failed, "error": error, "updated_at": now}), etag)


def _order(operation: NumberProvisioning) -> tuple[datetime, str]:
    return operation.created_at, operation.operation_id


# -- the admin's side: start, follow, list, link ------------------------------------------------


class SmsNumbers:
    """The admin API's number use cases, bound to the stamp's tenants, numbers, endpoints and
    provisioning queue."""

    def __init__(
        self, tenants: TenantRepository, numbers: PhoneNumberRepository, endpoints: EndpointRepository,
        queue: Queue, *, clock: Clock = SystemClock(), ids: IdSource = SecretsIdSource(),
    ):
        self._tenants = tenants
        self._numbers = numbers
        self._endpoints = endpoints
        self._queue = queue
        self._clock = clock
        self._ids = ids

    def start_provisioning(self, tenant_id: str, country_code: str) -> NumberProvisioning:
        """Record a new operation and enqueue it. :class:`ProvisioningInProgress` while another
        operation of the tenant is running (not finished and not stale)."""
        tenant = stored_tenant(self._tenants, tenant_id).item
        require_sms_consents(tenant)
        now = self._clock.now()
        running = [op for op in self._numbers.list_provisioning(tenant_id) if _running(op, now)]
        if running:
            raise ProvisioningInProgress(running[-1].operation_id)
        operation = NumberProvisioning(
            tenant_id=tenant_id, operation_id=self._ids.hex(12), country_code=country_code,
            created_at=now, updated_at=now,
        )
        etag = self._numbers.start_provisioning(operation)
        try:
            self._queue.send(ProvisioningRequest(tenant_id=tenant_id, operation_id=operation.operation_id))
        except Exception as exc:
            # Without a message no worker will ever move it on: say so now, not in 15 minutes,
            # and do not let it block the next attempt.
            log.warning("provisioning %s could not be queued: %s", operation.operation_id, type(exc).__name__)
            try:
                _mark_failed(self._numbers, operation, etag, NOT_QUEUED, self._clock.now())
            except ConnectorError as save_error:  # storage is likely down too: the send error is the news
                log.warning("provisioning %s could not be marked failed: %s",
                            operation.operation_id, type(save_error).__name__)
            raise
        return operation

    def get_provisioning(self, tenant_id: str, operation_id: str) -> NumberProvisioning:
        stored = (self._numbers.get_provisioning(tenant_id, operation_id)
                  if OPERATION_ID_RE.fullmatch(operation_id) else None)
        if stored is None:
            raise NotFound("no such operation")
        return _as_seen(stored.item, self._clock.now())

    def list_numbers(self, tenant_id: str) -> tuple[list[NumberView], list[NumberProvisioning]]:
        linked: dict[str, list[str]] = {}
        for stored in self._endpoints.list_endpoints(tenant_id):
            if stored.item.linked_number:
                linked.setdefault(stored.item.linked_number, []).append(stored.item.endpoint_id)
        views = [
            NumberView(phone_number=n.phone_number, state=n.state, acquired_at=n.acquired_at,
                       linked_endpoint_ids=linked.get(n.phone_number, []))
            for n in self._numbers.list_numbers(tenant_id)
        ]
        now = self._clock.now()
        return views, [_as_seen(op, now) for op in self._numbers.list_provisioning(tenant_id)]

    def link_number(self, tenant_id: str, endpoint_id: str, phone_number: str | None,
                    if_match: str | None) -> Versioned[FhirEndpoint]:
        """Link ``phone_number`` to the endpoint (None unlinks). Only an active number of the
        tenant's own, and only with both SMS consents. Like any change of an endpoint it needs
        the ETag the admin read it with (:func:`required_etag`: 428 without it), and a stale one
        is a :class:`ConcurrencyConflict`, never a silent overwrite of a newer change."""
        stored = stored_endpoint(self._endpoints, tenant_id, endpoint_id)  # another tenant's: 404 first
        etag = required_etag(if_match)
        if phone_number is not None:
            require_sms_consents(stored_tenant(self._tenants, tenant_id).item)
            number = self._numbers.get_number(tenant_id, phone_number)
            if number is None or number.state is not PhoneNumberState.active:
                raise UnprocessableInput(
                    "that number is not one of this tenant's active numbers",
                    problems=[Problem("phone_number", "is not an active number of this tenant")])
        endpoint: FhirEndpoint = stored.item.model_copy(update={"linked_number": phone_number})
        self._endpoints.save_endpoint(endpoint, etag)
        return self._endpoints.get_endpoint(tenant_id, endpoint_id)


# -- the queue worker's side ------------------------------------------------------------------


class NumberProvisioningWorker:
    """Drives one operation through ACS's search and purchase, recording each step."""

    def __init__(self, numbers: PhoneNumberRepository, provider: PhoneNumberProvider, *,
                 clock: Clock = SystemClock()):
        self._numbers = numbers
        self._provider = provider
        self._clock = clock

    def _ahead_of(self, operation: NumberProvisioning, now: datetime) -> str | None:
        """The id of an earlier operation of the tenant that this one must not race.

        The POST guard reads before it writes, so two requests a few milliseconds apart can both
        get through; this is the second line. Of operations that overlapped, only the earliest
        (by creation time, then id) buys: a later one yields to an earlier one still running,
        or to one that succeeded after the later one was created."""
        for other in self._numbers.list_provisioning(operation.tenant_id):
            if other.operation_id == operation.operation_id or _order(other) >= _order(operation):
                continue
            if _running(other, now):
                return other.operation_id
            if other.status is ProvisioningStatus.succeeded and other.updated_at >= operation.created_at:
                return other.operation_id
        return None

    def _owned(self, operation: NumberProvisioning) -> bool:
        return operation.phone_number in self._provider.owned_numbers()

    def _purchase(self, operation: NumberProvisioning) -> None:
        try:
            self._provider.purchase(operation.search_id)
        except UpstreamUnavailable:
            # "Not now" may hide a purchase that went through (a 409 because it is already
            # bought, an answer lost on the way back): look before asking the queue to retry.
            if self._owned(operation):
                return
            raise

    def run(self, request: ProvisioningRequest) -> None:
        """Search, then purchase, recording each step. Safe to run again after a crash: a
        recorded search is not repeated, and once a purchase was started a retry first looks
        whether ACS owns the number; ACS itself buys a search at most once (409 on a repeat).

        Outcomes: a definite "no" from ACS (or no number to be had) marks the operation failed;
        "not now" (``UpstreamUnavailable``, storage included, or a lost ETag race) and anything
        unexpected propagate, so the host retries the message and finally parks it in the poison
        queue.
        """
        numbers, clock = self._numbers, self._clock
        stored = numbers.get_provisioning(request.tenant_id, request.operation_id)
        if stored is None or stored.item.finished:
            return
        operation, etag = stored.item, stored.etag
        op_id, now = operation.operation_id, clock.now()
        try:
            if operation.purchase_started_at is None:
                if _as_seen(operation, now).finished:
                    # Nothing bought and the portal already shows it failed (a newer operation may
                    # be running by now): do not start buying.
                    log.warning("provisioning %s failed: stale", op_id)
                    _mark_failed(numbers, operation, etag, STALE, clock.now())
                    return
                resumed = operation.search_id is not None
                if not resumed:
                    ahead = self._ahead_of(operation, now)
                    if ahead is not None:
                        log.warning("provisioning %s failed: operation %s was already running", op_id, ahead)
                        _mark_failed(numbers, operation, etag, DUPLICATE, clock.now())
                        return
                    found = self._provider.search_toll_free(operation.country_code)
                    if not found.phone_numbers:
                        raise UnprocessableInput("no toll-free number is available")
                    operation = operation.model_copy(update={
                        "step": ProvisioningStep.purchasing, "search_id": found.search_id,
                        "phone_number": found.phone_numbers[0], "updated_at": clock.now()})
                    etag = numbers.save_provisioning(operation, etag)
                # Recorded before ACS is asked: from here on a retry looks before it buys.
                started = clock.now()
                operation = operation.model_copy(update={"purchase_started_at": started, "updated_at": started})
                etag = numbers.save_provisioning(operation, etag)
                if not (resumed and self._owned(operation)):
                    self._purchase(operation)
            elif not self._owned(operation):
                if _as_seen(operation, now).finished:
                    # Given up on and ACS does not own the number: do not buy it now.
                    log.warning("provisioning %s failed: stale", op_id)
                    _mark_failed(numbers, operation, etag, STALE, clock.now())
                    return
                # Asked for before and maybe still running, or lost on the way: asking again is
                # safe (ACS answers 409 for a search it is buying or has bought).
                self._purchase(operation)
        except (UpstreamUnavailable, ConcurrencyConflict) as exc:
            log.info("provisioning %s will be retried: %s", op_id, type(exc).__name__)
            raise
        except (UpstreamError, UnprocessableInput) as exc:  # a definite no: final, shown to the admin
            log.warning("provisioning %s failed: %s", op_id, type(exc).__name__)
            _mark_failed(numbers, operation, etag, f"The number could not be provisioned: {exc.message}.",
                         clock.now())
            return
        except Exception as exc:
            log.error("provisioning %s stopped by an unexpected error: %s", op_id, type(exc).__name__)
            raise
        numbers.record_number(PhoneNumber(
            tenant_id=operation.tenant_id, phone_number=operation.phone_number,
            acquired_at=clock.now(), operation_id=op_id))
        numbers.save_provisioning(operation.model_copy(update={
            "status": ProvisioningStatus.succeeded, "step": ProvisioningStep.done, "updated_at": clock.now()}), etag)
        log.info("provisioning %s succeeded", op_id)
