"""The reminder scan: the timer's fan-out to ready endpoints, and one endpoint's scan over the
Cerner sandbox seed (pages of R4B Appointments) claiming each due message once and queueing it
hidden until it is due. Runs on the fakes of ``tests/fakes.py``."""

from __future__ import annotations

import copy
from datetime import date, datetime, timedelta, timezone

import pytest

from connector.adapters.storage.tables import StorageUnavailable
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.integration import BACKEND_SCOPES
from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, notification_keys,
)
from connector.domain.reminders import ReminderPolicy, VirtualVisitRule
from connector.domain.tenant import Consent, Tenant
from connector.errors import UpstreamUnavailable
from connector.services.reminder_scan import LOST_AFTER, PAGE_SIZE, REQUEUE_AFTER, ReminderScan, ScanJob
from dev.sandbox.cerner.seed import build_seed
from tests.fakes import (
    FakeBackendTokens, FakeClock, FakeEndpointRepository, FakeNotificationRepository, FakeQueue, FakeScanFhir,
    FakeTenantRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
ADMIN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
BASE = "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
TOKEN_URL = "https://authorization.cerner.com/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d/protocols/oauth2/token"
TODAY = date(2025, 3, 3)
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)  # 09:00 in Chicago
SEED = build_seed(today=TODAY, tz="America/Chicago")
FAMILY, CARDIOLOGY = "32216101", "32216102"
C, U, X, R = ("confirmation", "update", "cancellation", "reminder")

# Booked video visits ahead of 09:00 on the seed's day, within the eight-day look-ahead (Chicago is UTC-6).
EXPECTED = {
    ("4826003", C, 0), ("4826003", R, 60),  # today 10:30 (the day-before reminder is long past)
    ("4826005", C, 0), ("4826005", R, 60),  # today 13:00
    ("4826007", C, 0), ("4826007", R, 60),  # today 16:00
    ("4826008", C, 0), ("4826008", R, 60),  # today 18:00
    ("4826009", C, 0), ("4826009", R, 60),  # today 20:00, Cardiology, links already written (meeting rooms)
    ("4826010", C, 0), ("4826010", R, 1440), ("4826010", R, 60),  # tomorrow 09:00: the day-before one is due now
    ("4826012", C, 0), ("4826012", R, 1440), ("4826012", R, 60),  # tomorrow 13:30
}


def utc(day: int, hour: int, minute: int = 0) -> datetime:
    return datetime(2025, 3, day, hour, minute, tzinfo=timezone.utc)


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                display_name="Family Medicine Clinic", timezone="America/Chicago", linked_number="+18005550100",
                backend_client_id="backend-client", token_url=TOKEN_URL, location_ids=[FAMILY, CARDIOLOGY],
                meeting_organizer="clinic.teams@example.org", reminder_policy=ReminderPolicy(enabled=True),
                created_at=NOW - timedelta(days=30))
    return FhirEndpoint(**{**base, **changes})


def tenant(tenant_id: str = TENANT, consents: bool = True) -> Tenant:
    consent = Consent(by_oid=ADMIN, at=NOW - timedelta(days=2)) if consents else None
    return Tenant(tenant_id=tenant_id, region="us", created_at=NOW - timedelta(days=60),
                  sms_terms_consent=consent, sms_data_consent=consent)


class World:
    def __init__(self, *endpoints: FhirEndpoint, tenants: tuple[Tenant, ...] = (), page_size: int | None = None):
        self.clock = FakeClock(NOW)
        self.tenants = FakeTenantRepository(*(tenants or (tenant(),)))
        self.endpoints = FakeEndpointRepository(*(endpoints or (endpoint(),)))
        self.notifications = FakeNotificationRepository()
        self.fhir = FakeScanFhir(*SEED.resources(), page_size=page_size)
        self.tokens = FakeBackendTokens()
        self.scan_queue = FakeQueue()
        self.send_queue = FakeQueue()
        self.scan = ReminderScan(self.tenants, self.endpoints, self.notifications, self.fhir, self.tokens,
                                 self.scan_queue, self.send_queue, self.clock)

    def run(self, endpoint_id: str = "main", tenant_id: str = TENANT):
        return self.scan.scan_endpoint(tenant_id, endpoint_id)

    def claimed(self) -> set[tuple[str, str, int]]:
        return {(c.appointment_id, c.kind.value, c.offset_minutes) for c in self.notifications.items()}

    def queued(self) -> list[tuple[str, str, int, timedelta]]:
        return [(m.appointment_id, m.kind.value, m.offset_minutes, d)
                for m, d in zip(self.send_queue.sent, self.send_queue.delays)]

    def appointment(self, appointment_id: str) -> dict:
        return copy.deepcopy(self.fhir.resources[("Appointment", appointment_id)])


