"""Typed repositories with domain verbs over the stamp's tables (docs/architecture.md, section 5)."""

from __future__ import annotations

import hashlib
from datetime import datetime, timezone
from collections.abc import Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from azure.data.tables import TableServiceClient
from pydantic import BaseModel

from connector.adapters.storage.tables import ModelTable, Versioned
from connector.domain.endpoint import FhirEndpoint, normalize_base_url
from connector.domain.launch import LaunchState
from connector.domain.notification import (
    NotificationClaim, NotificationRef, NotificationStatus, notification_keys,
)
from connector.domain.phone_number import NumberProvisioning, PhoneNumber
from connector.domain.tenant import Tenant
from connector.domain.usage import UsageEvent
from connector.domain.visit import JoinLink, SubscriptionLink, Visit, token_hash
from connector.errors import BaseUrlRegistered, ConcurrencyConflict, Conflict
from connector.services.ports import Purged
from connector.settings import Settings

TENANT_ROW = "tenant"
M = TypeVar("M", bound=BaseModel)


class TableTenantRepository:
    """``tenants``: one row per tenant onboarded into this stamp."""

    def __init__(self, table: ModelTable[Tenant]):
        self._table = table

    def get_tenant(self, tenant_id: str) -> Versioned[Tenant] | None:
        return self._table.get(tenant_id, TENANT_ROW)

    def onboard_tenant(self, tenant: Tenant) -> bool:
        """Create the tenant if it is new here; False if it was already onboarded."""
        return self._table.try_insert(tenant)

    def save_tenant(self, tenant: Tenant, etag: str) -> str:
        return self._table.replace(tenant, etag)


class UrlClaim(BaseModel):
    """The index row that makes a FHIR base URL unique in the stamp."""

    url_hash: str
    base_url: str
    tenant_id: str
    endpoint_id: str


def url_hash(base_url: str) -> str:
    return hashlib.sha256(normalize_base_url(base_url).encode()).hexdigest()


