"""In-memory fakes of the ports in ``connector.services.ports`` (and of the few ports a service
still declares itself), for unit tests of the use cases.

One ``Fake<Port>`` per port, grouped by port below: time and ids, then storage, then queues,
then outside services. Each keeps the real adapter's observable rules (conditional writes by
ETag, unique keys, what a missing row does) and stores ``Versioned`` items, so a use case
behaves the same against a fake as against Azurite. Fakes keep their state in plain public
attributes so tests can look at and arrange it. Add new fakes under the heading of their port.
"""

from __future__ import annotations

import base64
import itertools
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel, ValidationError

from connector.adapters.acs.phone_numbers import PurchaseAlreadyStarted, SearchedNumbers
from connector.domain.endpoint import Environment, FhirEndpoint, normalize_base_url
from connector.domain.phone_number import NumberProvisioning, PhoneNumber
from connector.domain.tenant import Tenant
from connector.domain.validation import Check, CheckName, ValidationReport
from connector.errors import BaseUrlRegistered, ConcurrencyConflict, Conflict
from connector.services.ports import Purged, Versioned

# A fixed, aware instant the fake clock starts at unless told otherwise.
EPOCH = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)


class FakeEtags:
    """ETags in the shape Table Storage hands out (and the admin API accepts in If-Match)."""

    def __init__(self):
        self._versions = itertools.count(1)

    def next(self) -> str:
        return f"W/\"datetime'fake-{next(self._versions):06d}'\""


# -- Clock -----------------------------------------------------------------------------------


class FakeClock:
    """A clock that only moves when told to: ``set`` it or ``advance`` it."""

    def __init__(self, now: datetime = EPOCH):
        self.set(now)

    def now(self) -> datetime:
        return self._now

    def set(self, moment: datetime) -> None:
        if moment.tzinfo is None or moment.utcoffset() is None:
            raise ValueError("FakeClock keeps aware datetimes only")
        self._now = moment.astimezone(timezone.utc)

    def advance(self, delta: timedelta | None = None, **kwargs: float) -> datetime:
        """Move on by ``delta`` or by ``timedelta(**kwargs)`` (``advance(minutes=20)``)."""
        self._now += delta if delta is not None else timedelta(**kwargs)
        return self._now


# -- IdSource --------------------------------------------------------------------------------


class FakeIdSource:
    """Deterministic ids in the real shapes: the n-th id carries the number n, big-endian, in
    ``nbytes`` bytes (``hex(4)`` -> "00000001", "00000002", ...), so ids sort in issue order.
    ``issued`` lists every id handed out."""

    def __init__(self, start: int = 1):
        self._counter = itertools.count(start)
        self.issued: list[str] = []

    def _bytes(self, nbytes: int) -> bytes:
        return next(self._counter).to_bytes(nbytes, "big")

    def token(self, nbytes: int = 32) -> str:
        value = base64.urlsafe_b64encode(self._bytes(nbytes)).rstrip(b"=").decode()
        self.issued.append(value)
        return value

    def hex(self, nbytes: int = 4) -> str:
        value = self._bytes(nbytes).hex()
        self.issued.append(value)
        return value


# -- TenantRepository ------------------------------------------------------------------------


