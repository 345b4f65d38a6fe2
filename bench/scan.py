"""Reminder scan: how much does the connector add on top of fetching the same FHIR pages?

The issue's goal (issue 7): scanning 20 endpoints x 500 appointments (10% due) takes at most 1.5x
the time of fetching the same FHIR pages with plain httpx at the same concurrency.

Run: ``.venv/bin/python bench/scan.py`` (two to four minutes on a two-core machine: one scan of the
10000 appointments takes most of a minute; ``--help`` for the knobs: ``--runs``, ``--endpoints``,
``--appointments``, ``--threads``, ``--goal``, ``--simulator-process``, ``--no-profile``,
``--profile-dir``). It always exits 0 (a benchmark reports; it does not fail CI) and prints GOAL MET /
GOAL MISSED.

The stamp, in this process (no Functions host: the scan job's use case is called directly, as the
queue trigger in ``connector/functions/reminders.py`` calls it): Azurite on free ports (the tables,
and the real send queue), the Cerner simulator on loopback, the local stack's keys in a temporary
folder, a unique storage prefix. The simulator verifies the backend services assertions against our
JWK Set, served by a tiny loopback app at the stamp's public URL (what ``/api/.well-known/jwks.json``
answers), so the scans use real SMART Backend Services tokens (client_credentials + private_key_jwt).
With ``--simulator-process`` the Cerner simulator runs in a child process instead (seeded and
configured through its ``/_sandbox`` routes), so that its CPU work does not compete with the scan's
for this interpreter's GIL; the default keeps it in this process, like the test stamps.

The data. One tenant (Contoso, both SMS consents given) with 20 FHIR endpoints; each endpoint
scans its own Cerner Location, which holds 500 booked appointments made by the simulator's bulk
seeder (``POST /_sandbox/appointments/bulk``: starts 30 minutes from now, evenly spread over 72
hours, ``video_ratio`` 0.5, so every second one is a Cerner video visit; 50 new patients a location).
The 20 endpoints share the simulator's one FHIR base URL: the stamp lets one endpoint own a base URL
(the ``endpointurls`` index), so the bench writes the 20 endpoint rows straight into the ``endpoints``
table, which is all a scan reads.

How "10% due" is arranged (and checked). The policy of every endpoint: on, look-ahead 4 days, no
confirmation / update / cancellation, the default virtual-visit rule (Cerner video visits), and ONE
reminder offset O. The domain (``connector/domain/reminders.py: due_messages``) claims a reminder for
a virtual booked appointment when its time ``start - O`` is no more than 15 minutes past
(``LATE_GRACE``) and at most 7 days ahead (``MAX_DELAY``, never binding here). With O about 58 hours
the reminders of the first 80% of the schedule are already too late and those of the last 20% are
due (claimed and queued, hidden until their time): 100 of the 500 appointments, 50 of them video
visits, so 10% of all appointments give one claim each. O is set before every run (untimed) so that
the cut falls half-way between appointments 400 and 401 (8.6 minutes apart) at that run's "now":
clock drift during the bench cannot move an appointment across it. The expected claims are counted
from the seeded schedule and compared with what the scans report. Every run claims on a fresh
notifications table (so every run claims afresh); the send queue is emptied between runs.

What is timed. Scan: ``ReminderScan.scan_endpoint(tenant, endpoint)`` for the 20 endpoints on a
pool of 4 threads (the Functions host runs queue-triggered jobs concurrently on its worker's thread
pool), to the last one's return. Baseline: the same FHIR pages fetched with plain httpx (one
``httpx.Client``, the same bearer token, ``Accept: application/fhir+json``) on a pool of 4 threads:
for each endpoint the first search URL, built exactly as the scan builds it (``location``,
``date=ge<now>``, ``date=lt<now + look-ahead>``, ``_count=100``), then the ``next`` links the
simulator hands out, each body parsed with ``json`` to find its next link. Runs alternate scan,
baseline, scan, ... so a noisy machine's drift hits both alike. The FHIR requests of every run are
recorded by a wrapper around the simulator's ASGI app and compared (same paths and queries; the
dates and ``-pageContext`` aside); requests the scan's client retried (the SSRF-safe client's 5 s
read timeout) are counted from the retry log. The goal is judged on median scan / median baseline.
This process's CPU time per run is printed too (with the simulator in-process it includes the
simulator's).

Storage round trips are counted at azure-core's ``RequestsTransport.send`` (every HTTP request the
Table and Queue SDKs make, retries included), by kind, and reported per appointment.

Where the goal is missed, one more scan (one endpoint per thread) runs under cProfile (the standard
library's: one profiler per worker thread, merged); its thread time is split into FHIR pages (HTTP +
JSON), picking and validating the virtual entries, the storage calls by repository method, the send
queue, the token and the rest, and suggestions follow with their numbers. No production code is changed.
"""

from __future__ import annotations

import argparse
import cProfile
import json
import logging
import math
import multiprocessing
import pstats
import secrets
import statistics
import sys
import tempfile
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from contextlib import ExitStack
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import parse_qsl, urlencode, urlsplit

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from bench.stamp import BenchStamp, run_reporting  # noqa: E402

