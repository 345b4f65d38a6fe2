"""Reminders under faults, over real sockets: 200 due reminders through a stamp whose EHR, ACS
and queue all fail a fifth of the time end as 200 SMS, none twice, none lost; the messages
the host gives up on reach the poison queue, their rows say so, and an admin replays each once.
Then nothing personal is anywhere: no table entity, queue message or log line holds a phone
number, a patient's name or a message's text.

How the faults are injected (the stamp's own code runs unchanged):

- **EHR (Cerner simulator)** and **ACS (``/sms``)**: the simulators' fault switches
  (dev/sandbox/faults.py) arm faults by count only, so :class:`RandomFaults` takes the place of
  the switches' ``take`` on the running simulator: each request (FHIR reads and searches, the
  backend-services token; ``POST /sms``) gets, with probability 0.2, a 503 or a 429 with
  ``Retry-After: 1`` from the simulator's own FaultInjectionMiddleware. Armed faults still
  come first.
- **The queue** (Azurite cannot fail on demand): :class:`FlakyQueue` wraps the stamp's send and
  scan queues and raises ``StorageUnavailable`` before writing for a fifth of ``send`` calls.
  It is put into the container the host shares (``deps.__dict__["send_queue"]``: ``send_queue``
  is a ``functools.cached_property``, so the instance dict entry wins) before any use case that
  holds a queue (reminder_scan, reminder_sender, reminder_admin) is first built; the test
  asserts that none was.

Two of the 200 patients' carrier refuses every attempt (an ACS per-recipient 500 rule on their
numbers) until the end of the fault run: the host exhausts those messages into the poison queue.
The replays themselves run with the queue healthy; two tests at the end stage the races found
under these faults (a replay whose enqueue fails; a throttled copy racing an accepted send).

What the test changes for speed, and why: the sender's pace (``CONNECTOR_SMS_RATE_PER_MINUTE``
= 6000, its maximum, through the environment) and the ACS simulator's per-number limit (100 000
a minute) are raised, or 200+ messages take over a minute by design; the local host reads
host.json's queue ``visibilityTimeout`` (30 s) as 1 s in these tests (``maxDequeueCount``, 5, is
kept), or a message needs two minutes to reach the poison queue; and the stamp runs on four host
instances sharing the queues (a scaled-out Function App), because the local host processes one
queue message at a time per instance. The stamp, the four hosts and the simulators share one
CPU-bound process; claims whose enqueue failed wait REQUEUE_AFTER (30 s) for a later scan.
"""

from __future__ import annotations

import base64
import json
import random
import re
import threading
import time
from collections import Counter
from contextlib import ExitStack
from dataclasses import dataclass, field, replace
from datetime import datetime, time as clock_time, timedelta, timezone
from pathlib import Path

import httpx
import pytest
from azure.storage.queue import QueueServiceClient

from connector.adapters.storage.tables import StorageUnavailable
from connector.domain.notification import NotificationClaim, NotificationKind, NotificationRef, NotificationStatus
from connector.services.reminder_scan import REQUEUE_AFTER
from dev.host import LocalFunctionsHost
from dev.host import host as host_module
from dev.sandbox.acs import RecipientFailure
from dev.sandbox.cerner.seed import _PATIENTS
from dev.sandbox.entra import CONTOSO_TID
from dev.sandbox.faults import Fault
from tests.integration.test_reminders import ENDPOINT, rows, set_policy, wait_for

pytestmark = pytest.mark.integration
ROOT = Path(__file__).resolve().parents[2]
FAULT_RATE = 0.2
BULK_LOCATION = "32216101"  # Family Medicine Clinic: one of the demo endpoint's locations
BULK = 200
EXTRA_INSTANCES = 1
RETRY_VISIBILITY = timedelta(seconds=1)
SCAN_EVERY = 3.0  # seconds between fan-outs (a scan job fails and is retried while its enqueues fail)
SEED = 20240607  # the faults' random choices, so a failing run can be repeated


# -- fault injection -----------------------------------------------------------------------------


