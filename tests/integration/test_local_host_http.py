"""The local Functions host serves HTTP triggers like the real host, over a real socket."""

from __future__ import annotations

import logging
import os
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import httpx
import pytest

from dev.host import LocalFunctionsHost
from tests.integration.hostapps import HostProject, wait_until, write_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> HostProject:
    return write_project(
        tmp_path_factory.mktemp("http-project"),
        "http_app",
        portal={"index.html": "<h1>admin portal</h1>", "js/app.js": "console.log('portal');"},
    )


@pytest.fixture(scope="module")
def host(project: HostProject) -> Iterator[LocalFunctionsHost]:
    with LocalFunctionsHost(project.directory, project.app_ref, port=0) as running:
        yield running


@pytest.fixture
def client(host: LocalFunctionsHost) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=host.url, timeout=10) as http:
        yield http


def test_request_reaches_the_function_and_the_response_maps_back(
    client: httpx.Client, project: HostProject
) -> None:
    response = client.post(
        "/api/items/42", params={"x": "1", "y": "two"}, headers={"X-Test": "hello"}, content=b'{"a": 1}'
    )

    assert response.status_code == 201
    assert response.headers["x-echo"] == "yes"
    assert response.headers["content-type"] == "application/json"
    echoed = response.json()
    assert echoed["method"] == "POST"
    assert echoed["route_params"] == {"id": "42"}
    assert echoed["params"] == {"x": "1", "y": "two"}
    assert echoed["x_test"] == "hello"
    assert echoed["body"] == '{"a": 1}'
    assert echoed["url"] == f"{client.base_url}/api/items/42?x=1&y=two"
    assert isinstance(project.calls[-1], func.HttpRequest)


def test_text_responses_get_a_charset_and_async_functions_run(client: httpx.Client) -> None:
    assert client.get("/api/items/new").headers["content-type"] == "text/plain; charset=utf-8"

    response = client.get("/api/later")
    assert response.status_code == 200
    assert response.content == b"\x00async bytes"
    assert response.headers["content-type"] == "application/octet-stream"


@pytest.mark.parametrize(
    ("path", "status", "text"),
    [
        ("/api/items/new", 200, "literal wins"),  # a literal segment beats {id:int}
        ("/API/Items/New/", 200, "literal wins"),  # case-insensitive, trailing slash allowed
        ("/api/greet", 200, "nobody"),  # optional parameter absent
        ("/api/greet/ada", 200, "ada"),
        ("/api/words/Hello", 200, "Hello"),
        ("/api/words/hello1", 404, None),  # :alpha
        ("/api/things/6f1c2a4e-0d6b-4c2e-9f3e-2a1b3c4d5e6f", 200, "6f1c2a4e-0d6b-4c2e-9f3e-2a1b3c4d5e6f"),
        ("/api/things/not-a-guid", 404, None),  # :guid
        ("/api/items/abc", 404, None),  # :int
        ("/api/items/99999999999", 404, None),  # :int is 32-bit
        ("/api/setting", 200, "unset"),  # no route: the function name
    ],
)
def test_route_templates_and_constraints(
    client: httpx.Client, path: str, status: int, text: str | None
) -> None:
    response = client.get(path)
    assert response.status_code == status
    if text is not None:
        assert response.text == text
    else:
        assert response.json() == {"error": "not_found"}


def test_unknown_route_is_404_json_and_wrong_method_is_405(client: httpx.Client) -> None:
    missing = client.get("/api/no/such/route")
    assert missing.status_code == 404
    assert missing.json() == {"error": "not_found"}

    wrong_method = client.delete("/api/items/7")
    assert wrong_method.status_code == 405
    assert wrong_method.headers["allow"] == "GET, POST"


def test_a_405_allows_every_method_of_the_resource_whichever_function_serves_it(client: httpx.Client) -> None:
    assert client.get("/api/pairs").text == "read" and client.put("/api/pairs").text == "written"
    for method in ("OPTIONS", "POST", "DELETE", "TRACE"):
        refused = client.request(method, "/api/pairs")
        assert refused.status_code == 405, method
        assert refused.headers["allow"] == "GET, PUT", method


def test_an_exception_is_a_generic_500_with_the_traceback_only_in_the_log(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.INFO, logger="dev.host"):
        response = client.get("/api/boom")

    assert response.status_code == 500
    assert response.json() == {"error": "internal_error", "function": "boom"}
    assert "secret-detail" not in response.text and "Traceback" not in response.text
    failures = [r for r in caplog.records if r.name.startswith("dev.host") and r.exc_info]
    assert failures and "secret-detail-never-in-a-response" in caplog.text


def test_the_log_never_holds_headers_bodies_queries_or_concrete_paths(
    client: httpx.Client, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="dev.host"):
        response = client.post(
            "/api/items/314159",
            params={"q": "query-secret"},
            headers={"X-Test": "header-secret"},
            content=b"body-secret",
        )
        # the access line is written once the response is sent: wait for it, don't race it
        assert wait_until(lambda: any(r.name == "dev.host.http" for r in caplog.records), timeout=5)
    assert response.status_code == 201

    access = [r.getMessage() for r in caplog.records if r.name == "dev.host.http"]
    assert access and access[-1].startswith("POST /api/items/{id:int} -> 201 (")
    for secret in ("query-secret", "header-secret", "body-secret", "314159"):
        assert secret not in caplog.text


def test_the_portal_is_served_at_the_root_and_nothing_else_outside_the_prefix(client: httpx.Client) -> None:
    index = client.get("/")
    assert index.status_code == 200
    assert index.text == "<h1>admin portal</h1>"
    assert index.headers["content-type"].startswith("text/html")
    assert client.get("/js/app.js").text == "console.log('portal');"
    assert client.get("/host.json").status_code == 404
    assert client.get("/hostapp_nope.py").status_code == 404
    assert client.post("/").status_code == 405
    assert client.post("/").headers["allow"] == "GET, HEAD"


def test_admin_api_refuses_http_functions_and_unknown_names(client: httpx.Client) -> None:
    assert client.post("/admin/functions/echo_item", json={"input": ""}).status_code == 404
    assert client.post("/admin/functions/nope", json={"input": ""}).status_code == 404


def test_custom_route_prefix_local_settings_and_a_clean_stop(tmp_path: Path) -> None:
    setting = "HOSTAPP_GREETING"
    assert setting not in os.environ
    project = write_project(
        tmp_path,
        "http_app",
        host_json={"extensions": {"http": {"routePrefix": "v1"}}},
        local_settings={setting: "from local.settings.json", "PATH": "must-not-override"},
        portal={"index.html": "portal"},
    )
    threads_before = set(threading.enumerate())

    with LocalFunctionsHost(project.directory, project.app_ref, port=0) as host:
        with httpx.Client(base_url=host.url, timeout=10) as http:
            assert http.get("/v1/setting").text == "from local.settings.json"
            assert http.get("/api/setting").json() == {"error": "not_found"}
            assert http.get(f"/v1/things/{uuid.uuid4()}").status_code == 200
            assert http.get("/").text == "portal"  # static files are read on worker threads too
            assert http.get("/v1/later").status_code == 200  # async: runs on the worker's loop
        assert os.environ["PATH"] != "must-not-override"

    assert setting not in os.environ  # what the host added, it took back
    leftovers = [t.name for t in threading.enumerate() if t not in threads_before and t.is_alive()]
    assert leftovers == []
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{host.url}/v1/setting", timeout=2)
