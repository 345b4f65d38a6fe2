"""Event Grid for the sandbox's ACS resource: webhook subscriptions, the handshake, deliveries.

Real ACS publishes its SMS events to an Event Grid *system topic*; a webhook subscribes with
``az eventgrid event-subscription create --endpoint-type webhook ...``. The sandbox keeps the
parts a webhook sees, in the **Event Grid event schema** only (``EventGridSchema``, the default
for ACS system topics; the CloudEvents 1.0 schema and its ``OPTIONS`` / ``WebHook-Request-Origin``
handshake are not simulated and are refused at subscription time).

The handshake ("Endpoint validation with Event Grid event schema",
https://learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema,
formerly ``webhook-event-delivery``). On creation (and on an update) Event Grid POSTs to the
endpoint, with ``aeg-event-type: SubscriptionValidation``, an array holding one event::

    [{"id": "<guid>", "topic": "<source resource id>", "subject": "",
      "data": {"validationCode": "<guid>", "validationUrl": "https://.../validate?id=...&token=..."},
      "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
      "eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1", "dataVersion": "1"}]

- *synchronous*: the endpoint answers **200 OK** (202 "is not recognized") within 30 s with
  ``{"validationResponse": "<validationCode>"}``; the subscription is then ``Succeeded``;
- *asynchronous*: it answers 200 without ``validationResponse``; the subscription waits in
  ``AwaitingManualAction`` until someone GETs ``validationUrl`` (valid 5 minutes), else ``Failed``;
- anything else (another status, a timeout, a refused connection, a wrong ``validationResponse``)
  fails the handshake and the subscription is refused (here: 400 ``WebhookValidationFailed``).

Deliveries ("Delivery and retry", https://learn.microsoft.com/azure/event-grid/delivery-and-retry;
headers from the handler articles, e.g. https://learn.microsoft.com/azure/event-grid/handler-event-hubs#message-headers):
a POST of a JSON array of events (one per request unless ``maxEventsPerBatch`` says more;
the sandbox batches what one publish produced) with ``Content-Type: application/json``,
``aeg-event-type: Notification``, ``aeg-subscription-name`` (upper case), ``aeg-delivery-count``
(attempts before this one), ``aeg-data-version``, ``aeg-metadata-version`` and the
subscription's static delivery headers ("Custom delivery properties", up to 10, also sent on
the handshake: https://learn.microsoft.com/azure/event-grid/delivery-properties), e.g. a shared
secret the webhook checks. Only **200-204** count as delivered. Event Grid waits 30 s, retries
with backoff (10 s, 30 s, 1 min, ... for 24 h) and retries 400/401/403/404/413 only after
minutes (or dead-letters 400 and 413); the sandbox retries 5xx, 408, 429, other non-success
codes, timeouts and refused connections after each of ``retry_delays`` (short), and stops at
once on 400, 401, 403, 404 and 413. Order is not guaranteed (a retried batch is overtaken by
later ones), as in Event Grid.

Endpoints must be on loopback (http or https; Event Grid itself insists on https): the sandbox
never calls out of this machine. The delivery log keeps, per attempt, the status or error and
the event ids, never bodies (they hold phone numbers and message text).
"""

from __future__ import annotations

import heapq
import itertools
import json
import logging
import re
import secrets
import threading
import time
import uuid
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import urlencode

import httpx

from .delivery_reports import EVENT_TYPE as SMS_DELIVERY_REPORT
from .inbound import EVENT_TYPE as SMS_RECEIVED
from .wire import iso, is_loopback_url, utc_now

