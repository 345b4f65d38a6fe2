"""Reminders as a clinic lives them, over real sockets: the scan claims and queues, the local
host's queue trigger sends through the ACS simulator, Event Grid brings back STOP and START.

- a reschedule after the confirmation gets exactly one update (and none on later scans), a
  second reschedule another one, and the reminder queued for the old time is skipped as moved
  when it fires; a cancellation after the confirmation gets exactly one cancellation (no link),
  one without a confirmation gets nothing;
- quiet hours in the clinic's zone: a due confirmation waits for the end of the window (its row
  says when) and then goes out; a visit sooner than the end is texted at once;
- the Spanish-speaking seeded patient is texted in Spanish;
- the ACS events webhook: no (or a wrong) events key is 401 and changes nothing, the Event Grid
  validation handshake is answered, and STOP / START delivered out of order leave the patient
  as the later word says.

The sandbox is shared by the tests of this module; each test makes its own appointments
(``sim.bulk_appointments``) and reads only the messages and rows about them.
"""

from __future__ import annotations

import time
import uuid
from datetime import datetime, time as clock_time, timedelta, timezone
from zoneinfo import ZoneInfo

import httpx
import pytest

from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationStatus, SkipReason, notification_tag,
)
from connector.services.reminder_send import number_hash
from dev.sandbox.entra import CONTOSO_TID
from dev.stack import DEMO_NUMBERS
from tests.integration.test_reminders import ENDPOINT, rows, set_policy, wait_for

pytestmark = pytest.mark.integration
LOCATION = "32216101"  # Family Medicine Clinic, one of the demo endpoint's locations
NO_QUIET_HOURS = {"quiet_hours_start": clock_time(0), "quiet_hours_end": clock_time(0)}
CLINIC_NUMBER = DEMO_NUMBERS[0]
EVENTS_PATH = "/api/events/acs"


# -- helpers -------------------------------------------------------------------------------------


def one_visit(stack, start: datetime) -> tuple[str, str]:
    """A new booked video visit at ``start`` (whole minutes) for a new patient: (appointment id, mobile)."""
    made = stack.sandbox.cerner.bulk_appointments(LOCATION, 1, start, spread_hours=1, video_ratio=1.0, patients=1)
    assert made.video_ids == made.appointment_ids
    return made.appointment_ids[0], f"+1{made.mobile_numbers[0]}"


def scan(stack):
    return stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)


def appointment_of(tag: str | None) -> str | None:
    return tag.split("|", 1)[1].split("_", 1)[0] if tag and "|" in tag else None


def texts_to(stack, appointment_id: str) -> list[dict]:
    return [m for m in stack.outbox() if appointment_of(m["tag"]) == appointment_id]


def rows_of(stack, appointment_id: str) -> list[NotificationClaim]:
    return [r for r in rows(stack) if r.appointment_id == appointment_id]


def row(stack, appointment_id: str, kind: NotificationKind, start: datetime | None = None) -> NotificationClaim | None:
    found = [r for r in rows_of(stack, appointment_id) if r.kind is kind
             and (start is None or r.appointment_start == start)]
    assert len(found) <= 1, found
    return found[0] if found else None


def sent_row(stack, appointment_id: str, kind: NotificationKind, start: datetime | None = None,
             timeout: float = 20) -> NotificationClaim:
    return wait_for(lambda: (lambda r: r if r and r.status is NotificationStatus.sent else None)(
        row(stack, appointment_id, kind, start)), timeout=timeout, what=f"the {kind.value} to be sent")


def start_of(stack, appointment_id: str) -> datetime:
    resource = stack.sandbox.cerner.store.get("Appointment", appointment_id)
    return datetime.fromisoformat(resource["start"].replace("Z", "+00:00"))


def whole_minute(moment: datetime) -> datetime:
    return moment.replace(second=0, microsecond=0)


# -- reschedule and cancel -----------------------------------------------------------------------