@pytest.fixture
def world() -> World:
    return World()


# == one endpoint's scan ====================================================================================


def test_a_scan_claims_and_queues_exactly_the_due_messages_of_the_virtual_visits(world):
    result = world.run()
    assert world.claimed() == EXPECTED
    # 12 appointments from 09:00 (4826002 starts at 09:00 sharp: `ge` includes it), 7 of them video visits
    assert (result.appointments, result.virtual, result.claimed, result.requeued, result.skipped_resources) == (
        12, 7, 16, 0, 0)
    assert result.by_kind == {"confirmation": 7, "reminder": 9}
    assert sorted((a, k, o) for a, k, o, _ in world.queued()) == sorted(EXPECTED)
    assert all(isinstance(m, NotificationRef) for m in world.send_queue.sent)
    for row in world.notifications.items():
        assert row.status is NotificationStatus.queued and row.queued_at == NOW and row.claimed_at == NOW
        assert row.tenant_id == TENANT and row.endpoint_id == "main"
    assert {c.appointment_id: c.department for c in world.notifications.items()}["4826009"] == CARDIOLOGY
    assert {c.appointment_id: c.department for c in world.notifications.items()}["4826003"] == FAMILY


def test_each_message_is_hidden_until_it_is_due(world):
    world.run()
    delays = {(a, k, o): d for a, k, o, d in world.queued()}
    assert delays[("4826003", C, 0)] == timedelta(0)
    assert delays[("4826003", R, 60)] == timedelta(minutes=30)  # 10:30 local is 16:30 UTC
    assert delays[("4826009", R, 60)] == utc(4, 1) - NOW  # 20:00 local is 02:00 UTC the next day
    assert delays[("4826010", R, 1440)] == timedelta(0)  # tomorrow 09:00 local: a day before is now
    assert delays[("4826012", R, 1440)] == timedelta(hours=4, minutes=30)
    assert delays[("4826012", R, 60)] == utc(4, 18, 30) - NOW
    row = world.notifications.item(world.send_queue.sent[world.queued().index(("4826012", R, 60, delays[
        ("4826012", R, 60)]))])
    assert row.due_at == utc(4, 18, 30) and row.appointment_start == utc(4, 19, 30)
    assert all(timedelta(0) <= d <= timedelta(days=7) for d in world.send_queue.delays)


def test_the_search_asks_each_location_with_count_and_zoned_date_bounds_and_a_backend_token(world):
    world.run()
    walks = world.fhir.page_walks()
    assert [(t, params) for t, params, _ in walks] == [
        ("Appointment", [("location", location), ("date", "ge2025-03-03T15:00:00Z"),
                         ("date", "lt2025-03-11T15:00:00Z"), ("_count", str(PAGE_SIZE))])
        for location in (FAMILY, CARDIOLOGY)]
    assert PAGE_SIZE == 100
    assert {token for *_, token in walks} == {"backend-access-token"}
    assert world.tokens.calls and set(world.tokens.calls) == {(TENANT, "main", TOKEN_URL, BACKEND_SCOPES)}


def test_the_look_ahead_bounds_the_search(world):
    stored = world.endpoints.get_endpoint(TENANT, "main")
    world.endpoints.save_endpoint(stored.item.model_copy(update={
        "reminder_policy": ReminderPolicy(enabled=True, look_ahead_days=1)}), stored.etag)
    world.run()
    assert world.fhir.page_walks()[0][1][2] == ("date", "lt2025-03-04T15:00:00Z")
    assert {a for a, _, _ in world.claimed()} == {"4826003", "4826005", "4826007", "4826008", "4826009"}


def test_a_token_is_asked_for_each_page_of_a_long_walk():
    world = World(page_size=2)
    world.run()
    assert world.claimed() == EXPECTED
    pages = world.fhir.page_walks()
    assert len(pages) == 6  # six appointments in each location: three pages each
    assert len(world.tokens.calls) == len(pages)


def test_a_second_scan_claims_and_queues_nothing_new(world):
    world.run()
    queued, etags = len(world.send_queue.sent), {notification_keys(c): world.notifications.etag(c)
                                                  for c in world.notifications.items()}
    world.clock.advance(minutes=5)
    again = world.run()
    assert (again.claimed, again.requeued, again.virtual) == (0, 0, 7)
    assert len(world.send_queue.sent) == queued
    assert {notification_keys(c): world.notifications.etag(c) for c in world.notifications.items()} == etags