class RandomFaults:
    """A random ``rate`` of a simulator's requests under ``prefix`` answered with one of ``faults``."""

    def __init__(self, switches, *, rate: float, faults: list[Fault], prefix: str, seed: int):
        self._armed = switches.take  # the switches' own (count-armed) faults still come first
        self._rate = rate
        self._faults = faults
        self._prefix = prefix
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.on = True
        self.requests = 0
        self.injected: Counter[int] = Counter()

    def take(self, path: str) -> Fault | None:
        armed = self._armed(path)
        if armed is not None or not path.startswith(self._prefix) or path.startswith("/_sandbox"):
            return armed
        with self._lock:
            self.requests += 1
            if not self.on or self._rng.random() >= self._rate:
                return None
            fault = self._rng.choice(self._faults)
            self.injected[fault.status] += 1
            return fault


class FlakyQueue:
    """The stamp's queue, failing a ``rate`` of ``send`` calls (before writing) as storage would."""

    def __init__(self, real, *, rate: float, seed: int):
        self._real = real
        self.rate = rate
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self.sent: list[str] = []  # every body the stamp wrote (or tried to), for the privacy check
        self.failures = 0
        self._forced = 0

    def fail_next(self, count: int = 1) -> None:
        with self._lock:
            self._forced += count

    def send(self, message, *, delay: timedelta = timedelta(0)) -> str:
        with self._lock:
            self.sent.append(message.model_dump_json())
            fail = self._forced > 0 or self._rng.random() < self.rate
            self._forced = max(0, self._forced - 1)
            self.failures += fail
        if fail:
            raise StorageUnavailable(f"queue {self._real.name} could not be written (injected)")
        return self._real.send(message, delay=delay)

    def __getattr__(self, name):
        return getattr(self._real, name)


@pytest.fixture
def quick_retries(monkeypatch) -> dict:
    """Settings for a one-minute run (see the module docstring): the sender's pace, and host.json
    as the local host reads it with a 1 s retry visibility (its maxDequeueCount kept)."""
    monkeypatch.setenv("CONNECTOR_SMS_RATE_PER_MINUTE", "6000")
    real = host_module.load_host_config
    seen = {}

    def load(project_dir):
        config = real(project_dir)
        seen["host_json"] = config.queues
        return replace(config, queues=replace(config.queues, visibility_timeout=RETRY_VISIBILITY))

    monkeypatch.setattr(host_module, "load_host_config", load)
    return seen


@dataclass
class FaultStack:
    stack: object
    send_queue: FlakyQueue
    scan_queue: FlakyQueue
    fhir_faults: RandomFaults
    acs_faults: RandomFaults
    max_dequeue_count: int
    hosts: list = field(default_factory=list)

    def faults_on(self, on: bool) -> None:
        self.fhir_faults.on = self.acs_faults.on = on
        self.send_queue.rate = self.scan_queue.rate = FAULT_RATE if on else 0.0


@pytest.fixture
def flaky_stack(captured_logs, quick_retries, visit_stack, monkeypatch):
    """The demo stamp with its queues, EHR and ACS able to fail (all healthy until told)."""
    deps = visit_stack.deps
    built = [name for name in ("reminder_scan", "reminder_sender", "reminder_admin") if name in deps.__dict__]
    assert not built, f"{built} already hold the real queues"
    send_queue = FlakyQueue(deps.send_queue, rate=0.0, seed=SEED)
    scan_queue = FlakyQueue(deps.scan_queue, rate=0.0, seed=SEED + 1)
    deps.__dict__["send_queue"] = send_queue
    deps.__dict__["scan_queue"] = scan_queue
    assert deps.reminder_sender._queue is send_queue and deps.reminder_scan._send_queue is send_queue
    assert deps.reminder_scan._scan_queue is scan_queue and deps.reminder_admin._sender is deps.reminder_sender

    sandbox = visit_stack.sandbox
    monkeypatch.setattr(sandbox.acs_app.state.sms.rate_limiter, "limit", 100_000)
    fhir_faults = RandomFaults(sandbox.cerner.faults, rate=FAULT_RATE, prefix="/", seed=SEED + 2, faults=[
        Fault(status=503), Fault(status=429, retry_after=1)])
    acs_faults = RandomFaults(sandbox.acs_app.state.faults, rate=FAULT_RATE, prefix="/sms", seed=SEED + 3, faults=[
        Fault(status=503), Fault(status=429, retry_after=1)])
    fhir_faults.on = acs_faults.on = False
    monkeypatch.setattr(sandbox.cerner.faults, "take", fhir_faults.take)
    monkeypatch.setattr(sandbox.acs_app.state.faults, "take", acs_faults.take)
    run = FaultStack(visit_stack, send_queue, scan_queue, fhir_faults, acs_faults,
                     quick_retries["host_json"].max_dequeue_count)
    yield run
    run.faults_on(False)
    sandbox.acs_app.state.faults.clear()