ENDPOINTS = 20
APPOINTMENTS = 500
THREADS = 4
RUNS = 2  # one scan of 10000 appointments takes most of a minute here; --runs 5 for a steadier median
GOAL = 1.5
DUE_SHARE = 0.10  # of all appointments
VIDEO_RATIO = 0.5
SPREAD_HOURS = 72.0
FIRST_START_AFTER = timedelta(minutes=30)
LOOK_AHEAD_DAYS = 4
PATIENTS_PER_LOCATION = 50  # the simulator has fictional mobile numbers for 1600 bulk patients
MAX_BULK_PATIENTS = 1600
FIRST_LOCATION = 91000001
BACKEND_CLIENT = "0f6a1b7e-bench-scan-backend"
CERNER_TZ = "America/Chicago"
FHIR_JSON = "application/fhir+json"
CALLS_PATH = "/_bench/calls"


# -- counting ---------------------------------------------------------------------------------------

@dataclass(frozen=True)
class FhirCall:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]  # without -pageContext / -pageDirection
    status: int

    @property
    def kind(self) -> str:
        if "/r4/" in self.path:
            return f"FHIR {self.method} {self.path.rsplit('/', 1)[-1]}"
        if self.path.endswith("/token"):
            return "token"
        return f"{self.method} {self.path}"

    def as_json(self) -> list:
        return [self.method, self.path, [list(q) for q in self.query], self.status]

    @classmethod
    def from_json(cls, row: list) -> "FhirCall":
        return cls(row[0], row[1], tuple(tuple(q) for q in row[2]), row[3])


class FhirRecorder:
    """Wraps the Cerner simulator's ASGI app, outermost, and records every request but ``/_sandbox``.
    In a child process it also answers ``GET /_bench/calls?since=N`` with the calls from N on."""

    def __init__(self) -> None:
        self._calls: list[FhirCall] = []
        self._lock = threading.Lock()

    def wrap(self, app):
        recorder = self

        async def recorded(scope, receive, send):
            if scope["type"] == "http" and scope["path"] == CALLS_PATH:
                since = int(dict(parse_qsl(scope.get("query_string", b"").decode())).get("since", "0"))
                body = json.dumps([c.as_json() for c in recorder.since(since)]).encode()
                await send({"type": "http.response.start", "status": 200,
                            "headers": [(b"content-type", b"application/json")]})
                await send({"type": "http.response.body", "body": body})
                return
            if scope["type"] != "http" or scope["path"].startswith("/_sandbox"):
                await app(scope, receive, send)
                return
            status = 0

            async def send_status(message):
                nonlocal status
                if message["type"] == "http.response.start":
                    status = message["status"]
                await send(message)

            try:
                await app(scope, receive, send_status)
            finally:
                query = tuple(sorted((k, v) for k, v in parse_qsl(scope.get("query_string", b"").decode("latin-1"))
                                     if not k.startswith("-page")))
                with recorder._lock:
                    recorder._calls.append(FhirCall(scope["method"], scope["path"], query, status))

        return recorded

    def mark(self) -> int:
        with self._lock:
            return len(self._calls)

    def since(self, mark: int) -> list[FhirCall]:
        with self._lock:
            return list(self._calls[mark:])


class StorageCounter:
    """Counts every HTTP request the Azure Table and Queue SDKs send (azure-core's RequestsTransport)."""

    def __init__(self, table_port: int, queue_port: int) -> None:
        self._ports = {table_port: "table", queue_port: "queue"}
        self._counts: Counter = Counter()
        self._lock = threading.Lock()
        self._original = None

    def install(self) -> None:
        from azure.core.pipeline.transport import RequestsTransport

        self._original = original = RequestsTransport.send
        counter = self

        def send(transport, request, **kwargs):
            counter._count(request)
            return original(transport, request, **kwargs)

        RequestsTransport.send = send

    def uninstall(self) -> None:
        if self._original is not None:
            from azure.core.pipeline.transport import RequestsTransport

            RequestsTransport.send = self._original

    def _count(self, request) -> None:
        parts = urlsplit(request.url)
        service = self._ports.get(parts.port)
        if service is None:
            return
        if service == "queue":
            kind = f"queue {request.method} {'message' if parts.path.rstrip('/').endswith('/messages') else 'other'}"
        elif request.method == "GET" and "$filter" in (parts.query or "").replace("%24", "$"):
            kind = "table query"
        elif request.method == "GET":
            kind = "table point read"
        elif request.method == "POST":
            kind = "table insert"
        elif request.method == "PUT":
            kind = "table replace"
        else:
            kind = f"table {request.method}"
        with self._lock:
            self._counts[kind] += 1

    def reset(self) -> Counter:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


