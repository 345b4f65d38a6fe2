"""SMS pacing: messages per minute through the ACS simulator against its per-number rate limit.

The issue's goal (issue 7): the sender keeps under ACS's per-number limit (429 beyond it) - pace, do
not hammer, lose nothing: 0.9x to 1.0x of the limit, never above, nothing lost.

Run: ``.venv/bin/python bench/sms_rate.py`` (about a minute; ``--help`` for the knobs: ``--limit``,
``--window``, ``--messages``, ``--workers``, ``--timeout``). It always exits 0 (a benchmark reports; it does not fail
CI) and prints GOAL MET / GOAL MISSED.

What runs: the real sender path, ``ReminderSender.send`` (connector/services/reminder_send.py) for
every message, as the send queue's trigger calls it: the notification row, the endpoint and tenant
re-checked, the Appointment and the Patient read from the Cerner simulator (backend services
token), the opt-out list, the visit's Teams meeting made in the Graph simulator (Entra sandbox token,
the call-events subscription with its validation handshake), the join link minted, the text written,
then ``AcsSmsSender`` (the production adapter over azure-communication-sms) with its ``NumberPacer``
against the ACS simulator, and the row written back. Chosen over driving ``AcsSmsSender`` alone
because the pacer only matters with what surrounds it: many queue messages handled at once in one
process (they share the pacer), the time each send spends before the pacer, and what the sender does
with a 429 (back on the queue after Retry-After, at least 5 s, never counted as a failure).

The stamp, in this process (no Functions host): Azurite (tables and the real send queue), the
Cerner, Entra (https, own CA), Graph and ACS simulators on loopback, and a tiny app on the stamp's
public URL answering what the host would for this path: our JWK Set (Cerner verifies the backend
services assertions against it) and Graph's subscription validation handshake. The demo tenant is
seeded as ``make run`` seeds it (consents, the toll-free number linked, Teams organizer); its policy:
confirmations only, no quiet hours, scanning one Location that holds ``--messages`` booked video
visits from the simulator's bulk seeder (100 patients with fictional mobile numbers). One scan
(``ReminderScan.scan_endpoint``) claims a confirmation for each and puts it on the send queue, due
now.

The limit, its window shortened so the bench takes a minute: the ACS simulator allows ``--limit``
message units per number per ``--window`` seconds (default 40 per 10 s: 240 a minute, 4 a second, near
ACS's toll-free 200 a minute, 3.3 a second) and answers 429 with Retry-After beyond it. (The whole path
handles about 7 messages a second in this one process, simulators included; a limit above that, such
as 120 per 10 s, measures that capacity instead of the pacer, and the bench says so.) The pacer is
scaled to it through its constructor: ``NumberPacer(limit * 60 / window)`` (what
``CONNECTOR_SMS_RATE_PER_MINUTE`` feeds it in production), wrapped around the production
``AcsSmsSender`` (same SDK client as ``sms_sender_from_settings`` builds: no SDK retries), with its
``sleep`` recorded.

The queue trigger: a small stand-in for the Functions host's queue listener with host.json's
settings: up to ``batchSize`` (16) messages in flight at once on a thread pool, a new batch fetched
when half of them are done, a message deleted after its function returns and made visible again
after ``visibilityTimeout`` (30 s) when it raises, moved aside after ``maxDequeueCount`` (5). (The
local host, ``dev/host``, runs one message at a time, which would measure itself, not the pacer.)

``--instances N`` runs N such listeners on the same queue, each with its own ReminderSender,
AcsSmsSender and NumberPacer, as N Function App instances (or ``FUNCTIONS_WORKER_PROCESS_COUNT`` worker
processes) would: the pacer is per process, so this shows what scaling out does to the rate.

What is measured: ACS's own record of what it accepted (the outbox: each message's acceptance time
and tag, i.e. its notification row's key) and every answer of ``POST /sms`` (a recording wrapper
around the simulator's app: 202s and 429s). The rate is counted over whole windows from the first
acceptance (messages per window, and per minute), the ratio against the limit; "never above" is the
largest count in any sliding window (from each acceptance, ``--window`` long) against the limit, and
no 429 from ACS (the sender never asked above it); "nothing lost" is every row ``sent`` and every
row's tag exactly once in the outbox. The moments sends reach the pacer tell whether the pacer or the
rest of the path set the pace (sends arriving slower than the pacer lets them through: the path).
"""

