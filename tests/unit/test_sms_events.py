"""What ACS tells us after a message (Event Grid, at least once and in no order): delivery
reports update the notification row their tag names and count deliveries once; STOP / START
replies go on the owning tenant's opt-out list as a keyed hash. Runs on the fakes."""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta, timezone

import pytest

from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, notification_tag,
)
from connector.domain.phone_number import PhoneNumber
from connector.domain.sms_events import DeliveryReport, DeliveryStatus, InboundSms, Keyword
from connector.domain.usage import UsageKind
from connector.errors import ConfigurationError
from connector.services.reminder_send import number_hash
from connector.services.sms_events import SmsEvents
from tests.fakes import (
    FakeNotificationRepository, FakeOptOutRepository, FakePhoneNumberRepository, FakeUsageEventLog,
)

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
OURS, THEIRS, NOBODYS = "+18335550142", "+18335550199", "+18005550000"
PATIENT = "+13125550103"
KEY = b"k" * 32
NOW = datetime(2025, 3, 3, 16, 0, tzinfo=timezone.utc)


def sent_row(appointment_id: str = "4826003", message_id: str | None = "acs-1", **changes) -> NotificationClaim:
    base = dict(tenant_id=TENANT, endpoint_id="main", appointment_id=appointment_id,
                kind=NotificationKind.reminder, offset_minutes=60,
                appointment_start=datetime(2025, 3, 3, 16, 30, tzinfo=timezone.utc),
                status=NotificationStatus.sent, claimed_at=NOW - timedelta(hours=1), sent_at=NOW - timedelta(minutes=1),
                acs_message_id=message_id, department="32216101")
    return NotificationClaim(**{**base, **changes})


def report(row: NotificationClaim | None, status: DeliveryStatus = DeliveryStatus.delivered, *, message_id="acs-1",
           event_id: str = "e1", at: datetime = NOW, opted_out: bool = False, tag: str | None = None) -> DeliveryReport:
    return DeliveryReport(event_id=event_id, message_id=message_id, status=status, received_at=at,
                          tag=tag if tag is not None or row is None else notification_tag(row), opted_out=opted_out)


def reply(word: Keyword | None, at: datetime = NOW, *, to: str = OURS, sender: str = PATIENT,
          event_id: str = "i1") -> InboundSms:
    return InboundSms(event_id=event_id, message_id=f"Incoming_{event_id}", from_number=sender, to_number=to,
                      keyword=word, received_at=at)


class World:
    def __init__(self, *rows: NotificationClaim, key: bytes | None = KEY):
        self.notifications = FakeNotificationRepository(*rows)
        self.opt_outs = FakeOptOutRepository()
        self.numbers = FakePhoneNumberRepository()
        for tenant_id, number in ((TENANT, OURS), (OTHER, THEIRS)):
            self.numbers.record_number(PhoneNumber(tenant_id=tenant_id, phone_number=number,
                                                   acquired_at=NOW - timedelta(days=30)))
        self.usage = FakeUsageEventLog()
        self.events = SmsEvents(self.notifications, self.opt_outs, self.numbers, self.usage, opt_out_key=key)

    def row(self, row: NotificationClaim) -> NotificationClaim:
        return self.notifications.item(row)


# == delivery reports =======================================================================================


def test_a_delivery_report_updates_its_row_and_counts_the_delivery():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(row, at=NOW + timedelta(seconds=5))]) == 1
    stored = world.row(row)
    assert (stored.delivery_status, stored.delivered_at) == ("delivered", NOW + timedelta(seconds=5))
    assert stored.status is NotificationStatus.sent and stored.acs_message_id == "acs-1"
    [event] = world.usage.events
    assert (event.kind, event.tenant_id, event.endpoint_id, event.department) == (
        UsageKind.sms_delivered, TENANT, "main", "32216101")
    assert event.event_id == hashlib.sha256(b"acs-1").hexdigest()[:32]
    assert event.at == row.sent_at  # the message's own time: one instant, however often it is reported


def test_the_same_report_twice_changes_nothing_the_second_time():
    row = sent_row()
    world = World(row)
    world.events.apply([report(row)])
    etag = world.notifications.etag(row)
    assert world.events.apply([report(row, event_id="e2", at=NOW + timedelta(seconds=1))]) == 0
    assert world.notifications.etag(row) == etag
    assert world.row(row).delivered_at == NOW
    assert len(world.usage.events) == 1


def test_a_delivery_event_delivered_twice_by_event_grid_is_counted_once():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(row, event_id="e1")]) == 1
    assert world.events.apply([report(row, DeliveryStatus.unknown, event_id="e2")]) == 1
    assert world.row(row).delivery_status == "unknown"
    world.events.apply([report(row, event_id="e1")])  # Event Grid delivers e1 again
    assert world.usage.kinds() == ["sms_delivered"] and world.usage.conflicts == 1


def test_a_message_reported_delivered_twice_is_counted_once():
    row = sent_row()
    world = World(row)
    world.events.apply([report(row, event_id="e1", at=NOW)])
    world.events.apply([report(row, DeliveryStatus.unknown, event_id="e2", at=NOW + timedelta(seconds=30))])
    world.events.apply([report(row, event_id="e3", at=NOW + timedelta(minutes=1))])
    assert world.row(row).delivery_status == "delivered"
    assert world.usage.kinds() == ["sms_delivered"]


