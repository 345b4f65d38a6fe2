"""GET /api/health in-process: green against Azurite, 503 when storage is gone, never a secret."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from connector import __version__
from connector.functions.health import health
from dev.sandbox.server import free_port
from tests.functions.conftest import user_function

pytestmark = pytest.mark.integration


def get_health() -> func.HttpResponse:
    req = func.HttpRequest("GET", "http://127.0.0.1:7071/api/health", headers={}, params={}, body=b"")
    return user_function(health)(req)


def test_health_is_green_with_storage_up(storage_env):
    resp = get_health()
    body = json.loads(resp.get_body())
    assert resp.status_code == 200
    assert body == {"status": "ok", "version": __version__, "region": "us", "checks": {"tables": True, "queues": True}}
    assert resp.headers["Cache-Control"] == "no-store"


def test_health_is_503_when_storage_is_unreachable(storage_env, monkeypatch):
    dead = f"http://127.0.0.1:{free_port()}/devstoreaccount1"
    monkeypatch.setenv("CONNECTOR_STORAGE_TABLE_ENDPOINT", dead)
    monkeypatch.setenv("CONNECTOR_STORAGE_QUEUE_ENDPOINT", dead)
    monkeypatch.setenv("CONNECTOR_STORAGE_TIMEOUT_SECONDS", "1")
    resp = get_health()
    body = json.loads(resp.get_body())
    assert resp.status_code == 503
    assert body["status"] == "degraded" and body["checks"] == {"tables": False, "queues": False}


def test_health_never_shows_the_storage_key_or_endpoints(storage_env):
    text = get_health().get_body().decode()
    assert storage_env["CONNECTOR_STORAGE_EMULATOR_KEY"] not in text
    assert "127.0.0.1" not in text and "AccountKey" not in text


def test_bad_settings_give_a_json_error_not_a_stack_trace(storage_env, monkeypatch):
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "Not A Region!")
    resp = get_health()
    body = json.loads(resp.get_body())
    assert resp.status_code == 500
    assert body["error"] == "configuration_error"
    assert "Traceback" not in resp.get_body().decode()


def test_the_app_keeps_http_libraries_from_logging_urls():
    import logging

    import function_app  # noqa: F401 - importing the app sets the levels

    for name in ("httpx", "httpcore", "azure.core.pipeline.policies.http_logging_policy"):
        assert logging.getLogger(name).level >= logging.WARNING, name  # set, not inherited from root