def test_a_second_scan_instance_on_the_same_rows_claims_nothing(world):
    world.run()
    other = ReminderScan(world.tenants, world.endpoints, world.notifications, world.fhir, world.tokens,
                         world.scan_queue, FakeQueue(), world.clock)
    assert other.scan_endpoint(TENANT, "main").claimed == 0
    assert world.notifications.claim_calls == 16  # the second never even tried: the rows were read first


def test_a_claim_lost_to_another_scan_is_left_for_that_scan_to_queue(world):
    rival_queue = FakeQueue()

    def rival_claims_first(claim: NotificationClaim) -> None:
        if (claim.appointment_id, claim.kind.value) == ("4826005", C) and not rival_queue.sent:
            world.notifications.before_claim = None
            assert world.notifications.claim_notification(claim)  # the other scan's conditional insert wins
            rival_queue.send(NotificationRef.of(claim))
            world.notifications.before_claim = rival_claims_first

    world.notifications.before_claim = rival_claims_first
    result = world.run()
    assert result.claimed == 15 and result.by_kind == {"confirmation": 6, "reminder": 9}
    assert ("4826005", C, 0) not in {(a, k, o) for a, k, o, _ in world.queued()}
    assert [(m.appointment_id, m.kind.value) for m in rival_queue.sent] == [("4826005", C)]
    assert world.claimed() == EXPECTED  # one row each, whoever claimed it
    assert len(world.send_queue.sent) + len(rival_queue.sent) == 16


def test_a_claim_is_two_writes_the_insert_says_queued_and_nothing_rewrites_it(world):
    rewrites = []
    world.notifications.before_record = rewrites.append
    assert world.run().claimed == 16
    assert rewrites == []  # the sender's writes alone follow: no "mark queued" to race them
    assert {(c.status, c.queued_at) for c in world.notifications.items()} == {(NotificationStatus.queued, NOW)}


def test_a_row_that_says_queued_but_never_reached_the_queue_is_queued_once_long_past_due(world):
    world.run()

    def rewrite(appointment_id: str, **update) -> None:
        [row] = [c for c in world.notifications.items() if (c.appointment_id, c.kind.value) == (appointment_id, C)]
        stored = world.notifications.get_notification(row)
        world.notifications.record_outcome(stored.item.model_copy(update=update), stored.etag)

    rewrite("4826003", due_at=NOW - LOST_AFTER - timedelta(seconds=1))  # its scan died before the enqueue
    rewrite("4826005", due_at=NOW - timedelta(hours=1), attempts=1)  # the sender has it (retries, poison)
    rewrite("4826007", due_at=NOW - LOST_AFTER + timedelta(seconds=30))  # may still be on its way
    world.send_queue.sent.clear(), world.send_queue.delays.clear()
    result = world.run()
    assert (result.claimed, result.requeued) == (0, 1)
    assert world.queued() == [("4826003", C, 0, timedelta(0))]


class FlakyQueue(FakeQueue):
    """Refuses the writes whose numbers (1-based) are in ``failing``."""

    def __init__(self, failing: set[int]):
        super().__init__()
        self.failing, self.writes = failing, 0

    def send(self, message, *, delay=timedelta(0)):
        self.writes += 1
        if self.writes in self.failing:
            raise StorageUnavailable("queue send could not be written")
        return super().send(message, delay=delay)


def test_a_failed_enqueue_leaves_that_row_claimed_the_scan_goes_on_and_fails_at_the_end_for_a_retry(world):
    flaky = FlakyQueue({1, 5})
    world.scan._send_queue = flaky
    with pytest.raises(UpstreamUnavailable, match="2 due message"):
        world.run()
    assert world.claimed() == EXPECTED  # every message claimed, though two were not queued
    stranded = [c for c in world.notifications.items() if c.status is NotificationStatus.claimed]
    assert len(stranded) == 2 and all(c.queued_at is None for c in stranded)
    assert len(flaky.sent) == len(EXPECTED) - 2

    world.clock.advance(seconds=10)
    soon = world.run()
    assert (soon.claimed, soon.requeued, soon.not_queued) == (0, 0, 0)  # too fresh to be called stranded
    assert all(world.notifications.item(c).status is NotificationStatus.claimed for c in stranded)

    world.clock.set(NOW + REQUEUE_AFTER + timedelta(seconds=1))
    later = world.run()  # the host's retry of the failed job
    assert (later.claimed, later.requeued) == (0, 2)
    assert {(m.appointment_id, m.kind, m.offset_minutes) for m in flaky.sent[-2:]} == {
        (c.appointment_id, c.kind, c.offset_minutes) for c in stranded}
    for c in stranded:
        row = world.notifications.item(c)
        assert row.status is NotificationStatus.queued and row.queued_at == NOW + REQUEUE_AFTER + timedelta(seconds=1)
    assert len(flaky.sent) == len(EXPECTED)  # each message on the queue once
    assert world.run().requeued == 0  # queued now: never again