def test_each_reschedule_gets_one_update_and_the_reminder_for_the_old_time_is_skipped_as_moved(visit_stack):
    stack, sim = visit_stack, visit_stack.sandbox.cerner
    set_policy(stack, reminder_offsets_minutes=(5,), **NO_QUIET_HOURS)
    now = datetime.now(timezone.utc)
    aid, number = one_visit(stack, now + timedelta(hours=3))
    # Before any scan, the visit moves to 5 min 25 s from now: its 5-minute reminder fires in 25 s.
    first_start = now + timedelta(minutes=5, seconds=25)
    sim.reschedule(aid, first_start)
    first_start = start_of(stack, aid)

    result = scan(stack)
    assert result.claimed >= 2
    confirmation = sent_row(stack, aid, NotificationKind.confirmation)
    old_reminder = row(stack, aid, NotificationKind.reminder)
    assert old_reminder.appointment_start == first_start and old_reminder.offset_minutes == 5
    assert old_reminder.status is NotificationStatus.queued
    assert old_reminder.due_at == first_start - timedelta(minutes=5)
    assert datetime.now(timezone.utc) < old_reminder.due_at, "too slow: the old reminder fired before the move"

    # Moved two hours on, before the reminder fires: the next scan claims exactly one update.
    second_start = whole_minute(datetime.now(timezone.utc) + timedelta(hours=2))
    sim.reschedule(aid, second_start)
    moved = scan(stack)
    assert (moved.by_kind.get("update"), moved.by_kind.get("confirmation")) == (1, None)
    update = sent_row(stack, aid, NotificationKind.update)
    assert update.appointment_start == second_start
    for _ in range(2):  # later scans: nothing more for this appointment
        again = scan(stack)
        assert not again.by_kind.get("update") and not again.by_kind.get("confirmation")
    assert [r.kind for r in rows_of(stack, aid)].count(NotificationKind.update) == 1

    # The reminder queued for the old time fires: skipped as moved, nothing sent.
    skipped = wait_for(lambda: (lambda r: r if r.status is not NotificationStatus.queued else None)(
        row(stack, aid, NotificationKind.reminder, first_start)), timeout=45, what="the old reminder to fire")
    assert (skipped.status, skipped.skip_reason) == (NotificationStatus.skipped, SkipReason.moved)
    assert skipped.acs_message_id is None and skipped.attempts == 0
    texts = texts_to(stack, aid)
    assert [m["messageId"] for m in texts] == [confirmation.acs_message_id, update.acs_message_id]
    assert all(m["to"] == number for m in texts)
    assert "/api/j/" in texts[1]["message"]

    # A second reschedule: another update, one only.
    third_start = whole_minute(datetime.now(timezone.utc) + timedelta(hours=4))
    sim.reschedule(aid, third_start)
    assert scan(stack).by_kind.get("update") == 1
    second_update = sent_row(stack, aid, NotificationKind.update, third_start)
    for _ in range(2):
        assert not scan(stack).by_kind.get("update")
    time.sleep(1)
    texts = texts_to(stack, aid)
    assert [m["messageId"] for m in texts] == [confirmation.acs_message_id, update.acs_message_id,
                                              second_update.acs_message_id]
    updates = [r for r in rows_of(stack, aid) if r.kind is NotificationKind.update]
    assert sorted(r.appointment_start for r in updates) == [second_start, third_start]
    assert all(r.status is NotificationStatus.sent for r in updates)


def test_a_cancellation_after_the_confirmation_is_texted_once_without_a_link(visit_stack):
    stack, sim = visit_stack, visit_stack.sandbox.cerner
    set_policy(stack, reminder_offsets_minutes=(60,), **NO_QUIET_HOURS)
    aid, number = one_visit(stack, datetime.now(timezone.utc) + timedelta(hours=3))
    scan(stack)
    confirmation = sent_row(stack, aid, NotificationKind.confirmation)

    sim.cancel(aid, reason="Clinician unavailable")
    assert scan(stack).by_kind.get("cancellation") == 1
    cancellation = sent_row(stack, aid, NotificationKind.cancellation)
    for _ in range(2):
        assert not scan(stack).by_kind.get("cancellation")
    time.sleep(1)
    texts = texts_to(stack, aid)
    assert [m["messageId"] for m in texts] == [confirmation.acs_message_id, cancellation.acs_message_id]
    assert all(m["to"] == number for m in texts)
    assert "/api/j/" not in texts[1]["message"] and "http" not in texts[1]["message"]
    assert "/api/j/" in texts[0]["message"]
    assert [r.kind for r in rows_of(stack, aid)].count(NotificationKind.cancellation) == 1
    # Its reminder, queued for an hour before the old start, is still waiting (it will be skipped).
    assert row(stack, aid, NotificationKind.reminder).status is NotificationStatus.queued


