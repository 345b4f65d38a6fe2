"""SMS numbers: provision a toll-free number (long-running), list them, link them to endpoints.

Provisioning is split like the rest of the product: the HTTP call records an operation and
enqueues it (answering 202 at once); the queue worker drives ACS's search and purchase and
records each step, so the portal can poll the operation and show progress.
"""

from __future__ import annotations

import secrets
from datetime import datetime, timedelta, timezone
from typing import Protocol

from pydantic import BaseModel

from connector.domain.endpoint import FhirEndpoint
from connector.domain.phone_number import (
    NumberProvisioning, PhoneNumber, PhoneNumberState, ProvisioningStatus, ProvisioningStep,
)
from connector.errors import NotFound, Problem, UnprocessableInput, UpstreamUnavailable
from connector.services import admin_setup

# A worker that has not moved an operation on for this long has given up (poisoned message).
STALE_AFTER = timedelta(minutes=15)


class PhoneNumberRepository(Protocol):
    def list_numbers(self, tenant_id: str) -> list[PhoneNumber]: ...
    def get_number(self, tenant_id: str, phone_number: str) -> PhoneNumber | None: ...
    def record_number(self, number: PhoneNumber) -> None: ...
    def start_provisioning(self, operation: NumberProvisioning) -> None: ...
    def get_provisioning(self, tenant_id: str, operation_id: str): ...
    def list_provisioning(self, tenant_id: str) -> list[NumberProvisioning]: ...
    def save_provisioning(self, operation: NumberProvisioning, etag: str) -> str: ...


class PhoneNumberProvider(Protocol):
    def search_toll_free(self, country_code: str): ...
    def purchase(self, search_id: str) -> None: ...
    def owned_numbers(self) -> set[str]: ...


class Queue(Protocol):
    def send(self, message: BaseModel) -> str: ...


class ProvisioningRequest(BaseModel):
    """The queue message: ids only."""

    tenant_id: str
    operation_id: str


def _now() -> datetime:
    return datetime.now(timezone.utc)


def start_provisioning(tenants, numbers: PhoneNumberRepository, queue: Queue, tenant_id: str,
                       country_code: str) -> NumberProvisioning:
    tenant = admin_setup.get_tenant(tenants, tenant_id).item
    admin_setup.require_sms_consents(tenant)
    now = _now()
    operation = NumberProvisioning(
        tenant_id=tenant_id, operation_id=secrets.token_hex(12), country_code=country_code,
        created_at=now, updated_at=now,
    )
    numbers.start_provisioning(operation)
    queue.send(ProvisioningRequest(tenant_id=tenant_id, operation_id=operation.operation_id))
    return operation


def _as_seen(operation: NumberProvisioning, now: datetime) -> NumberProvisioning:
    if not operation.finished and now - operation.updated_at > STALE_AFTER:
        return operation.model_copy(update={
            "status": ProvisioningStatus.failed,
            "error": "Provisioning did not finish in time. Start it again.",
        })
    return operation


def get_provisioning(numbers: PhoneNumberRepository, tenant_id: str, operation_id: str) -> NumberProvisioning:
    stored = numbers.get_provisioning(tenant_id, operation_id) if operation_id.isalnum() else None
    if stored is None:
        raise NotFound("no such operation")
    return _as_seen(stored.item, _now())


class NumberView(BaseModel):
    phone_number: str
    state: PhoneNumberState
    acquired_at: datetime
    linked_endpoint_ids: list[str]


def list_numbers(numbers: PhoneNumberRepository, endpoints, tenant_id: str) -> tuple[list[NumberView], list[NumberProvisioning]]:
    linked: dict[str, list[str]] = {}
    for stored in endpoints.list_endpoints(tenant_id):
        if stored.item.linked_number:
            linked.setdefault(stored.item.linked_number, []).append(stored.item.endpoint_id)
    views = [
        NumberView(phone_number=n.phone_number, state=n.state, acquired_at=n.acquired_at,
                   linked_endpoint_ids=linked.get(n.phone_number, []))
        for n in numbers.list_numbers(tenant_id)
    ]
    now = _now()
    return views, [_as_seen(op, now) for op in numbers.list_provisioning(tenant_id)]


def run_provisioning(numbers: PhoneNumberRepository, provider: PhoneNumberProvider, request: ProvisioningRequest) -> None:
    """The worker: search, then purchase, recording each step. Safe to run again after a crash:
    a recorded search is not repeated, and a number already owned is not bought twice."""
    stored = numbers.get_provisioning(request.tenant_id, request.operation_id)
    if stored is None or stored.item.finished:
        return
    operation, etag = stored.item, stored.etag
    try:
        if operation.search_id is None:
            found = provider.search_toll_free(operation.country_code)
            if not found.phone_numbers:
                raise UnprocessableInput("no toll-free number is available")
            operation = operation.model_copy(update={
                "step": ProvisioningStep.purchasing, "search_id": found.search_id,
                "phone_number": found.phone_numbers[0], "updated_at": _now()})
            etag = numbers.save_provisioning(operation, etag)
        if operation.phone_number not in provider.owned_numbers():
            provider.purchase(operation.search_id)
    except UpstreamUnavailable:
        raise  # transient: the queue retries
    except Exception as exc:  # ACS said no: final for this operation, shown to the admin
        failed = operation.model_copy(update={
            "status": ProvisioningStatus.failed, "updated_at": _now(),
            "error": getattr(exc, "message", "the number could not be provisioned")})
        numbers.save_provisioning(failed, etag)
        return
    numbers.record_number(PhoneNumber(
        tenant_id=operation.tenant_id, phone_number=operation.phone_number,
        acquired_at=_now(), operation_id=operation.operation_id))
    numbers.save_provisioning(operation.model_copy(update={
        "status": ProvisioningStatus.succeeded, "step": ProvisioningStep.done, "updated_at": _now()}), etag)


def link_number(tenants, numbers: PhoneNumberRepository, endpoints, tenant_id: str, endpoint_id: str,
                phone_number: str | None, if_match: str | None):
    """Link ``phone_number`` to the endpoint (None unlinks). Only an active number of the
    tenant's own, and only with both SMS consents."""
    stored = admin_setup.get_endpoint(endpoints, tenant_id, endpoint_id)
    if phone_number is not None:
        admin_setup.require_sms_consents(admin_setup.get_tenant(tenants, tenant_id).item)
        number = numbers.get_number(tenant_id, phone_number)
        if number is None or number.state is not PhoneNumberState.active:
            raise UnprocessableInput(
                "that number is not one of this tenant's active numbers",
                problems=[Problem("phone_number", "is not an active number of this tenant")])
    endpoint: FhirEndpoint = stored.item.model_copy(update={"linked_number": phone_number})
    endpoints.save_endpoint(endpoint, if_match or stored.etag)
    return endpoints.get_endpoint(tenant_id, endpoint_id)
