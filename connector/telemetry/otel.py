"""Telemetry when it is on: our spans and the connector's logs to Application Insights.

Imported only once telemetry is configured (``connector.telemetry``), so an unconfigured app
never loads opentelemetry or azure.monitor. ``configure`` runs once per worker process:

- **Traces**: a TracerProvider of ours, with the distro's own exporter (``AzureMonitorTraceExporter``)
  behind :class:`IdsOnlyExporter`, every trace kept (``ApplicationInsightsSampler(1.0)``: the
  distro's default rate-limited sampler starts from zero, so it would drop a cold start's first
  invocation, the one most worth seeing; the volume here is small). The distro's own tracing is
  off (``OTEL_TRACES_EXPORTER=none``): it builds its exporter inside ``configure_azure_monitor``,
  with no place to stand between a span and the wire. Our exporter sends only spans of our
  tracer (``TRACER_NAME``), each with only the attributes in ``ALLOWED_ATTRIBUTES``, no events
  (an exception event carries a message and a stack) and no status description. Other
  libraries' spans never leave the process: kiota (msgraph-sdk) makes spans whenever a real
  tracer provider exists, with Graph URLs that name the organizer.
- **Logs**: the distro's log pipeline on the ``connector`` logger only: our loggers log ids,
  counts and error classes (tests read every line); the HTTP and Azure SDK loggers, which log
  URLs, are not under it. A record carries the current span's ids, so it sits under its
  invocation (``services.concurrency.together`` carries the context into its threads).
- **Auto-instrumentation**: all off. httpx, requests, urllib and urllib3 would record each
  request's URL with its query (an OAuth code, a FHIR search's patient id); ``azure_sdk``
  (azure-core tracing) the table URLs, whose keys are phone numbers and launch states;
  django, fastapi, flask and psycopg2 are not used. Our own spans at the adapters' edges record
  what the allowlist lets through. Live metrics are off (they stream request and dependency
  documents with URLs and exception messages), and so are metrics (the platform has them).
- **Credential**: ``ManagedIdentityCredential`` for the ``ClientId`` of
  ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` (``ClientId=...;Authorization=AAD``, set by
  infra): the Application Insights resource takes Entra-authenticated ingestion only.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

from opentelemetry import context, trace
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SpanExporter, SpanExportResult
from opentelemetry.trace import SpanKind, Status, StatusCode

from connector import telemetry
from connector.telemetry import ALLOWED_ATTRIBUTES, AUTHENTICATION_STRING, CONNECTION_STRING, clean, recorded

TRACER_NAME = "connector"
LOGGER_NAME = "connector"
# Every library configure_azure_monitor instruments (azure-monitor-opentelemetry 1.8.11); a unit
# test fails if a newer distro knows one more.
INSTRUMENTATIONS = ("azure_sdk", "django", "fastapi", "flask", "httpx", "httpx2", "psycopg2", "requests", "urllib",
                    "urllib3")
_KINDS = {"client": SpanKind.CLIENT, "http": SpanKind.SERVER, "timer": SpanKind.SERVER, "queue": SpanKind.CONSUMER}


class LiveSpan:
    """One span, as a context manager. An invocation's span is made current while it lasts, so
    the spans of its calls (on its thread, or in ``together``'s) are its children; a call's span
    is a leaf and never current (safe inside generators, which table queries are)."""

    __slots__ = ("_tracer", "_name", "_kind", "_ids", "_span", "_token")

    def __init__(self, tracer: trace.Tracer, name: str, kind: str, ids: Mapping[str, Any]) -> None:
        self._tracer, self._name, self._kind, self._ids = tracer, name, _KINDS[kind], ids
        self._span: trace.Span | None = None
        self._token = None

    def __enter__(self) -> "LiveSpan":
        self._span = self._tracer.start_span(self._name, kind=self._kind, attributes=recorded(self._ids),
                                             record_exception=False, set_status_on_exception=False)
        if self._kind is not SpanKind.CLIENT:
            self._token = context.attach(trace.set_span_in_context(self._span))
        return self

    def set(self, **ids: Any) -> None:
        attributes = recorded(ids)
        self._span.set_attributes(attributes)
        status = attributes.get("http.response.status_code")
        # A client's 4xx is a failed call; a server's 4xx is the caller's mistake, not ours.
        if isinstance(status, int) and status >= (400 if self._kind is SpanKind.CLIENT else 500):
            self._span.set_status(Status(StatusCode.ERROR))

    def __exit__(self, exc_type, exc, tb) -> bool:
        try:
            if exc_type is not None and issubclass(exc_type, Exception):  # not GeneratorExit
                self._span.set_attribute("error.type", exc_type.__name__)
                self._span.set_status(Status(StatusCode.ERROR))
        finally:
            if self._token is not None:
                context.detach(self._token)
            self._span.end()
        return False


class Recorder:
    """What ``connector.telemetry`` records with once it is on."""

    def __init__(self, tracer: trace.Tracer) -> None:
        self._tracer = tracer

    def span(self, name: str, kind: str, ids: Mapping[str, Any]) -> LiveSpan:
        return LiveSpan(self._tracer, name, kind, ids)

    def tag(self, ids: Mapping[str, Any]) -> None:
        trace.get_current_span().set_attributes(recorded(ids))


class IdsOnlyExporter(SpanExporter):
    """Exports our tracer's spans only, each with only allowlisted attributes: the last check
    before the wire, whatever any code (ours or a library's) put on a span."""

    def __init__(self, inner: SpanExporter) -> None:
        self._inner = inner

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        ours = [_ids_only(span) for span in spans
                if span.instrumentation_scope is not None and span.instrumentation_scope.name == TRACER_NAME]
        return self._inner.export(ours) if ours else SpanExportResult.SUCCESS

    def shutdown(self) -> None:
        self._inner.shutdown()

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return self._inner.force_flush(timeout_millis)


def _ids_only(span: ReadableSpan) -> ReadableSpan:
    attributes = {}
    for key, value in (span.attributes or {}).items():
        kept = clean(key, value) if key in ALLOWED_ATTRIBUTES else None
        if kept is not None:
            attributes[key] = kept
    # A copy (ReadableSpan's own constructor), not the span: it is immutable once ended.
    return ReadableSpan(
        name=span.name, context=span.context, parent=span.parent, resource=span.resource, attributes=attributes,
        events=(), links=(), kind=span.kind, status=Status(span.status.status_code), start_time=span.start_time,
        end_time=span.end_time, instrumentation_scope=span.instrumentation_scope,
    )


def credential_from(authentication: str):
    """The credential ``APPLICATIONINSIGHTS_AUTHENTICATION_STRING`` names: the user-assigned
    identity of ``ClientId`` (the system-assigned one without it) when ``Authorization=AAD``;
    None otherwise (instrumentation-key ingestion)."""
    pairs = (part.split("=", 1) for part in authentication.split(";") if "=" in part)
    fields = {name.strip().lower(): value.strip() for name, value in pairs}
    if fields.get("authorization", "").upper() != "AAD":
        return None
    from azure.identity import ManagedIdentityCredential

    client_id = fields.get("clientid")
    return ManagedIdentityCredential(client_id=client_id) if client_id else ManagedIdentityCredential()


def configure(settings, environ: Mapping[str, str]) -> Recorder:
    """Set up traces and logs to Application Insights for this process (once: see the package)."""
    from azure.monitor.opentelemetry import configure_azure_monitor
    from azure.monitor.opentelemetry.exporter import ApplicationInsightsSampler, AzureMonitorTraceExporter
    from opentelemetry.sdk.resources import Resource

    connection_string = environ[CONNECTION_STRING]
    credential = credential_from(environ.get(AUTHENTICATION_STRING, ""))
    # The Functions resource detector (the Python worker's choice too): the app's name is the
    # cloud role, so each stamp shows as its own node.
    os.environ.setdefault("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    resource = Resource.create({"service.version": settings.version})
    exporter = AzureMonitorTraceExporter(connection_string=connection_string, credential=credential)
    # The distro's tracing and metrics off: it takes these from the environment only (1.8.11
    # overwrites its disable_tracing and disable_metrics arguments with what they say).
    os.environ["OTEL_TRACES_EXPORTER"] = "none"
    os.environ["OTEL_METRICS_EXPORTER"] = "none"
    configure_azure_monitor(
        connection_string=connection_string,
        credential=credential,
        resource=resource,
        logger_name=LOGGER_NAME,
        enable_live_metrics=False,
        enable_performance_counters=False,
        instrumentation_options={name: {"enabled": False} for name in INSTRUMENTATIONS},
    )
    provider = TracerProvider(resource=resource, sampler=ApplicationInsightsSampler(sampling_ratio=1.0))
    provider.add_span_processor(BatchSpanProcessor(IdsOnlyExporter(exporter)))
    trace.set_tracer_provider(provider)
    return Recorder(provider.get_tracer(TRACER_NAME, settings.version))


def use_tracer_provider(provider: TracerProvider) -> None:
    """Record our spans with ``provider`` (tests: an in-memory exporter instead of Azure Monitor)."""
    telemetry.install(Recorder(provider.get_tracer(TRACER_NAME)))
