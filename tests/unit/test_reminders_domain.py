"""Reminder rules (pure): the policy's validation, which messages an appointment is due, when
quiet hours let a message go, and the notification row's keys, tag and queue reference."""

from __future__ import annotations

from datetime import datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from pydantic import ValidationError

from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, notification_keys, notification_tag,
)
from connector.domain.reminders import (
    LATE_GRACE, MAX_DELAY, AppointmentSnapshot, Due, ReminderPolicy, VirtualVisitRule, due_messages, quiet_until,
)

UTC = timezone.utc
CHICAGO = ZoneInfo("America/Chicago")
MINUS_FIVE = timezone(timedelta(hours=-5))
TENANT = "11111111-2222-3333-4444-555555555555"
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=UTC)  # 09:00 in Chicago (CST)
START = datetime(2025, 3, 5, 16, 30, tzinfo=UTC)  # two days and a half hour ahead
ON = ReminderPolicy(enabled=True)

C, U, X, R = (NotificationKind.confirmation, NotificationKind.update, NotificationKind.cancellation,
              NotificationKind.reminder)


def snapshot(start: datetime = START, status: str = "booked") -> AppointmentSnapshot:
    return AppointmentSnapshot(appointment_id="4826010", status=status, start=start, end=start + timedelta(minutes=15),
                               patient_id="12744001", location_id="32216101")


def claim(kind: NotificationKind, start: datetime = START, offset: int = 0, *,
          claimed_at: datetime = NOW - timedelta(days=1), appointment_id: str = "4826010") -> NotificationClaim:
    return NotificationClaim(tenant_id=TENANT, endpoint_id="main", appointment_id=appointment_id, kind=kind,
                             offset_minutes=offset, appointment_start=start, claimed_at=claimed_at)


def due(appointment: AppointmentSnapshot, claims=(), policy: ReminderPolicy = ON, now: datetime = NOW):
    return [(d.kind, d.offset_minutes, d.appointment_start, d.due_at)
            for d in due_messages(appointment, policy, list(claims), now)]


# == ReminderPolicy ==========================================================================================


def test_the_default_policy_is_off_with_reminders_a_day_and_an_hour_before_and_quiet_nights():
    policy = ReminderPolicy()
    assert policy.enabled is False
    assert (policy.confirmation, policy.update, policy.cancellation) == (True, True, True)
    assert policy.reminder_offsets_minutes == (1440, 60)
    assert (policy.quiet_hours_start, policy.quiet_hours_end) == (time(21, 0), time(8, 0))
    assert (policy.default_language, policy.country, policy.look_ahead_days) == ("en", "US", 8)
    assert policy.virtual_visit == VirtualVisitRule(cerner_video_visit=True)


def test_offsets_are_kept_sorted_latest_first():
    assert ReminderPolicy(reminder_offsets_minutes=(60, 2880, 5, 1440)).reminder_offsets_minutes == (2880, 1440, 60, 5)
    parsed = ReminderPolicy.model_validate({"reminder_offsets_minutes": [5, 20160]})
    assert parsed.reminder_offsets_minutes == (20160, 5)
    assert ReminderPolicy(reminder_offsets_minutes=()).reminder_offsets_minutes == ()


@pytest.mark.parametrize("offsets", [(4,), (0,), (-60,), (20161,), (60, 3), (1440, 14 * 24 * 60 + 1)])
def test_offsets_outside_five_minutes_to_fourteen_days_are_refused(offsets):
    with pytest.raises(ValidationError, match="between 5 minutes and 14 days"):
        ReminderPolicy(reminder_offsets_minutes=offsets)


def test_offsets_must_differ_and_be_at_most_five():
    with pytest.raises(ValidationError, match="must differ"):
        ReminderPolicy(reminder_offsets_minutes=(60, 1440, 60))
    with pytest.raises(ValidationError):
        ReminderPolicy(reminder_offsets_minutes=(5, 10, 15, 20, 25, 30))
    assert len(ReminderPolicy(reminder_offsets_minutes=(5, 10, 15, 20, 25)).reminder_offsets_minutes) == 5


def test_quiet_hours_need_two_different_times_or_midnight_twice_for_none():
    with pytest.raises(ValidationError, match="quiet hours"):
        ReminderPolicy(quiet_hours_start=time(22, 0), quiet_hours_end=time(22, 0))
    none = ReminderPolicy(quiet_hours_start=time(0), quiet_hours_end=time(0))
    assert (none.quiet_hours_start, none.quiet_hours_end) == (time(0), time(0))
    parsed = ReminderPolicy.model_validate({"quiet_hours_start": "22:30", "quiet_hours_end": "07:15"})
    assert (parsed.quiet_hours_start, parsed.quiet_hours_end) == (time(22, 30), time(7, 15))