class RetryCounter(logging.Handler):
    """Counts the scan's FHIR retries (RetryingFhir logs each one: "... unavailable (<error class>, ...")."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._counts: Counter = Counter()
        self._lock = threading.Lock()

    def emit(self, record: logging.LogRecord) -> None:
        if "retrying" in record.msg and record.args:
            with self._lock:
                self._counts[str(record.args[1])] += 1

    def reset(self) -> Counter:
        with self._lock:
            counts, self._counts = self._counts, Counter()
        return counts


# -- the Cerner simulator, here or in a child process ---------------------------------------------

def _serve_cerner_in_child(port: int, ready, stop) -> None:  # the child process's target (spawn)
    from dev.sandbox import cerner
    from dev.sandbox.server import LoopbackServer

    app = cerner.create_app(public_url=f"http://127.0.0.1:{port}", tz=CERNER_TZ)
    with LoopbackServer(FhirRecorder().wrap(app), port, name="cerner"):
        ready.set()
        stop.wait()


class Simulator:
    """The Cerner simulator as the bench drives it: seeding and client registration through its
    ``/_sandbox`` routes, the calls it received through the recorder."""

    def __init__(self, exit_stack: ExitStack, port: int, *, child: bool) -> None:
        from dev.sandbox.cerner.seed import DEFAULT_TENANT
        from dev.sandbox.cerner.urls import CernerUrls

        self.url = f"http://127.0.0.1:{port}"
        self.urls = CernerUrls(self.url, DEFAULT_TENANT)
        self.child = child
        if child:
            context = multiprocessing.get_context("spawn")
            ready, stop = context.Event(), context.Event()
            process = context.Process(target=_serve_cerner_in_child, args=(port, ready, stop), daemon=True,
                                      name="cerner-simulator")
            process.start()

            def end() -> None:
                stop.set()
                process.join(10)
                if process.is_alive():
                    process.terminate()

            exit_stack.callback(end)
            if not ready.wait(60):
                raise RuntimeError("the Cerner simulator's process did not start")
            self.app = None
            self.recorder = None
        else:
            from dev.sandbox import cerner
            from dev.sandbox.server import LoopbackServer

            self.app = cerner.create_app(public_url=self.url, tz=CERNER_TZ)
            self.recorder = FhirRecorder()
            exit_stack.enter_context(LoopbackServer(self.recorder.wrap(self.app), port, name="cerner"))
        self.http = httpx.Client(base_url=self.url, timeout=60.0)
        exit_stack.callback(self.http.close)
        self._marks = 0

    def register_backend_client(self, jwks_uri: str) -> None:
        answer = self.http.post("/_sandbox/clients", json={"client_id": BACKEND_CLIENT, "jwks_uri": jwks_uri,
                                                           "name": "Connector reminders (bench)"})
        answer.raise_for_status()

    def bulk(self, location: str, count: int, start: datetime, name: str) -> tuple[list[str], set[str]]:
        answer = self.http.post("/_sandbox/appointments/bulk", json={
            "location": location, "count": count, "start": start.isoformat(), "spread_hours": SPREAD_HOURS,
            "video_ratio": VIDEO_RATIO, "patients": PATIENTS_PER_LOCATION, "location_name": name})
        answer.raise_for_status()
        made = answer.json()
        return made["appointment_ids"], set(made["video_ids"])

    def mark(self) -> int:
        if self.recorder is not None:
            return self.recorder.mark()
        return len(self.http.get(CALLS_PATH, params={"since": 0}).json())

    def since(self, mark: int) -> list[FhirCall]:
        if self.recorder is not None:
            return self.recorder.since(mark)
        return [FhirCall.from_json(row) for row in self.http.get(CALLS_PATH, params={"since": mark}).json()]


# -- the stamp ---------------------------------------------------------------------------------------

class ScanStamp(BenchStamp):
    """Azurite, the Cerner simulator and our JWKS on loopback; the endpoints seeded."""

    tmp_prefix = "bench-scan-"

    def __init__(self, endpoints: int, appointments: int, *, simulator_process: bool) -> None:
        self.endpoint_count = endpoints
        self.appointment_count = appointments
        self.simulator_process = simulator_process
        super().__init__()
        self.endpoint_ids: list[str] = []
        self.location_ids: list[str] = []
        self.video_starts: list[list[datetime]] = []  # per endpoint: the starts of its video visits
        self.starts: list[datetime] = []  # the schedule, the same at every location
        self.expected_per_endpoint: list[int] = []
        self.retries = RetryCounter()
        self.last_stats: pstats.Stats | None = None

    def _start(self) -> None:
        from starlette.applications import Starlette
        from starlette.responses import JSONResponse
        from starlette.routing import Route

        from connector.composition import container
        from connector.settings import get_settings
        from dev.sandbox.server import LoopbackServer
        from dev.stack import connector_environment

        base = self._base()
        tls, keys, azurite, ports = base.tls, base.keys, base.azurite, base.ports
        self.storage = StorageCounter(azurite.table_port, azurite.queue_port)
        self.storage.install()
        self._exit.callback(self.storage.uninstall)
        retry_log = logging.getLogger("connector.fhir.retry")
        retry_log.addHandler(self.retries)
        self._exit.callback(retry_log.removeHandler, self.retries)
        self.sim = Simulator(self._exit, ports.cerner, child=self.simulator_process)
        host_url = f"http://127.0.0.1:{ports.host}"

        self.prefix = prefix = "s" + secrets.token_hex(4)
        env = {
            **connector_environment(azurite, ports, tls.ca_file, keys),
            "CONNECTOR_STORAGE_NAME_PREFIX": prefix,
            "CONNECTOR_SCAN_QUEUE": f"{prefix}-scan",
            "CONNECTOR_SEND_QUEUE": f"{prefix}-send",
            "CONNECTOR_PROVISIONING_QUEUE": f"{prefix}-provision",
        }
        self._set_environ(env)
        get_settings.cache_clear()
        container.cache_clear()
        self._exit.callback(container.cache_clear)
        self._exit.callback(get_settings.cache_clear)
        self.deps = deps = container()

        # Our JWK Set where the stamp publishes it (what connector/functions/jwks.py answers).
        async def jwks(request):
            ring = deps.client_assertions
            return JSONResponse(ring.jwks() if ring else {"keys": []}, headers={"Cache-Control": "public, max-age=300"})

        self._exit.enter_context(LoopbackServer(Starlette(routes=[Route("/api/.well-known/jwks.json", jwks)]),
                                                ports.host, name="jwks"))
        self.sim.register_backend_client(f"{host_url}/api/.well-known/jwks.json")
        self._seed()

    def _seed(self) -> None:
        from connector.domain.endpoint import Environment, FhirEndpoint
        from connector.domain.reminders import ReminderPolicy
        from connector.domain.tenant import Consent, Tenant
        from dev.demo import DEMO_ADMIN_OID
        from dev.sandbox.entra import CONTOSO_ORGANIZER_OID, CONTOSO_TID
        from dev.stack import DEMO_NUMBERS

        deps, urls = self.deps, self.sim.urls
        deps.tables.create_missing()
        deps.send_queue.create_if_missing()
        deps.scan_queue.create_if_missing()
        now = datetime.now(timezone.utc)
        consent = Consent(by_oid=DEMO_ADMIN_OID, at=now)
        deps.tenants.onboard_tenant(Tenant(tenant_id=CONTOSO_TID, region="us", created_at=now,
                                           sms_terms_consent=consent, sms_data_consent=consent))
        self.tenant_id = CONTOSO_TID
        first_start = (now + FIRST_START_AFTER).replace(second=0, microsecond=0)
        made = []
        for k in range(self.endpoint_count):
            location = str(FIRST_LOCATION + k)
            made.append(self.sim.bulk(location, self.appointment_count, first_start, f"Bench department {k + 1}"))
            endpoint_id = f"bench-{k + 1:02d}"
            deps.tables.endpoints.insert(FhirEndpoint(
                tenant_id=CONTOSO_TID, endpoint_id=endpoint_id, display_name=f"Bench clinic {k + 1}",
                base_url=urls.fhir_base, environment=Environment.test, cerner_tenant_id=urls.tenant_id,
                authorize_url=urls.authorize("provider"), token_url=urls.token, backend_client_id=BACKEND_CLIENT,
                location_ids=[location], timezone=CERNER_TZ, linked_number=DEMO_NUMBERS[0],
                meeting_organizer=CONTOSO_ORGANIZER_OID, reminder_policy=ReminderPolicy(), created_at=now))
            self.endpoint_ids.append(endpoint_id)
            self.location_ids.append(location)
        # The schedule, read back from FHIR (the same at every location: same start, count and spread).
        client = httpx.Client(timeout=60.0)
        try:
            starts_by_id = self._schedule(client, self.location_ids[0], now)
        finally:
            client.close()
        ids, _ = made[0]
        self.starts = [starts_by_id[aid] for aid in ids]
        if self.starts != sorted(self.starts) or len(self.starts) != self.appointment_count:
            raise RuntimeError("the bulk appointments are not the schedule the bench expects")
        for ids, video in made:
            self.video_starts.append([start for aid, start in zip(ids, self.starts) if aid in video])

    def _schedule(self, client: httpx.Client, location: str, now: datetime) -> dict[str, datetime]:
        headers = {"Authorization": f"Bearer {self.token()}", "Accept": FHIR_JSON}
        url, starts = self.first_url(location, now), {}
        while url:
            bundle = client.get(url, headers=headers).raise_for_status().json()
            for entry in bundle.get("entry") or []:
                resource = entry["resource"]
                starts[resource["id"]] = datetime.fromisoformat(resource["start"].replace("Z", "+00:00"))
            url = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
        return starts

    # -- per run ------------------------------------------------------------------------------------

    def set_offset(self, now: datetime) -> int:
        """Give every endpoint the policy whose one reminder offset puts the cut half-way between the
        last appointment whose reminder is too late and the first whose reminder is due; returns the
        offset (minutes) and sets ``expected_per_endpoint``."""
        from connector.domain.reminders import LATE_GRACE, ReminderPolicy, VirtualVisitRule

        due_appointments = round(DUE_SHARE * self.appointment_count / VIDEO_RATIO)
        cut = self.appointment_count - due_appointments
        middle = self.starts[cut - 1] + (self.starts[cut] - self.starts[cut - 1]) / 2
        offset = math.floor((middle - now + LATE_GRACE) / timedelta(minutes=1))
        policy = ReminderPolicy(enabled=True, confirmation=False, update=False, cancellation=False,
                                reminder_offsets_minutes=(offset,), look_ahead_days=LOOK_AHEAD_DAYS,
                                virtual_visit=VirtualVisitRule())
        for endpoint_id in self.endpoint_ids:
            stored = self.deps.endpoints.get_endpoint(self.tenant_id, endpoint_id)
            if stored.item.reminder_policy != policy:
                self.deps.endpoints.save_endpoint(stored.item.model_copy(update={"reminder_policy": policy}),
                                                  stored.etag)
        threshold = now + timedelta(minutes=offset) - LATE_GRACE
        self.expected_per_endpoint = [sum(1 for s in starts if s >= threshold) for starts in self.video_starts]
        self._check_ready()
        return offset

    def _check_ready(self) -> None:
        """Fail loudly when the scan would skip the endpoints (the readiness rules may grow)."""
        from connector.services.reminder_scan import not_ready_reason

        tenant = self.deps.tenants.get_tenant(self.tenant_id)
        endpoint = self.deps.endpoints.get_endpoint(self.tenant_id, self.endpoint_ids[0]).item
        reason = not_ready_reason(endpoint, tenant.item if tenant else None, endpoint.reminder_policy)
        if reason:
            raise RuntimeError(f"the scan would skip the bench's endpoints: {reason}")

    def fresh_scan(self, run: str):
        """A ReminderScan on a notifications table of its own (so this run claims afresh)."""
        from connector.adapters.storage.repositories import TableNotificationRepository
        from connector.adapters.storage.tables import ModelTable
        from connector.domain.notification import NotificationClaim, notification_keys
        from connector.services.reminder_scan import ReminderScan

        deps = self.deps
        table = ModelTable(deps.table_service.get_table_client(f"{self.prefix}{run}notifications"),
                           NotificationClaim, notification_keys)
        table.create_if_missing()
        scan = ReminderScan(deps.tenants, deps.endpoints, TableNotificationRepository(table), deps.scan_fhir,
                            deps.backend_tokens, deps.scan_queue, deps.send_queue, deps.clock)
        return scan, table

    def clear_send_queue(self) -> None:
        self.deps.send_queue._client.clear_messages()

    def warm_tokens(self) -> None:
        from connector.domain.integration import BACKEND_SCOPES

        for endpoint_id in self.endpoint_ids:
            endpoint = self.deps.endpoints.get_endpoint(self.tenant_id, endpoint_id).item
            self.deps.backend_tokens.token(endpoint, endpoint.token_url, BACKEND_SCOPES)

    def token(self) -> str:
        """A backend services token, as the scan gets it (for the baseline's requests)."""
        from connector.domain.integration import BACKEND_SCOPES

        endpoint = self.deps.endpoints.get_endpoint(self.tenant_id, self.endpoint_ids[0]).item
        return self.deps.backend_tokens.token(endpoint, endpoint.token_url, BACKEND_SCOPES)

    def first_url(self, location: str, now: datetime) -> str:
        """The first search URL exactly as ReminderScan builds it (through RetryingFhir.search_pages)."""
        from connector.services.reminder_scan import PAGE_SIZE, _instant

        window_end = now + timedelta(days=LOOK_AHEAD_DAYS)
        params = [("location", location), ("date", f"ge{_instant(now)}"), ("date", f"lt{_instant(window_end)}"),
                  ("_count", str(PAGE_SIZE))]
        return f"{self.sim.urls.fhir_base}/Appointment?{urlencode(params)}"


# -- one run of each side ---------------------------------------------------------------------------

@dataclass
class ScanRun:
    seconds: float
    cpu: float
    appointments: int
    virtual: int
    claimed: int
    expected: int
    offset: int
    skipped: int
    calls: list[FhirCall]
    storage: Counter
    retries: Counter


@dataclass
class BaselineRun:
    seconds: float
    cpu: float
    pages: int
    entries: int
    calls: list[FhirCall]
    first_pages_ms: list[float]
    next_pages_ms: list[float]


def run_scan(stamp: ScanStamp, run: str, threads: int, *, profile_dir: Path | None = None,
             endpoints: int | None = None) -> ScanRun:
    """Scan the first ``endpoints`` endpoints (all by default) on ``threads`` threads."""
    endpoint_ids = stamp.endpoint_ids[:endpoints]
    scan, table = stamp.fresh_scan(run)
    offset = stamp.set_offset(datetime.now(timezone.utc))
    expected = sum(stamp.expected_per_endpoint[:len(endpoint_ids)])
    stamp.clear_send_queue()
    profiles: list[cProfile.Profile] = []
    profiles_lock = threading.Lock()

    def one(endpoint_id: str):
        if profile_dir is None:
            return scan.scan_endpoint(stamp.tenant_id, endpoint_id)
        profiler = cProfile.Profile()
        profiler.enable()
        try:
            return scan.scan_endpoint(stamp.tenant_id, endpoint_id)
        finally:
            profiler.disable()
            with profiles_lock:
                profiles.append(profiler)

    stamp.storage.reset()
    stamp.retries.reset()
    mark = stamp.sim.mark()
    cpu, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        results = list(pool.map(one, endpoint_ids))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    storage, retries = stamp.storage.reset(), stamp.retries.reset()
    calls = stamp.sim.since(mark)
    try:
        table._client.delete_table()  # untimed; the next run claims on a table of its own
    except Exception:  # noqa: BLE001 - a leftover table in a throwaway Azurite is harmless
        pass
    if profile_dir is not None:
        stats = pstats.Stats(profiles[0])
        for profiler in profiles[1:]:
            stats.add(profiler)
        stats.dump_stats(str(profile_dir / "scan.prof"))
        stamp.last_stats = stats
    return ScanRun(seconds, cpu, sum(r.appointments for r in results), sum(r.virtual for r in results),
                   sum(r.claimed for r in results), expected, offset, sum(r.skipped_resources for r in results),
                   calls, storage, retries)


def run_baseline(stamp: ScanStamp, client: httpx.Client, token: str, threads: int,
                 endpoints: int | None = None) -> BaselineRun:
    headers = {"Authorization": f"Bearer {token}", "Accept": FHIR_JSON}
    now = datetime.now(timezone.utc)
    lock = threading.Lock()
    totals = {"pages": 0, "entries": 0}
    first_ms: list[float] = []
    next_ms: list[float] = []

    def walk(location: str) -> None:
        url, pages, entries = stamp.first_url(location, now), 0, 0
        while url:
            asked = time.perf_counter()
            response = client.get(url, headers=headers)
            response.raise_for_status()
            bundle = response.json()
            took = (time.perf_counter() - asked) * 1000
            with lock:
                (next_ms if pages else first_ms).append(took)
            pages += 1
            entries += len(bundle.get("entry") or [])
            url = next((link["url"] for link in bundle.get("link") or [] if link.get("relation") == "next"), None)
        with lock:
            totals["pages"] += pages
            totals["entries"] += entries

    mark = stamp.sim.mark()
    cpu, started = time.process_time(), time.perf_counter()
    with ThreadPoolExecutor(max_workers=threads) as pool:
        list(pool.map(walk, stamp.location_ids[:endpoints]))
    seconds, cpu = time.perf_counter() - started, time.process_time() - cpu
    return BaselineRun(seconds, cpu, totals["pages"], totals["entries"], stamp.sim.since(mark), first_ms, next_ms)


def _fhir_shape(calls: list[FhirCall]) -> set:
    """The distinct FHIR requests of a run, comparable across runs: path and query without the dates
    (each run has its own "now"); page contexts are left out by the recorder."""
    return {(c.method, c.path, tuple((k, v) for k, v in c.query if k != "date")) for c in calls if "/r4/" in c.path}


# -- profile ----------------------------------------------------------------------------------------

# (bucket, file suffix, function name): cumulative time of these functions, summed over the threads.
BUCKETS = [
    ("FHIR pages: HTTP GET + JSON (RetryingFhir._get_bundle)", "fhir/retry.py", "_get_bundle"),
    ("picking the virtual entries, validated as AppointmentTimes (retry._page)", "fhir/retry.py", "_page"),
    ("token (BackendServicesTokens.token, cached)", "fhir/backend_token.py", "token"),
    ("storage: the endpoint's recent claims (recent, one query)", "storage/repositories.py", "recent"),
    ("storage: the claim (conditional insert, says queued)", "storage/repositories.py", "claim_notification"),
    ("storage: rows written back (record_outcome: failed enqueues, stranded claims)", "storage/repositories.py",
     "record_outcome"),
    ("storage: stranded claims (for_endpoint, a query)", "storage/repositories.py", "for_endpoint"),
    ("storage: endpoint and tenant reads", "storage/repositories.py", "get_endpoint"),
    ("storage: endpoint and tenant reads", "storage/repositories.py", "get_tenant"),
    ("send queue (StorageQueue.send)", "storage/queues.py", "send"),
]
FETCH = BUCKETS[0][0]


def _cumulative(stats: pstats.Stats, suffix: str, name: str) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, function), (_cc, nc, _tt, ct, _callers) in stats.stats.items():
        if function == name and filename.replace("\\", "/").endswith(suffix):
            total += ct
            calls += nc
    return total, calls