log = logging.getLogger("dev.sandbox.acs")

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
EVENT_TYPES = (SMS_RECEIVED, SMS_DELIVERY_REPORT)
EVENT_GRID_SCHEMA = "EventGridSchema"
VALIDATION_TIMEOUT_SECONDS = 30.0
DELIVERY_TIMEOUT_SECONDS = 30.0
RETRY_DELAYS = (0.2, 0.5, 1.0)
MANUAL_VALIDATION_WINDOW = timedelta(minutes=5)
MAX_DELIVERY_HEADERS = 10
MAX_EVENTS_PER_BATCH = 5000
MAX_LOG_ENTRIES = 2000
SUCCEEDED, AWAITING_MANUAL_ACTION, FAILED = "Succeeded", "AwaitingManualAction", "Failed"
FINAL_STATUSES = frozenset({400, 401, 403, 404, 413})
_NAME = re.compile(r"^[A-Za-z0-9-]{3,64}$")
_HEADER_NAME = re.compile(r"^[A-Za-z0-9-]{1,100}$")


class SubscriptionRefused(Exception):
    """Creating the subscription failed: ``status`` and an ARM-like ``code``/``message``."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


@dataclass
class EventSubscription:
    name: str
    endpoint: str
    event_types: tuple[str, ...]
    max_events_per_batch: int
    headers: dict[str, str]
    created: datetime
    validation_code: str
    validation_token: str
    validation_url: str
    state: str = SUCCEEDED
    manual_deadline: datetime | None = None

    def current_state(self, now: datetime) -> str:
        if self.state == AWAITING_MANUAL_ACTION and self.manual_deadline is not None and now > self.manual_deadline:
            self.state = FAILED
        return self.state

    def to_json(self, now: datetime) -> dict[str, Any]:
        body: dict[str, Any] = {
            "name": self.name,
            "endpoint": self.endpoint,
            "eventTypes": list(self.event_types),
            "eventDeliverySchema": EVENT_GRID_SCHEMA,
            "maxEventsPerBatch": self.max_events_per_batch,
            "deliveryHeaders": sorted(self.headers),  # names only: values may be secrets
            "provisioningState": self.current_state(now),
            "createdAt": iso(self.created),
        }
        if self.state == AWAITING_MANUAL_ACTION:
            body["validationUrl"] = self.validation_url
        return body


@dataclass(order=True)
class _Attempt:
    due: float
    seq: int
    subscription: str = field(compare=False)
    url: str = field(compare=False)
    headers: dict[str, str] = field(compare=False)
    body: bytes = field(compare=False)
    event_ids: tuple[str, ...] = field(compare=False)
    event_types: tuple[str, ...] = field(compare=False)
    attempt: int = field(compare=False, default=1)


def _subscription_headers(value: Any) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in value.items()):
        raise SubscriptionRefused(400, "InvalidRequest", "deliveryHeaders must map header names to string values.")
    if len(value) > MAX_DELIVERY_HEADERS:
        raise SubscriptionRefused(400, "InvalidRequest",
                                  f"At most {MAX_DELIVERY_HEADERS} delivery headers are allowed.")
    for name, header_value in value.items():
        if not _HEADER_NAME.match(name) or name.lower().startswith("aeg-") or len(header_value.encode()) > 4096:
            raise SubscriptionRefused(400, "InvalidRequest",
                                      f"Delivery header {name!r} is not allowed (aeg-* is reserved, values <= 4 KB).")
    return dict(value)


class EventGrid:
    """The ACS resource's system topic: subscriptions and a background delivery thread."""

    def __init__(self, *, topic: str, public_url: str, validation_timeout: float = VALIDATION_TIMEOUT_SECONDS,
                 delivery_timeout: float = DELIVERY_TIMEOUT_SECONDS,
                 retry_delays: Iterable[float] = RETRY_DELAYS, verify: Any = True) -> None:
        self.topic = topic
        self.public_url = public_url.rstrip("/")
        self.validation_timeout = validation_timeout
        self.delivery_timeout = delivery_timeout
        self.retry_delays = tuple(retry_delays)
        self._verify = verify
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._subscriptions: dict[str, EventSubscription] = {}
        self._heap: list[_Attempt] = []
        self._seq = itertools.count()
        self._names = itertools.count(1)
        self._pending = 0  # batches not yet delivered or given up on
        self._log: list[dict[str, Any]] = []
        self._thread: threading.Thread | None = None
        self._closing = False

    # --- subscriptions -------------------------------------------------------------

    def subscribe(self, endpoint: Any, event_types: Any = None, *, name: Any = None, max_events_per_batch: Any = 1,
                  headers: Any = None, schema: Any = EVENT_GRID_SCHEMA) -> EventSubscription:
        """Create (or, for an existing ``name``, replace) a webhook subscription after the
        validation handshake. Raises :class:`SubscriptionRefused`. Blocking: call it from a
        thread (the route does), or in-process from tests and the stack."""
        subscription = self._prepare(endpoint, event_types, name, max_events_per_batch, headers, schema)
        self._handshake(subscription)
        with self._lock:
            self._subscriptions[subscription.name] = subscription
        log.info("acs sandbox: event subscription %s is %s", subscription.name, subscription.state)
        return subscription

    def validate_manually(self, name: str, code: str, token: str) -> bool:
        """A GET on ``validationUrl``: the asynchronous handshake's second half."""
        now = utc_now()
        with self._lock:
            subscription = self._subscriptions.get(name)
            if subscription is None or subscription.current_state(now) != AWAITING_MANUAL_ACTION:
                return False
            if not (secrets.compare_digest(code.encode(), subscription.validation_code.encode())
                    and secrets.compare_digest(token.encode(), subscription.validation_token.encode())):
                return False
            subscription.state, subscription.manual_deadline = SUCCEEDED, None
            return True

    def unsubscribe(self, name: str) -> bool:
        with self._lock:
            return self._subscriptions.pop(name, None) is not None

    def subscriptions(self) -> list[dict[str, Any]]:
        now = utc_now()
        with self._lock:
            return [s.to_json(now) for s in self._subscriptions.values()]

    def get(self, name: str) -> EventSubscription | None:
        with self._lock:
            return self._subscriptions.get(name)

    # --- publishing and the delivery log -------------------------------------------

    def publish(self, events: list[dict[str, Any]], delay: float = 0.0) -> int:
        """Queue ``events`` (Event Grid schema) for every live subscription that wants them,
        ``delay`` seconds from now; how many batches were queued."""
        now, due = utc_now(), time.monotonic() + max(delay, 0.0)
        queued = 0
        with self._wake:
            for subscription in self._subscriptions.values():
                if subscription.current_state(now) != SUCCEEDED:
                    continue
                wanted = [e for e in events if e["eventType"] in subscription.event_types]
                size = subscription.max_events_per_batch
                for start in range(0, len(wanted), size):
                    batch = wanted[start:start + size]
                    headers = {
                        **subscription.headers,
                        "Content-Type": "application/json; charset=utf-8",
                        "aeg-event-type": "Notification",
                        "aeg-subscription-name": subscription.name.upper(),
                        "aeg-data-version": str(batch[0].get("dataVersion", "")),
                        "aeg-metadata-version": str(batch[0].get("metadataVersion", "1")),
                    }
                    heapq.heappush(self._heap, _Attempt(
                        due, next(self._seq), subscription.name, subscription.endpoint, headers,
                        json.dumps(batch).encode(), tuple(e["id"] for e in batch),
                        tuple(e["eventType"] for e in batch)))
                    queued += 1
            if queued:
                self._pending += queued
                self._ensure_worker()
                self._wake.notify_all()
        return queued

    def deliveries(self) -> list[dict[str, Any]]:
        with self._lock:
            return [dict(entry) for entry in self._log]

    def clear_deliveries(self) -> None:
        with self._lock:
            self._log.clear()

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """True once every queued batch was delivered or given up on."""
        deadline = time.monotonic() + timeout
        with self._wake:
            while self._pending:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._wake.wait(remaining)
            return True

    def close(self, timeout: float = 5.0) -> None:
        with self._wake:
            self._closing = True
            thread = self._thread
            self._wake.notify_all()
        if thread is not None:
            thread.join(timeout)

    # --- internals -------------------------------------------------------------------

    def _prepare(self, endpoint: Any, event_types: Any, name: Any, max_events_per_batch: Any, headers: Any,
                 schema: Any) -> EventSubscription:
        if schema != EVENT_GRID_SCHEMA:
            raise SubscriptionRefused(400, "InvalidRequest",
                                      "The sandbox delivers the EventGridSchema only (no CloudEvents 1.0).")
        if not isinstance(endpoint, str) or not endpoint:
            raise SubscriptionRefused(400, "InvalidRequest", "endpoint is required.")
        if not is_loopback_url(endpoint):
            raise SubscriptionRefused(400, "InvalidRequest",
                                      "The sandbox delivers events on loopback only; endpoint is not an http(s) "
                                      "URL on 127.0.0.1, ::1 or localhost.")
        if event_types is None:
            types = EVENT_TYPES
        elif (isinstance(event_types, list) and event_types
              and all(isinstance(t, str) and t in EVENT_TYPES for t in event_types)):
            types = tuple(dict.fromkeys(event_types))
        else:
            raise SubscriptionRefused(400, "InvalidRequest", f"eventTypes must list some of {', '.join(EVENT_TYPES)}.")
        if name is None:
            name = f"acs-sms-events-{next(self._names)}"
        if not isinstance(name, str) or not _NAME.match(name):
            raise SubscriptionRefused(400, "InvalidRequest", "name must be 3 to 64 letters, digits or hyphens.")
        if (not isinstance(max_events_per_batch, int) or isinstance(max_events_per_batch, bool)
                or not 1 <= max_events_per_batch <= MAX_EVENTS_PER_BATCH):
            raise SubscriptionRefused(400, "InvalidRequest",
                                      f"maxEventsPerBatch must be an integer from 1 to {MAX_EVENTS_PER_BATCH}.")
        code, token, now = str(uuid.uuid4()), secrets.token_urlsafe(16), utc_now()
        query = urlencode({"id": code, "t": iso(now), "apiVersion": "2018-05-01-preview", "token": token})
        validation_url = f"{self.public_url}/_sandbox/event-subscriptions/{name}/validate?{query}"
        return EventSubscription(name, endpoint, types, max_events_per_batch, _subscription_headers(headers), now,
                                 code, token, validation_url)

    def _handshake(self, subscription: EventSubscription) -> None:
        now = utc_now()
        event = {
            "id": str(uuid.uuid4()),
            "topic": self.topic,
            "subject": "",
            "data": {"validationCode": subscription.validation_code, "validationUrl": subscription.validation_url},
            "eventType": VALIDATION_EVENT,
            "eventTime": now.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z",
            "metadataVersion": "1",
            "dataVersion": "1",
        }
        headers = {
            **subscription.headers,
            "Content-Type": "application/json; charset=utf-8",
            "aeg-event-type": "SubscriptionValidation",
            "aeg-subscription-name": subscription.name.upper(),
            "aeg-delivery-count": "0",
            "aeg-data-version": "1",
            "aeg-metadata-version": "1",
        }
        failed = f"Webhook validation handshake failed for {subscription.endpoint}."
        try:
            with httpx.Client(timeout=self.validation_timeout, verify=self._verify, follow_redirects=False) as client:
                response = client.post(subscription.endpoint, content=json.dumps([event]).encode(), headers=headers)
        except httpx.TimeoutException:
            raise SubscriptionRefused(400, "WebhookValidationFailed",
                                      f"{failed} The endpoint did not answer within "
                                      f"{self.validation_timeout:g} seconds.") from None
        except httpx.HTTPError:
            raise SubscriptionRefused(400, "WebhookValidationFailed",
                                      f"{failed} The endpoint could not be reached.") from None
        if response.status_code != 200:
            raise SubscriptionRefused(400, "WebhookValidationFailed",
                                      f"{failed} Http POST request failed with response code {response.status_code}; "
                                      "only 200 OK completes the handshake.")
        try:
            answer = response.json()
        except ValueError:
            answer = None
        echoed = answer.get("validationResponse") if isinstance(answer, dict) else None
        if echoed is None:
            subscription.state = AWAITING_MANUAL_ACTION
            subscription.manual_deadline = now + MANUAL_VALIDATION_WINDOW
            return
        if echoed != subscription.validation_code:
            raise SubscriptionRefused(400, "WebhookValidationFailed",
                                      f"{failed} Http POST request returned 2XX response with invalid content: "
                                      "validationResponse is not the validationCode sent.")
        subscription.state = SUCCEEDED

    def _ensure_worker(self) -> None:  # lock held
        if self._thread is None or not self._thread.is_alive():
            self._closing = False
            self._thread = threading.Thread(target=self._run, name="acs-event-grid", daemon=True)
            self._thread.start()

    def _next_attempt(self) -> _Attempt | None:
        with self._wake:
            while True:
                if self._closing:
                    return None
                if self._heap:
                    wait = self._heap[0].due - time.monotonic()
                    if wait <= 0:
                        return heapq.heappop(self._heap)
                    self._wake.wait(wait)
                else:
                    self._wake.wait()

    def _run(self) -> None:
        with httpx.Client(timeout=self.delivery_timeout, verify=self._verify, follow_redirects=False) as client:
            while True:
                attempt = self._next_attempt()
                if attempt is None:
                    return
                try:
                    done = self._deliver(client, attempt)
                except Exception:  # noqa: BLE001 - the worker must outlive any one delivery
                    log.exception("acs sandbox: delivering events failed unexpectedly")
                    done = True
                if done:
                    with self._wake:
                        self._pending -= 1
                        self._wake.notify_all()

    def _deliver(self, client: httpx.Client, attempt: _Attempt) -> bool:
        """One POST; True when the batch is finished with (delivered or given up on)."""
        with self._lock:
            subscription = self._subscriptions.get(attempt.subscription)
            live = subscription is not None and subscription.endpoint == attempt.url
        if not live:
            self._record(attempt, None, None, "dropped")
            return True
        status: int | None = None
        error: str | None = None
        headers = {**attempt.headers, "aeg-delivery-count": str(attempt.attempt - 1)}
        try:
            status = client.post(attempt.url, content=attempt.body, headers=headers).status_code
        except httpx.TimeoutException:
            error = "timeout"
        except httpx.HTTPError:
            error = "connection"
        if status is not None and 200 <= status <= 204:
            self._record(attempt, status, None, "delivered")
            return True
        final = status in FINAL_STATUSES
        if not final and attempt.attempt <= len(self.retry_delays):
            self._record(attempt, status, error, "retrying")
            delay = self.retry_delays[attempt.attempt - 1]
            with self._wake:
                attempt.attempt += 1
                attempt.due = time.monotonic() + delay
                attempt.seq = next(self._seq)
                heapq.heappush(self._heap, attempt)
                self._wake.notify_all()
            return False
        self._record(attempt, status, error, "refused" if final else "failed")
        return True

    def _record(self, attempt: _Attempt, status: int | None, error: str | None, outcome: str) -> None:
        entry = {
            "subscription": attempt.subscription,
            "eventIds": list(attempt.event_ids),
            "eventTypes": list(attempt.event_types),
            "attempt": attempt.attempt,
            "status": status,
            "error": error,
            "outcome": outcome,
            "at": iso(utc_now()),
        }
        log.info("acs sandbox: %d event(s) for subscription %s, attempt %d: %s (%s)", len(attempt.event_ids),
                 attempt.subscription, attempt.attempt, status or error, outcome)
        with self._lock:
            self._log.append(entry)
            del self._log[:-MAX_LOG_ENTRIES]