def test_a_failed_report_is_recorded_and_not_counted():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(row, DeliveryStatus.failed)]) == 1
    assert world.row(row).delivery_status == "failed"
    assert world.usage.events == []


def test_a_report_for_a_recipient_who_said_stop_is_blocked():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(row, DeliveryStatus.failed, opted_out=True)]) == 1
    assert world.row(row).delivery_status == "blocked"
    assert world.usage.events == [] and world.opt_outs.choices == {}


def test_reports_without_our_tag_or_for_other_messages_are_ignored():
    row = sent_row()
    world = World(row)
    etag = world.notifications.etag(row)
    unknown = sent_row(appointment_id="4826099")
    assert world.events.apply([
        report(None),  # a visit link: no tag, no row
        report(unknown),  # a tag of ours naming no row
        report(None, tag="visit-link"),
        report(None, tag="|"),
        report(row, message_id="acs-2"),  # our row, another message's id
    ]) == 0
    assert world.notifications.etag(row) == etag and world.row(row).delivery_status is None
    assert world.usage.events == []


def test_a_report_that_beats_the_senders_write_is_still_applied():
    row = sent_row(message_id=None, status=NotificationStatus.queued)
    world = World(row)
    assert world.events.apply([report(row, message_id="acs-9")]) == 1
    assert world.row(row).delivery_status == "delivered"


def test_a_tag_from_a_queue_ref_names_the_same_row():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(None, tag=notification_tag(NotificationRef.of(row)))]) == 1
    assert world.row(row).delivery_status == "delivered"


def test_delivery_reports_need_no_opt_out_key():
    row = sent_row()
    world = World(row, key=None)
    assert world.events.apply([report(row)]) == 1


# == STOP and START =========================================================================================


def test_stop_puts_a_keyed_hash_on_the_owning_tenants_list():
    world = World()
    assert world.events.apply([reply(Keyword.stop)]) == 1
    hashed = number_hash(KEY, TENANT, PATIENT)
    assert world.opt_outs.choices == {(TENANT, hashed): (True, NOW)}
    assert world.opt_outs.is_opted_out(TENANT, hashed)
    assert not world.opt_outs.is_opted_out(OTHER, number_hash(KEY, OTHER, PATIENT))
    assert all("3125550103" not in part for key in world.opt_outs.choices for part in key)


def test_the_tenant_is_the_owner_of_the_number_written_to():
    world = World()
    world.events.apply([reply(Keyword.stop, to=THEIRS)])
    assert list(world.opt_outs.choices) == [(OTHER, number_hash(KEY, OTHER, PATIENT))]
    assert not world.opt_outs.is_opted_out(TENANT, number_hash(KEY, TENANT, PATIENT))


def test_start_after_stop_opts_back_in():
    world = World()
    later = NOW + timedelta(minutes=1)
    assert world.events.apply([reply(Keyword.stop, NOW), reply(Keyword.start, later, event_id="i2")]) == 2
    assert not world.opt_outs.is_opted_out(TENANT, number_hash(KEY, TENANT, PATIENT))


def test_the_later_word_wins_whatever_order_the_events_arrive_in():
    world = World()
    assert world.events.apply([reply(Keyword.start, NOW + timedelta(minutes=1), event_id="i2")]) == 1
    assert world.events.apply([reply(Keyword.stop, NOW, event_id="i1")]) == 0  # older: ignored
    assert not world.opt_outs.is_opted_out(TENANT, number_hash(KEY, TENANT, PATIENT))

    other = World()
    other.events.apply([reply(Keyword.stop, NOW + timedelta(minutes=1), event_id="i2"),
                        reply(Keyword.start, NOW, event_id="i1")])
    assert other.opt_outs.is_opted_out(TENANT, number_hash(KEY, TENANT, PATIENT))


def test_a_stop_delivered_twice_counts_once():
    world = World()
    assert world.events.apply([reply(Keyword.stop), reply(Keyword.stop)]) == 1
    assert len(world.opt_outs.choices) == 1


def test_replies_to_numbers_nobody_here_owns_are_ignored():
    world = World()
    assert world.events.apply([reply(Keyword.stop, to=NOBODYS)]) == 0
    assert world.opt_outs.choices == {}


@pytest.mark.parametrize("word", [Keyword.help, None])
def test_other_replies_change_nothing(word):
    world = World()
    assert world.events.apply([reply(word)]) == 0
    assert world.opt_outs.choices == {}


def test_a_stop_without_an_opt_out_key_is_a_configuration_error():
    world = World(key=None)
    with pytest.raises(ConfigurationError, match="CONNECTOR_OPTOUT_KEY"):
        world.events.apply([reply(Keyword.stop)])
    assert world.opt_outs.choices == {}


def test_the_hash_depends_on_the_key():
    one, two = World(key=b"a" * 32), World(key=b"b" * 32)
    one.events.apply([reply(Keyword.stop)])
    two.events.apply([reply(Keyword.stop)])
    assert list(one.opt_outs.choices) != list(two.opt_outs.choices)


def test_a_batch_mixes_reports_and_replies():
    row = sent_row()
    world = World(row)
    assert world.events.apply([report(row), reply(Keyword.stop), reply(Keyword.help, event_id="i3")]) == 2
    assert world.row(row).delivery_status == "delivered" and len(world.opt_outs.choices) == 1