@pytest.fixture
def fault_stack(flaky_stack):
    """... on four host instances sharing its queues (a scaled-out Function App)."""
    with ExitStack() as instances:
        flaky_stack.hosts = [instances.enter_context(LocalFunctionsHost(ROOT, port=0, poll_interval=0.2))
                             for _ in range(EXTRA_INSTANCES)]
        yield flaky_stack


# -- helpers -------------------------------------------------------------------------------------


def admin_headers(stack, tenant: str = CONTOSO_TID) -> dict:
    token = stack.sandbox.entra_app.state.issuer.mint_access_token(tenant, "admin")
    return {"Authorization": f"Bearer {token}"}


def replay(stack, row) -> httpx.Response:
    return httpx.post(f"{stack.host_url}/api/admin/notifications/replay", headers=admin_headers(stack),
                      json=NotificationRef.of(row).model_dump(mode="json"), timeout=30)


def tag_appointment(tag: str | None) -> str | None:
    """The appointment a message's tag names (the tag is its row's key: ids only)."""
    if not tag or "|" not in tag:
        return None
    return tag.split("|", 1)[1].split("_", 1)[0]


def phone_forms(digits: str) -> list[str]:
    return [digits, f"+1{digits}", f"({digits[:3]}){digits[3:6]}-{digits[6:]}",
            f"{digits[:3]}-{digits[3:6]}-{digits[6:]}"]


def queue_texts(azurite, prefix: str) -> dict[str, list[str]]:
    """What is on every queue of this test now (visible messages, peeked: nothing is taken)."""
    service = QueueServiceClient.from_connection_string(azurite.connection_string)
    found = {}
    for queue in service.list_queues(name_starts_with=prefix):
        client = service.get_queue_client(queue.name)
        texts = []
        for message in client.peek_messages(max_messages=32):
            try:
                texts.append(base64.b64decode(message.content).decode())
            except ValueError:
                texts.append(str(message.content))
        found[queue.name] = texts
    return found


# -- the test -------------------------------------------------------------------------------------


