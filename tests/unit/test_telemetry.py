"""Telemetry: off (and not even imported) unless configured; configured, set up once with the
Entra credential and every auto-instrumentation off; spans carry allowlisted ids only, and the
exporter drops whatever else any code put on a span."""

from __future__ import annotations

import inspect
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

from connector import telemetry
from connector.services.concurrency import together
from connector.settings import get_settings
from connector.telemetry import otel

ROOT = Path(__file__).resolve().parents[2]
CONNECTION = "InstrumentationKey=00000000-0000-0000-0000-000000000000;IngestionEndpoint=https://ingest.invalid/"
CLIENT_ID = "6f0d2a4e-3c1b-4e8a-9b57-2d8c4f1a7e63"


@pytest.fixture(autouse=True)
def fresh_telemetry():
    telemetry.reset()
    yield
    telemetry.reset()


@pytest.fixture
def memory():
    """Our spans into memory, as they would reach the exporter (through the allowlist)."""
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(otel.IdsOnlyExporter(exporter)))
    otel.use_tracer_provider(provider)
    yield exporter
    provider.shutdown()


# --- off --------------------------------------------------------------------------------------

UNCONFIGURED_RUN = """
import json, sys
import azure.functions as func
import function_app
from connector import telemetry
by_name = {f.get_function_name(): f.get_user_function() for f in function_app.app.get_functions()}
response = by_name["openapi"](func.HttpRequest("GET", "http://127.0.0.1/api/openapi.json", body=b""))
assert response.status_code == 200
with telemetry.span("table get tenants", table="tenants") as call:
    call.set(status=200)
print(json.dumps([m for m in ("opentelemetry", "azure.monitor") if m in sys.modules]))
"""


@pytest.mark.parametrize("extra", [
    {},                                                                                # no connection string
    {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "CONNECTOR_LOCAL_MODE": "true"},  # local mode
    {"APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION, "CONNECTOR_TELEMETRY": "off"},    # switched off
], ids=["no-connection-string", "local-mode", "off"])
def test_unconfigured_invocations_import_no_telemetry_sdk(extra):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("CONNECTOR_", "APPLICATIONINSIGHTS_", "OTEL_"))}
    env.update({"CONNECTOR_STAMP_REGION": "us", "CONNECTOR_STORAGE_ACCOUNT_NAME": "stampus01", **extra})
    out = subprocess.run([sys.executable, "-c", UNCONFIGURED_RUN], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True)
    assert json.loads(out.stdout.strip().splitlines()[-1]) == []


def test_off_every_span_is_the_shared_no_op():
    assert telemetry.span("GET example.org", url="https://example.org/?code=1") is telemetry.NO_SPAN
    with telemetry.span("queue send q") as call:
        call.set(status=201)
    telemetry.tag(tenant="t")  # nothing to tag, nothing raised


@pytest.mark.parametrize("mode, local_mode, connection, expected", [
    ("auto", False, CONNECTION, True),
    ("auto", True, CONNECTION, False),
    ("auto", False, "", False),
    ("on", True, CONNECTION, True),
    ("on", False, "", False),  # nowhere to send it
    ("off", False, CONNECTION, False),
])
def test_when_telemetry_is_on(mode, local_mode, connection, expected):
    environ = {"APPLICATIONINSIGHTS_CONNECTION_STRING": connection} if connection else {}
    assert telemetry.wanted(mode, local_mode, environ) is expected


# --- configured -------------------------------------------------------------------------------


class FakeCredential:
    def __init__(self, client_id=None):
        self.client_id = client_id


class FakeTraceExporter:
    made: list["FakeTraceExporter"] = []

    def __init__(self, **kwargs):
        self.kwargs = kwargs
        self.exported = []
        FakeTraceExporter.made.append(self)

    def export(self, spans):
        from opentelemetry.sdk.trace.export import SpanExportResult

        self.exported.extend(spans)
        return SpanExportResult.SUCCESS

    def shutdown(self):
        pass

    def force_flush(self, timeout_millis=30000):
        return True