class TableEndpointRepository:
    """``endpoints``: a tenant's FHIR base URLs, plus a stamp-wide index by URL.

    The URL index lives in its own partition, so it cannot share a transaction with the
    endpoint row: the URL is claimed first (conditional insert) and released if the endpoint
    cannot be written, so a crash leaves at worst an orphan claim, never two owners.
    """

    URL_PARTITION = "url"

    def __init__(self, endpoints: ModelTable[FhirEndpoint], url_index: ModelTable[UrlClaim]):
        self._endpoints = endpoints
        self._urls = url_index

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint] | None:
        return self._endpoints.get(tenant_id, endpoint_id)

    def list_endpoints(self, tenant_id: str) -> list[Versioned[FhirEndpoint]]:
        return sorted(self._endpoints.partition(tenant_id), key=lambda v: v.item.endpoint_id)

    def all_endpoints(self) -> list[FhirEndpoint]:
        """Every endpoint of every tenant in this stamp (the reminder timer's fan-out)."""
        return [v.item for v in self._endpoints.query("PartitionKey ne @none", {"none": ""})]

    def _claim_url(self, endpoint: FhirEndpoint) -> str:
        """Claim the endpoint's URL for it. A claim left behind by a crash (its endpoint gone,
        or moved to another URL) is taken over, conditionally, so no URL is locked forever."""
        claim = UrlClaim(
            url_hash=url_hash(endpoint.base_url), base_url=endpoint.base_url,
            tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id,
        )
        if self._urls.try_insert(claim):
            return claim.url_hash
        existing = self._urls.get(self.URL_PARTITION, claim.url_hash)
        if existing is None or not self._owns(existing.item):
            try:
                if existing is None:
                    self._urls.insert(claim)
                else:
                    self._urls.replace(claim, existing.etag)
                return claim.url_hash
            except (Conflict, ConcurrencyConflict):
                existing = self._urls.get(self.URL_PARTITION, claim.url_hash)  # someone won the race just now
        # Whose it is only decides between "yours" and "another organisation's": never named.
        raise BaseUrlRegistered(ours=existing is not None and existing.item.tenant_id == endpoint.tenant_id)

    def _owns(self, claim: UrlClaim) -> bool:
        """Does the claim's endpoint still exist with the claimed URL?"""
        owner = self._endpoints.get(claim.tenant_id, claim.endpoint_id)
        return owner is not None and url_hash(owner.item.base_url) == claim.url_hash

    def add_endpoint(self, endpoint: FhirEndpoint) -> str:
        """Register a new endpoint; :class:`Conflict` if its URL or id is taken in this stamp."""
        claimed = self._claim_url(endpoint)
        try:
            return self._endpoints.insert(endpoint)
        except Exception:
            self._urls.delete(self.URL_PARTITION, claimed)
            raise

    def find_by_base_url(self, base_url: str) -> Versioned[FhirEndpoint] | None:
        """The endpoint whose base URL is ``base_url`` (how a launch's ``iss`` finds its tenant)."""
        claim = self._urls.get(self.URL_PARTITION, url_hash(base_url))
        if claim is None:
            return None
        owner = self.get_endpoint(claim.item.tenant_id, claim.item.endpoint_id)
        if owner is None or url_hash(owner.item.base_url) != claim.item.url_hash:
            return None  # a stale claim: the endpoint is gone or moved
        return owner

    def save_endpoint(self, endpoint: FhirEndpoint, etag: str, *, previous_base_url: str | None = None) -> str:
        """Replace the endpoint if unchanged since ``etag``; a new URL moves its claim with it
        (the new URL is claimed first, so a taken URL changes nothing)."""
        moved = previous_base_url is not None and url_hash(previous_base_url) != url_hash(endpoint.base_url)
        claimed = self._claim_url(endpoint) if moved else None
        try:
            new_etag = self._endpoints.replace(endpoint, etag)
        except Exception:
            if claimed:
                self._urls.delete(self.URL_PARTITION, claimed)
            raise
        if moved:
            self._urls.delete(self.URL_PARTITION, url_hash(previous_base_url))
        return new_etag

    def remove_endpoint(self, endpoint: FhirEndpoint, etag: str) -> None:
        self._endpoints.delete(endpoint.tenant_id, endpoint.endpoint_id, etag)
        self._urls.delete(self.URL_PARTITION, url_hash(endpoint.base_url))


def _utc(moment: datetime) -> datetime:
    """Keys name instants in UTC: Cerner sends the same instant as `Z` and as `-05:00`."""
    return moment.astimezone(timezone.utc)


_notification_keys = notification_keys