@pytest.mark.parametrize("field, value", [
    ("default_language", "pt"), ("default_language", "EN"), ("country", "GB"), ("look_ahead_days", 0),
    ("look_ahead_days", 31), ("sms_everyone", True),
])
def test_other_fields_are_validated_and_unknown_ones_refused(field, value):
    with pytest.raises(ValidationError):
        ReminderPolicy.model_validate({field: value})


def test_the_policy_and_its_rule_are_frozen_and_survive_json():
    policy = ReminderPolicy(enabled=True, reminder_offsets_minutes=(30, 2880), default_language="es", country="CA",
                            virtual_visit=VirtualVisitRule(cerner_video_visit=False, service_type_codes=("VV",)))
    with pytest.raises(ValidationError):
        policy.enabled = False  # type: ignore[misc]
    again = ReminderPolicy.model_validate_json(policy.model_dump_json())
    assert again == policy and again.reminder_offsets_minutes == (2880, 30)
    with pytest.raises(ValidationError):
        VirtualVisitRule.model_validate({"video": True})


# == due_messages: confirmations and reminders ==============================================================


def test_nothing_is_due_when_the_policy_is_off():
    assert due(snapshot(), policy=ReminderPolicy(enabled=False)) == []
    assert due(snapshot(status="cancelled"), [claim(C)], policy=ReminderPolicy(enabled=False)) == []


def test_first_sight_of_a_booked_appointment_is_a_confirmation_now_and_reminders_at_their_offsets():
    assert due(snapshot()) == [
        (C, 0, START, NOW),
        (R, 1440, START, START - timedelta(days=1)),
        (R, 60, START, START - timedelta(hours=1)),
    ]


def test_pending_counts_as_booked():
    assert [k for k, *_ in due(snapshot(status="pending"))] == [C, R, R]


@pytest.mark.parametrize("status", ["proposed", "arrived", "checked-in", "fulfilled", "noshow", "entered-in-error",
                                    "waitlist", ""])
def test_other_statuses_are_due_nothing(status):
    assert due(snapshot(status=status)) == []
    assert due(snapshot(status=status), [claim(C)]) == []


def test_nothing_is_due_once_the_visit_has_started():
    assert due(snapshot(start=NOW)) == []
    assert due(snapshot(start=NOW - timedelta(minutes=1))) == []
    past = NOW - timedelta(minutes=1)
    assert due(snapshot(start=past, status="cancelled"), [claim(C, past)]) == []


def test_claimed_messages_are_not_due_again():
    claims = [claim(C), claim(R, offset=1440)]
    assert due(snapshot(), claims) == [(R, 60, START, START - timedelta(hours=1))]
    assert due(snapshot(), [*claims, claim(R, offset=60)]) == []


def test_one_instant_spelled_with_an_offset_or_in_utc_is_one_claim():
    local = START.astimezone(MINUS_FIVE)
    assert local.utcoffset() == timedelta(hours=-5) and local == START
    utc_claims = [claim(C, START), claim(R, START, 1440), claim(R, START, 60)]
    assert due(snapshot(start=local), utc_claims) == []
    local_claims = [claim(C, local), claim(R, local, 1440), claim(R, local, 60)]
    assert due(snapshot(start=START), local_claims) == []


def test_a_confirmation_turned_off_sends_reminders_only():
    policy = ReminderPolicy(enabled=True, confirmation=False)
    assert [(k, o) for k, o, *_ in due(snapshot(), policy=policy)] == [(R, 1440), (R, 60)]


def test_no_reminders_when_the_policy_has_no_offsets():
    assert due(snapshot(), policy=ReminderPolicy(enabled=True, reminder_offsets_minutes=())) == [(C, 0, START, NOW)]


def test_a_reminder_up_to_the_late_grace_late_is_due_now_and_a_later_one_is_dropped():
    assert LATE_GRACE == timedelta(minutes=15)
    just_in = NOW + timedelta(minutes=60) - LATE_GRACE  # the 60-minute reminder was due 15 minutes ago
    assert due(snapshot(start=just_in), [claim(C, just_in)]) == [(R, 60, just_in, NOW)]
    too_late = just_in - timedelta(minutes=1)
    assert due(snapshot(start=too_late), [claim(C, too_late)]) == []
    # first seen 30 minutes before: the confirmation, and no reminder half an hour late
    soon = NOW + timedelta(minutes=30)
    assert due(snapshot(start=soon)) == [(C, 0, soon, NOW)]