def test_a_cancellation_without_a_confirmation_is_not_texted(visit_stack):
    stack, sim = visit_stack, visit_stack.sandbox.cerner
    now = datetime.now(timezone.utc)
    # Seen booked while confirmations are off (only its reminder is claimed), then cancelled.
    set_policy(stack, confirmation=False, reminder_offsets_minutes=(60,), **NO_QUIET_HOURS)
    seen, _ = one_visit(stack, now + timedelta(hours=3))
    scan(stack)
    assert [r.kind for r in rows_of(stack, seen)] == [NotificationKind.reminder]
    # Cancelled before any scan saw it at all, with confirmations on.
    unseen, _ = one_visit(stack, now + timedelta(hours=3))
    sim.cancel(seen)
    sim.cancel(unseen)
    set_policy(stack, reminder_offsets_minutes=(60,), **NO_QUIET_HOURS)
    for _ in range(2):
        scan(stack)
    time.sleep(1.5)
    assert [r.kind for r in rows_of(stack, seen)] == [NotificationKind.reminder]
    assert rows_of(stack, unseen) == []
    assert texts_to(stack, seen) == [] and texts_to(stack, unseen) == []


# -- quiet hours -----------------------------------------------------------------------------------


def test_quiet_hours_defer_a_due_confirmation_to_their_end_unless_the_visit_is_sooner(visit_stack):
    stack = visit_stack
    zone = ZoneInfo(stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT).item.timezone)
    now = datetime.now(timezone.utc)
    local = now.astimezone(zone)
    # A window from an hour ago to two hours from now, in the clinic's zone (it may wrap midnight).
    window_end = whole_minute(local + timedelta(hours=2))
    set_policy(stack, reminder_offsets_minutes=(1440,),
               quiet_hours_start=whole_minute(local - timedelta(hours=1)).time(), quiet_hours_end=window_end.time())
    later, _ = one_visit(stack, now + timedelta(hours=5))
    sooner, sooner_number = one_visit(stack, now + timedelta(hours=1))
    result = scan(stack)
    assert result.by_kind.get("confirmation", 0) >= 2

    sent = sent_row(stack, sooner, NotificationKind.confirmation)  # before the window's end: at once
    assert [m["to"] for m in texts_to(stack, sooner)] == [sooner_number]
    deferred = wait_for(lambda: (lambda r: r if r and r.due_at == window_end else None)(
        row(stack, later, NotificationKind.confirmation)), what="the confirmation to wait for the window's end")
    assert deferred.status is NotificationStatus.queued and deferred.attempts == 0
    assert deferred.due_at == window_end.astimezone(timezone.utc)
    time.sleep(2)
    assert texts_to(stack, later) == []
    assert row(stack, later, NotificationKind.confirmation).status is NotificationStatus.queued
    assert sent.sent_at < window_end

    # A window that ends 20 seconds from now: a confirmation due in it goes out at its end.
    now = datetime.now(timezone.utc)
    local = now.astimezone(zone)
    short_end = (local + timedelta(seconds=20)).replace(microsecond=0)
    set_policy(stack, reminder_offsets_minutes=(1440,),
               quiet_hours_start=whole_minute(local - timedelta(hours=1)).time(), quiet_hours_end=short_end.time())
    waiting, waiting_number = one_visit(stack, now + timedelta(hours=5))
    scan(stack)
    deferred = wait_for(lambda: (lambda r: r if r and r.due_at == short_end else None)(
        row(stack, waiting, NotificationKind.confirmation)), what="the confirmation to wait for the short window")
    assert texts_to(stack, waiting) == []
    at_end = sent_row(stack, waiting, NotificationKind.confirmation, timeout=45)
    assert at_end.sent_at >= short_end
    texts = texts_to(stack, waiting)
    assert len(texts) == 1 and texts[0]["to"] == waiting_number
    assert datetime.fromisoformat(texts[0]["sent_at"].replace("Z", "+00:00")) >= short_end


# -- languages -------------------------------------------------------------------------------------