def test_200_due_reminders_under_faults_are_sent_exactly_once_and_nothing_personal_is_kept(
        fault_stack, captured_logs, azurite, unique_prefix):
    run = fault_stack
    stack, deps, sim = run.stack, run.stack.deps, run.stack.sandbox.cerner
    gateway = stack.sandbox.acs_app.state.sms
    started = time.monotonic()
    # Only the 60-minute reminder, at any hour: appointments 52-58 minutes ahead have it due now.
    set_policy(stack, confirmation=False, update=False, cancellation=False, reminder_offsets_minutes=(60,),
               quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))
    outbox_before = len(stack.outbox())
    now = datetime.now(timezone.utc)
    bulk = sim.bulk_appointments(BULK_LOCATION, BULK, now + timedelta(minutes=52), spread_hours=0.1,
                                 video_ratio=1.0, patients=BULK)
    assert len(bulk.video_ids) == BULK
    number_of = {aid: f"+1{digits}" for aid, digits in zip(bulk.appointment_ids, bulk.mobile_numbers)}
    ours = set(bulk.appointment_ids)
    # Two patients whose carrier fails every attempt (ACS per-recipient 500) until the end: the
    # host gives up on their reminders.
    doomed = [bulk.appointment_ids[17], bulk.appointment_ids[161]]
    default_failures = gateway.recipient_failures()
    gateway.set_recipient_failures([*default_failures, *(RecipientFailure(number_of[a], 500) for a in doomed)])
    try:
        run.faults_on(True)
        scans = fan_out_refused = 0

        def bulk_rows():
            return [r for r in rows(stack) if r.appointment_id in ours]

        deadline = time.monotonic() + 200
        while True:
            try:
                deps.reminder_scan.fan_out()  # a scan job for each host instance's scan trigger
                scans += 1
            except StorageUnavailable:
                fan_out_refused += 1
            current = bulk_rows()
            statuses = Counter(r.status for r in current)
            if len(current) == BULK and statuses[NotificationStatus.sent] == BULK - len(doomed) \
                    and statuses[NotificationStatus.failed] == len(doomed):
                break
            assert time.monotonic() < deadline, f"after {scans} fan-outs: {len(current)} rows, {dict(statuses)}"
            time.sleep(SCAN_EVERY)
        faulted_for = time.monotonic() - started

        # Given up on: the two doomed reminders, through the poison queue, rows saying so.
        failed = {r.appointment_id: r for r in bulk_rows() if r.status is NotificationStatus.failed}
        assert set(failed) == set(doomed)
        assert all(r.failure == "gave up after the queue's retries" and r.acs_message_id is None
                   and r.attempts >= 1 and r.delivery_status is None for r in failed.values()), failed
        # Each went to <send queue>-poison after host.json's maxDequeueCount (5) deliveries; the
        # poison queue's trigger marked its row failed (and so took it off that queue).
        assert run.max_dequeue_count == 5
        poison = f"{deps.settings.send_queue}-poison"
        moved = [line for line in captured_logs.lines
                 if f"moved to '{poison}'" in line and f"(dequeue count {run.max_dequeue_count})" in line]
        assert len(moved) >= len(doomed), moved
        gave_up = [line for line in captured_logs.lines
                   if "Executed 'Functions.notification_gave_up' (Succeeded" in line]
        assert len(gave_up) >= len(doomed)

        # The rest: one SMS each, to the appointment's patient, none twice.
        sent_now = [m for m in stack.outbox()[outbox_before:] if tag_appointment(m["tag"]) in ours]
        per_appointment = Counter(tag_appointment(m["tag"]) for m in sent_now)
        assert not [a for a, n in per_appointment.items() if n > 1], "an appointment was texted twice"
        assert set(per_appointment) == ours - set(doomed)
        assert all(m["to"] == number_of[tag_appointment(m["tag"])] for m in sent_now)
        assert len({(m["to"], tag_appointment(m["tag"])) for m in sent_now}) == len(sent_now) == BULK - len(doomed)
        by_message = {m["messageId"]: m for m in sent_now}
        for row in bulk_rows():
            if row.status is NotificationStatus.sent:
                assert row.kind is NotificationKind.reminder and row.offset_minutes == 60
                assert by_message[row.acs_message_id]["to"] == number_of[row.appointment_id]

        # The faults were real and the stranded claims were queued again by later scans.
        assert run.send_queue.failures >= 10 and run.fhir_faults.injected.total() >= 10
        assert run.acs_faults.injected.total() >= 10
        assert run.scan_queue.failures + fan_out_refused >= 1
        assert any(r.queued_at and r.queued_at - r.claimed_at >= REQUEUE_AFTER for r in bulk_rows()), \
            "no claim whose enqueue failed was queued again by a later scan"

        # The carrier recovers; an admin replays each failed reminder once (the queue is healthy for
        # the replay itself: see test_a_replay_whose_enqueue_fails_can_be_replayed_again).
        gateway.set_recipient_failures(default_failures)
        run.send_queue.rate = 0.0
        for aid in doomed:
            first = replay(stack, failed[aid])
            assert first.status_code == 202, first.text
            assert first.json()["status"] == "queued" and first.json()["replays"] == 1
            second = replay(stack, failed[aid])
            assert second.status_code == 409, second.text
        wait_for(lambda: all(r.status is NotificationStatus.sent for r in bulk_rows()), timeout=30,
                 what="the replayed reminders to be sent")
        run.send_queue.rate = FAULT_RATE

        # More scans with the faults on, and every queue message delivered once more: nothing new.
        for _ in range(3):
            try:
                deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)
            except StorageUnavailable:
                pass
        run.send_queue.rate = 0.0
        for row in bulk_rows():
            deps.send_queue.send(NotificationRef.of(row))
        wait_for(lambda: not any(queue_texts(azurite, deps.settings.send_queue).get(deps.settings.send_queue)),
                 timeout=30, what="the duplicates to be worked through")
        time.sleep(1)
    finally:
        run.faults_on(False)
        gateway.set_recipient_failures(default_failures)

    final = [m for m in stack.outbox()[outbox_before:] if tag_appointment(m["tag"]) in ours]
    assert Counter(tag_appointment(m["tag"]) for m in final) == Counter({aid: 1 for aid in ours})
    assert {(m["to"], tag_appointment(m["tag"])) for m in final} == {(number_of[a], a) for a in ours}
    statuses = Counter(r.status for r in rows(stack) if r.appointment_id in ours)
    assert statuses == Counter({NotificationStatus.sent: BULK})
    replayed = [r for r in rows(stack) if r.appointment_id in doomed]
    assert all(r.replays == 1 for r in replayed)

    # -- privacy: no number, name or message text in any table, queue message or log line --------
    assert_nothing_personal(run, captured_logs.lines, azurite, unique_prefix, final,
                            bulk_patients=[sim.store.get("Patient", pid) for pid in bulk.patient_ids])
    print(f"\nfault run: {faulted_for:.1f} s to {BULK - len(doomed)} sent + {len(doomed)} failed, "
          f"{scans} fan-outs ({fan_out_refused} refused), queue send failures {run.send_queue.failures} "
          f"+ scan {run.scan_queue.failures}, FHIR faults {dict(run.fhir_faults.injected)} of "
          f"{run.fhir_faults.requests}, ACS faults {dict(run.acs_faults.injected)} of {run.acs_faults.requests}; "
          f"total {time.monotonic() - started:.1f} s")


