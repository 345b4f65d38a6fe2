"""The admin's side of reminders: the policy read and written with ETags (If-Match), a preview of
every message in every language, the tenant's failed messages and their replay. Runs on fakes."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone

import pytest

from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.notification import NotificationClaim, NotificationKind, NotificationRef, NotificationStatus
from connector.domain.reminders import ReminderPolicy
from connector.domain.sms_text import MAX_SEGMENTS, is_gsm7, segments
from connector.errors import ConcurrencyConflict, Conflict, InvalidInput, NotFound, PreconditionRequired
from connector.services.patient_links import PatientLinks
from connector.services.reminder_admin import PreviewMessage, ReminderAdmin
from connector.services.reminder_send import ReminderSender
from connector.services.visits import Visits
from tests.fakes import (
    FakeBackendTokens, FakeClock, FakeEndpointRepository, FakeIdSource, FakeJoinLinkRepository, FakeMeetings,
    FakeNotificationRepository, FakeOptOutRepository, FakeQueue, FakeScanFhir, FakeSmsSender,
    FakeSubscriptionRepository, FakeTenantRepository, FakeUsageEventLog, FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
BASE = "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
PUBLIC = "https://vv-connector-us.azurewebsites.net"
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)  # 09:00 in Chicago
LONG_CLINIC = ("Northwestern Regional Medical Group - Pediatric and Adolescent Telehealth Services, "
               "Evanston North 2")


def endpoint(tenant_id: str = TENANT, endpoint_id: str = "main", **changes) -> FhirEndpoint:
    base = dict(tenant_id=tenant_id, endpoint_id=endpoint_id, base_url=f"{BASE}/{tenant_id[:4]}/{endpoint_id}",
                environment=Environment.production, display_name="Family Medicine Clinic",
                timezone="America/Chicago", linked_number="+18005550100", created_at=NOW - timedelta(days=30))
    return FhirEndpoint(**{**base, **changes})


def failed_row(tenant_id: str = TENANT, appointment_id: str = "4826003", *, claimed_at: datetime = NOW,
               status: NotificationStatus = NotificationStatus.failed, endpoint_id: str = "main") -> NotificationClaim:
    return NotificationClaim(tenant_id=tenant_id, endpoint_id=endpoint_id, appointment_id=appointment_id,
                             kind=NotificationKind.reminder, offset_minutes=60,
                             appointment_start=datetime(2025, 3, 3, 16, 30, tzinfo=timezone.utc), status=status,
                             claimed_at=claimed_at, failure="gave up" if status is NotificationStatus.failed else None)


class World:
    def __init__(self, *endpoints: FhirEndpoint):
        self.clock = FakeClock(NOW)
        self.endpoints = FakeEndpointRepository(*(endpoints or (endpoint(), endpoint(OTHER, "theirs"))))
        self.notifications = FakeNotificationRepository()
        self.queue = FakeQueue()
        ids, visit_rows, usage = FakeIdSource(), FakeVisitRepository(), FakeUsageEventLog()
        tenants = FakeTenantRepository()
        visits = Visits(visit_rows, FakeSubscriptionRepository(), FakeMeetings(), usage, self.clock, ids,
                        notification_url=f"{PUBLIC}/api/notifications/graph")
        links = PatientLinks(FakeJoinLinkRepository(), visit_rows, self.endpoints, tenants, FakeSmsSender(),
                             self.clock, ids, public_base_url=PUBLIC)
        self.sender = ReminderSender(self.notifications, self.endpoints, tenants, FakeScanFhir(), FakeBackendTokens(),
                                     visits, links, FakeSmsSender(), FakeOptOutRepository(), self.queue, usage,
                                     self.clock, opt_out_key=b"k" * 32)
        self.admin = ReminderAdmin(self.endpoints, self.notifications, self.sender, self.clock,
                                   public_base_url=PUBLIC + "/")


@pytest.fixture
def world() -> World:
    return World()


# == the policy =============================================================================================


def test_the_policy_is_read_with_its_etag(world):
    stored = world.admin.policy(TENANT, "main")
    assert stored.item.reminder_policy == ReminderPolicy()
    assert stored.etag == world.endpoints.get_endpoint(TENANT, "main").etag


def test_a_policy_change_needs_if_match(world):
    policy = ReminderPolicy(enabled=True)
    with pytest.raises(PreconditionRequired) as caught:
        world.admin.set_policy(TENANT, "main", policy, None)
    assert caught.value.http_status == 428
    with pytest.raises(PreconditionRequired):
        world.admin.set_policy(TENANT, "main", policy, "")
    with pytest.raises(InvalidInput) as caught:
        world.admin.set_policy(TENANT, "main", policy, "not an etag")
    assert caught.value.http_status == 400
    assert world.endpoints.get_endpoint(TENANT, "main").item.reminder_policy.enabled is False


def test_a_policy_change_with_a_stale_etag_is_a_conflict(world):
    stale = world.admin.policy(TENANT, "main").etag
    world.admin.set_policy(TENANT, "main", ReminderPolicy(enabled=True), stale)
    with pytest.raises(ConcurrencyConflict) as caught:
        world.admin.set_policy(TENANT, "main", ReminderPolicy(enabled=False), stale)
    assert caught.value.http_status == 409
    assert world.endpoints.get_endpoint(TENANT, "main").item.reminder_policy.enabled is True


def test_a_policy_change_is_saved_and_returned_with_the_new_etag(world):
    before = world.admin.policy(TENANT, "main")
    policy = ReminderPolicy(enabled=True, reminder_offsets_minutes=(120, 2880), quiet_hours_start=time(20),
                            quiet_hours_end=time(7, 30), default_language="es")
    saved = world.admin.set_policy(TENANT, "main", policy, before.etag)
    assert saved.item.reminder_policy == policy and saved.item.reminder_policy.reminder_offsets_minutes == (2880, 120)
    assert saved.etag != before.etag and saved.etag == world.endpoints.get_endpoint(TENANT, "main").etag
    assert saved.item.model_copy(update={"reminder_policy": ReminderPolicy()}) == before.item  # nothing else moved


@pytest.mark.parametrize("endpoint_id", ["theirs", "nope", "../main", "MAIN"])
def test_another_tenants_or_an_unknown_endpoint_is_not_found(world, endpoint_id):
    with pytest.raises(NotFound):
        world.admin.policy(TENANT, endpoint_id)
    etag = world.endpoints.get_endpoint(OTHER, "theirs").etag
    with pytest.raises(NotFound):
        world.admin.set_policy(TENANT, endpoint_id, ReminderPolicy(enabled=True), etag)
    assert world.endpoints.get_endpoint(OTHER, "theirs").item.reminder_policy.enabled is False


# == the preview ============================================================================================


@pytest.mark.parametrize("clinic", ["Demo clinic (Cerner sandbox)", "Family Medicine Clinic", "Cardiology Clinic",
                                    LONG_CLINIC])
def test_the_preview_lists_every_kind_in_every_language_within_two_segments(clinic):
    world = World(endpoint(display_name=clinic))
    preview = world.admin.preview(TENANT, "main")
    assert len(preview) == 16
    assert [(p.kind, p.language) for p in preview] == [
        (kind, language) for kind in ("confirmation", "update", "cancellation", "reminder")
        for language in ("en", "es", "de", "fr")]
    for message in preview:
        assert isinstance(message, PreviewMessage)
        assert message.segments == segments(message.text) <= MAX_SEGMENTS, (message.kind, message.language)
        assert is_gsm7(message.text)
        if message.kind == "cancellation":
            assert "/api/j/" not in message.text
        else:
            link = f"{PUBLIC}/api/j/{'S' * 32}" + ("" if message.language == "en" else f"?hl={message.language}")
            assert f"{link} " in message.text, (message.kind, message.language)


def test_the_preview_is_for_tomorrow_at_ten_in_the_clinics_zone(world):
    preview = {(p.kind, p.language): p.text for p in world.admin.preview(TENANT, "main")}
    assert preview[("confirmation", "en")] == (
        f"Family Medicine Clinic: your video visit is on Mar 4 at 10:00 AM. Join from your phone, no app needed: "
        f"{PUBLIC}/api/j/{'S' * 32} Reply STOP to opt out.")
    assert preview[("cancellation", "de")].startswith(
        "Family Medicine Clinic: Ihre Videosprechstunde am 4. März um 10:00 wurde abgesagt.")


def test_the_preview_takes_a_sample_start(world):
    start = datetime(2025, 3, 3, 21, 45, tzinfo=timezone.utc)  # 15:45 today in Chicago
    preview = {(p.kind, p.language): p.text for p in world.admin.preview(TENANT, "main", start=start)}
    assert "today at 3:45 PM" in preview[("reminder", "en")]
    assert "hoy a las 15:45" in preview[("reminder", "es")]


def test_the_preview_of_another_tenants_endpoint_is_not_found(world):
    with pytest.raises(NotFound):
        world.admin.preview(TENANT, "theirs")


def test_a_clinic_without_a_name_previews_as_your_clinic():
    world = World(endpoint(display_name=""))
    assert all(p.text.startswith("Your clinic") for p in world.admin.preview(TENANT, "main"))


# == failed messages and replays ============================================================================


def test_failed_lists_only_the_tenants_failed_messages_oldest_first(world):
    world.notifications.put(failed_row(appointment_id="4826005", claimed_at=NOW))
    world.notifications.put(failed_row(appointment_id="4826007", claimed_at=NOW - timedelta(hours=2)))
    world.notifications.put(failed_row(appointment_id="4826008", status=NotificationStatus.sent))
    world.notifications.put(failed_row(appointment_id="4826009", status=NotificationStatus.queued))
    world.notifications.put(failed_row(OTHER, "4826010", endpoint_id="theirs"))
    assert [c.appointment_id for c in world.admin.failed(TENANT)] == ["4826007", "4826005"]
    assert [c.appointment_id for c in world.admin.failed(OTHER)] == ["4826010"]
    assert all(c.status is NotificationStatus.failed for c in world.admin.failed(TENANT))


def test_a_tenant_replays_its_own_failed_message_once(world):
    row = failed_row()
    world.notifications.put(row)
    ref = NotificationRef.of(row)
    replayed = world.admin.replay(TENANT, ref)
    assert (replayed.status, replayed.replays, replayed.failure) == (NotificationStatus.queued, 1, None)
    assert world.queue.sent == [ref]
    with pytest.raises(Conflict):
        world.admin.replay(TENANT, ref)
    assert len(world.queue.sent) == 1


def test_replaying_another_tenants_message_is_not_found(world):
    row = failed_row(OTHER, "4826010", endpoint_id="theirs")
    world.notifications.put(row)
    etag = world.notifications.etag(row)
    with pytest.raises(NotFound):
        world.admin.replay(TENANT, NotificationRef.of(row))
    # the same row named under the caller's tenant is a row that does not exist
    mine = NotificationRef.of(row).model_copy(update={"tenant_id": TENANT})
    with pytest.raises(NotFound):
        world.admin.replay(TENANT, mine)
    assert world.notifications.etag(row) == etag and world.notifications.item(row).status is NotificationStatus.failed
    assert world.queue.sent == []


def test_replaying_for_an_unknown_endpoint_or_row_is_not_found(world):
    with pytest.raises(NotFound):
        world.admin.replay(TENANT, NotificationRef.of(failed_row(endpoint_id="gone")))
    with pytest.raises(NotFound):
        world.admin.replay(TENANT, NotificationRef.of(failed_row(appointment_id="4826099")))
    assert world.queue.sent == []