from __future__ import annotations

import argparse
import logging
import secrets
import statistics
import sys
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, time as clock_time, timedelta, timezone
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from bench.stamp import BenchStamp, run_reporting  # noqa: E402

# 40 per 10 s is 4 a second, near ACS's toll-free 200 a minute (3.3 a second) and below what the
# whole path manages in one process here (about 7 a second: see "capacity" below).
LIMIT = 40  # message units per number per window
WINDOW_SECONDS = 10.0
MESSAGES = 200  # five windows and some at the pacer's 95%
WORKERS = 16  # host.json extensions.queues.batchSize
MAX_DEQUEUE = 5  # host.json maxDequeueCount
RETRY_VISIBILITY = 30  # host.json visibilityTimeout (seconds)
POLL_SECONDS = 0.2
GOAL_LOW, GOAL_HIGH = 0.9, 1.0
BENCH_LOCATION = "92000001"
PATIENTS = 100


# -- recording ---------------------------------------------------------------------------------------

class AcsRecorder:
    """Wraps the ACS simulator's ASGI app and records each ``POST /sms`` answer (status, time)."""

    def __init__(self) -> None:
        self.answers: list[tuple[float, int]] = []
        self._lock = threading.Lock()

    def wrap(self, app):
        recorder = self

        async def recorded(scope, receive, send):
            if scope["type"] != "http" or scope["method"] != "POST" or scope["path"].rstrip("/") != "/sms":
                await app(scope, receive, send)
                return

            async def send_status(message):
                if message["type"] == "http.response.start":
                    with recorder._lock:
                        recorder.answers.append((time.monotonic(), message["status"]))
                await send(message)

            await app(scope, receive, send_status)

        return recorded

    def statuses(self) -> Counter:
        with self._lock:
            return Counter(status for _, status in self.answers)


def recorded_pacer(per_minute: int, sleep):
    """The production NumberPacer, with the moment each send reaches it recorded (its arrivals)."""
    from connector.adapters.acs.sms import NumberPacer

    class RecordedPacer(NumberPacer):
        def __init__(self) -> None:
            super().__init__(per_minute, sleep=sleep)
            self.arrivals: list[float] = []
            self._arrivals_lock = threading.Lock()

        def wait(self, number: str) -> None:
            with self._arrivals_lock:
                self.arrivals.append(time.monotonic())
            super().wait(number)

    return RecordedPacer()


class RecordingSleep:
    """The pacer's ``sleep``: how often, and how long, workers waited for their slot."""

    def __init__(self) -> None:
        self.waits = 0
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self, seconds: float) -> None:
        with self._lock:
            self.waits += 1
            self.seconds += seconds
        time.sleep(seconds)


# -- the stamp ---------------------------------------------------------------------------------------