def test_the_spanish_speaking_patient_is_texted_in_spanish(visit_stack):
    stack = visit_stack
    set_policy(stack, reminder_offsets_minutes=(1440,), **NO_QUIET_HOURS)
    sim = stack.sandbox.cerner
    garcia = next(p for p in sim.seed.patients if p["name"][0]["text"] == "GARCIA, SOFIA")
    assert [c["language"]["coding"][1]["code"] for c in garcia["communication"]] == ["es"]
    garcia_number = "+1" + next(t["value"] for t in garcia["telecom"] if t.get("use") == "mobile")
    now = datetime.now(timezone.utc)
    hers = [a["id"] for a in sim.store.all("Appointment") if a["id"] in sim.seed.video_visit_ids
            and a["status"] == "booked" and datetime.fromisoformat(a["start"]) > now
            and any(p["actor"].get("reference") == f"Patient/{garcia['id']}" for p in a["participant"])]
    assert hers, "the seed gives her a video visit tomorrow"
    before = len(stack.outbox())
    scan(stack)
    for aid in hers:
        sent_row(stack, aid, NotificationKind.confirmation)
    to_her = [m for m in stack.outbox()[before:] if m["to"] == garcia_number]
    assert sorted(appointment_of(m["tag"]) for m in to_her) == sorted(hers)
    for message in to_her:
        text = message["message"]
        assert "su videoconsulta es" in text and "Responda STOP" in text, text
        assert "?hl=es" in text and "your video visit" not in text
    others = [m for m in stack.outbox()[before:] if m["to"] != garcia_number and m["to"].startswith("+1312")]
    assert others and all("your video visit" in m["message"] for m in others)


# -- the ACS events webhook --------------------------------------------------------------------------


def inbound_event(from_number: str, text: str, received: datetime) -> dict:
    return {"id": f"Incoming_{uuid.uuid4()}", "topic": "/subscriptions/sandbox/resourceGroups/rg/providers/"
            "Microsoft.Communication/communicationServices/acs-sandbox",
            "subject": f"/phonenumber/{CLINIC_NUMBER.lstrip('+')}", "eventType": "Microsoft.Communication.SMSReceived",
            "eventTime": received.isoformat().replace("+00:00", "Z"), "dataVersion": "1.0", "metadataVersion": "1",
            "data": {"messageId": f"Incoming_{uuid.uuid4()}", "from": from_number, "to": CLINIC_NUMBER,
                     "message": text, "receivedTimestamp": received.isoformat().replace("+00:00", "Z"),
                     "segmentCount": 1}}


def delivery_event(claim: NotificationClaim, message_id: str) -> dict:
    at = datetime.now(timezone.utc).isoformat().replace("+00:00", "Z")
    return {"id": message_id, "topic": "/subscriptions/sandbox", "subject": "/phonenumber/18335550142",
            "eventType": "Microsoft.Communication.SMSDeliveryReportReceived", "eventTime": at,
            "dataVersion": "1.0", "metadataVersion": "1",
            "data": {"messageId": message_id, "from": CLINIC_NUMBER, "to": "+13125550199",
                     "deliveryStatus": "Delivered", "deliveryStatusDetails": "No error.", "receivedTimestamp": at,
                     "tag": notification_tag(claim)}}


def post_events(stack, events: list[dict], *, key: str | None, kind: str = "Notification") -> httpx.Response:
    headers = {"aeg-event-type": kind}
    if key is not None:
        headers["X-Connector-Events-Key"] = key
    return httpx.post(f"{stack.host_url}{EVENTS_PATH}", json=events, headers=headers, timeout=15)


def opted_out(stack, number: str) -> bool:
    deps = stack.deps
    return deps.opt_outs.is_opted_out(CONTOSO_TID, number_hash(deps.opt_out_key, CONTOSO_TID, number))


def opt_out_entities(stack) -> list:
    return list(stack.deps.tables.opt_outs._client.list_entities())


def test_event_deliveries_without_the_events_key_are_refused_and_change_nothing(visit_stack):
    stack = visit_stack
    key = stack.sandbox.keys.acs_events_key
    now = datetime.now(timezone.utc)
    claim = NotificationClaim(tenant_id=CONTOSO_TID, endpoint_id=ENDPOINT, appointment_id="4826010",
                              kind=NotificationKind.confirmation, appointment_start=now + timedelta(days=1),
                              claimed_at=now, status=NotificationStatus.sent, acs_message_id="Outgoing_sandbox-1")
    assert stack.deps.notifications.claim_notification(claim)
    stop = inbound_event("+13125550101", "STOP", now)
    report = delivery_event(claim, "Outgoing_sandbox-1")

    for wrong in (None, "", "not-the-key", key + "x", key.upper() if key.upper() != key else key.lower()):
        for events in ([stop], [report]):
            answer = post_events(stack, events, key=wrong)
            assert answer.status_code == 401, (wrong, answer.text)
            assert answer.headers.get("WWW-Authenticate", "").startswith("Bearer")
    assert opt_out_entities(stack) == []
    unchanged = stack.deps.notifications.get_notification(claim).item
    assert unchanged.delivery_status is None and unchanged.delivered_at is None
    assert not opted_out(stack, "+13125550101")

    # The same deliveries with the key are applied: the refusals above were about the key alone.
    assert post_events(stack, [report], key=key).status_code == 200
    assert stack.deps.notifications.get_notification(claim).item.delivery_status == "delivered"
    assert post_events(stack, [stop], key=key).status_code == 200
    assert opted_out(stack, "+13125550101")