def assert_nothing_personal(run, log_lines, azurite, prefix, messages, *, bulk_patients) -> None:
    deps = run.stack.deps
    tables = []
    for table in deps.tables.all():
        tables += [json.dumps(entity, default=str) for entity in table._client.list_entities()]
    assert any('"acs_message_id"' in row for row in tables), "the notification rows should have been read"
    queued = [text for texts in queue_texts(azurite, prefix).values() for text in texts]
    written = run.send_queue.sent + run.scan_queue.sent
    assert len(written) > 200 and any('"kind":"reminder"' in text for text in written)
    assert any(line.startswith("connector.reminders") for line in log_lines), "the connector's logs were captured"

    numbers = [p[5] for p in _PATIENTS if p[5]] + [p[6] for p in _PATIENTS if p[6]]
    numbers += [t["value"] for p in bulk_patients for t in p["telecom"] if t.get("system") == "phone"]
    names = {word for p in _PATIENTS for word in (p[1], p[2])}
    names |= {part for p in bulk_patients for part in (p["name"][0]["family"], *p["name"][0]["given"])}
    full_names = [p["name"][0]["text"] for p in bulk_patients] + [f"{p[1]}, {p[2]}" for p in _PATIENTS]
    texts = [m["message"] for m in messages]
    tokens = [re.search(r"/api/j/([A-Za-z0-9_-]+)", t).group(1) for t in texts]
    assert len(texts) == BULK and len(tokens) == BULK
    for where, haystack in {"table entities": tables, "queue messages": queued + written,
                            "log lines": log_lines}.items():
        blob = "\n".join(haystack)
        for digits in numbers:
            for form in phone_forms(digits):
                assert form not in blob, f"a phone number ({form[:4]}...) in {where}"
        for name in names:
            assert not re.search(rf"\b{re.escape(name)}\b", blob, re.IGNORECASE), f"a patient name ({name}) in {where}"
        for name in full_names:
            assert name.lower() not in blob.lower(), f"a patient name in {where}"
        for text in texts:
            assert text not in blob, f"a message's text in {where}"
        for token in tokens:
            assert token not in blob, f"a join link token in {where}"


# -- races found under the faults above ----------------------------------------------------------


def one_visit(stack, start: datetime, location: str) -> tuple[str, str]:
    """A video visit at a Location of its own, the only one the endpoint scans (the module's
    simulator keeps the other tests' 200 visits, which are due too)."""
    made = stack.sandbox.cerner.bulk_appointments(location, 1, start, spread_hours=1, video_ratio=1.0, patients=1,
                                                  location_name=f"Virtual Care {location}")
    stored = stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT)
    stack.deps.endpoints.save_endpoint(stored.item.model_copy(update={"location_ids": [location]}), stored.etag)
    return made.appointment_ids[0], f"+1{made.mobile_numbers[0]}"


def row_of(stack, appointment_id: str, kind: NotificationKind):
    found = [r for r in rows(stack) if r.appointment_id == appointment_id and r.kind is kind]
    return found[0] if len(found) == 1 else None