class SmsStamp(BenchStamp):
    """The stamp the sender runs in: Azurite, the four simulators, the demo tenant."""

    tmp_prefix = "bench-sms-"

    def __init__(self, limit: int, window: float, messages: int, instances: int = 1) -> None:
        self.limit = limit
        self.window = window
        self.messages = messages
        self.instances = instances
        self.acs = AcsRecorder()
        self.pacer_sleep = RecordingSleep()
        self.pacers: list = []
        self.senders: list = []
        super().__init__()

    def _start(self) -> None:
        from starlette.applications import Starlette
        from starlette.requests import Request
        from starlette.responses import JSONResponse, PlainTextResponse, Response
        from starlette.routing import Route

        from connector.composition import container
        from connector.settings import get_settings
        from dev.demo import register_demo_clients
        from dev.sandbox import acs, cerner, entra, graph
        from dev.sandbox.server import LoopbackServer
        from dev.stack import ACS_SANDBOX_KEY, DEMO_NUMBERS, connector_environment

        base = self._base()
        tls, keys, azurite, ports = base.tls, base.keys, base.azurite, base.ports
        entra_app = entra.create_app(public_url=f"https://127.0.0.1:{ports.entra}")
        self.cerner_app = cerner.create_app(public_url=f"http://127.0.0.1:{ports.cerner}")
        self.acs_app = acs.create_app(public_url=f"http://127.0.0.1:{ports.acs}", access_key=ACS_SANDBOX_KEY,
                                      purchased_numbers=DEMO_NUMBERS, rate_limit_per_minute=self.limit,
                                      rate_limit_window=timedelta(seconds=self.window))
        graph_app = graph.create_app(public_url=f"http://127.0.0.1:{ports.graph}", issuer=entra_app.state.issuer)
        self._exit.enter_context(LoopbackServer(entra_app, ports.entra, certfile=tls.cert_file, keyfile=tls.key_file,
                                                name="entra"))
        self._exit.enter_context(LoopbackServer(self.cerner_app, ports.cerner, name="cerner"))
        self._exit.enter_context(LoopbackServer(self.acs.wrap(self.acs_app), ports.acs, name="acs"))
        self._exit.enter_context(LoopbackServer(graph_app, ports.graph, name="graph"))
        host_url = f"http://127.0.0.1:{ports.host}"

        self.prefix = prefix = "m" + secrets.token_hex(4)
        env = {
            **connector_environment(azurite, ports, tls.ca_file, keys),
            "CONNECTOR_STORAGE_NAME_PREFIX": prefix,
            "CONNECTOR_SCAN_QUEUE": f"{prefix}-scan",
            "CONNECTOR_SEND_QUEUE": f"{prefix}-send",
            "CONNECTOR_PROVISIONING_QUEUE": f"{prefix}-provision",
            "CONNECTOR_SMS_RATE_PER_MINUTE": str(self.per_minute),
        }
        self._set_environ(env)
        get_settings.cache_clear()
        container.cache_clear()
        self._exit.callback(container.cache_clear)
        self._exit.callback(get_settings.cache_clear)
        self.deps = deps = container()

        # What the Functions host answers on this path: our JWK Set, Graph's validation handshake.
        async def jwks(request: Request) -> Response:
            ring = deps.client_assertions
            return JSONResponse(ring.jwks() if ring else {"keys": []}, headers={"Cache-Control": "public, max-age=300"})

        async def graph_webhook(request: Request) -> Response:
            token = request.query_params.get("validationToken")
            return PlainTextResponse(token) if token is not None else Response(status_code=202)

        stamp_app = Starlette(routes=[Route("/api/.well-known/jwks.json", jwks),
                                      Route("/api/notifications/graph", graph_webhook, methods=["POST"])])
        self._exit.enter_context(LoopbackServer(stamp_app, ports.host, name="stamp"))

        demo = register_demo_clients(self.cerner_app, entra_app, host_url=host_url, sms_number=DEMO_NUMBERS[0])
        self._seed(demo)
        self._pace()

    @property
    def per_minute(self) -> int:
        return round(self.limit * 60 / self.window)

    def _seed(self, demo) -> None:
        from connector.domain.reminders import ReminderPolicy
        from dev.seed import seed_demo_tenant

        deps, sim = self.deps, self.cerner_app.state.cerner
        seed_demo_tenant(deps, demo)
        deps.send_queue.create_if_missing()
        deps.scan_queue.create_if_missing()
        start = (datetime.now(timezone.utc) + timedelta(hours=1)).replace(second=0, microsecond=0)
        made = sim.bulk_appointments(BENCH_LOCATION, self.messages, start, spread_hours=48, video_ratio=1.0,
                                     patients=PATIENTS, location_name="Bench SMS department")
        if len(made.video_ids) != self.messages:
            raise RuntimeError("the bulk seeder did not make only video visits")
        stored = deps.endpoints.get_endpoint(demo.tenant_id, "demo-clinic")
        policy = ReminderPolicy(enabled=True, confirmation=True, update=False, cancellation=False,
                                reminder_offsets_minutes=(), quiet_hours_start=clock_time(0),
                                quiet_hours_end=clock_time(0), look_ahead_days=8)
        deps.endpoints.save_endpoint(stored.item.model_copy(update={"reminder_policy": policy,
                                                                    "location_ids": [BENCH_LOCATION]}), stored.etag)
        self.tenant_id, self.endpoint_id = demo.tenant_id, "demo-clinic"
        self.number = demo.sms_number

    def _pace(self) -> None:
        """Per instance (a Function App instance or worker process: each has its own pacer): the
        production AcsSmsSender (its SDK client as sms_sender_from_settings builds it) with a
        NumberPacer scaled to the shortened limit, its sleep and arrivals recorded, inside a
        ReminderSender. Instance 0 is the container's own sender (its sms_sender is taken lazily, so
        it finds the one set here); the others are copies of it with their own pacer."""
        import copy

        from connector.adapters.acs.sms import AcsSmsSender, sms_sender_from_settings

        for index in range(self.instances):
            pacer = recorded_pacer(self.per_minute, self.pacer_sleep)
            sms = AcsSmsSender(sms_sender_from_settings(self.deps.settings)._client, pacer)
            if index == 0:
                self.deps.__dict__["sms_sender"] = sms  # a cached_property: the sender finds this one
                sender = self.deps.reminder_sender
            else:
                sender = copy.copy(self.deps.reminder_sender)
                if not hasattr(sender, "_sms"):
                    raise RuntimeError("ReminderSender no longer keeps its SMS sender as _sms: update the bench")
                sender._sms = sms
            self.pacers.append(pacer)
            self.senders.append(sender)

    @property
    def pacer(self):
        return self.pacers[0]

    def scan(self):
        return self.deps.reminder_scan.scan_endpoint(self.tenant_id, self.endpoint_id)

    def rows(self):
        return [v.item for v in self.deps.notifications.for_endpoint(self.tenant_id, self.endpoint_id)]

    def outbox(self) -> list[dict]:
        return [m.to_json() for m in self.acs_app.state.sms.outbox()]