def _self_time(stats: pstats.Stats, predicate) -> tuple[float, int]:
    total, calls = 0.0, 0
    for (filename, _line, function), (_cc, nc, tt, _ct, _callers) in stats.stats.items():
        if predicate(filename, function):
            total += tt
            calls += nc
    return total, calls


def explain(stamp: ScanStamp, run: ScanRun, threads: int, endpoints: int, full: ScanRun, retries: Counter,
            runs: int) -> None:
    stats = stamp.last_stats
    thread_total, _ = _cumulative(stats, "services/reminder_scan.py", "scan_endpoint")
    print(f"\nwhere the time goes (one more scan of {endpoints} endpoints, {run.appointments} appointments, "
          f"profiled: {run.seconds:.1f} s wall, {thread_total:.1f} s of scan_endpoint time summed over {threads} "
          f"threads, {run.claimed} claims; slower than unprofiled):")
    buckets: dict[str, list[float]] = {}
    for bucket, suffix, name in BUCKETS:
        seconds, calls = _cumulative(stats, suffix, name)
        entry = buckets.setdefault(bucket, [0.0, 0])
        entry[0] += seconds
        entry[1] += calls
    # The pages are parsed in the generator's own frame (_page), not inside _get_bundle: no overlap.
    accounted = sum(seconds for seconds, _ in buckets.values())
    buckets["the rest: domain rules (due_messages), fhir_context, our glue"] = \
        [thread_total - accounted, 0]
    for bucket, (seconds, calls) in sorted(buckets.items(), key=lambda kv: -kv[1][0]):
        share = seconds / thread_total * 100 if thread_total else 0
        print(f"  {seconds:7.2f} s {share:5.1f}%  {bucket}" + (f"  ({calls:.0f} calls)" if calls else ""))
    # Builtins that release the GIL: their "own" time is mostly waiting to get the GIL back.
    waits, wait_calls = _self_time(stats, lambda f, fn: fn in (
        "<built-in method posix.stat>", "<method 'recv_into' of '_socket.socket' objects>",
        "<method 'recv' of '_socket.socket' objects>", "<method 'sendall' of '_socket.socket' objects>",
        "<method 'poll' of 'select.poll' objects>", "<method 'settimeout' of '_socket.socket' objects>"))
    stat_s, stat_calls = _self_time(stats, lambda f, fn: fn == "<built-in method posix.stat>")
    print(f"  of all this, {waits:.1f} s ({waits / thread_total * 100:.0f}%) is spent in {wait_calls} system calls "
          f"that release the GIL (socket send/recv/poll, stat): mostly waiting to get it back while other threads "
          f"run Python; e.g. {stat_calls} stat calls took {stat_s:.1f} s ({stat_s / max(stat_calls, 1) * 1000:.1f} ms "
          f"each; one takes about 1 us on this machine). requests stats ~/.netrc (get_netrc_auth) and the CA bundle "
          f"path (isdir) on every storage request.")

    say = lambda text: print("  - " + text)  # noqa: E731
    print("\nsuggestions (nothing below is changed here; numbers from the profiled scan unless said):")
    fetch_s = buckets[FETCH][0]
    if fetch_s and thread_total:
        say(f"Waiting for pages is {fetch_s / thread_total * 100:.0f}% of the scan's thread time, and the scan "
            f"works through page n before it asks for page n+1; fetching the next page while the current one is "
            f"worked through (its link is known on arrival) overlaps the two.")
    if retries:
        say(f"{sum(retries.values())} FHIR requests of {runs} full runs were retried "
            f"({', '.join(f'{n} x {k}' for k, n in retries.items())}): the SSRF-safe client's 5 s read timeout "
            f"(FetchLimits) gives up on a slow first page, and the retry makes the EHR start the search again. A "
            f"scan could use longer read timeouts than a launch (a clinician waits on a launch, not on a scan).")
    say("The scan is CPU-bound in one interpreter: 4 threads share the GIL (with the simulator too, unless "
        "--simulator-process), so each network call's GIL hand-back costs up to a switch interval (5 ms) while "
        "other threads run Python. Running scan jobs in several worker processes (FUNCTIONS_WORKER_PROCESS_COUNT) "
        "rather than more threads helps; so does less Python per storage request (azure-core over requests costs "
        "about 1.7 ms of CPU a request here).")