class FakeTenantRepository:
    """Tenants by id, with ETags: onboarding is insert-if-absent, a save needs the current ETag."""

    def __init__(self, *tenants: Tenant):
        self.tenants: dict[str, Versioned[Tenant]] = {}
        self._etags = FakeEtags()
        for tenant in tenants:
            self.onboard_tenant(tenant)

    def get_tenant(self, tenant_id: str) -> Versioned[Tenant] | None:
        return self.tenants.get(tenant_id)

    def onboard_tenant(self, tenant: Tenant) -> bool:
        if tenant.tenant_id in self.tenants:
            return False
        self.tenants[tenant.tenant_id] = Versioned(tenant, self._etags.next())
        return True

    def save_tenant(self, tenant: Tenant, etag: str) -> str:
        stored = self.tenants.get(tenant.tenant_id)
        if stored is None or stored.etag != etag:
            raise ConcurrencyConflict("Tenant changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.tenants[tenant.tenant_id] = Versioned(tenant, new)
        return new


# -- EndpointRepository ----------------------------------------------------------------------


class FakeEndpointRepository:
    """Endpoints by (tenant, id), plus a stamp-wide URL index, with the rules of
    ``TableEndpointRepository``: a URL (normalised) belongs to one endpoint in the stamp; a claim
    whose endpoint is gone or moved is taken over; a save needs the current ETag and moves the URL
    claim only when told the previous URL; a removal with a stale ETag is a ConcurrencyConflict
    and a removal of a vanished row is a no-op."""

    def __init__(self, *endpoints: FhirEndpoint):
        self.endpoints: dict[tuple[str, str], Versioned[FhirEndpoint]] = {}
        self.urls: dict[str, tuple[str, str]] = {}  # normalised base URL -> (tenant, endpoint id)
        self._etags = FakeEtags()
        self.writes = 0  # adds, saves and removals that reached the repository
        for endpoint in endpoints:
            self.add_endpoint(endpoint)

    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint] | None:
        return self.endpoints.get((tenant_id, endpoint_id))

    def list_endpoints(self, tenant_id: str) -> list[Versioned[FhirEndpoint]]:
        return sorted((v for (t, _), v in self.endpoints.items() if t == tenant_id), key=lambda v: v.item.endpoint_id)

    def all_endpoints(self) -> list[FhirEndpoint]:
        """Every endpoint of every tenant (the reminder timer's fan-out), by (tenant, id)."""
        return [v.item for _, v in sorted(self.endpoints.items())]

    def _owns(self, url: str, owner: tuple[str, str]) -> bool:
        stored = self.endpoints.get(owner)
        return stored is not None and normalize_base_url(stored.item.base_url) == url

    def _claim_url(self, endpoint: FhirEndpoint) -> str:
        url = normalize_base_url(endpoint.base_url)
        owner = self.urls.get(url)
        if owner is not None and self._owns(url, owner):
            raise BaseUrlRegistered(ours=owner[0] == endpoint.tenant_id)
        self.urls[url] = (endpoint.tenant_id, endpoint.endpoint_id)
        return url

    def find_by_base_url(self, base_url: str) -> Versioned[FhirEndpoint] | None:
        url = normalize_base_url(base_url)
        owner = self.urls.get(url)
        if owner is None or not self._owns(url, owner):
            return None
        return self.endpoints[owner]

    def add_endpoint(self, endpoint: FhirEndpoint) -> str:
        self.writes += 1
        key = (endpoint.tenant_id, endpoint.endpoint_id)
        claimed = self._claim_url(endpoint)
        if key in self.endpoints:
            del self.urls[claimed]
            raise Conflict("FhirEndpoint already exists")
        etag = self._etags.next()
        self.endpoints[key] = Versioned(endpoint, etag)
        return etag

    def save_endpoint(self, endpoint: FhirEndpoint, etag: str, *, previous_base_url: str | None = None) -> str:
        self.writes += 1
        key = (endpoint.tenant_id, endpoint.endpoint_id)
        moved = previous_base_url is not None and (
            normalize_base_url(previous_base_url) != normalize_base_url(endpoint.base_url))
        claimed = self._claim_url(endpoint) if moved else None
        stored = self.endpoints.get(key)
        if stored is None or stored.etag != etag:
            if claimed:
                del self.urls[claimed]
            raise ConcurrencyConflict("FhirEndpoint changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.endpoints[key] = Versioned(endpoint, new)
        if moved:
            self.urls.pop(normalize_base_url(previous_base_url), None)
        return new

    def remove_endpoint(self, endpoint: FhirEndpoint, etag: str) -> None:
        self.writes += 1
        key = (endpoint.tenant_id, endpoint.endpoint_id)
        stored = self.endpoints.get(key)
        if stored is not None:
            if stored.etag != etag:
                raise ConcurrencyConflict("FhirEndpoint changed since it was read")
            del self.endpoints[key]
        self.urls.pop(normalize_base_url(endpoint.base_url), None)


# -- PhoneNumberRepository -------------------------------------------------------------------


class FakePhoneNumberRepository:
    """Numbers by (tenant, E.164), and provisioning operations by (tenant, id) with ETags
    (a save with an old one is a ConcurrencyConflict). ``gets`` lists the operation ids read."""

    def __init__(self):
        self.operations: dict[tuple[str, str], Versioned[NumberProvisioning]] = {}
        self.numbers: dict[tuple[str, str], PhoneNumber] = {}
        self.gets: list[str] = []
        self._etags = FakeEtags()

    def list_numbers(self, tenant_id: str) -> list[PhoneNumber]:
        return [n for (t, _), n in sorted(self.numbers.items()) if t == tenant_id]

    def get_number(self, tenant_id: str, phone_number: str) -> PhoneNumber | None:
        return self.numbers.get((tenant_id, phone_number))

    def record_number(self, number: PhoneNumber) -> None:
        self.numbers[(number.tenant_id, number.phone_number)] = number

    def start_provisioning(self, operation: NumberProvisioning) -> str:
        key = (operation.tenant_id, operation.operation_id)
        if key in self.operations:
            raise Conflict("NumberProvisioning already exists")
        etag = self._etags.next()
        self.operations[key] = Versioned(operation, etag)
        return etag

    def get_provisioning(self, tenant_id: str, operation_id: str) -> Versioned[NumberProvisioning] | None:
        self.gets.append(operation_id)
        return self.operations.get((tenant_id, operation_id))

    def list_provisioning(self, tenant_id: str) -> list[NumberProvisioning]:
        # Like the table: a partition comes back by row key (the id), then sorted by creation.
        mine = sorted((v.item for (t, _), v in self.operations.items() if t == tenant_id),
                      key=lambda o: o.operation_id)
        return sorted(mine, key=lambda o: o.created_at)

    def save_provisioning(self, operation: NumberProvisioning, etag: str) -> str:
        key = (operation.tenant_id, operation.operation_id)
        if key not in self.operations or self.operations[key].etag != etag:
            raise ConcurrencyConflict("NumberProvisioning changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.operations[key] = Versioned(operation, new)
        return new

    # for the tests
    def operation(self, operation_id: str) -> NumberProvisioning:
        """The stored operation with this id (whatever its tenant)."""
        [stored] = [v for (_, o), v in self.operations.items() if o == operation_id]
        return stored.item

    def etag_of(self, operation_id: str) -> str:
        [stored] = [v for (_, o), v in self.operations.items() if o == operation_id]
        return stored.etag

    def owner_of(self, phone_number: str) -> str | None:
        """The tenant that owns this number in the stamp, if any (like ``TableNumberRepository``:
        the first row whose number matches)."""
        return next((t for (t, n) in sorted(self.numbers) if n == phone_number), None)


# -- Queue -----------------------------------------------------------------------------------


class FakeQueue:
    """Records what was sent (``sent``, and each message's ``delays``); raises ``error`` if set."""

    def __init__(self, error: Exception | None = None):
        self.error = error
        self.sent: list[BaseModel] = []
        self.delays: list[timedelta] = []

    def send(self, message: BaseModel, *, delay: timedelta = timedelta(0)) -> str:
        if self.error is not None:
            raise self.error
        self.sent.append(message)
        self.delays.append(delay)
        return f"m{len(self.sent)}"


# -- Validate (connector.services.admin_setup) -------------------------------------------------


class FakeValidator:
    """FHIR base URL validation: every URL passes, with SMART endpoints and a Cerner tenant
    derived from it (``discovered``), unless ``fail`` named checks for it (later checks are then
skipped, passed None). ``calls`` lists
    every (base_url, environment) asked about."""

    def __init__(self):
        self.calls: list[tuple[str, Environment]] = []
        self.failures: dict[str, dict[CheckName, str]] = {}

    def fail(self, base_url: str, check: CheckName, message: str) -> None:
        self.failures.setdefault(normalize_base_url(base_url), {})[check] = message

    @staticmethod
    def discovered(base_url: str) -> dict[str, str]:
        url = normalize_base_url(base_url)
        return {"authorize_url": f"{url}/auth/authorize", "token_url": f"{url}/auth/token",
                "cerner_tenant_id": url.rsplit("/", 1)[-1]}

    def __call__(self, base_url: str, environment: Environment) -> ValidationReport:
        self.calls.append((base_url, environment))
        url = normalize_base_url(base_url)
        failed = self.failures.get(url, {})
        checks, broken = [], False
        for name in CheckName:  # like the real one: after a failure, checks that need it are skipped
            if name in failed:
                checks.append(Check(name=name, passed=False, message=failed[name]))
                broken = True
            elif broken:
                checks.append(Check(name=name, passed=None, message="Skipped: an earlier check failed."))
            else:
                checks.append(Check(name=name, passed=True, message=f"{name.value} passed."))
        found = {} if failed else {"fhir_version": "4.0.1", **self.discovered(url)}
        return ValidationReport(base_url=url, environment=environment, checks=checks, **found)


# -- PhoneNumberProvider (connector.services.sms_numbers) ------------------------------------


class Crash(BaseException):
    """The worker process dying mid-call (not an Exception: nothing in the code may catch it)."""


class FakePhoneNumberProvider:
    """ACS as the use case sees it: searches hold one number each; a search is bought at most
    once (asked again: 409, PurchaseAlreadyStarted); a purchase may finish at once or later.
    Queue errors in ``search_errors`` / ``purchase_errors``; ``crash_after_purchase_starts``
    raises :class:`Crash` once ACS has accepted a purchase; ``before_purchase(search_id)`` runs
    before ACS is asked."""

    def __init__(self, numbers=("+18005550100",), *, finish_purchases: bool = True):
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
        self.before_purchase = None

    def search_toll_free(self, country_code: str) -> SearchedNumbers:
        self.search_calls += 1
        if self.search_errors:
            raise self.search_errors.pop(0)
        search_id = f"search-{self.search_calls}"
        found = tuple(self.available[:1])
        self.searches[search_id] = found[0] if found else ""
        return SearchedNumbers(search_id, found)

    def purchase(self, search_id: str) -> None:
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

    def finish(self, search_id: str) -> None:
        """ACS completes a purchase it accepted (in the background, whether anyone polls or not)."""
        self.purchases[search_id] = "succeeded"
        self.owned.add(self.searches[search_id])

    def owned_numbers(self) -> set[str]:
        self.owned_calls += 1
        return set(self.owned)

    @property
    def bought(self) -> int:
        return sum(1 for state in self.purchases.values() if state == "succeeded")


# ============================================================================================
# Fakes of the visit ports (launch, visits, links, meetings, SMS, SMART, FHIR). Their imports
# are kept here, with the fakes that need them.
# ============================================================================================

import copy  # noqa: E402
from collections.abc import Callable, Iterable  # noqa: E402
from typing import Any  # noqa: E402
from urllib.parse import quote  # noqa: E402

from connector.adapters.fhir.parsing import parse_resource  # noqa: E402
from connector.domain.endpoint import normalize_base_url as _normalized_url  # noqa: E402
from connector.domain.launch import LaunchState  # noqa: E402
from connector.domain.meeting import CallSubscription, MeetingRequest, OnlineMeeting  # noqa: E402
from connector.domain.smart import SmartConfiguration, TokenResponse  # noqa: E402
from connector.domain.usage import UsageEvent  # noqa: E402
from connector.domain.visit import JoinLink, SubscriptionLink, Visit, token_hash  # noqa: E402
from connector.errors import InvalidUpstreamData, NotAuthenticated, NotFound  # noqa: E402


# -- LaunchStateRepository -------------------------------------------------------------------


class FakeLaunchStateRepository:
    """Launch states by their ``state``, like ``TableLaunchStateRepository``: saving a state that
    exists is a Conflict; ``take_state`` returns the row and removes it, so a replay gets None.
    ``taken`` lists every state asked for."""

    def __init__(self):
        self.states: dict[str, LaunchState] = {}
        self.taken: list[str] = []

    def save_state(self, state: LaunchState) -> None:
        if state.state in self.states:
            raise Conflict("LaunchState already exists")
        self.states[state.state] = state

    def take_state(self, state: str) -> LaunchState | None:
        self.taken.append(state)
        return self.states.pop(state, None)


# -- VisitRepository -------------------------------------------------------------------------


class FakeVisitRepository:
    """Visits by (tenant, endpoint, appointment) with ETags, like ``TableVisitRepository``:
    ``add_visit`` inserts if absent (False if the row exists), a save with a stale ETag (or of a
    vanished row) is a ConcurrencyConflict. ``before_save(visit)`` runs before each save (to
    let another writer in first); ``saves`` counts saves that reached the repository."""

    def __init__(self, *visits: Visit):
        self.visits: dict[tuple[str, str, str], Versioned[Visit]] = {}
        self._etags = FakeEtags()
        self.saves = 0
        self.before_save: Callable[[Visit], None] | None = None
        for visit in visits:
            self.add_visit(visit)

    @staticmethod
    def _key(visit: Visit) -> tuple[str, str, str]:
        return visit.tenant_id, visit.endpoint_id, visit.appointment_id

    def get_visit(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> Versioned[Visit] | None:
        return self.visits.get((tenant_id, endpoint_id, appointment_id))

    def add_visit(self, visit: Visit) -> bool:
        key = self._key(visit)
        if key in self.visits:
            return False
        self.visits[key] = Versioned(visit, self._etags.next())
        return True

    def save_visit(self, visit: Visit, etag: str) -> str:
        if self.before_save is not None:
            self.before_save(visit)
        self.saves += 1
        key = self._key(visit)
        stored = self.visits.get(key)
        if stored is None or stored.etag != etag:
            raise ConcurrencyConflict("Visit changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.visits[key] = Versioned(visit, new)
        return new

    # for the tests
    def visit(self, appointment_id: str) -> Visit:
        """The stored visit of this appointment (whatever its tenant and endpoint)."""
        [stored] = [v for (_, _, a), v in self.visits.items() if a == appointment_id]
        return stored.item

    def touch(self, appointment_id: str, **changes: Any) -> str:
        """Another writer saves the visit (with ``changes``): every ETag read before is stale."""
        [key] = [k for k in self.visits if k[2] == appointment_id]
        new = self._etags.next()
        self.visits[key] = Versioned(self.visits[key].item.model_copy(update=changes), new)
        return new


# -- JoinLinkRepository ----------------------------------------------------------------------


class FakeJoinLinkRepository:
    """Patient links by the SHA-256 of their token, like ``TableJoinLinkRepository`` (an existing
    hash is a Conflict). ``rows`` keeps every row as it would be written (JSON), so a test can
    look for a plaintext token in it; ``lookups`` counts find_link calls."""

    def __init__(self):
        self.links: dict[str, JoinLink] = {}
        self.rows: list[dict[str, Any]] = []
        self.lookups = 0

    def add_link(self, link: JoinLink) -> None:
        if link.token_hash in self.links:
            raise Conflict("JoinLink already exists")
        self.links[link.token_hash] = link
        self.rows.append(link.model_dump(mode="json"))

    def find_link(self, token: str) -> JoinLink | None:
        self.lookups += 1
        return self.links.get(token_hash(token))


# -- SubscriptionRepository ------------------------------------------------------------------


class FakeSubscriptionRepository:
    """Graph subscriptions by id with ETags, like ``TableSubscriptionRepository``: adding is an
    upsert, a save needs the current ETag, removing a missing row is a no-op, and
    ``expiring_before`` lists those expiring strictly before the moment. ``removed`` lists ids."""

    def __init__(self, *links: SubscriptionLink):
        self.subscriptions: dict[str, Versioned[SubscriptionLink]] = {}
        self.removed: list[str] = []
        self._etags = FakeEtags()
        for link in links:
            self.add_subscription(link)

    def add_subscription(self, link: SubscriptionLink) -> None:
        self.subscriptions[link.subscription_id] = Versioned(link, self._etags.next())

    def get_subscription(self, subscription_id: str) -> Versioned[SubscriptionLink] | None:
        return self.subscriptions.get(subscription_id)

    def save_subscription(self, link: SubscriptionLink, etag: str) -> str:
        stored = self.subscriptions.get(link.subscription_id)
        if stored is None or stored.etag != etag:
            raise ConcurrencyConflict("SubscriptionLink changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.subscriptions[link.subscription_id] = Versioned(link, new)
        return new

    def remove_subscription(self, subscription_id: str) -> None:
        self.removed.append(subscription_id)
        self.subscriptions.pop(subscription_id, None)

    def expiring_before(self, moment: datetime) -> list[Versioned[SubscriptionLink]]:
        return [v for _, v in sorted(self.subscriptions.items()) if v.item.expires_at < moment]


# -- ExpiringRows ----------------------------------------------------------------------------


class FakeExpiringRows:
    """One table's rows for the retention service, like ``TableExpiringRows`` but without its
    server-side filter: ``before`` pages through every row (``page_size`` a page), so the
    service's own rule is what a test sees decide. ``delete_unchanged`` deletes a row only if its
    ETag matches (else it is kept); a row already gone counts as deleted, as the SDK reports it.
    ``touch(key)`` is another writer saving a row; ``before_delete(rows)`` runs before deletes."""

    def __init__(self, key: Callable[[Any], Any], *items: Any, page_size: int = 2):
        self.rows: dict[Any, Versioned[Any]] = {}
        self._key = key
        self._etags = FakeEtags()
        self.page_size = page_size
        self.cutoffs: list[datetime] = []
        self.before_delete: Callable[[list[Versioned[Any]]], None] | None = None
        for item in items:
            self.put(item)

    def put(self, item: Any) -> str:
        etag = self._etags.next()
        self.rows[self._key(item)] = Versioned(item, etag)
        return etag

    def touch(self, key: Any) -> None:
        self.rows[key] = Versioned(self.rows[key].item, self._etags.next())

    def before(self, cutoff: datetime) -> Iterable[list[Versioned[Any]]]:
        self.cutoffs.append(cutoff)
        snapshot = list(self.rows.values())
        for start in range(0, len(snapshot), self.page_size):
            yield snapshot[start : start + self.page_size]

    def delete_unchanged(self, rows: list[Versioned[Any]]) -> Purged:
        if self.before_delete is not None:
            self.before_delete(rows)
        deleted = kept = 0
        for row in rows:
            key = self._key(row.item)
            stored = self.rows.get(key)
            if stored is not None and stored.etag != row.etag:
                kept += 1
                continue
            self.rows.pop(key, None)
            deleted += 1
        return Purged(deleted, kept)

    def keys(self) -> set[Any]:
        return set(self.rows)


# -- UsageEventLog ---------------------------------------------------------------------------


class FakeUsageEventLog:
    """Append-only usage events keyed like ``TableUsageEventLog``: partition (tenant, UTC month),
    row (UTC instant + event id). A key that exists fails its whole partition's batch with
    Conflict, as a Table Storage transaction does; ``events`` holds what was stored, in order."""

    def __init__(self):
        self.rows: dict[tuple[str, str], UsageEvent] = {}
        self.events: list[UsageEvent] = []
        self.conflicts = 0

    @staticmethod
    def key(event: UsageEvent) -> tuple[str, str]:
        at = event.at.astimezone(timezone.utc)
        return f"{event.tenant_id}_{at:%Y%m}", f"{at:%Y%m%dT%H%M%S%f}_{event.event_id}"

    def append(self, events: Iterable[UsageEvent]) -> int:
        by_partition: dict[str, list[UsageEvent]] = {}
        for event in events:
            by_partition.setdefault(self.key(event)[0], []).append(event)
        added = 0
        for batch in by_partition.values():
            keys = [self.key(e) for e in batch]
            if len(set(keys)) != len(keys) or any(k in self.rows for k in keys):
                self.conflicts += 1
                raise Conflict("a UsageEvent in the batch already exists")
            for key, event in zip(keys, batch):
                self.rows[key] = event
                self.events.append(event)
            added += len(batch)
        return added

    # for the tests
    def kinds(self) -> list[str]:
        return [e.kind.value for e in self.events]


# -- Meetings --------------------------------------------------------------------------------


class FakeMeetings:
    """Microsoft Graph's online meetings as the use cases see them: ``createOrGet`` is
    idempotent on ``external_id`` (the second call returns the same meeting, ``created`` False);
    subscriptions get ids ``sub-0001``...; renewals grant what was asked unless ``max_renewal``
    caps it. Queue errors in ``create_errors`` / ``subscribe_errors`` / ``renew_errors``. Every
    request, client state and call count is kept for the tests."""

    def __init__(self):
        self.meetings: dict[str, OnlineMeeting] = {}  # external id -> meeting
        self.requests: list[MeetingRequest] = []
        self.subscriptions: dict[str, CallSubscription] = {}
        self.client_states: dict[str, str] = {}  # subscription id -> the clientState Graph echoes
        self.notification_urls: list[str] = []
        self.renewals: list[tuple[str, datetime]] = []
        self.create_errors: list[Exception] = []
        self.subscribe_errors: list[Exception] = []
        self.renew_errors: list[Exception] = []
        self.create_calls = 0
        self.subscribe_calls = 0
        self.renew_calls = 0
        self.max_renewal: datetime | None = None
        self.deleted: list[str] = []

    def create_or_get(self, request: MeetingRequest) -> OnlineMeeting:
        self.create_calls += 1
        self.requests.append(request)
        if self.create_errors:
            raise self.create_errors.pop(0)
        existing = self.meetings.get(request.external_id)
        if existing is not None:
            return existing.model_copy(update={"created": False})
        n = len(self.meetings) + 1
        meeting = OnlineMeeting(meeting_id=f"MSo-fake-meeting-{n:04d}",
                                join_web_url=f"https://teams.microsoft.com/l/meetup-join/fake-{n:04d}", created=True)
        self.meetings[request.external_id] = meeting
        return meeting

    def subscribe_call_events(self, tenant_id: str, meeting: OnlineMeeting, *, notification_url: str,
                              client_state: str, expires_at: datetime) -> CallSubscription:
        self.subscribe_calls += 1
        if self.subscribe_errors:
            raise self.subscribe_errors.pop(0)
        subscription_id = f"sub-{len(self.subscriptions) + 1:04d}"
        subscription = CallSubscription(
            subscription_id=subscription_id, expires_at=expires_at,
            resource=f"communications/onlineMeetings(joinWebUrl='{quote(meeting.join_web_url, safe='')}')"
                     "/meetingCallEvents")
        self.subscriptions[subscription_id] = subscription
        self.client_states[subscription_id] = client_state
        self.notification_urls.append(notification_url)
        return subscription

    def renew_subscription(self, tenant_id: str, subscription_id: str, expires_at: datetime) -> datetime:
        self.renew_calls += 1
        if self.renew_errors:
            raise self.renew_errors.pop(0)
        granted = min(expires_at, self.max_renewal) if self.max_renewal else expires_at
        self.renewals.append((subscription_id, granted))
        return granted

    def delete_subscription(self, tenant_id: str, subscription_id: str) -> None:
        self.subscriptions.pop(subscription_id, None)
        self.deleted.append(subscription_id)


# -- SmsSender -------------------------------------------------------------------------------


class FakeSmsSender:
    """ACS SMS: ``sent`` records every message (as keyword dicts); a repeated repeatability id
    is a no-op, as at ACS. Queue errors in ``errors``; ``before_send`` (if set) runs inside
    each call, before the answer, with the call's keywords (a race a test stages)."""

    def __init__(self):
        self.sent: list[dict[str, Any]] = []
        self.errors: list[Exception] = []
        self.calls = 0
        self.before_send: Callable[..., None] | None = None

    def send(self, *, from_number: str, to_number: str, message: str, repeatability_id: str,
             first_sent: datetime, tag: str | None = None) -> str:
        self.calls += 1
        if self.before_send is not None:
            self.before_send(to_number=to_number, repeatability_id=repeatability_id)
        if self.errors:
            raise self.errors.pop(0)
        for n, earlier in enumerate(self.sent, start=1):
            if earlier["repeatability_id"] == repeatability_id:
                return f"acs-message-{n:04d}"
        message_id = f"acs-message-{len(self.sent) + 1:04d}"
        self.sent.append({"from_number": from_number, "to_number": to_number, "message": message,
                          "repeatability_id": repeatability_id, "first_sent": first_sent, "tag": tag,
                          "message_id": message_id})
        return message_id


# -- SmartDiscovery --------------------------------------------------------------------------


class FakeSmartDiscovery:
    """SMART endpoints by (normalised) FHIR base URL: ``add(base_url)`` derives Cerner-shaped
    endpoints; an unknown URL raises InvalidUpstreamData like discovery that found nothing.
    ``calls`` lists (base_url, allow_loopback); ``error`` is raised when set."""

    def __init__(self):
        self.configurations: dict[str, SmartConfiguration] = {}
        self.calls: list[tuple[str, bool]] = []
        self.error: Exception | None = None

    def add(self, base_url: str, configuration: SmartConfiguration | None = None) -> SmartConfiguration:
        url = _normalized_url(base_url)
        configuration = configuration or SmartConfiguration(
            authorization_endpoint=f"{url}/auth/authorize", token_endpoint=f"{url}/auth/token",
            jwks_uri=f"{url}/auth/jwks", issuer=url)
        self.configurations[url] = configuration
        return configuration

    def discover(self, base_url: str, *, allow_loopback: bool) -> SmartConfiguration:
        self.calls.append((base_url, allow_loopback))
        if self.error is not None:
            raise self.error
        found = self.configurations.get(_normalized_url(base_url))
        if found is None:
            raise InvalidUpstreamData("The FHIR server names no SMART authorization and token endpoints.")
        return found


# -- SmartTokenClient ------------------------------------------------------------------------


class FakeSmartTokenClient:
    """The token endpoint: answers ``answer`` (set it per test) and records each exchange's
    arguments in ``calls`` (the endpoint as its id); ``error`` is raised when set."""

    def __init__(self, answer: TokenResponse | None = None):
        self.answer = answer or TokenResponse(access_token="fake-access-token", expires_in=3600,
                                              scope="launch openid fhirUser", id_token="fake.id.token")
        self.calls: list[dict[str, Any]] = []
        self.error: Exception | None = None

    def exchange_code(self, endpoint: FhirEndpoint, config: SmartConfiguration, *, client_id: str, code: str,
                      redirect_uri: str, code_verifier: str) -> TokenResponse:
        self.calls.append({"endpoint_id": endpoint.endpoint_id, "token_endpoint": config.token_endpoint,
                           "client_id": client_id, "code": code, "redirect_uri": redirect_uri,
                           "code_verifier": code_verifier})
        if self.error is not None:
            raise self.error
        return self.answer


# -- IdTokenVerifier -------------------------------------------------------------------------


class FakeIdTokenVerifier:
    """Answers ``claims`` for any id_token (``error`` raised instead when set); ``calls`` records
    (id_token, client_id, nonce)."""

    def __init__(self, claims: dict[str, Any] | None = None):
        self.claims: dict[str, Any] = claims if claims is not None else {}
        self.calls: list[tuple[str, str, str | None]] = []
        self.error: Exception | None = None

    def verify(self, id_token: str, config: SmartConfiguration, *, client_id: str, nonce: str | None) -> dict:
        self.calls.append((id_token, client_id, nonce))
        if self.error is not None:
            raise self.error
        return dict(self.claims)


# -- FhirReader ------------------------------------------------------------------------------


class FakeFhirReader:
    """A FHIR server holding R4B resources (``put`` JSON dicts: they are parsed as the real
    client parses them, and every read returns a fresh model). Reads of an absent resource
    raise NotFound; ``read_versioned`` answers ETag ``W/"<version>"``; ``patch`` needs the
    current ETag (else ConcurrencyConflict), records its operations and bumps the version.
    ``search`` understands patient / practitioner / location (participant references) and
    ``date`` with ge/gt/le/lt on Appointment.start; any other parameter is an error, so a test
    never passes by accident. ``tokens`` (when set) are the only access tokens accepted;
    ``errors[method]`` raises once for that method. ``calls`` records (method, type, id or
    params, access token)."""

    def __init__(self, *documents: dict[str, Any]):
        self.resources: dict[tuple[str, str], dict[str, Any]] = {}
        self.versions: dict[tuple[str, str], int] = {}
        self.calls: list[tuple[str, str, Any, str]] = []
        self.patches: list[dict[str, Any]] = []
        self.tokens: set[str] | None = None
        self.errors: dict[str, Exception] = {}
        self.send_etags = True
        for document in documents:
            self.put(document)

    def put(self, document: dict[str, Any]) -> None:
        parse_resource(document)  # refuse what the real client would refuse
        key = (document["resourceType"], document["id"])
        self.resources[key] = copy.deepcopy(document)
        self.versions[key] = self.versions.get(key, 0) + 1

    def _enter(self, method: str, resource_type: str, what: Any, access_token: str) -> None:
        self.calls.append((method, resource_type, what, access_token))
        if method in self.errors:
            raise self.errors.pop(method)
        if self.tokens is not None and access_token not in self.tokens:
            raise NotAuthenticated("the EHR refused the request: the sign-in has expired")

    def _model(self, key: tuple[str, str]):
        if key not in self.resources:
            raise NotFound(f"the EHR has no such resource ({key[0]} read)")
        return parse_resource(copy.deepcopy(self.resources[key]), expected=key[0]).resource

    def read(self, base_url: str, access_token: str, resource_type: str, resource_id: str):
        self._enter("read", resource_type, resource_id, access_token)
        return self._model((resource_type, resource_id))

    def read_versioned(self, base_url: str, access_token: str, resource_type: str, resource_id: str):
        self._enter("read_versioned", resource_type, resource_id, access_token)
        key = (resource_type, resource_id)
        resource = self._model(key)
        return resource, (f'W/"{self.versions[key]}"' if self.send_etags else None)

    def search(self, base_url: str, access_token: str, resource_type: str, params: list[tuple[str, str]]):
        self._enter("search", resource_type, list(params), access_token)
        found = []
        for (kind, _), document in sorted(self.resources.items()):
            if kind == resource_type and all(self._matches(document, name, value) for name, value in params):
                found.append(self._model((kind, document["id"])))
        return found

    @staticmethod
    def _matches(document: dict[str, Any], name: str, value: str) -> bool:
        if name in ("patient", "practitioner", "location"):
            wanted = f"{name.capitalize()}/{value}"
            return any(p.get("actor", {}).get("reference") == wanted for p in document.get("participant", []))
        if name == "date" and "start" in document:
            prefix, moment = value[:2], datetime.fromisoformat(value[2:])
            start = datetime.fromisoformat(document["start"].replace("Z", "+00:00"))
            return {"ge": start >= moment, "gt": start > moment, "le": start <= moment,
                    "lt": start < moment}[prefix]
        raise AssertionError(f"FakeFhirReader does not know the search parameter {name!r}")

    def patch(self, base_url: str, access_token: str, resource_type: str, resource_id: str,
              operations: list[dict], *, if_match: str) -> str:
        self._enter("patch", resource_type, resource_id, access_token)
        key = (resource_type, resource_id)
        if key not in self.resources:
            raise NotFound(f"the EHR has no such resource ({resource_type} patch)")
        if if_match != f'W/"{self.versions[key]}"':
            raise ConcurrencyConflict(f"the EHR's resource changed since it was read ({resource_type} patch)")
        self.patches.append({"resource_type": resource_type, "id": resource_id, "operations": operations,
                             "if_match": if_match})
        self.versions[key] += 1
        return f'W/"{self.versions[key]}"'

    # for the tests
    def reads(self, resource_type: str | None = None) -> list[tuple[str, Any]]:
        """(type, id) of every read, in order."""
        return [(t, what) for method, t, what, _ in self.calls
                if method in ("read", "read_versioned") and (resource_type is None or t == resource_type)]


# ============================================================================================
# Fakes of the reminder ports (scan FHIR, backend tokens, notifications, opt-outs). Their
# imports are kept here, with the fakes that need them.
# ============================================================================================

from connector.adapters.fhir.parsing import FhirParseError  # noqa: E402
from connector.adapters.fhir.retry import SearchPage  # noqa: E402
from connector.domain.notification import (  # noqa: E402
    NotificationClaim, NotificationRef, NotificationStatus, notification_keys,
)


# -- ScanFhir --------------------------------------------------------------------------------


class FakeScanFhir(FakeFhirReader):
    """A :class:`FakeFhirReader` that also walks searches page by page, like
    ``RetryingFhir.search_pages``: the matching resources (same parameters as ``search``, plus
    ``_count``, the page size unless ``page_size`` overrides it) sorted by start then id, as
    ``SearchPage``s of R4B models. ``access_token`` may be a function: it is called once per page,
    as the real walk does. Documents put with ``put_unparsable`` match like the others but do
    not parse: their ids land in the page's ``skipped``. Each page is one call recorded in
    ``calls`` as ("search_pages", type, params, token); ``errors["search_pages"]`` raises once."""

    def __init__(self, *documents: dict[str, Any], page_size: int | None = None):
        super().__init__(*documents)
        self.page_size = page_size
        self.unparsable: dict[tuple[str, str], dict[str, Any]] = {}

    def put_unparsable(self, document: dict[str, Any]) -> None:
        try:
            parse_resource(document)
        except FhirParseError:
            self.unparsable[(document["resourceType"], document["id"])] = copy.deepcopy(document)
            return
        raise AssertionError("put_unparsable wants a document the real client refuses")

    @staticmethod
    def _start_key(document: dict[str, Any]) -> tuple[int, datetime, str]:
        start = document.get("start")
        if not start:
            return 1, datetime.min.replace(tzinfo=timezone.utc), document["id"]
        return 0, datetime.fromisoformat(start.replace("Z", "+00:00")), document["id"]

    def search_pages(self, base_url: str, access_token: str | Callable[[], str], resource_type: str,
                     params: list[tuple[str, str]], *, select: Callable[[dict], bool] | None = None,
                     model: type | None = None) -> Iterable[SearchPage]:
        params = list(params)
        counts = [value for name, value in params if name == "_count"]
        filters = [(name, value) for name, value in params if name != "_count"]
        size = self.page_size or (int(counts[-1]) if counts else 50)
        documents = [*self.resources.items(), *self.unparsable.items()]
        matching = sorted((document for (kind, _), document in documents
                           if kind == resource_type and all(self._matches(document, n, v) for n, v in filters)),
                          key=self._start_key)
        chunks = [matching[i:i + size] for i in range(0, len(matching), size)] or [[]]
        for number, chunk in enumerate(chunks, start=1):
            token = access_token() if callable(access_token) else access_token
            self._enter("search_pages", resource_type, params, token)
            resources, skipped = [], []
            for document in chunk:
                if select is not None and not select(document):
                    continue
                try:
                    resources.append(model.model_validate(copy.deepcopy(document)) if model is not None
                                     else parse_resource(copy.deepcopy(document), expected=resource_type).resource)
                except (FhirParseError, ValidationError):
                    skipped.append(document["id"])
            yield SearchPage(number, resources, skipped, len(chunk))

    # for the tests
    def page_walks(self) -> list[tuple[str, list[tuple[str, str]], str]]:
        """(type, params, token) of every page fetched, in order."""
        return [(t, what, token) for method, t, what, token in self.calls if method == "search_pages"]


# -- BackendTokens ---------------------------------------------------------------------------


class FakeBackendTokens:
    """SMART Backend Services as the scans see it: answers ``access_token`` (``errors`` are
    raised first, one per call); ``calls`` records (tenant, endpoint id, token URL, scopes)."""

    def __init__(self, access_token: str = "backend-access-token"):
        self.access_token = access_token
        self.calls: list[tuple[str, str, str | None, tuple[str, ...]]] = []
        self.errors: list[Exception] = []

    def token(self, endpoint: FhirEndpoint, token_url: str, scopes: tuple[str, ...]) -> str:
        self.calls.append((endpoint.tenant_id, endpoint.endpoint_id, token_url, tuple(scopes)))
        if self.errors:
            raise self.errors.pop(0)
        return self.access_token


# -- NotificationRepository ------------------------------------------------------------------


class FakeNotificationRepository:
    """Notification rows keyed like ``TableNotificationRepository`` (``notification_keys``:
    tenant+endpoint, appointment+kind+offset+start instant in UTC) with ETags: a claim is a
    conditional insert (False when the key exists), an outcome needs the ETag the row was read
    with (else, or for a vanished row, ConcurrencyConflict). ``before_claim(claim)`` and
    ``before_record(claim)`` run first (to let another scan or sender in); ``claim_calls`` and
    ``records`` count what reached the repository."""

    def __init__(self, *claims: NotificationClaim):
        self.rows: dict[tuple[str, str], Versioned[NotificationClaim]] = {}
        self._etags = FakeEtags()
        self.claim_calls = 0
        self.records = 0
        self.before_claim: Callable[[NotificationClaim], None] | None = None
        self.before_record: Callable[[NotificationClaim], None] | None = None
        for claim in claims:
            self.put(claim)

    def claim_notification(self, claim: NotificationClaim) -> str | None:
        if self.before_claim is not None:
            self.before_claim(claim)
        self.claim_calls += 1
        key = notification_keys(claim)
        if key in self.rows:
            return None
        etag = self._etags.next()
        self.rows[key] = Versioned(claim.model_copy(deep=True), etag)
        return etag

    def recent(self, tenant_id: str, endpoint_id: str, *, since: datetime) -> list[NotificationClaim]:
        partition = f"{tenant_id}_{endpoint_id}"
        return [v.item for (p, _), v in self._sorted() if p == partition and v.item.claimed_at >= since]

    def get_notification(self, ref: NotificationClaim | NotificationRef) -> Versioned[NotificationClaim] | None:
        return self.rows.get(notification_keys(ref))

    def record_outcome(self, claim: NotificationClaim, etag: str) -> str:
        if self.before_record is not None:
            self.before_record(claim)
        self.records += 1
        key = notification_keys(claim)
        stored = self.rows.get(key)
        if stored is None or stored.etag != etag:
            raise ConcurrencyConflict("NotificationClaim changed or vanished since it was read; read it again")
        new = self._etags.next()
        self.rows[key] = Versioned(claim.model_copy(deep=True), new)
        return new

    def _sorted(self) -> list[tuple[tuple[str, str], Versioned[NotificationClaim]]]:
        return sorted(self.rows.items())

    def for_appointment(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> list[NotificationClaim]:
        partition = f"{tenant_id}_{endpoint_id}"
        return [v.item for (p, r), v in self._sorted() if p == partition and r.startswith(f"{appointment_id}_")]

    def for_endpoint(self, tenant_id: str, endpoint_id: str,
                     status: NotificationStatus | None = None) -> list[Versioned[NotificationClaim]]:
        partition = f"{tenant_id}_{endpoint_id}"
        return [v for (p, _), v in self._sorted() if p == partition and (status is None or v.item.status is status)]

    def for_tenant(self, tenant_id: str, status: NotificationStatus) -> list[Versioned[NotificationClaim]]:
        return [v for (p, _), v in self._sorted() if p.startswith(f"{tenant_id}_") and v.item.status is status]

    def by_tag(self, tag: str) -> Versioned[NotificationClaim] | None:
        partition, _, row = tag.partition("|")
        return self.rows.get((partition, row)) if partition and row else None

    # for the tests
    def put(self, claim: NotificationClaim) -> str:
        """Store a row as it is (any status), replacing one with the same key; returns its ETag."""
        etag = self._etags.next()
        self.rows[notification_keys(claim)] = Versioned(claim.model_copy(deep=True), etag)
        return etag

    def items(self) -> list[NotificationClaim]:
        return [v.item for _, v in self._sorted()]

    def item(self, ref: NotificationClaim | NotificationRef) -> NotificationClaim:
        return self.rows[notification_keys(ref)].item

    def etag(self, ref: NotificationClaim | NotificationRef) -> str:
        return self.rows[notification_keys(ref)].etag


# -- OptOutRepository ------------------------------------------------------------------------


class FakeOptOutRepository:
    """Opt-outs by (tenant, number hash) like ``TableOptOutRepository``: the word said last
    (by ``at``) wins whatever order they arrive in; an older or same-instant word is ignored
    (``record_choice`` answers False). ``choices`` maps (tenant, hash) -> (opted_out, at)."""

    def __init__(self):
        self.choices: dict[tuple[str, str], tuple[bool, datetime]] = {}

    def is_opted_out(self, tenant_id: str, number_hash: str) -> bool:
        stored = self.choices.get((tenant_id, number_hash))
        return stored is not None and stored[0]

    def record_choice(self, tenant_id: str, number_hash: str, *, opted_out: bool, at: datetime) -> bool:
        stored = self.choices.get((tenant_id, number_hash))
        if stored is not None and stored[1] >= at:
            return False
        self.choices[(tenant_id, number_hash)] = (opted_out, at)
        return True
