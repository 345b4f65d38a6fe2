"""Telemetry: one span per invocation and one per outbound call, ids only (docs/architecture.md,
section 9).

    @telemetry.traced("queue")                       # queue and timer triggers (HTTP: functions/http.py)
    def scan_endpoint(msg): ...
    telemetry.tag(tenant=job.tenant_id, endpoint_id=job.endpoint_id)   # ids on the invocation's span
    with telemetry.span("table get tenants", service="Azure Table Storage", table=name) as call:
        ...
        call.set(status=404)

Spans carry only the attributes named in ``ATTRIBUTES`` (method, host, a URL without its query,
status, our own ids; a tenant id is recorded as a hash), never names, numbers, tokens, headers,
query strings or bodies. The exporter checks the same list again (``otel.IdsOnlyExporter``).

Telemetry is off unless configured: ``APPLICATIONINSIGHTS_CONNECTION_STRING`` set and not local
mode, or ``CONNECTOR_TELEMETRY=on`` (``off`` forces it off). Off, every span is one shared no-op
object and neither ``opentelemetry`` nor ``azure.monitor`` is imported (cold start). On, the first
invocation of the worker process sets it up (``otel.configure``), once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from collections.abc import Callable, Mapping
from functools import wraps
from typing import Any

CONNECTION_STRING = "APPLICATIONINSIGHTS_CONNECTION_STRING"
AUTHENTICATION_STRING = "APPLICATIONINSIGHTS_AUTHENTICATION_STRING"

# What code may name (keyword) -> the span attribute it becomes. Nothing else is ever recorded.
ATTRIBUTES = {
    "method": "http.request.method",
    "status": "http.response.status_code",
    "host": "server.address",
    "url": "url.full",  # scheme, host and path: the query and fragment are cut off (clean())
    "service": "peer.service",
    "error": "error.type",  # an exception's class name, never its message
    "function": "connector.function",
    "trigger": "connector.trigger",
    "operation": "connector.operation",
    "table": "connector.table",
    "queue": "connector.queue",
    "redirects": "connector.redirects",
    "tenant": "connector.tenant_hash",  # given the tenant id, records its hash (tenant_hash())
    "endpoint_id": "connector.endpoint_id",
    "operation_id": "connector.operation_id",
    "notification_id": "connector.notification_id",
}
# The Azure Monitor sampler's own attribute (the sample rate) passes the exporter's check too.
ALLOWED_ATTRIBUTES = frozenset(ATTRIBUTES.values()) | {"_MS.sampleRate"}
MAX_VALUE_CHARS = 512


def tenant_hash(tenant_id: str) -> str:
    return hashlib.sha256(tenant_id.strip().lower().encode()).hexdigest()[:16]


def clean(key: str, value: Any) -> Any:
    """``value`` as it may be recorded under ``key``, or None if it may not."""
    if isinstance(value, bool | int | float):
        return value
    if not isinstance(value, str):
        return None
    if key == "url.full":
        value = value.split("#", 1)[0].split("?", 1)[0]
    return value[:MAX_VALUE_CHARS]


def recorded(named: Mapping[str, Any]) -> dict[str, Any]:
    """Keyword ids as span attributes: unknown names and None values are dropped."""
    attributes = {}
    for name, value in named.items():
        key = ATTRIBUTES.get(name)
        if key is None or value is None:
            continue
        if name == "tenant":
            value = tenant_hash(str(value))
        value = clean(key, value)
        if value is not None:
            attributes[key] = value
    return attributes


class _NoSpan:
    """What every span is when telemetry is off."""

    __slots__ = ()

    def __enter__(self) -> "_NoSpan":
        return self

    def __exit__(self, *exc_info) -> bool:
        return False

    def set(self, **ids: Any) -> None:
        pass


NO_SPAN = _NoSpan()

_live = None  # otel.Recorder once configured; None: telemetry is off
_decided = False
_lock = threading.Lock()


def span(name: str, **ids: Any):
    """A span for one outbound call (a child of the invocation's span), used as ``with``."""
    live = _live
    return NO_SPAN if live is None else live.span(name, "client", ids)


def invocation(function: str, *, trigger: str, **ids: Any):
    """The span of one function invocation ("http", "queue" or "timer"); the current span inside it."""
    _ensure_configured()
    live = _live
    if live is None:
        return NO_SPAN
    return live.span(function, trigger, {"function": function, "trigger": trigger, **ids})


def tag(**ids: Any) -> None:
    """Add ids to the current (invocation's) span, e.g. the tenant once the caller is known."""
    live = _live
    if live is not None:
        live.tag(ids)


def traced(trigger: str) -> Callable:
    """Decorate a queue or timer trigger: its invocation is one span named after the function."""

    def decorate(function: Callable) -> Callable:
        @wraps(function)
        def wrapper(*args, **kwargs):
            with invocation(function.__name__, trigger=trigger):
                return function(*args, **kwargs)

        return wrapper

    return decorate


def wanted(mode: str, local_mode: bool, environ: Mapping[str, str]) -> bool:
    """Is telemetry on? ``mode`` is the ``CONNECTOR_TELEMETRY`` setting: auto, on or off."""
    if mode == "off" or not environ.get(CONNECTION_STRING):
        return False
    return mode == "on" or not local_mode


def _ensure_configured() -> None:
    global _decided, _live
    if _decided:
        return
    with _lock:
        if _decided:
            return
        try:
            from connector.settings import get_settings

            settings = get_settings()
        except Exception:  # noqa: BLE001 - invalid settings: the invocation reports them; decide later
            return
        if wanted(settings.telemetry, settings.local_mode, os.environ):
            try:
                from connector.telemetry.otel import configure

                _live = configure(settings, os.environ)
            except Exception as exc:  # noqa: BLE001 - telemetry never fails an invocation
                logging.getLogger("connector.telemetry").warning("telemetry is off: its set-up failed (%s)",
                                                                 type(exc).__name__)
        _decided = True


def install(recorder) -> None:
    """Record with ``recorder`` from now on (``otel.use_tracer_provider`` in tests)."""
    global _decided, _live
    with _lock:
        _live, _decided = recorder, True


def reset() -> None:
    """Forget the decision and the recorder (tests)."""
    global _decided, _live
    with _lock:
        _live, _decided = None, False