def test_reminders_further_ahead_than_a_queue_message_can_wait_are_left_for_a_later_scan():
    assert MAX_DELAY == timedelta(days=7)
    edge = NOW + MAX_DELAY + timedelta(days=1)  # the day-before reminder is exactly seven days away
    assert due(snapshot(start=edge), [claim(C, edge)]) == [(R, 1440, edge, NOW + MAX_DELAY)]
    beyond = edge + timedelta(minutes=1)
    assert due(snapshot(start=beyond), [claim(C, beyond)]) == []
    # the same appointment a minute later in time: the scan then claims it
    assert due(snapshot(start=beyond), [claim(C, beyond)], now=NOW + timedelta(minutes=1)) == [
        (R, 1440, beyond, NOW + timedelta(minutes=1) + MAX_DELAY)]


# == due_messages: updates and cancellations ================================================================


def test_a_moved_appointment_gets_one_update_and_reminders_for_its_new_start():
    moved = START + timedelta(hours=2)
    told = [claim(C, START), claim(R, START, 1440)]
    assert due(snapshot(start=moved), told) == [
        (U, 0, moved, NOW), (R, 1440, moved, moved - timedelta(days=1)), (R, 60, moved, moved - timedelta(hours=1))]
    after = [*told, claim(U, moved, claimed_at=NOW)]
    assert [k for k, *_ in due(snapshot(start=moved), after, now=NOW + timedelta(minutes=5))] == [R, R]


def test_each_new_start_gets_its_own_update():
    second, third = START + timedelta(hours=2), START + timedelta(days=1)
    claims = [claim(C, START, claimed_at=NOW - timedelta(days=2)), claim(U, second, claimed_at=NOW - timedelta(days=1))]
    assert due(snapshot(start=second), claims, policy=ReminderPolicy(enabled=True, reminder_offsets_minutes=())) == []
    assert due(snapshot(start=third), claims, policy=ReminderPolicy(enabled=True, reminder_offsets_minutes=())) == [
        (U, 1, third, NOW)]  # the second update: numbered 1


def test_moving_back_to_the_confirmed_start_is_an_update_too():
    second = START + timedelta(hours=2)
    claims = [claim(C, START, claimed_at=NOW - timedelta(days=2)), claim(U, second, claimed_at=NOW - timedelta(days=1))]
    assert due(snapshot(start=START), claims, policy=ReminderPolicy(enabled=True, reminder_offsets_minutes=())) == [
        (U, 1, START, NOW)]


def test_moving_back_to_a_start_an_earlier_update_announced_is_an_update_again():
    second, third = START + timedelta(hours=2), START + timedelta(days=1)
    claims = [claim(C, START, claimed_at=NOW - timedelta(days=3)),
              claim(U, second, claimed_at=NOW - timedelta(days=2)),
              claim(U, third, claimed_at=NOW - timedelta(days=1))]  # the patient was last told `third`
    kinds = [k for k, *_ in due(snapshot(start=second), claims,
                                policy=ReminderPolicy(enabled=True, reminder_offsets_minutes=()))]
    assert kinds == [U]


def test_no_update_when_updates_are_off_or_nobody_was_told():
    moved = START + timedelta(hours=2)
    off = ReminderPolicy(enabled=True, update=False, reminder_offsets_minutes=())
    assert due(snapshot(start=moved), [claim(C, START)], policy=off) == []
    only_reminders = [claim(R, START, 1440)]  # confirmations off: the patient had no start from us
    policy = ReminderPolicy(enabled=True, confirmation=False, reminder_offsets_minutes=(1440,))
    assert due(snapshot(start=moved), only_reminders, policy=policy) == [(R, 1440, moved, moved - timedelta(days=1))]


def test_a_cancellation_after_a_confirmation_is_due_once():
    cancelled = snapshot(status="cancelled")
    assert due(cancelled, [claim(C)]) == [(X, 0, START, NOW)]
    assert due(cancelled, [claim(C), claim(X, claimed_at=NOW)], now=NOW + timedelta(minutes=5)) == []
    # whatever start the cancellation row names: once is once
    assert due(snapshot(start=START + timedelta(hours=1), status="cancelled"), [claim(C), claim(X)]) == []


def test_no_cancellation_without_a_confirmation_or_when_cancellations_are_off():
    assert due(snapshot(status="cancelled")) == []
    assert due(snapshot(status="cancelled"), [claim(R, START, 1440)]) == []
    assert due(snapshot(status="cancelled"), [claim(C)],
               policy=ReminderPolicy(enabled=True, cancellation=False)) == []


