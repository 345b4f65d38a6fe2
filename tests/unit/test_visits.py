"""Visits: one Teams meeting per appointment, its live state from Graph call events, the usage
events the reports count, and the subscriptions that keep live status alive.

Runs on the fakes of ``tests/fakes.py``, with appointments from the Cerner sandbox seed.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import date, datetime, timedelta, timezone

import pytest

from connector.adapters.fhir.parsing import parse_resource
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.meeting import CallEvent, CallEventKind, ParticipantRole, RosterChange, meeting_external_id
from connector.domain.usage import UsageKind
from connector.domain.visit import PatientPresence, SubscriptionLink
from connector.errors import ConcurrencyConflict, UpstreamUnavailable
from connector.services.visits import (
    LIVE_STATUS_AFTER_END, MEETING_SUBJECT, RENEW_BEFORE, SUBSCRIPTION_LIFETIME, ForgedNotification, NoOrganizer, Visits,
)
from dev.sandbox.cerner.seed import build_seed
from tests.fakes import (
    FakeClock, FakeIdSource, FakeMeetings, FakeSubscriptionRepository, FakeUsageEventLog, FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
TODAY = date(2025, 3, 3)
SEED = build_seed(today=TODAY, tz="America/Chicago")
NOTIFY = "https://visits.example.org/api/graph/notifications"
FAMILY_MEDICINE, CARDIOLOGY = "32216101", "32216102"
DEFAULT_ORGANIZER = "clinic.teams@example.org"
FAMILY_ORGANIZER = "family.medicine@example.org"
# 4826003: video visit at 10:30 Chicago (16:30Z), 15 minutes, Family Medicine, patient 12744003.
APPOINTMENT = "4826003"


def appointment(appointment_id: str = APPOINTMENT):
    return parse_resource(SEED.appointment(appointment_id), expected="Appointment").resource


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url="https://fhir-ehr.cerner.com/r4/x",
                environment=Environment.production, meeting_organizer=DEFAULT_ORGANIZER,
                department_organizers={FAMILY_MEDICINE: FAMILY_ORGANIZER},
                created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return FhirEndpoint(**{**base, **changes})


class World:
    def __init__(self, now: datetime = datetime(2025, 3, 3, 16, 0, tzinfo=timezone.utc)):
        self.clock = FakeClock(now)
        self.ids = FakeIdSource()
        self.visits = FakeVisitRepository()
        self.subscriptions = FakeSubscriptionRepository()
        self.meetings = FakeMeetings()
        self.usage = FakeUsageEventLog()
        self.service = self.new_service()

    def new_service(self) -> Visits:
        """Another process on the same storage (and the same Graph)."""
        return Visits(self.visits, self.subscriptions, self.meetings, self.usage, self.clock, self.ids,
                      notification_url=NOTIFY)

    def ensure(self, appointment_id: str = APPOINTMENT, ep: FhirEndpoint | None = None, **kwargs):
        return self.service.ensure_visit(ep or endpoint(), appointment(appointment_id),
                                         ehr_user_id=kwargs.get("ehr_user_id", "4122701"))

    def event(self, minutes: float, *roster: RosterChange, kind=CallEventKind.roster_updated,
              subscription_id: str = "sub-0001", client_state: str | None = "<real>") -> CallEvent:
        if client_state == "<real>":
            client_state = self.meetings.client_states[subscription_id]
        return CallEvent(subscription_id=subscription_id, client_state=client_state, kind=kind,
                         at=datetime(2025, 3, 3, 16, 30, tzinfo=timezone.utc) + timedelta(minutes=minutes),
                         roster=roster)


def guest(lobby: bool = False, left: bool = False, pid: str = "guest-1") -> RosterChange:
    return RosterChange(participant_id=pid, role=ParticipantRole.guest, in_lobby=lobby, left=left)


def organizer(left: bool = False) -> RosterChange:
    return RosterChange(participant_id="org-1", role=ParticipantRole.organizer, left=left)


@pytest.fixture
def world() -> World:
    return World()


# == making the meeting ====================================================================================


def test_ensure_visit_creates_the_meeting_and_the_visit(world):
    stored = world.ensure()
    visit = stored.item
    [request] = world.meetings.requests
    assert request.external_id == meeting_external_id(TENANT, "main", APPOINTMENT)
    assert request.organizer_user_id == FAMILY_ORGANIZER
    assert request.subject == MEETING_SUBJECT == "Video visit"
    assert (request.start, request.end) == (datetime(2025, 3, 3, 16, 30, tzinfo=timezone.utc),
                                            datetime(2025, 3, 3, 16, 45, tzinfo=timezone.utc))
    assert request.tenant_id == TENANT
    meeting = world.meetings.meetings[request.external_id]
    assert (visit.meeting_id, visit.join_web_url) == (meeting.meeting_id, meeting.join_web_url)
    assert (visit.tenant_id, visit.endpoint_id, visit.appointment_id) == (TENANT, "main", APPOINTMENT)
    assert (visit.organizer_user_id, visit.ehr_user_id, visit.department) == (FAMILY_ORGANIZER, "4122701",
                                                                               FAMILY_MEDICINE)
    assert visit.patient is PatientPresence.invited
    assert visit.created_at == visit.updated_at == world.clock.now()
    assert world.visits.visit(APPOINTMENT) == visit


def test_the_meeting_subject_never_names_the_patient(world):
    world.ensure()
    [request] = world.meetings.requests
    assert "GARCIA" not in request.subject.upper() and "SOFIA" not in request.subject.upper()


def test_a_second_ensure_reuses_the_visit_without_asking_graph(world):
    first = world.ensure()
    second = world.ensure()
    assert world.meetings.create_calls == 1 and world.meetings.subscribe_calls == 1
    assert second.item == first.item and second.etag == first.etag
    assert len(world.visits.visits) == 1


def test_two_launches_racing_land_in_the_same_visit(world):
    # the other launch inserts its row between our read and our insert
    winner_service = world.new_service()
    real_add = world.visits.add_visit

    def add_after_the_winner(visit):
        world.visits.add_visit = real_add
        winner_service.ensure_visit(endpoint(), appointment(), ehr_user_id="4122702")
        return real_add(visit)

    world.visits.add_visit = add_after_the_winner
    ours = world.ensure(ehr_user_id="4122701")
    assert ours.item.ehr_user_id == "4122702"  # the winner's row
    assert world.meetings.create_calls == 2 and len(world.meetings.meetings) == 1  # createOrGet: one meeting
    assert len(world.visits.visits) == 1


def test_the_endpoints_organizer_owns_departments_without_their_own(world):
    world.ensure("4826006")  # Cardiology
    [request] = world.meetings.requests
    assert request.organizer_user_id == DEFAULT_ORGANIZER
    assert world.visits.visit("4826006").department == CARDIOLOGY


def test_organizer_for_prefers_the_department():
    ep = endpoint()
    assert ep.organizer_for(FAMILY_MEDICINE) == FAMILY_ORGANIZER
    assert ep.organizer_for(CARDIOLOGY) == DEFAULT_ORGANIZER
    assert ep.organizer_for(None) == DEFAULT_ORGANIZER
    assert endpoint(meeting_organizer=None).organizer_for(CARDIOLOGY) is None
    assert endpoint(meeting_organizer=None).organizer_for(FAMILY_MEDICINE) == FAMILY_ORGANIZER


def test_without_an_organizer_there_is_no_meeting_and_no_row(world):
    ep = endpoint(meeting_organizer=None)
    with pytest.raises(NoOrganizer, match="administrator") as caught:
        world.ensure("4826006", ep)
    assert caught.value.http_status == 409
    assert world.meetings.create_calls == 0 and world.visits.visits == {}
    assert world.subscriptions.subscriptions == {}


def test_a_graph_failure_leaves_no_row(world):
    world.meetings.create_errors.append(UpstreamUnavailable("Graph is busy", retry_after=5))
    with pytest.raises(UpstreamUnavailable):
        world.ensure()
    assert world.visits.visits == {}
    assert world.ensure().item.meeting_id  # and the next launch makes it


# -- the call-event subscription ---------------------------------------------------------------------------


def test_the_subscription_is_stored_with_a_hash_of_its_client_state_only(world):
    stored = world.ensure()
    [(subscription_id, client_state)] = world.meetings.client_states.items()
    assert stored.item.subscription_id == subscription_id
    link = world.subscriptions.get_subscription(subscription_id).item
    assert link.client_state_hash == hashlib.sha256(client_state.encode()).hexdigest()
    assert (link.tenant_id, link.endpoint_id, link.appointment_id) == (TENANT, "main", APPOINTMENT)
    assert link.expires_at == world.clock.now() + SUBSCRIPTION_LIFETIME
    assert world.meetings.notification_urls == [NOTIFY]
    stored_text = link.model_dump_json() + stored.item.model_dump_json()
    assert client_state not in stored_text
    assert len(client_state) >= 43  # 256 bits


def test_a_failed_subscription_leaves_the_visit_usable_and_the_next_ensure_retries(world, caplog):
    world.meetings.subscribe_errors.append(UpstreamUnavailable("Graph is busy"))
    with caplog.at_level(logging.WARNING, logger="connector.visits"):
        first = world.ensure()
    assert first.item.subscription_id is None and first.item.meeting_id
    assert world.subscriptions.subscriptions == {}
    assert "live status not available" in caplog.text and APPOINTMENT not in caplog.text
    second = world.ensure()
    assert second.item.subscription_id == "sub-0001"
    assert world.meetings.create_calls == 1 and world.meetings.subscribe_calls == 2


def test_no_subscription_once_live_status_is_over(world):
    world.meetings.subscribe_errors.append(UpstreamUnavailable("Graph is busy"))
    world.ensure()
    world.clock.set(datetime(2025, 3, 3, 16, 45, tzinfo=timezone.utc) + LIVE_STATUS_AFTER_END + timedelta(seconds=1))
    assert world.ensure().item.subscription_id is None
    assert world.meetings.subscribe_calls == 1


# == live state ================================================================================================


def test_call_events_update_the_visit_and_append_usage_events(world):
    world.ensure()
    applied = world.service.apply_call_events([
        world.event(1, guest(lobby=True)),
        world.event(4, guest()),
        world.event(5, organizer()),
        world.event(20, kind=CallEventKind.call_ended),
    ])
    assert applied == 4
    visit = world.visits.visit(APPOINTMENT)
    assert visit.patient is PatientPresence.left
    assert visit.lobby_since.minute == 31 and visit.admitted_at.minute == 34
    assert visit.started_at.minute == 35 and visit.ended_at.minute == 50
    assert world.usage.kinds() == ["lobby", "lobby_wait", "visit_started", "visit_ended"]
    by_kind = {e.kind: e for e in world.usage.events}
    assert by_kind[UsageKind.lobby_wait].duration_seconds == 180.0
    assert by_kind[UsageKind.visit_ended].duration_seconds == 900.0
    assert by_kind[UsageKind.lobby].duration_seconds is None
    for event in world.usage.events:
        assert (event.tenant_id, event.endpoint_id, event.department) == (TENANT, "main", FAMILY_MEDICINE)
        assert APPOINTMENT not in event.event_id and "12744003" not in event.event_id
    assert by_kind[UsageKind.lobby].at == visit.lobby_since


def test_the_same_notification_applied_twice_is_counted_once(world):
    world.ensure()
    notification = [world.event(1, guest(lobby=True)), world.event(4, guest())]
    assert world.service.apply_call_events(notification) == 2
    before = world.visits.visit(APPOINTMENT)
    assert world.service.apply_call_events(notification) == 2
    assert world.usage.kinds() == ["lobby", "lobby_wait"]
    after = world.visits.visit(APPOINTMENT)
    assert (after.lobby_since, after.admitted_at, after.patient) == (before.lobby_since, before.admitted_at,
                                                                     before.patient)


def test_two_processes_applying_the_same_notification_count_it_once(world):
    world.ensure()
    notification = world.event(1, guest(lobby=True))
    other = world.new_service()

    def the_other_process_first(_visit):
        world.visits.before_save = None
        other.apply_call_events([notification])

    world.visits.before_save = the_other_process_first
    assert world.service.apply_call_events([notification]) == 1
    assert world.usage.kinds() == ["lobby"]
    assert world.usage.conflicts == 0  # the loser re-read the visit and found the step done
    assert world.visits.visit(APPOINTMENT).patient is PatientPresence.lobby


def test_a_duplicate_usage_event_does_not_sink_the_others(world):
    world.ensure()
    world.service.apply_call_events([world.event(1, guest(lobby=True))])
    # the visit row loses lobby_since (a restore, say): the same lobby event comes again with admission
    world.visits.touch(APPOINTMENT, lobby_since=None, guests_in_lobby=["guest-1"])
    world.service.apply_call_events([world.event(1, guest(lobby=True)), world.event(3, guest())])
    assert world.usage.kinds() == ["lobby", "lobby_wait"]
    assert world.usage.conflicts == 1


@pytest.mark.parametrize("client_state", ["forged-state", "", None])
def test_a_forged_client_state_is_refused_and_changes_nothing(world, client_state):
    world.ensure()
    before = world.visits.visits.copy()
    with pytest.raises(ForgedNotification) as caught:
        world.service.apply_call_events([world.event(1, guest(lobby=True), client_state=client_state)])
    assert caught.value.http_status == 403
    assert world.visits.visits == before and world.usage.events == []


def test_another_subscriptions_client_state_is_forged_too(world):
    world.ensure()
    world.ensure("4826005")
    other_state = world.meetings.client_states["sub-0002"]
    with pytest.raises(ForgedNotification):
        world.service.apply_call_events([world.event(1, guest(lobby=True), client_state=other_state)])
    assert world.visits.visit(APPOINTMENT).patient is PatientPresence.invited


def test_a_batch_with_one_forged_event_still_applies_the_genuine_ones(world):
    world.ensure()
    with pytest.raises(ForgedNotification):
        world.service.apply_call_events([world.event(1, guest(lobby=True)),
                                         world.event(2, guest(), client_state="forged")])
    visit = world.visits.visit(APPOINTMENT)
    assert visit.patient is PatientPresence.lobby and visit.admitted_at is None
    assert world.usage.kinds() == ["lobby"]


def test_notifications_for_unknown_subscriptions_are_ignored(world):
    world.ensure()
    before = world.visits.visits.copy()
    assert world.service.apply_call_events([
        world.event(1, guest(lobby=True), subscription_id="sub-9999", client_state="whatever")]) == 0
    assert world.visits.visits == before and world.usage.events == []


def test_a_notification_whose_visit_is_gone_is_skipped(world):
    world.subscriptions.add_subscription(SubscriptionLink(
        subscription_id="sub-orphan", tenant_id=TENANT, endpoint_id="main", appointment_id="999",
        client_state_hash=hashlib.sha256(b"s").hexdigest(), expires_at=world.clock.now() + timedelta(days=1)))
    assert world.service.apply_call_events([
        world.event(1, guest(), subscription_id="sub-orphan", client_state="s")]) == 0


def test_a_visit_that_keeps_changing_gives_up_with_a_concurrency_conflict(world):
    world.ensure()
    world.visits.before_save = lambda visit: world.visits.touch(APPOINTMENT)
    with pytest.raises(ConcurrencyConflict, match="kept changing"):
        world.service.apply_call_events([world.event(1, guest(lobby=True))])
    assert world.usage.events == []


# -- launches, links, write-back --------------------------------------------------------------------------


def test_record_launch_and_link_sent_append_usage_events(world):
    stored = world.ensure()
    world.service.record_launch(endpoint(), FAMILY_MEDICINE)
    world.clock.advance(minutes=2)
    updated = world.service.record_link_sent(stored)
    assert updated.item.link_sent_at == world.clock.now()
    assert world.usage.kinds() == ["launch", "sms_sent"]
    assert world.usage.events[0].department == FAMILY_MEDICINE
    assert world.usage.events[0].event_id != world.usage.events[1].event_id
    written = world.service.mark_written_back(updated)
    assert written.item.written_back is True and world.visits.visit(APPOINTMENT).written_back is True


# == subscriptions ============================================================================================


def expire_soon(world: World, subscription_id: str, within: timedelta = timedelta(hours=1)) -> None:
    """Graph granted this subscription less than asked: it expires ``within`` from now."""
    link = world.subscriptions.get_subscription(subscription_id).item
    world.subscriptions.add_subscription(link.model_copy(update={"expires_at": world.clock.now() + within}))


def test_renew_subscriptions_renews_soon_expiring_ones_and_drops_those_of_finished_visits(world):
    live = world.ensure("4826007").item.subscription_id  # 22:00Z today
    later = world.ensure("4826010").item.subscription_id  # tomorrow: its subscription is far from expiring
    ended = world.ensure("4826005").item.subscription_id
    world.visits.touch("4826005", ended_at=datetime(2025, 3, 3, 19, 20, tzinfo=timezone.utc))
    old = world.ensure("4826001").item.subscription_id  # ended 14:15Z: live status lasts until 16:15Z
    world.subscriptions.add_subscription(SubscriptionLink(
        subscription_id="sub-of-a-gone-visit", tenant_id=TENANT, endpoint_id="main", appointment_id="777",
        client_state_hash="0" * 64, expires_at=world.clock.now() + timedelta(hours=1)))
    for subscription_id in (live, ended, old):
        expire_soon(world, subscription_id)
    before_later = world.subscriptions.get_subscription(later)

    world.clock.advance(minutes=30)  # 16:30Z
    assert world.service.renew_subscriptions() == (1, 3)

    assert world.meetings.renewals == [(live, world.clock.now() + SUBSCRIPTION_LIFETIME)]
    assert world.subscriptions.get_subscription(live).item.expires_at == world.clock.now() + SUBSCRIPTION_LIFETIME
    assert set(world.subscriptions.removed) == {ended, old, "sub-of-a-gone-visit"}
    assert set(world.subscriptions.subscriptions) == {live, later}
    assert world.subscriptions.get_subscription(later) == before_later  # not due: untouched


def test_a_renewal_stores_the_expiry_graph_granted(world):
    subscription_id = world.ensure("4826007").item.subscription_id
    expire_soon(world, subscription_id)
    world.meetings.max_renewal = world.clock.now() + timedelta(hours=20)
    assert world.service.renew_subscriptions() == (1, 0)
    assert world.subscriptions.get_subscription(subscription_id).item.expires_at == world.meetings.max_renewal


def test_a_failed_renewal_keeps_the_subscription_for_the_next_run(world):
    subscription_id = world.ensure("4826007").item.subscription_id
    expire_soon(world, subscription_id)
    world.meetings.renew_errors.append(UpstreamUnavailable("Graph is busy"))
    assert world.service.renew_subscriptions() == (0, 0)
    assert world.subscriptions.get_subscription(subscription_id) is not None
    assert world.service.renew_subscriptions() == (1, 0)


def test_nothing_to_renew_far_from_expiry(world):
    subscription_id = world.ensure("4826007").item.subscription_id
    assert world.service.renew_subscriptions() == (0, 0)
    expire_soon(world, subscription_id, within=RENEW_BEFORE)  # exactly at the edge: not yet
    assert world.service.renew_subscriptions() == (0, 0)
    assert world.meetings.renew_calls == 0
    expire_soon(world, subscription_id, within=RENEW_BEFORE - timedelta(seconds=1))
    assert world.service.renew_subscriptions() == (1, 0)


def test_a_renewal_lost_to_another_timer_does_not_stop_the_others(world):
    first = world.ensure("4826007").item.subscription_id
    second = world.ensure("4826008").item.subscription_id
    for subscription_id in (first, second):
        expire_soon(world, subscription_id)
    real_renew = world.meetings.renew_subscription

    def renewed_by_another_timer_meanwhile(tenant_id, subscription_id, expires_at):
        granted = real_renew(tenant_id, subscription_id, expires_at)
        if subscription_id == first:
            stored = world.subscriptions.get_subscription(first)
            world.subscriptions.save_subscription(stored.item.model_copy(update={"expires_at": granted}), stored.etag)
        return granted

    world.meetings.renew_subscription = renewed_by_another_timer_meanwhile
    renewed, dropped = world.service.renew_subscriptions()
    assert world.subscriptions.get_subscription(second).item.expires_at == world.clock.now() + SUBSCRIPTION_LIFETIME
    assert (renewed, dropped) == (1, 0)