@pytest.fixture
def azure_monitor(monkeypatch):
    """configure_azure_monitor, the trace exporter, the credential and the global provider mocked."""
    calls, providers = [], []
    FakeTraceExporter.made = []

    def configure_azure_monitor(**kwargs):
        calls.append({**kwargs, "environment": {k: v for k, v in os.environ.items() if k.startswith("OTEL_")}})

    monkeypatch.setattr("azure.monitor.opentelemetry.configure_azure_monitor", configure_azure_monitor)
    for name in ("OTEL_TRACES_EXPORTER", "OTEL_METRICS_EXPORTER"):
        monkeypatch.setenv(name, "azure_monitor")  # restored after the test, whatever configure sets
    monkeypatch.setattr("azure.monitor.opentelemetry.exporter.AzureMonitorTraceExporter", FakeTraceExporter)
    monkeypatch.setattr("azure.identity.ManagedIdentityCredential", FakeCredential)
    monkeypatch.setattr(trace, "set_tracer_provider", providers.append)
    monkeypatch.setenv("OTEL_EXPERIMENTAL_RESOURCE_DETECTORS", "azure_functions")
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "us")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampus01")
    monkeypatch.setenv("APPLICATIONINSIGHTS_CONNECTION_STRING", CONNECTION)
    monkeypatch.setenv("APPLICATIONINSIGHTS_AUTHENTICATION_STRING", f"ClientId={CLIENT_ID};Authorization=AAD")
    get_settings.cache_clear()
    yield calls, providers
    get_settings.cache_clear()
    for provider in providers:
        provider.shutdown()


def test_configured_it_is_set_up_once_with_the_identity_and_no_auto_instrumentation(azure_monitor):
    from azure.monitor.opentelemetry._constants import _ALL_SUPPORTED_INSTRUMENTED_LIBRARIES

    calls, providers = azure_monitor
    for _ in range(3):
        with telemetry.invocation("health", trigger="http", method="GET") as span:
            span.set(status=200)

    assert len(calls) == 1 and len(providers) == 1 and len(FakeTraceExporter.made) == 1
    options = calls[0]
    credential = options["credential"]
    assert isinstance(credential, FakeCredential) and credential.client_id == CLIENT_ID
    assert options["connection_string"] == CONNECTION
    assert options["logger_name"] == "connector"
    # The distro's own tracing and metrics off (it reads the environment, not its arguments):
    # the provider is ours, behind the allowlist exporter.
    assert options["environment"]["OTEL_TRACES_EXPORTER"] == "none"
    assert options["environment"]["OTEL_METRICS_EXPORTER"] == "none"
    assert options["enable_live_metrics"] is False
    instrumentations = options["instrumentation_options"]
    assert set(_ALL_SUPPORTED_INSTRUMENTED_LIBRARIES) <= set(instrumentations)
    assert all(option == {"enabled": False} for option in instrumentations.values())
    exporter = FakeTraceExporter.made[0]
    assert exporter.kwargs == {"connection_string": CONNECTION, "credential": credential}

    providers[0].force_flush()
    assert [s.name for s in exporter.exported] == ["health"] * 3
    assert dict(exporter.exported[0].attributes) == {
        "connector.function": "health", "connector.trigger": "http", "http.request.method": "GET",
        "http.response.status_code": 200, "_MS.sampleRate": 100.0,
    }


REAL_DISTRO_RUN = """
import json, logging, os, sys
from connector import telemetry
with telemetry.invocation("health", trigger="http"):
    pass
from opentelemetry import trace
from azure.core.settings import settings
provider = trace.get_tracer_provider()
processors = provider._active_span_processor._span_processors
print(json.dumps({
    "provider": type(provider).__name__,
    "processors": [type(p).__name__ for p in processors],
    "exporters": [type(getattr(getattr(p, "_batch_processor", p), "_exporter", None)).__name__ for p in processors],
    "connector_handlers": [type(h).__name__ for h in logging.getLogger("connector").handlers],
    "root_handlers": [type(h).__name__ for h in logging.getLogger().handlers],
    "instrumented": sorted(m for m in sys.modules if m.startswith("opentelemetry.instrumentation.")
                           and m.split(".")[2] in ("httpx", "requests", "urllib", "urllib3", "django", "flask",
                                                   "fastapi", "psycopg2")),
    "azure_sdk_tracing": settings.tracing_implementation() is not None,
}))
sys.stdout.flush()
os._exit(0)
"""