def test_a_stranded_claim_whose_enqueue_fails_again_stays_claimed_for_the_next_retry(world):
    world.scan._send_queue = FlakyQueue({1})
    with pytest.raises(UpstreamUnavailable):
        world.run()
    world.clock.set(NOW + REQUEUE_AFTER + timedelta(seconds=1))
    world.scan._send_queue = FlakyQueue({1})
    with pytest.raises(UpstreamUnavailable, match="1 due message"):
        world.run()
    [still] = [c for c in world.notifications.items() if c.status is NotificationStatus.claimed]
    world.scan._send_queue = FakeQueue()
    assert world.run().requeued == 1 and world.notifications.item(still).status is NotificationStatus.queued


def test_a_requeued_reminder_stays_hidden_until_its_time():
    world = World()
    world.send_queue.error = StorageUnavailable("down")
    calls = []

    def fail_on_the_reminder(claim):
        calls.append(claim)
        world.send_queue.error = StorageUnavailable("down") if claim.kind is NotificationKind.reminder else None

    world.notifications.before_claim = fail_on_the_reminder
    with pytest.raises(UpstreamUnavailable):
        world.run()  # every confirmation went out, every reminder's enqueue failed
    reminders = {key for key in EXPECTED if key[1] == R}
    assert {(m.appointment_id, m.kind.value, m.offset_minutes) for m in world.send_queue.sent} == EXPECTED - reminders
    world.notifications.before_claim = None
    world.send_queue.error = None
    world.clock.set(NOW + timedelta(minutes=1))
    assert world.run().requeued == len(reminders)
    assert ("4826003", R, 60, timedelta(minutes=29)) in world.queued()


def test_a_bad_resource_is_skipped_and_the_rest_are_scanned(world):
    broken = world.appointment("4826007")
    broken["id"], broken["status"] = "4826099", 42  # not a code: R4B refuses it
    world.fhir.put_unparsable(broken)
    result = world.run()
    assert result.skipped_resources == 1
    assert world.claimed() == EXPECTED


# == which appointments are virtual ========================================================================


def set_rule(world: World, rule: VirtualVisitRule) -> None:
    stored = world.endpoints.get_endpoint(TENANT, "main")
    world.endpoints.save_endpoint(stored.item.model_copy(update={
        "reminder_policy": ReminderPolicy(enabled=True, virtual_visit=rule)}), stored.etag)


def test_in_person_appointments_are_ignored_by_default(world):
    world.run()
    assert {a for a, _, _ in world.claimed()}.isdisjoint({"4826002", "4826004", "4826006", "4826011", "4826013"})


def test_without_cerner_markers_or_codes_nothing_is_virtual(world):
    set_rule(world, VirtualVisitRule(cerner_video_visit=False))
    result = world.run()
    assert (result.appointments, result.virtual, result.claimed) == (12, 0, 0)
    assert world.send_queue.sent == []


def test_service_type_codes_mark_virtual_visits(world):
    set_rule(world, VirtualVisitRule(cerner_video_visit=False, service_type_codes=("2572307905",)))  # Office Visit
    result = world.run()
    # 4826002 starts now (nothing due), 4826004 is cancelled without a confirmation
    assert result.virtual == 5
    assert {a for a, _, _ in world.claimed()} == {"4826006", "4826011", "4826013"}


def test_appointment_type_codes_mark_virtual_visits(world):
    office = world.appointment("4826006")
    office["appointmentType"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276",
                                             "code": "FOLLOWUP", "display": "A follow up visit"}]}
    world.fhir.put(office)
    set_rule(world, VirtualVisitRule(cerner_video_visit=False, appointment_type_codes=("FOLLOWUP",)))
    world.run()
    assert world.claimed() == {("4826006", C, 0), ("4826006", R, 60)}