# -- the queue trigger --------------------------------------------------------------------------------

@dataclass
class Outcomes:
    statuses: Counter = field(default_factory=Counter)
    errors: Counter = field(default_factory=Counter)
    poisoned: int = 0
    invocations: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str | None = None, error: str | None = None) -> None:
        with self.lock:
            self.invocations += 1
            if status is not None:
                self.statuses[status] += 1
            if error is not None:
                self.errors[error] += 1


class QueueTrigger:
    """The Functions host's queue listener for the send queue, as host.json configures it."""

    def __init__(self, stamp: SmsStamp, sender, workers: int, outcomes: "Outcomes") -> None:
        from azure.storage.queue import TextBase64DecodePolicy

        self.stamp = stamp
        self.sender = sender
        self.workers = workers
        self.queue = stamp.deps.queue_service.get_queue_client(stamp.deps.settings.send_queue,
                                                               message_decode_policy=TextBase64DecodePolicy())
        self.outcomes = outcomes
        self._in_flight = 0
        self._cond = threading.Condition()
        self._stop = threading.Event()

    def _handle(self, message) -> None:
        from connector.domain.notification import NotificationRef

        try:
            ref = NotificationRef.model_validate_json(message.content)
            status = self.sender.send(ref)
            self.outcomes.add(status=status.value if status is not None else "nothing to do")
            self.queue.delete_message(message)
        except Exception as exc:  # noqa: BLE001 - the host's behaviour: retry, then poison
            self.outcomes.add(error=type(exc).__name__)
            if message.dequeue_count >= MAX_DEQUEUE:
                with self.outcomes.lock:
                    self.outcomes.poisoned += 1
                self.queue.delete_message(message)
            else:
                self.queue.update_message(message, visibility_timeout=RETRY_VISIBILITY)
        finally:
            with self._cond:
                self._in_flight -= 1
                self._cond.notify_all()

    def run(self, done) -> None:
        """Dispatch until ``done()`` or stopped: a new batch when half the slots are free."""
        with ThreadPoolExecutor(max_workers=self.workers, thread_name_prefix="send-queue") as pool:
            while not self._stop.is_set() and not done():
                with self._cond:
                    while self._in_flight > self.workers // 2 and not self._stop.is_set():
                        self._cond.wait(0.5)
                    room = self.workers - self._in_flight
                batch = list(self.queue.receive_messages(messages_per_page=room, max_messages=room,
                                                         visibility_timeout=300))
                if not batch:
                    time.sleep(POLL_SECONDS)
                    continue
                with self._cond:
                    self._in_flight += len(batch)
                for message in batch:
                    pool.submit(self._handle, message)

    def stop(self) -> None:
        self._stop.set()


# -- the analysis ---------------------------------------------------------------------------------------

def _accepted_times(outbox: list[dict]) -> list[float]:
    return sorted(datetime.fromisoformat(m["sent_at"].replace("Z", "+00:00")).timestamp() for m in outbox)