def test_a_cancellation_after_an_update_is_due():
    moved = START + timedelta(hours=3)
    assert due(snapshot(start=moved, status="cancelled"), [claim(C), claim(U, moved)]) == [(X, 0, moved, NOW)]


def test_due_is_a_plain_value():
    d = due_messages(snapshot(), ON, [], NOW)[0]
    assert d == Due(C, START, NOW, 0)


# == quiet_until ============================================================================================


def chicago(year, month, day, hour, minute=0, fold=0) -> datetime:
    return datetime(year, month, day, hour, minute, fold=fold, tzinfo=CHICAGO)


LATER = chicago(2025, 3, 5, 12)  # a visit well after any quiet hours below


@pytest.mark.parametrize("now, expected", [
    (chicago(2025, 3, 3, 22), chicago(2025, 3, 4, 8)),  # after the start: the next morning
    (chicago(2025, 3, 3, 21), chicago(2025, 3, 4, 8)),  # the start itself is quiet
    (chicago(2025, 3, 4, 3, 30), chicago(2025, 3, 4, 8)),  # after midnight: this morning
    (chicago(2025, 3, 4, 7, 59), chicago(2025, 3, 4, 8)),
    (chicago(2025, 3, 4, 8), None),  # the end is not quiet
    (chicago(2025, 3, 3, 20, 59), None),
    (chicago(2025, 3, 3, 12), None),
])
def test_quiet_hours_that_wrap_midnight(now, expected):
    found = quiet_until(now.astimezone(UTC), ReminderPolicy(), CHICAGO, LATER)
    assert found == expected
    if expected is not None:
        assert found.utcoffset() is not None


@pytest.mark.parametrize("now, expected", [
    (chicago(2025, 3, 3, 13), chicago(2025, 3, 3, 14, 30)),
    (chicago(2025, 3, 3, 14, 29), chicago(2025, 3, 3, 14, 30)),
    (chicago(2025, 3, 3, 14, 30), None),
    (chicago(2025, 3, 3, 12, 59), None),
    (chicago(2025, 3, 3, 23), None),
])
def test_quiet_hours_within_one_day(now, expected):
    policy = ReminderPolicy(quiet_hours_start=time(13, 0), quiet_hours_end=time(14, 30))
    assert quiet_until(now, policy, CHICAGO, LATER) == expected


def test_quiet_hours_up_to_midnight_end_at_midnight():
    policy = ReminderPolicy(quiet_hours_start=time(22, 0), quiet_hours_end=time(0, 0))
    assert quiet_until(chicago(2025, 3, 3, 23), policy, CHICAGO, LATER) == chicago(2025, 3, 4, 0)
    assert quiet_until(chicago(2025, 3, 4, 0, 30), policy, CHICAGO, LATER) is None


@pytest.mark.parametrize("hour", [0, 3, 12, 21, 23])
def test_midnight_to_midnight_means_no_quiet_hours(hour):
    policy = ReminderPolicy(quiet_hours_start=time(0), quiet_hours_end=time(0))
    assert quiet_until(chicago(2025, 3, 3, hour), policy, CHICAGO, LATER) is None


def test_a_visit_sooner_than_the_end_of_quiet_hours_is_texted_now():
    night = chicago(2025, 3, 3, 23)
    assert quiet_until(night, ReminderPolicy(), CHICAGO, chicago(2025, 3, 4, 7, 30)) is None
    assert quiet_until(night, ReminderPolicy(), CHICAGO, chicago(2025, 3, 4, 8, 30)) == chicago(2025, 3, 4, 8)


def test_quiet_hours_follow_the_clinic_zone_not_utc():
    # 03:00 UTC is 21:00 in Chicago (quiet) and noon in Tokyo (not quiet)
    instant = datetime(2025, 3, 4, 3, 0, tzinfo=UTC)
    assert quiet_until(instant, ReminderPolicy(), CHICAGO, LATER) == chicago(2025, 3, 4, 8)
    assert quiet_until(instant, ReminderPolicy(), ZoneInfo("Asia/Tokyo"), LATER) is None


def test_spring_forward_night_ends_at_eight_daylight_time():
    # 2025-03-09 in Chicago: 02:00 CST becomes 03:00 CDT; the night is an hour shorter.
    now = datetime(2025, 3, 9, 7, 30, tzinfo=UTC)  # 01:30 CST
    ends = quiet_until(now, ReminderPolicy(), CHICAGO, LATER.replace(day=10))
    assert ends == datetime(2025, 3, 9, 13, 0, tzinfo=UTC)  # 08:00 CDT
    assert ends - now == timedelta(hours=5, minutes=30)
    evening = datetime(2025, 3, 9, 4, 0, tzinfo=UTC)  # 22:00 CST on the 8th
    assert quiet_until(evening, ReminderPolicy(), CHICAGO, LATER.replace(day=10)) - evening == timedelta(hours=9)


