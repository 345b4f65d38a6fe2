"""Delivering change notifications to subscribers' webhooks, from a background thread.

Graph POSTs a ``changeNotificationCollection`` (``{"value": [...]}``, JSON) to the
subscription's ``notificationUrl`` with a 3-second timeout and, when it gets no 2xx in time,
tries again later (for up to four hours: "Receive change notifications through webhooks",
https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#processing-the-change-notification).
The sandbox does the same on a short clock: one worker thread, deliveries in the order the
call events happened, a retry after each delay in ``retry_delays`` on 5xx, 429, timeouts and
refused connections; other 4xx answers are final. Each attempt is logged in memory (the
status the webhook answered, never a body) for the control API; nothing here logs a name.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from dataclasses import dataclass
from typing import Any

import httpx

from .wire import graph_time, utc_now

log = logging.getLogger("dev.sandbox.graph")

DELIVERY_TIMEOUT_SECONDS = 3.0
RETRY_DELAYS = (0.2, 0.5, 1.0)
MAX_LOG_ENTRIES = 2000


@dataclass(frozen=True)
class Delivery:
    url: str
    body: bytes
    subscription_id: str
    meeting_key: str
    event_type: str
    event_id: str


class Notifier:
    def __init__(self, *, timeout: float = DELIVERY_TIMEOUT_SECONDS, retry_delays: tuple[float, ...] = RETRY_DELAYS,
                 verify: Any = True) -> None:
        self.timeout = timeout
        self.retry_delays = tuple(retry_delays)
        self._verify = verify
        self._queue: queue.Queue[Delivery | None] = queue.Queue()
        self._lock = threading.Lock()
        self._idle = threading.Condition(self._lock)
        self._pending = 0
        self._log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None

    def enqueue(self, delivery: Delivery) -> None:
        with self._lock:
            self._pending += 1
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="graph-notifier", daemon=True)
                self._thread.start()
        self._queue.put(delivery)

    def close(self, timeout: float = 5.0) -> None:
        with self._lock:
            thread = self._thread
        if thread is not None and thread.is_alive():
            self._queue.put(None)
            thread.join(timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every enqueued notification was delivered or given up on."""
        deadline = time.monotonic() + timeout
        with self._idle:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._idle.wait(remaining)
            return True

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear(self) -> None:
        with self._lock:
            self._log.clear()

    # --- the worker -------------------------------------------------------------
    def _run(self) -> None:
        with httpx.Client(timeout=self.timeout, verify=self._verify, follow_redirects=False) as client:
            while True:
                delivery = self._queue.get()
                if delivery is None:
                    return
                try:
                    self._deliver(client, delivery)
                except Exception:  # noqa: BLE001 - the worker must outlive any one delivery
                    log.exception("graph sandbox: delivering a notification failed unexpectedly")
                finally:
                    with self._idle:
                        self._pending -= 1
                        self._idle.notify_all()

    def _deliver(self, client: httpx.Client, delivery: Delivery) -> None:
        delays = (0.0, *self.retry_delays)
        for attempt, delay in enumerate(delays, start=1):
            if delay:
                time.sleep(delay)
            status: int | None = None
            error: str | None = None
            try:
                response = client.post(delivery.url, content=delivery.body,
                                       headers={"Content-Type": "application/json; charset=utf-8"})
                status = response.status_code
            except httpx.TimeoutException:
                error = "timeout"
            except httpx.HTTPError:
                error = "connection"
            retryable = status is None or status >= 500 or status == 429
            if status is not None and 200 <= status < 300:
                outcome = "delivered"
            elif retryable and attempt < len(delays):
                outcome = "retrying"
            else:
                outcome = "failed" if retryable else "refused"
            self._record(delivery, attempt, status, error, outcome)
            if outcome != "retrying":
                return

    def _record(self, delivery: Delivery, attempt: int, status: int | None, error: str | None, outcome: str) -> None:
        entry = {
            "subscriptionId": delivery.subscription_id,
            "meeting": delivery.meeting_key,
            "eventType": delivery.event_type,
            "eventId": delivery.event_id,
            "attempt": attempt,
            "status": status,
            "error": error,
            "outcome": outcome,
            "at": graph_time(utc_now()),
        }
        log.info("graph sandbox: %s notification for subscription %s, attempt %d: %s (%s)",
                 delivery.event_type, delivery.subscription_id, attempt, status or error, outcome)
        with self._lock:
            self._log.append(entry)
            del self._log[:-MAX_LOG_ENTRIES]