def test_the_event_grid_validation_handshake_is_answered_with_its_code(visit_stack):
    stack = visit_stack
    code = str(uuid.uuid4())
    validation = [{"id": str(uuid.uuid4()), "topic": "/subscriptions/sandbox", "subject": "",
                   "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
                   "eventTime": datetime.now(timezone.utc).isoformat().replace("+00:00", "Z"),
                   "metadataVersion": "1", "dataVersion": "1",
                   "data": {"validationCode": code, "validationUrl": "https://eventgrid.example/validate?x=1"}}]
    answer = post_events(stack, validation, key=stack.sandbox.keys.acs_events_key, kind="SubscriptionValidation")
    assert answer.status_code == 200, answer.text
    assert answer.json() == {"validationResponse": code}
    # Event Grid does not promise its delivery headers on the handshake: it is answered without
    # the key (an echoed code reveals and changes nothing) ...
    keyless = post_events(stack, validation, key=None, kind="SubscriptionValidation")
    assert keyless.status_code == 200 and keyless.json() == {"validationResponse": code}
    # ... but nothing else passes under the handshake's header: events are refused and change nothing.
    stop = inbound_event("+13125550101", "STOP", datetime.now(timezone.utc))
    disguised = post_events(stack, [stop], key=None, kind="SubscriptionValidation")
    assert disguised.status_code == 400 and "SubscriptionValidationEvent" in disguised.json()["message"] + str(
        disguised.json().get("problems")), disguised.text
    assert opt_out_entities(stack) == [] and not opted_out(stack, "+13125550101")


def test_stop_and_start_delivered_out_of_order_leave_the_patient_as_the_later_word_says(visit_stack):
    stack = visit_stack
    key = stack.sandbox.keys.acs_events_key
    earlier = datetime.now(timezone.utc) - timedelta(minutes=2)
    later = earlier + timedelta(minutes=1)
    garcia, nguyen = "+13125550103", "+13125550101"

    # GARCIA: STOP, then START a minute later; Event Grid delivers the START first.
    assert post_events(stack, [inbound_event(garcia, "START", later)], key=key).status_code == 200
    assert post_events(stack, [inbound_event(garcia, "STOP", earlier)], key=key).status_code == 200
    # NGUYEN: START, then STOP a minute later; the STOP arrives first.
    assert post_events(stack, [inbound_event(nguyen, "STOP", later)], key=key).status_code == 200
    assert post_events(stack, [inbound_event(nguyen, "Start", earlier)], key=key).status_code == 200
    # A second delivery of an event already applied changes nothing either.
    assert post_events(stack, [inbound_event(garcia, "STOP", earlier)], key=key).status_code == 200
    assert not opted_out(stack, garcia)
    assert opted_out(stack, nguyen)
    entities = opt_out_entities(stack)
    assert len(entities) == 2
    assert all(n not in str(entities) and n[2:] not in str(entities) for n in (garcia, nguyen))

    # And the sender honours it: tomorrow's confirmations go to GARCIA, not to NGUYEN.
    set_policy(stack, reminder_offsets_minutes=(1440,), **NO_QUIET_HOURS)
    before = len(stack.outbox())
    scan(stack)
    hers = sent_row(stack, "4826012", NotificationKind.confirmation)  # GARCIA, tomorrow 13:30
    his = wait_for(lambda: (lambda r: r if r and r.status is NotificationStatus.skipped else None)(
        row(stack, "4826010", NotificationKind.confirmation)), what="NGUYEN's confirmation to be skipped")
    assert his.skip_reason is SkipReason.opted_out and his.acs_message_id is None
    sent_now = stack.outbox()[before:]
    assert any(m["messageId"] == hers.acs_message_id and m["to"] == garcia for m in sent_now)
    assert not [m for m in sent_now if m["to"] == nguyen]