class TableNotificationRepository:
    """``notifications``: one row per (appointment, kind, offset, start): the exactly-once ticket.

    Rows of one endpoint share a partition, keyed ``{appointment}_{kind}{offset}_{start}``, so an
    appointment's rows are one range query."""

    def __init__(self, table: ModelTable[NotificationClaim]):
        self._table = table

    def claim_notification(self, claim: NotificationClaim) -> str | None:
        """The new row's ETag if this caller won the right to send this message; None if someone did."""
        try:
            return self._table.insert(claim)
        except Conflict:
            return None

    def recent(self, tenant_id: str, endpoint_id: str, *, since: datetime) -> list[NotificationClaim]:
        """The endpoint's rows claimed since ``since`` (one query: a scan groups them by appointment)."""
        return [v.item for v in self._table.query("PartitionKey eq @pk and claimed_at ge @since",
                                                  {"pk": f"{tenant_id}_{endpoint_id}", "since": since})]

    def get_notification(self, ref: NotificationClaim | NotificationRef) -> Versioned[NotificationClaim] | None:
        return self._table.get(*_notification_keys(ref))

    def record_outcome(self, claim: NotificationClaim, etag: str) -> str:
        return self._table.replace(claim, etag)

    def for_appointment(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> list[NotificationClaim]:
        return [v.item for v in self._table.query(
            "PartitionKey eq @pk and RowKey ge @low and RowKey lt @high",
            {"pk": f"{tenant_id}_{endpoint_id}", "low": f"{appointment_id}_", "high": f"{appointment_id}`"})]

    def for_endpoint(self, tenant_id: str, endpoint_id: str,
                     status: NotificationStatus | None = None) -> list[Versioned[NotificationClaim]]:
        if status is None:
            return list(self._table.partition(f"{tenant_id}_{endpoint_id}"))
        return list(self._table.query("PartitionKey eq @pk and status eq @status",
                                      {"pk": f"{tenant_id}_{endpoint_id}", "status": status.value}))

    def by_tag(self, tag: str) -> Versioned[NotificationClaim] | None:
        partition, _, row = tag.partition("|")
        try:
            return self._table.get(partition, row) if partition and row else None
        except ValueError:  # not a key Table Storage accepts: not a tag of ours
            return None

    def for_tenant(self, tenant_id: str, status: NotificationStatus) -> list[Versioned[NotificationClaim]]:
        return list(self._table.query(
            "PartitionKey ge @low and PartitionKey lt @high and status eq @status",
            {"low": f"{tenant_id}_", "high": f"{tenant_id}`", "status": status.value}))


class TableUsageEventLog:
    """``usageevents``: append-only, partitioned by tenant and month so reports read one partition."""

    def __init__(self, table: ModelTable[UsageEvent]):
        self._table = table

    def append(self, events: Iterable[UsageEvent]) -> int:
        """Append events; those of one tenant-month go in atomic batches."""
        by_partition: dict[str, list[UsageEvent]] = {}
        for event in events:
            by_partition.setdefault(_usage_partition(event), []).append(event)
        return sum(self._table.insert_batch(batch) for batch in by_partition.values())

    def month(self, tenant_id: str, year: int, month: int) -> list[UsageEvent]:
        return [v.item for v in self._table.partition(f"{tenant_id}_{year:04d}{month:02d}")]


def _usage_partition(event: UsageEvent) -> str:
    return f"{event.tenant_id}_{_utc(event.at):%Y%m}"


def _usage_keys(event: UsageEvent) -> tuple[str, str]:
    return _usage_partition(event), f"{_utc(event.at):%Y%m%dT%H%M%S%f}_{event.event_id}"


class TablePhoneNumberRepository:
    """``phonenumbers``: a tenant's numbers by E.164, and ``numberops``: their provisioning."""

    def __init__(self, numbers: ModelTable[PhoneNumber], operations: ModelTable[NumberProvisioning]):
        self._numbers = numbers
        self._operations = operations

    def list_numbers(self, tenant_id: str) -> list[PhoneNumber]:
        return sorted((v.item for v in self._numbers.partition(tenant_id)), key=lambda n: n.phone_number)

    def get_number(self, tenant_id: str, phone_number: str) -> PhoneNumber | None:
        stored = self._numbers.get(tenant_id, phone_number)
        return stored.item if stored else None

    def record_number(self, number: PhoneNumber) -> None:
        """Idempotent: the worker may record the same purchase twice after a retry."""
        self._numbers.upsert(number)

    def start_provisioning(self, operation: NumberProvisioning) -> str:
        """Insert a new operation; returns its ETag (to mark it failed if it cannot be queued)."""
        return self._operations.insert(operation)

    def get_provisioning(self, tenant_id: str, operation_id: str) -> Versioned[NumberProvisioning] | None:
        return self._operations.get(tenant_id, operation_id)

    def list_provisioning(self, tenant_id: str) -> list[NumberProvisioning]:
        return sorted((v.item for v in self._operations.partition(tenant_id)), key=lambda o: o.created_at)

    def save_provisioning(self, operation: NumberProvisioning, etag: str) -> str:
        return self._operations.replace(operation, etag)

    def owner_of(self, phone_number: str) -> str | None:
        found = next(self._numbers.query("RowKey eq @number", {"number": phone_number}), None)
        return found.item.tenant_id if found else None


class TableLaunchStateRepository:
    """``launchstates``: one row per SMART launch in flight, taken (deleted) by its callback."""

    def __init__(self, table: ModelTable[LaunchState]):
        self._table = table

    def save_state(self, state: LaunchState) -> None:
        self._table.insert(state)

    def take_state(self, state: str) -> LaunchState | None:
        """The state, once: the claim is a write conditional on the ETag that was read, marking it
        taken, so of callbacks racing exactly one wins even if another reads it before it is
        deleted. (A conditional delete alone would not do: the SDK reports a row already gone as
        deleted.)"""
        keys = _launch_state_keys(state)
        stored = self._table.get(*keys)
        if stored is None or stored.item.taken:
            return None
        try:
            self._table.replace(stored.item.model_copy(update={"taken": True}), stored.etag)
        except ConcurrencyConflict:
            return None  # another callback claimed it first
        self._table.delete(*keys)
        return stored.item


def _launch_state_keys(state: str) -> tuple[str, str]:
    return state[:2], state  # spread over partitions by the random state's first characters


class OptOut(BaseModel):
    tenant_id: str
    number_hash: str
    opted_out: bool
    at: datetime  # when the patient said so (STOP or START): a later word wins, whatever order they arrive in


class TableOptOutRepository:
    """``optouts``: who replied STOP (or START again), per tenant, by a keyed hash of the number."""

    def __init__(self, table: ModelTable[OptOut]):
        self._table = table

    def is_opted_out(self, tenant_id: str, number_hash: str) -> bool:
        stored = self._table.get(tenant_id, number_hash)
        return stored is not None and stored.item.opted_out

    def record_choice(self, tenant_id: str, number_hash: str, *, opted_out: bool, at: datetime) -> bool:
        """Record STOP (``opted_out``) or START said at ``at``; an older word than the one kept is
        ignored (Event Grid delivers in no order). True when the row changed."""
        choice = OptOut(tenant_id=tenant_id, number_hash=number_hash, opted_out=opted_out, at=at)
        for _ in range(3):
            stored = self._table.get(tenant_id, number_hash)
            try:
                if stored is None:
                    self._table.insert(choice)
                elif stored.item.at >= at:
                    return False
                else:
                    self._table.replace(choice, stored.etag)
                return True
            except (Conflict, ConcurrencyConflict):
                continue  # another event for the same number just now: read again
        raise ConcurrencyConflict("the opt-out list kept changing; the event will be retried")


class TableVisitRepository:
    """``visits``: one row per (tenant+endpoint, appointment): the meeting and its live state."""

    def __init__(self, table: ModelTable[Visit]):
        self._table = table

    def get_visit(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> Versioned[Visit] | None:
        return self._table.get(f"{tenant_id}_{endpoint_id}", appointment_id)

    def add_visit(self, visit: Visit) -> bool:
        return self._table.try_insert(visit)

    def save_visit(self, visit: Visit, etag: str) -> str:
        return self._table.replace(visit, etag)


class TableJoinLinkRepository:
    """``joinlinks``: patient links by the SHA-256 of their token (the token itself is never stored)."""

    def __init__(self, table: ModelTable[JoinLink]):
        self._table = table

    def add_link(self, link: JoinLink) -> None:
        self._table.insert(link)

    def find_link(self, token: str) -> JoinLink | None:
        digest = token_hash(token)
        stored = self._table.get(digest[:2], digest)
        return stored.item if stored else None


class TableSubscriptionRepository:
    """``meetingsubs``: Graph subscriptions by id, pointing at their visit (one partition: few rows)."""

    PARTITION = "sub"

    def __init__(self, table: ModelTable[SubscriptionLink]):
        self._table = table

    def add_subscription(self, link: SubscriptionLink) -> None:
        self._table.upsert(link)  # Graph's ids are unique; a retried save writes the same row

    def get_subscription(self, subscription_id: str) -> Versioned[SubscriptionLink] | None:
        return self._table.get(self.PARTITION, subscription_id)

    def save_subscription(self, link: SubscriptionLink, etag: str) -> str:
        return self._table.replace(link, etag)

    def remove_subscription(self, subscription_id: str) -> None:
        self._table.delete(self.PARTITION, subscription_id)

    def expiring_before(self, moment: datetime) -> list[Versioned[SubscriptionLink]]:
        return [v for v in self._table.partition(self.PARTITION) if v.item.expires_at < moment]


class TableExpiringRows(Generic[M]):
    """Rows of one table whose datetime properties ``fields`` are all before a cut-off, for the
    retention timer. The filter runs server-side (on non-key properties: a scan, fine once a day),
    pages are read one at a time, and deletes are conditional on each row's ETag."""

    PAGE_SIZE = 1000  # the most Table Storage returns in one page

    def __init__(self, table: ModelTable[M], *fields: str, partition: str | None = None):
        self._table = table
        self._filter = " and ".join([*(["PartitionKey eq @pk"] if partition else []),
                                     *(f"{field} lt @cutoff" for field in fields)])
        self._partition = partition

    def before(self, cutoff: datetime) -> Iterator[list[Versioned[M]]]:
        parameters = {"cutoff": cutoff, **({"pk": self._partition} if self._partition else {})}
        return self._table.query_pages(self._filter, parameters, page_size=self.PAGE_SIZE)

    def delete_unchanged(self, rows: Sequence[Versioned[M]]) -> Purged:
        return Purged(*self._table.delete_unchanged(rows))


def expiring_rows(tables: StampTables) -> dict[str, TableExpiringRows]:
    """The retention service's tables, each narrowed on the instants its rule reads
    (``services/retention.py``); usage events are never purged: they are the reports."""
    return {
        "launch_states": TableExpiringRows(tables.launch_states, "expires_at"),
        "join_links": TableExpiringRows(tables.join_links, "expires_at"),
        "subscriptions": TableExpiringRows(tables.subscriptions, "expires_at",
                                           partition=TableSubscriptionRepository.PARTITION),
        "visits": TableExpiringRows(tables.visits, "appointment_end", "updated_at"),
        "notifications": TableExpiringRows(tables.notifications, "appointment_start"),
    }


class StampTables:
    """Every table of the stamp, built from one service client (the composition root holds one)."""


    def __init__(self, service: TableServiceClient, settings: Settings):
        def table(base: str, model, keys) -> ModelTable:
            return ModelTable(service.get_table_client(settings.table_name(base)), model, keys)

        self.tenants = table("tenants", Tenant, lambda t: (t.tenant_id, TENANT_ROW))
        self.endpoints = table("endpoints", FhirEndpoint, lambda e: (e.tenant_id, e.endpoint_id))
        self.endpoint_urls = table(
            "endpointurls", UrlClaim, lambda c: (TableEndpointRepository.URL_PARTITION, c.url_hash)
        )
        self.notifications = table("notifications", NotificationClaim, _notification_keys)
        self.usage_events = table("usageevents", UsageEvent, _usage_keys)
        self.phone_numbers = table("phonenumbers", PhoneNumber, lambda n: (n.tenant_id, n.phone_number))
        self.number_operations = table("numberops", NumberProvisioning, lambda o: (o.tenant_id, o.operation_id))
        self.launch_states = table("launchstates", LaunchState, lambda s: _launch_state_keys(s.state))
        self.visits = table("visits", Visit, lambda v: (f"{v.tenant_id}_{v.endpoint_id}", v.appointment_id))
        self.join_links = table("joinlinks", JoinLink, lambda link: (link.token_hash[:2], link.token_hash))
        self.subscriptions = table("meetingsubs", SubscriptionLink,
                                   lambda sub: (TableSubscriptionRepository.PARTITION, sub.subscription_id))
        self.opt_outs = table("optouts", OptOut, lambda o: (o.tenant_id, o.number_hash))

    def all(self) -> list[ModelTable]:
        return [self.tenants, self.endpoints, self.endpoint_urls, self.notifications, self.usage_events,
                self.phone_numbers, self.number_operations, self.launch_states, self.visits, self.join_links,
                self.subscriptions, self.opt_outs]

    def create_missing(self) -> None:
        for table in self.all():
            table.create_if_missing()