def test_a_replay_whose_enqueue_failed_is_queued_by_the_next_scan_and_sent_once(flaky_stack, monkeypatch):
    run = flaky_stack
    stack, gateway = run.stack, run.stack.sandbox.acs_app.state.sms
    set_policy(stack, reminder_offsets_minutes=(60,), quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))
    aid, number = one_visit(stack, datetime.now(timezone.utc) + timedelta(hours=3), "32216190")
    default_failures = gateway.recipient_failures()
    gateway.set_recipient_failures([*default_failures, RecipientFailure(number, 500)])
    try:
        stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT)
        failed = wait_for(lambda: (lambda r: r if r and r.status is NotificationStatus.failed else None)(
            row_of(stack, aid, NotificationKind.confirmation)), timeout=30, what="the host to give up")
    finally:
        gateway.set_recipient_failures(default_failures)

    run.send_queue.fail_next()  # the queue fails the replay's write, once
    first = replay(stack, failed)
    assert first.status_code == 503, first.text
    # The row is a claim again (not lost): a second replay says it is on its way...
    assert row_of(stack, aid, NotificationKind.confirmation).status is NotificationStatus.claimed
    again = replay(stack, failed)
    assert again.status_code == 409 and "on its way" in again.text, again.text
    # ...and the endpoint's next scan finds it stranded and queues it (a claim is stranded
    # REQUEUE_AFTER after it was made; this one was made seconds ago: the wait is shortened).
    monkeypatch.setattr("connector.services.reminder_scan.REQUEUE_AFTER", timedelta(seconds=1))
    time.sleep(1.1)
    assert stack.deps.reminder_scan.scan_endpoint(CONTOSO_TID, ENDPOINT).requeued == 1
    wait_for(lambda: row_of(stack, aid, NotificationKind.confirmation).status is NotificationStatus.sent,
             timeout=20, what="the replayed confirmation to be sent")
    assert [m["to"] for m in stack.outbox() if tag_appointment(m["tag"]) == aid] == [number]


def test_a_throttled_retry_of_a_message_acs_already_accepted_does_not_text_the_patient_again(flaky_stack):
    run = flaky_stack
    stack, deps = run.stack, run.stack.deps
    set_policy(stack, reminder_offsets_minutes=(60,), quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))
    aid, number = one_visit(stack, datetime.now(timezone.utc) + timedelta(hours=3), "32216191")
    start = datetime.fromisoformat(stack.sandbox.cerner.store.get("Appointment", aid)["start"].replace("Z", "+00:00"))
    now = datetime.now(timezone.utc)
    claim = NotificationClaim(tenant_id=CONTOSO_TID, endpoint_id=ENDPOINT, appointment_id=aid,
                              kind=NotificationKind.confirmation, appointment_start=start, claimed_at=now, due_at=now)
    assert deps.notifications.claim_notification(claim)  # claimed (as a scan would), on no queue yet
    ref = NotificationRef.of(claim)
    # ACS is slow to answer the first request (it is accepted and sent after 4 s) and throttles the
    # next two (the SDK's one retry included), as it does when the number is at its rate limit.
    faults = f"{stack.acs_url}/_sandbox/faults"
    httpx.post(faults, json={"latency_ms": 4000, "count": 1, "path_prefix": "/sms"}).raise_for_status()
    httpx.post(faults, json={"status": 429, "retry_after": 1, "count": 2, "path_prefix": "/sms"}).raise_for_status()

    outcomes = {}

    def deliver(name: str) -> None:  # one delivery of the message, as a host instance runs it
        try:
            outcomes[name] = deps.reminder_sender.send(ref)
        except Exception as exc:  # noqa: BLE001 - the host would retry it
            outcomes[name] = type(exc).__name__

    first = threading.Thread(target=deliver, args=("first",))
    first.start()
    # A second copy of the message (the design allows duplicates on the queue) is delivered to
    # another instance while ACS is still working on the first.
    wait_for(lambda: deps.notifications.get_notification(ref).item.attempts == 1, timeout=10,
             what="the first delivery to reach ACS")
    second = threading.Thread(target=deliver, args=("second",))
    second.start()
    first.join(20)
    second.join(20)
    # The first records sent though the second bumped the row meanwhile; the throttled second
    # went back on the queue keeping the request's id, and finds the row sent when it comes back.
    assert outcomes == {"first": NotificationStatus.sent, "second": NotificationStatus.queued}, outcomes
    done = wait_for(lambda: (lambda r: r if r.status is NotificationStatus.sent else None)(
        deps.notifications.get_notification(ref).item), timeout=30, what="the message to be recorded sent")
    time.sleep(1.5)
    texts = [m for m in stack.outbox() if tag_appointment(m["tag"]) == aid]
    assert [m["to"] for m in texts] == [number], f"texted {len(texts)} times"
    assert done.acs_message_id == texts[0]["messageId"]