def test_fall_back_night_ends_at_eight_standard_time():
    # 2025-11-02 in Chicago: 02:00 CDT becomes 01:00 CST; 01:30 happens twice.
    first, second = chicago(2025, 11, 2, 1, 30, fold=0), chicago(2025, 11, 2, 1, 30, fold=1)
    assert first.astimezone(UTC) == datetime(2025, 11, 2, 6, 30, tzinfo=UTC)
    assert second.astimezone(UTC) == datetime(2025, 11, 2, 7, 30, tzinfo=UTC)
    visit = chicago(2025, 11, 3, 12)
    for now in (first.astimezone(UTC), second.astimezone(UTC)):
        assert quiet_until(now, ReminderPolicy(), CHICAGO, visit) == datetime(2025, 11, 2, 14, 0, tzinfo=UTC)
    evening = datetime(2025, 11, 2, 2, 0, tzinfo=UTC)  # 21:00 CDT on the 1st
    assert quiet_until(evening, ReminderPolicy(), CHICAGO, visit) - evening == timedelta(hours=12)


# == notification keys, tag and queue reference ============================================================


def test_keys_name_the_endpoint_then_the_appointment_kind_offset_and_utc_start():
    assert notification_keys(claim(R, START, 60)) == (f"{TENANT}_main", "4826010_reminder60_20250305T163000Z")
    assert notification_keys(claim(R, START, 1440)) == (f"{TENANT}_main", "4826010_reminder1440_20250305T163000Z")
    assert notification_keys(claim(C)) == (f"{TENANT}_main", "4826010_confirmation_20250305T163000Z")
    assert notification_keys(claim(U))[1] == "4826010_update_20250305T163000Z"
    assert notification_keys(claim(X))[1] == "4826010_cancellation_20250305T163000Z"


def test_keys_of_one_instant_in_two_spellings_are_equal():
    local = START.astimezone(MINUS_FIVE)
    assert notification_keys(claim(R, local, 60)) == notification_keys(claim(R, START, 60))
    assert notification_keys(claim(C, START.astimezone(CHICAGO))) == notification_keys(claim(C, START))
    assert notification_keys(claim(C, START + timedelta(seconds=1))) != notification_keys(claim(C, START))


def test_the_tag_is_the_rows_key_and_nothing_else():
    row = claim(R, START, 60)
    assert notification_tag(row) == f"{TENANT}_main|4826010_reminder60_20250305T163000Z"
    assert notification_tag(NotificationRef.of(row)) == notification_tag(row)


def test_a_ref_carries_the_key_through_the_queue_and_back():
    row = claim(R, START.astimezone(MINUS_FIVE), 60).model_copy(update={
        "status": NotificationStatus.queued, "due_at": NOW, "department": "32216101", "repeatability_id": "x"})
    ref = NotificationRef.of(row)
    body = ref.model_dump_json()
    assert set(ref.model_dump()) == {"tenant_id", "endpoint_id", "appointment_id", "kind", "offset_minutes",
                                     "appointment_start"}
    assert "32216101" not in body and "queued" not in body
    again = NotificationRef.model_validate_json(body)
    assert again == ref
    assert notification_keys(again) == notification_keys(row)


@pytest.mark.parametrize("extra", [{"phone": "+13125550101"}, {"status": "queued"}, {"text": "hello"}])
def test_a_ref_refuses_fields_it_does_not_have(extra):
    body = NotificationRef.of(claim(C)).model_dump(mode="json")
    with pytest.raises(ValidationError):
        NotificationRef.model_validate({**body, **extra})


@pytest.mark.parametrize("appointment_id", ["4826_010", "a/b", "", "x" * 65, "48 26"])
def test_a_ref_refuses_appointment_ids_that_could_break_the_key(appointment_id):
    body = NotificationRef.of(claim(C)).model_dump(mode="json")
    with pytest.raises(ValidationError):
        NotificationRef.model_validate({**body, "appointment_id": appointment_id})


def test_a_ref_needs_an_aware_start_and_is_frozen():
    body = NotificationRef.of(claim(C)).model_dump(mode="json")
    with pytest.raises(ValidationError):
        NotificationRef.model_validate({**body, "appointment_start": "2025-03-05T16:30:00"})
    ref = NotificationRef.model_validate(body)
    with pytest.raises(ValidationError):
        ref.kind = NotificationKind.update  # type: ignore[misc]