def test_the_real_distro_leaves_our_provider_alone_and_instruments_nothing():
    """configure() with azure-monitor-opentelemetry itself (in a process of its own: it sets
    global providers and handlers): the global tracer provider is ours, with the allowlist
    exporter only; logs are handled on the connector logger only; no library is instrumented."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CONNECTOR_", "APPLICATIONINSIGHTS_", "OTEL_"))}
    env.update({"CONNECTOR_STAMP_REGION": "us", "CONNECTOR_STORAGE_ACCOUNT_NAME": "stampus01",
                "APPLICATIONINSIGHTS_CONNECTION_STRING": CONNECTION,
                "APPLICATIONINSIGHTS_AUTHENTICATION_STRING": f"ClientId={CLIENT_ID};Authorization=AAD",
                "APPLICATIONINSIGHTS_STATSBEAT_DISABLED_ALL": "true"})
    out = subprocess.run([sys.executable, "-c", REAL_DISTRO_RUN], cwd=ROOT, env=env, check=True,
                         capture_output=True, text=True, timeout=120)
    assert "Overriding of current TracerProvider" not in out.stderr
    found = json.loads(out.stdout.strip().splitlines()[-1])
    assert found == {"provider": "TracerProvider", "processors": ["BatchSpanProcessor"],
                     "exporters": ["IdsOnlyExporter"], "connector_handlers": ["LoggingHandler"], "root_handlers": [],
                     "instrumented": [], "azure_sdk_tracing": False}


def test_a_failed_set_up_leaves_telemetry_off(azure_monitor, monkeypatch):
    def refuse(**kwargs):
        raise ValueError("bad connection string")

    monkeypatch.setattr("azure.monitor.opentelemetry.configure_azure_monitor", refuse)
    with telemetry.invocation("health", trigger="http") as span:
        assert span is telemetry.NO_SPAN


@pytest.mark.parametrize("value, expected", [
    (f"ClientId={CLIENT_ID};Authorization=AAD", CLIENT_ID),
    ("Authorization=AAD", None),  # the system-assigned identity
])
def test_the_authentication_string_names_the_managed_identity(monkeypatch, value, expected):
    monkeypatch.setattr("azure.identity.ManagedIdentityCredential", FakeCredential)
    credential = otel.credential_from(value)
    assert isinstance(credential, FakeCredential) and credential.client_id == expected


@pytest.mark.parametrize("value", ["", f"ClientId={CLIENT_ID}", "Authorization=Key"])
def test_without_aad_there_is_no_credential(value):
    assert otel.credential_from(value) is None


# --- what a span may carry --------------------------------------------------------------------


def test_spans_record_allowlisted_ids_only(memory):
    with telemetry.invocation("send_link", trigger="http", method="POST", endpoint_id="ep1") as invocation:
        telemetry.tag(tenant="72f988bf-86f1-41af-91ab-2d7cd011db47", phone="+13125550105")
        with telemetry.span("GET ehr.example", method="GET", host="ehr.example",
                            url="https://ehr.example/r4/t/Patient/12724066?_elements=name#x",
                            authorization="Bearer abc", body='{"name": "PATEL"}') as call:
            call.set(status=200, token="secret")
        invocation.set(status=200)
    call_span, invocation_span = memory.get_finished_spans()
    assert dict(call_span.attributes) == {
        "http.request.method": "GET", "server.address": "ehr.example",
        "url.full": "https://ehr.example/r4/t/Patient/12724066", "http.response.status_code": 200,
    }
    assert call_span.kind is SpanKind.CLIENT and invocation_span.kind is SpanKind.SERVER
    assert call_span.parent.span_id == invocation_span.context.span_id
    assert invocation_span.attributes["connector.tenant_hash"] == telemetry.tenant_hash(
        "72f988bf-86f1-41af-91ab-2d7cd011db47")
    assert "72f988bf" not in json.dumps(dict(invocation_span.attributes))
    assert invocation_span.attributes["connector.endpoint_id"] == "ep1"


def test_an_error_is_its_class_never_its_message(memory):
    with pytest.raises(ValueError):
        with telemetry.invocation("scan_endpoint", trigger="queue"):
            with telemetry.span("queue send q", queue="q"):
                raise ValueError("Patel, Asha +13125550105")
    for span in memory.get_finished_spans():
        assert span.attributes["error.type"] == "ValueError"
        assert span.status.status_code is StatusCode.ERROR and not span.status.description
        assert not span.events


def test_a_client_4xx_fails_the_call_and_a_server_4xx_is_the_callers(memory):
    with telemetry.invocation("get_endpoint", trigger="http") as invocation:
        with telemetry.span("GET ehr.example") as call:
            call.set(status=404)
        invocation.set(status=404)
    call_span, invocation_span = memory.get_finished_spans()
    assert call_span.status.status_code is StatusCode.ERROR
    assert invocation_span.status.status_code is StatusCode.UNSET


def test_a_generator_closed_early_is_no_error(memory):
    def rows():
        with telemetry.span("table query t", table="t"):
            yield from range(3)

    with telemetry.invocation("list_endpoints", trigger="http"):
        iterator = rows()
        next(iterator)
        iterator.close()
    query, _ = memory.get_finished_spans()
    assert "error.type" not in query.attributes and query.status.status_code is StatusCode.UNSET


def test_a_traced_trigger_is_one_span_named_after_it_with_its_signature_kept(memory):
    @telemetry.traced("queue")
    def scan_endpoint(msg: str) -> None:
        telemetry.tag(tenant="t1", endpoint_id="ep1")

    scan_endpoint(msg="{}")  # the worker passes the binding by name
    (span,) = memory.get_finished_spans()
    assert span.name == "scan_endpoint" and span.kind is SpanKind.CONSUMER
    assert dict(span.attributes) == {"connector.function": "scan_endpoint", "connector.trigger": "queue",
                                     "connector.tenant_hash": telemetry.tenant_hash("t1"),
                                     "connector.endpoint_id": "ep1"}
    assert list(inspect.signature(scan_endpoint).parameters) == ["msg"]  # what the worker binds by


def test_together_keeps_each_call_under_the_invocation(memory):
    def call(name):
        with telemetry.span(name):
            return trace.get_current_span().get_span_context().span_id

    with telemetry.invocation("provider_page", trigger="http"):
        together(lambda: call("GET Appointment"), lambda: call("GET Patient"))
    spans = {s.name: s for s in memory.get_finished_spans()}
    root = spans["provider_page"]
    for name in ("GET Appointment", "GET Patient"):
        assert spans[name].parent.span_id == root.context.span_id
        assert spans[name].context.trace_id == root.context.trace_id


def test_the_exporter_sends_our_spans_only_with_allowlisted_attributes_only():
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(otel.IdsOnlyExporter(exporter)))
    ours, kiota = provider.get_tracer(otel.TRACER_NAME), provider.get_tracer("com.microsoft.com:microsoft-kiota-http")
    with kiota.start_as_current_span("createOrGet", attributes={"url.full": "https://graph/users/ann@contoso/x"}):
        pass
    with ours.start_as_current_span("launch_callback", kind=SpanKind.SERVER) as span:
        span.set_attributes({
            "url.full": "https://h/api/launch/callback?code=c0de&state=5tate", "url.query": "code=c0de",
            "http.request.header.authorization": "Bearer t0ken", "enduser.id": "ann@contoso",
            "connector.endpoint_id": "ep1", "http.response.status_code": 303,
        })
        span.record_exception(RuntimeError("Patel, Asha"))
        span.set_status(trace.Status(StatusCode.ERROR, "Patel, Asha"))
    (exported,) = exporter.get_finished_spans()
    assert exported.name == "launch_callback"
    assert dict(exported.attributes) == {"url.full": "https://h/api/launch/callback",
                                         "connector.endpoint_id": "ep1", "http.response.status_code": 303}
    assert not exported.events and exported.status.description is None
    assert exported.status.status_code is StatusCode.ERROR
    provider.shutdown()


def test_every_attribute_name_is_allowed():
    assert set(telemetry.ATTRIBUTES.values()) <= telemetry.ALLOWED_ATTRIBUTES
    assert not {"url.query", "http.request.body", "enduser.id"} & telemetry.ALLOWED_ATTRIBUTES


def test_the_functions_host_records_no_request_urls_and_no_second_copy_of_our_logs():
    # The host's own request records carry the URL with its query (`state`, `launch`, `iss`), and
    # it forwards the worker's logs too: our invocation spans and exporter replace both.
    levels = json.loads((Path(__file__).resolve().parents[2] / "host.json").read_text())["logging"]["logLevel"]
    assert levels["Host.Results"] == "None"
    assert levels["Function"] in {"Warning", "Error", "None"}
