"""Confirmations and reminders over the whole stamp: the scan claims and queues, the host's
queue trigger sends through the ACS sandbox, Event Grid brings back reports and STOPs."""

from __future__ import annotations

import threading
import time
from datetime import datetime, time as clock_time, timedelta, timezone

import httpx
import pytest

from connector.domain.notification import NotificationKind, NotificationRef, NotificationStatus
from connector.domain.reminders import ReminderPolicy
from dev.sandbox.entra import CONTOSO_TID

pytestmark = pytest.mark.integration
ENDPOINT = "demo-clinic"


def set_policy(stack, **changes) -> None:
    stored = stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT)
    policy = ReminderPolicy(**{**stored.item.reminder_policy.model_dump(), "enabled": True, **changes})
    stack.deps.endpoints.save_endpoint(stored.item.model_copy(update={"reminder_policy": policy}), stored.etag)


def rows(stack) -> list:
    return [v.item for v in stack.deps.notifications.for_endpoint(CONTOSO_TID, ENDPOINT)]


def wait_for(predicate, timeout: float = 20.0, what: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def expected_confirmations(stack) -> set[str]:
    """Booked video visits still ahead, in the demo's locations, within the look-ahead."""
    sim = stack.sandbox.cerner
    now = datetime.now(timezone.utc)
    found = set()
    for appointment in sim.store.all("Appointment"):
        start = datetime.fromisoformat(appointment["start"])
        if appointment["status"] == "booked" and start > now and start < now + timedelta(days=8) \
                and appointment["id"] in sim.seed.video_visit_ids:
            found.add(appointment["id"])
    return found


def test_a_scan_sends_exactly_the_due_messages_and_repeats_send_nothing_new(visit_stack):
    set_policy(visit_stack, quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))  # no quiet hours
    outbox_before = len(visit_stack.outbox())
    expected = expected_confirmations(visit_stack)
    assert expected, "the seed should have video visits ahead"

    result = visit_stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)
    assert result.by_kind.get("confirmation") == len(expected)
    confirmations = wait_for(lambda: [r for r in rows(visit_stack) if r.kind is NotificationKind.confirmation
                                      and r.status is NotificationStatus.sent] if len(
        [r for r in rows(visit_stack) if r.kind is NotificationKind.confirmation
         and r.status in (NotificationStatus.sent, NotificationStatus.skipped)]) == len(expected) else None,
        what="every confirmation to be sent or skipped")
    time.sleep(1)  # a reminder already due now (a visit within the hour) goes too
    sent_now = visit_stack.outbox()[outbox_before:]
    assert {r.appointment_id for r in confirmations} <= expected
    sent_rows = [r for r in rows(visit_stack) if r.status is NotificationStatus.sent]
    assert len(sent_now) == len(sent_rows)  # one SMS per sent row, no more
    assert {m["messageId"] for m in sent_now} == {r.acs_message_id for r in sent_rows}
    assert all("/api/j/" in m["message"] and m["from"] == "+18335550142" for m in sent_now)
    reminders = [r for r in rows(visit_stack) if r.kind is NotificationKind.reminder]
    assert all(r.status in (NotificationStatus.queued, NotificationStatus.sent) for r in reminders)

    # Three more scans, two of them at the same time, and every message delivered again: nothing new.
    before = len(visit_stack.outbox())
    threads = [threading.Thread(target=visit_stack.deps.reminder_scan.scan_endpoint, args=(CONTOSO_TID, ENDPOINT))
               for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    visit_stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)
    for row in rows(visit_stack):
        visit_stack.deps.send_queue.send(NotificationRef.of(row))
    time.sleep(3)  # the host's queue trigger works through the duplicates
    assert len(visit_stack.outbox()) == before
    assert len(rows(visit_stack)) == len({(r.appointment_id, r.kind, r.offset_minutes, r.appointment_start)
                                          for r in rows(visit_stack)})


def test_delivery_reports_and_stop_come_back_through_event_grid(visit_stack):
    set_policy(visit_stack, quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))
    visit_stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)
    sent = wait_for(lambda: [r for r in rows(visit_stack) if r.status is NotificationStatus.sent], what="a sent row")
    delivered = wait_for(lambda: [r for r in rows(visit_stack) if r.delivery_status == "delivered"],
                         what="a delivery report")
    assert {r.acs_message_id for r in delivered} <= {r.acs_message_id for r in sent}

    # The patient of one sent message replies STOP: the next message to them is skipped.
    message = next(m for m in visit_stack.outbox() if m["messageId"] == delivered[0].acs_message_id)
    httpx.post(f"{visit_stack.acs_url}/_sandbox/inbound",
               json={"from": message["to"], "to": message["from"], "message": "STOP"}).raise_for_status()
    wait_for(lambda: any(True for _ in visit_stack.deps.tables.opt_outs._client.list_entities()), what="an opt-out row")
    entities = list(visit_stack.deps.tables.opt_outs._client.list_entities())
    assert message["to"] not in str(entities) and message["to"][2:] not in str(entities)  # a keyed hash only