def windows(times: list[float], window: float) -> list[int]:
    """Messages per whole window from the first acceptance (the last, partial window left out)."""
    if not times:
        return []
    first, last = times[0], times[-1]
    count = int((last - first) // window)
    return [sum(1 for t in times if first + k * window <= t < first + (k + 1) * window) for k in range(count)]


def max_sliding(times: list[float], window: float) -> int:
    """The most acceptances in any ``window`` seconds (from each acceptance on)."""
    best, j = 0, 0
    for i, start in enumerate(times):
        while j < len(times) and times[j] < start + window:
            j += 1
        best = max(best, j - i)
    return best


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--limit", type=int, default=LIMIT, help=f"message units per number per window ({LIMIT})")
    parser.add_argument("--window", type=float, default=WINDOW_SECONDS, help=f"seconds ({WINDOW_SECONDS:g})")
    parser.add_argument("--messages", type=int, default=MESSAGES, help=f"messages to send ({MESSAGES})")
    parser.add_argument("--workers", type=int, default=WORKERS, help=f"queue messages in flight at once ({WORKERS})")
    parser.add_argument("--instances", type=int, default=1,
                        help="Function App instances (or worker processes) sending, each with its own pacer (1)")
    parser.add_argument("--timeout", type=float, default=240.0, help="give up sending after this many seconds")
    args = parser.parse_args(argv)
    if args.limit < 1 or args.window <= 0 or args.messages < 2 or args.workers < 1 or args.instances < 1:
        parser.error("limit, window, messages (2 or more), workers and instances must be positive")

    logging.basicConfig(level=logging.ERROR, format="%(name)s %(levelname)s %(message)s")
    began = time.perf_counter()
    per_minute = args.limit * 60 / args.window
    print(f"SMS pacing: {args.messages} messages from one number through ReminderSender -> AcsSmsSender + NumberPacer "
          f"-> the ACS simulator, which allows {args.limit} per {args.window:g} s ({per_minute:.0f} a minute) per "
          f"number; {args.workers} queue messages in flight at once"
          + (f" on each of {args.instances} instances" if args.instances > 1 else ""))
    with SmsStamp(args.limit, args.window, args.messages, args.instances) as stamp:
        # Kept-alive SDK connections make uvicorn say at teardown that its graceful shutdown timed
        # out (uvicorn sets this logger's level when each server starts, hence here).
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        interval_ms = 60 / (stamp.per_minute * stamp.pacer.MARGIN) * 1000
        print(f"stamp up and seeded in {time.perf_counter() - began:.1f} s; pacer NumberPacer({stamp.per_minute}) "
              f"(margin {stamp.pacer.MARGIN}: one send every {interval_ms:.0f} ms)")
        scanned = stamp.scan()
        print(f"scan: {scanned.appointments} appointments, {scanned.claimed} confirmations claimed and queued")
        if scanned.claimed != args.messages:
            raise RuntimeError(f"the scan claimed {scanned.claimed} messages, not {args.messages}")

        outcomes = Outcomes()
        triggers = [QueueTrigger(stamp, sender, args.workers, outcomes) for sender in stamp.senders]
        finished = lambda: sum(outcomes.statuses[s] for s in ("sent", "skipped")) \
            + outcomes.poisoned >= args.messages  # noqa: E731
        runners = [threading.Thread(target=t.run, args=(finished,), name=f"queue-trigger-{i}", daemon=True)
                   for i, t in enumerate(triggers)]
        started = time.monotonic()
        for runner in runners:
            runner.start()
        while any(r.is_alive() for r in runners) and time.monotonic() - started < args.timeout:
            time.sleep(0.5)
        timed_out = any(r.is_alive() for r in runners)
        for trigger in triggers:
            trigger.stop()
        for runner in runners:
            runner.join(30)
        elapsed = time.monotonic() - started
        trigger = triggers[0]

        outbox = [m for m in stamp.outbox() if m["from"] == stamp.number]
        times = _accepted_times(outbox)
        per_window = windows(times, args.window)
        steady = statistics.mean(per_window) if per_window else 0.0
        ratio = steady / args.limit
        overall = (len(times) - 1) / (times[-1] - times[0]) * args.window / args.limit if len(times) > 1 else 0.0
        peak = max_sliding(times, args.window)
        statuses = stamp.acs.statuses()
        rows = stamp.rows()
        row_status = Counter(r.status.value for r in rows)
        tags = Counter(m["tag"] for m in outbox)
        from connector.domain.notification import notification_tag

        row_tags = {notification_tag(r) for r in rows}
        once = all(tags.get(tag) == 1 for tag in row_tags) and set(tags) == row_tags
        lost = args.messages - row_status.get("sent", 0)

        print(f"\nsent in {elapsed:.1f} s (first to last acceptance {times[-1] - times[0]:.1f} s)" if times else "")
        print(f"per {args.window:g} s window from the first acceptance: " + ", ".join(str(n) for n in per_window)
              + f"  (limit {args.limit})")
        print(f"achieved: {steady:.1f} per window = {steady * 60 / args.window:.0f} messages a minute against "
              f"{per_minute:.0f}; ratio {ratio:.3f} over {len(per_window)} whole windows ({overall:.3f} first to last)")
        print(f"most in any {args.window:g} s: {peak} (limit {args.limit}, {peak / args.limit:.3f}x)")
        print("POST /sms answers: " + ", ".join(f"{n} x {s}" for s, n in sorted(statuses.items()))
              + f"; 429s: {statuses.get(429, 0)}")
        print("sender outcomes: " + ", ".join(f"{n} x {s}" for s, n in sorted(trigger.outcomes.statuses.items()))
              + ("; errors: " + ", ".join(f"{n} x {e}" for e, n in trigger.outcomes.errors.items())
                 if trigger.outcomes.errors else "; no errors")
              + f"; {trigger.outcomes.invocations} invocations, {trigger.outcomes.poisoned} poisoned")
        print("rows: " + ", ".join(f"{n} {s}" for s, n in sorted(row_status.items()))
              + f"; outbox: {len(outbox)} messages, {len(tags)} distinct rows; every row's message in the outbox "
                f"exactly once: {'yes' if once else 'NO'}")
        sleep, arrivals = stamp.pacer_sleep, sorted(t for pacer in stamp.pacers for t in pacer.arrivals)
        pacer_rate = stamp.per_minute * stamp.pacer.MARGIN / 60 * args.instances
        arrival_rate = (len(arrivals) - 1) / (arrivals[-1] - arrivals[0]) if len(arrivals) > 1 else 0.0
        # What set the pace: ACS refusing (429s), else sends arriving slower than the pacers let through
        # (3% slack: arrivals are counted over a slightly longer span), else the pacers.
        acs_bound = statuses.get(429, 0) > 0
        path_bound = not acs_bound and arrival_rate < 0.97 * pacer_rate
        pacers = "pacer" if args.instances == 1 else f"{args.instances} pacers (one per instance)"
        print(f"{pacers}: sends reached {'it' if args.instances == 1 else 'them'} at {arrival_rate:.1f} a second "
              f"({args.workers * args.instances} in flight), {'it lets' if args.instances == 1 else 'they let'} "
              f"{pacer_rate:.1f} a second through; {sleep.waits} sends waited for their slot, {sleep.seconds:.1f} s "
              f"in all: "
              + ("ACS's limit set the pace (it refused what came above it)" if acs_bound else
                 f"the rest of the path set the pace, not the pacer: {arrival_rate:.1f} a second is what it manages "
                 f"here (lower --limit, or add --workers, to measure the pacer)" if path_bound
                 else "the pacer set the pace"))
        if args.instances > 1:
            print(f"  each instance paces on its own: together they let {pacer_rate / (args.limit / args.window):.2f}x "
                  f"the limit through; ACS refuses the rest (429) and the sender puts those back on the queue after "
                  f"Retry-After (at least 5 s)")

        never_above = peak <= args.limit and statuses.get(429, 0) == 0
        met = GOAL_LOW <= ratio <= GOAL_HIGH and never_above and lost == 0 and once and not timed_out
        reasons = []
        if not GOAL_LOW <= ratio <= GOAL_HIGH:
            reasons.append(f"ratio {ratio:.3f} outside {GOAL_LOW}-{GOAL_HIGH}"
                           + (f": the path delivered {arrival_rate:.1f} sends a second" if path_bound else ""))
        if not never_above:
            reasons.append(f"above the limit ({peak} in a window, {statuses.get(429, 0)} 429s)")
        if lost or not once or timed_out:
            reasons.append(f"{lost} not sent" + ("" if once else ", outbox not exactly once")
                           + (", timed out" if timed_out else ""))
        print(f"\n{'GOAL MET' if met else 'GOAL MISSED'}: {ratio:.3f}x the limit (goal {GOAL_LOW}-{GOAL_HIGH}), "
              f"never above: {'yes' if never_above else 'no'}, nothing lost: {'yes' if lost == 0 and once else 'no'}"
              + (f" ({'; '.join(reasons)})" if reasons else ""))
    print(f"\nbenchmark took {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_reporting(main)