def test_codes_of_the_wrong_kind_do_not_match(world):
    set_rule(world, VirtualVisitRule(cerner_video_visit=False, appointment_type_codes=("2572307911",)))
    assert world.run().virtual == 0  # the Video Visit code is a service type in the seed, not an appointment type


# == changes between scans ==================================================================================


def test_a_cancelled_visit_gets_one_cancellation(world):
    world.run()
    cancelled = world.appointment("4826005")
    cancelled["status"] = "cancelled"
    world.fhir.put(cancelled)
    world.clock.advance(minutes=10)
    result = world.run()
    assert result.by_kind == {"cancellation": 1}
    assert world.queued()[-1] == ("4826005", X, 0, timedelta(0))
    world.clock.advance(minutes=10)
    assert world.run().claimed == 0


def test_a_rescheduled_visit_gets_one_update_and_reminders_for_its_new_time(world):
    world.run()
    moved = world.appointment("4826007")
    moved["start"], moved["end"] = "2025-03-03T23:00:00.000Z", "2025-03-03T23:15:00.000Z"  # 16:00 -> 17:00 local
    world.fhir.put(moved)
    world.clock.advance(minutes=10)
    result = world.run()
    assert result.by_kind == {"update": 1, "reminder": 1}
    new = [(k, o, d) for a, k, o, d in world.queued()[16:]]
    assert new == [(U, 0, timedelta(0)), (R, 60, utc(3, 22) - world.clock.now())]
    starts = {(c.kind.value, c.offset_minutes, c.appointment_start) for c in world.notifications.items()
              if c.appointment_id == "4826007"}
    assert starts == {(C, 0, utc(3, 22)), (R, 60, utc(3, 22)), (U, 0, utc(3, 23)), (R, 60, utc(3, 23))}
    assert world.run().claimed == 0


def test_a_start_spelled_with_an_offset_is_the_same_claim(world):
    world.run()
    respelled = world.appointment("4826010")
    respelled["start"], respelled["end"] = "2025-03-04T09:00:00-06:00", "2025-03-04T09:15:00-06:00"
    world.fhir.put(respelled)
    world.clock.advance(minutes=1)
    result = world.run()
    assert (result.claimed, result.by_kind) == (0, {})


# == fan-out ================================================================================================


def test_fan_out_queues_one_job_per_ready_endpoint_only():
    ready = endpoint()
    not_ready = [
        endpoint(endpoint_id="off", base_url=f"{BASE}-off", reminder_policy=ReminderPolicy(enabled=False)),
        endpoint(endpoint_id="no-number", base_url=f"{BASE}-nn", linked_number=None),
        endpoint(endpoint_id="no-backend", base_url=f"{BASE}-nb", backend_client_id=None),
        endpoint(endpoint_id="no-token-url", base_url=f"{BASE}-nt", token_url=None),
        endpoint(endpoint_id="no-locations", base_url=f"{BASE}-nl", location_ids=[]),
        endpoint(tenant_id=OTHER, endpoint_id="no-consent", base_url=f"{BASE}-nc"),
        endpoint(tenant_id="12345678-1234-1234-1234-123456789012", endpoint_id="no-tenant", base_url=f"{BASE}-nx"),
    ]
    world = World(ready, *not_ready, tenants=(tenant(), tenant(OTHER, consents=False)))
    assert world.scan.fan_out() == 1
    assert world.scan_queue.sent == [ScanJob(tenant_id=TENANT, endpoint_id="main")]
    assert world.fhir.calls == [] and world.tokens.calls == []
    for ep in not_ready:  # a job for them anyway (a stale message) scans nothing
        result = world.run(ep.endpoint_id, ep.tenant_id)
        assert (result.appointments, result.claimed) == (0, 0), ep.endpoint_id
    assert world.fhir.calls == [] and world.tokens.calls == [] and world.send_queue.sent == []


def test_fan_out_queues_every_ready_endpoint_of_every_tenant():
    second = endpoint(tenant_id=OTHER, endpoint_id="cardio", base_url=f"{BASE}-2")
    world = World(endpoint(), second, tenants=(tenant(), tenant(OTHER)))
    assert world.scan.fan_out() == 2
    assert sorted((j.tenant_id, j.endpoint_id) for j in world.scan_queue.sent) == [(TENANT, "main"), (OTHER, "cardio")]


def test_a_job_for_an_unknown_endpoint_scans_nothing(world):
    result = world.run("gone")
    assert (result.appointments, result.claimed) == (0, 0)
    assert world.fhir.calls == []