def _p90(values: list[float]) -> float:
    return statistics.quantiles(values, n=10, method="inclusive")[8] if len(values) > 1 else values[0]


# -- main ---------------------------------------------------------------------------------------------

def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=RUNS, help=f"timed runs of each side (default {RUNS})")
    parser.add_argument("--endpoints", type=int, default=ENDPOINTS)
    parser.add_argument("--appointments", type=int, default=APPOINTMENTS, help="per endpoint (its one location)")
    parser.add_argument("--threads", type=int, default=THREADS, help="concurrency of both sides")
    parser.add_argument("--goal", type=float, default=GOAL, help="scan / baseline ratio to meet")
    parser.add_argument("--simulator-process", action="store_true",
                        help="run the Cerner simulator in a child process (its CPU off this interpreter's GIL)")
    parser.add_argument("--no-profile", action="store_true", help="do not profile a scan that misses the goal")
    parser.add_argument("--profile-dir", type=Path, default=None, help="where scan.prof goes (default: a temp dir)")
    args = parser.parse_args(argv)
    if args.endpoints * PATIENTS_PER_LOCATION > MAX_BULK_PATIENTS:
        parser.error(f"the simulator has fictional mobile numbers for {MAX_BULK_PATIENTS} bulk patients: at most "
                     f"{MAX_BULK_PATIENTS // PATIENTS_PER_LOCATION} endpoints")
    if args.appointments < 10 or args.runs < 1:
        parser.error("at least 10 appointments per endpoint and one run")

    logging.basicConfig(level=logging.ERROR, format="%(name)s %(levelname)s %(message)s")
    logging.getLogger("connector.fhir.retry").setLevel(logging.WARNING)  # counted, not printed
    logging.getLogger("connector.fhir.retry").propagate = False
    began = time.perf_counter()
    where = "in a child process" if args.simulator_process else "in this process"
    print(f"reminder scan: {args.endpoints} endpoints x {args.appointments} appointments ({DUE_SHARE:.0%} due), "
          f"{args.threads} threads, against the same FHIR pages fetched with plain httpx; Cerner simulator {where}; "
          f"{args.runs} runs each, interleaved")
    with ScanStamp(args.endpoints, args.appointments, simulator_process=args.simulator_process) as stamp:
        # Kept-alive SDK connections make uvicorn say at teardown that its graceful shutdown timed
        # out (uvicorn sets this logger's level when each server starts, hence here).
        logging.getLogger("uvicorn.error").setLevel(logging.CRITICAL)
        print(f"stamp up and seeded in {time.perf_counter() - began:.1f} s "
              f"({args.endpoints * args.appointments} appointments in {args.endpoints} locations)")
        client = httpx.Client(timeout=60.0)
        try:
            # Warm-up, not measured: imports on first use, connection pools, every endpoint's token
            # (a scan job finds it cached: tokens live 9.5 minutes, the timer comes every few).
            subset = min(args.threads, args.endpoints)
            warm = run_scan(stamp, "w", args.threads, endpoints=subset)
            stamp.warm_tokens()
            token = stamp.token()
            run_baseline(stamp, client, token, args.threads, endpoints=subset)
            print(f"warm-up: {subset} endpoints scanned in {warm.seconds:.1f} s, {warm.claimed} claims "
                  f"(expected {warm.expected}); every endpoint's token fetched")
            scans: list[ScanRun] = []
            baselines: list[BaselineRun] = []
            for i in range(args.runs):
                scans.append(run_scan(stamp, f"r{i}", args.threads))
                baselines.append(run_baseline(stamp, client, token, args.threads))
        finally:
            client.close()

        scan_s = statistics.median(r.seconds for r in scans)
        base_s = statistics.median(r.seconds for r in baselines)
        ratio = scan_s / base_s
        met = ratio <= args.goal
        last, appointments = scans[-1], scans[-1].appointments
        if not appointments:
            raise RuntimeError("the scans found no appointments")
        print()
        print(f"{'':<9} {'median':>8} {'p90':>8}  {'CPU (this process)':>18}   runs (s)")
        for name, runs in (("scan", scans), ("baseline", baselines)):
            print(f"{name:<9} {statistics.median(r.seconds for r in runs):>7.2f}s "
                  f"{_p90([r.seconds for r in runs]):>7.2f}s  {statistics.median(r.cpu for r in runs):>17.1f}s   "
                  + ", ".join(f"{r.seconds:.2f}" for r in runs))
        print(f"ratio scan / baseline: {ratio:.2f}  (goal <= {args.goal}x)  {'GOAL MET' if met else 'GOAL MISSED'}")
        print(f"the scan's own cost: {(scan_s - base_s) / appointments * 1000:.2f} ms per appointment "
              f"({scan_s - base_s:.1f} s over the baseline for {appointments} appointments); the goal leaves "
              f"{base_s * (args.goal - 1):.1f} s, {base_s * (args.goal - 1) / appointments * 1000:.2f} ms per "
              f"appointment")
        b = baselines[-1]
        next_pages = f"{statistics.median(b.next_pages_ms):.0f} ms" if b.next_pages_ms else "(none)"
        print(f"the baseline's pages: first page of a search median {statistics.median(b.first_pages_ms):.0f} ms, "
              f"next pages median {next_pages} (the simulator starts each search by "
              f"deep-copying every Appointment it holds, the seed's and the bulk ones, and filtering them). The ratio "
              f"moves with the EHR's page latency; the scan's own cost per appointment does not.")

        print("\nFHIR calls per run (counted from what the simulator received):")
        scan_kinds = Counter(c.kind for c in last.calls)
        base_kinds = Counter(c.kind for c in b.calls)
        for kind in sorted(set(scan_kinds) | set(base_kinds)):
            print(f"  {kind:<24} scan {scan_kinds.get(kind, 0):>5}   baseline {base_kinds.get(kind, 0):>5}")
        same = all(_fhir_shape(s.calls) == _fhir_shape(x.calls) for s, x in zip(scans, baselines))
        retried = [sum(r.retries.values()) for r in scans]
        print(f"  same FHIR requests on both sides (paths and queries; dates and page contexts aside): "
              f"{'yes' if same else 'NO'}; every status 200: "
              f"{'yes' if all(c.status == 200 for r in scans + baselines for c in r.calls) else 'NO'}; requests the "
              f"scan retried: {', '.join(str(n) for n in retried)} per run"
              + (f" ({', '.join(f'{n} x {k}' for k, n in sum((r.retries for r in scans), Counter()).items())})"
                 if any(retried) else ""))
        print(f"  baseline: {b.pages} pages, {b.entries} entries")

        print("\nwhat each scan found and claimed:")
        for i, r in enumerate(scans):
            print(f"  run {i + 1}: {r.appointments} appointments, {r.virtual} virtual, {r.claimed} claims "
                  f"(expected {r.expected}: {r.claimed / max(r.appointments, 1):.1%} of the appointments), reminder "
                  f"offset {r.offset} min, {r.skipped} skipped resources")
        print(f"  claims as expected in every run: {'yes' if all(r.claimed == r.expected for r in scans) else 'NO'}")

        total = sum(last.storage.values())
        print(f"\nstorage round trips of a scan run (Table + Queue requests at azure-core's transport): {total}, "
              f"{total / appointments:.2f} per appointment")
        for kind, n in sorted(last.storage.items(), key=lambda kv: -kv[1]):
            print(f"  {n:>6}  {kind}")
        per_endpoint = 4 * args.endpoints
        print(f"  = {last.claimed} claims x 2 (insert, enqueue) + {args.endpoints} endpoints x 4 (endpoint, tenant, "
              f"its recent claims, its stranded claims; a query of more than 1000 rows takes more pages) = "
              f"{2 * last.claimed + per_endpoint}: nothing per appointment that is not due")

        if not met and not args.no_profile:
            out_dir = args.profile_dir or Path(tempfile.mkdtemp(prefix="bench-scan-profile-"))
            out_dir.mkdir(parents=True, exist_ok=True)
            # One endpoint per thread is enough to see the shares, and keeps the bench short.
            profiled = run_scan(stamp, "p", args.threads, profile_dir=out_dir, endpoints=subset)
            explain(stamp, profiled, args.threads, subset, last, sum((r.retries for r in scans), Counter()),
                    len(scans))
            print(f"  (profile saved as {out_dir / 'scan.prof'})")
    print(f"\nbenchmark took {time.perf_counter() - began:.0f} s")
    return 0


if __name__ == "__main__":
    run_reporting(main)
