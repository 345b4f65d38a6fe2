"""The Entra sandbox (https, local CA) and the Graph simulator on loopback, once per session,
plus a tiny webhook the simulator validates and notifies, for the Graph tests.

A pytest plugin (tests/conftest.py names it in ``pytest_plugins``): the fixtures
``graph_sandbox``, ``webhook`` and ``webhook_server`` are there for every test.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import PlainTextResponse, Response
from starlette.routing import Route

from connector.settings import Settings
from dev.sandbox import entra, graph
from dev.sandbox.server import LoopbackServer, free_port
from dev.sandbox.tls import ensure_local_tls


@dataclass
class GraphStack:
    entra_app: Starlette
    graph_app: Starlette
    entra_url: str
    graph_url: str
    ca_file: Path

    @property
    def graph(self) -> graph.GraphSandbox:
        return self.graph_app.state.graph

    @property
    def issuer(self) -> entra.TokenIssuer:
        return self.entra_app.state.issuer

    @property
    def graph_base_url(self) -> str:
        return f"{self.graph_url}/v1.0"

    def settings(self, **overrides: Any) -> Settings:
        """The connector's settings for this sandbox (what dev/stack.py sets as CONNECTOR_*)."""
        environment = graph.connector_environment(graph_url=self.graph_url, entra_url=self.entra_url)
        values: dict[str, Any] = {
            "stamp_region": "us",
            "storage_account_name": "devstoreaccount1",
            "outbound_ca_file": str(self.ca_file),
            **{name.removeprefix("CONNECTOR_").lower(): value for name, value in environment.items()},
        }
        values.update(overrides)
        return Settings(**values)

    def app_token(self, tenant: str = entra.CONTOSO_TID, **kwargs: Any) -> str:
        return self.issuer.mint_app_token(tenant, entra.GRAPH_APP_CLIENT_ID, **kwargs)


@pytest.fixture(scope="session")
def graph_sandbox(tmp_path_factory: pytest.TempPathFactory) -> Iterator[GraphStack]:
    tls = ensure_local_tls(tmp_path_factory.mktemp("graph-tls"))
    entra_port, graph_port = free_port(), free_port()
    entra_app = entra.create_app(public_url=f"https://127.0.0.1:{entra_port}")
    graph_app = graph.create_app(public_url=f"http://127.0.0.1:{graph_port}", issuer=entra_app.state.issuer,
                                 retry_delays=(0.05, 0.1, 0.2), delivery_timeout=1.0)
    with LoopbackServer(entra_app, entra_port, certfile=tls.cert_file, keyfile=tls.key_file, name="entra-graph"), \
            LoopbackServer(graph_app, graph_port, name="graph"):
        yield GraphStack(entra_app, graph_app, f"https://127.0.0.1:{entra_port}", f"http://127.0.0.1:{graph_port}",
                         tls.ca_file)
        graph_app.state.graph.notifier.close()


@dataclass
class Webhook:
    """A notification endpoint: answers Graph's handshake (as ``mode`` says) and records notifications."""

    url: str = ""
    mode: str = "echo"  # echo | wrong | html | error | slow
    slow_seconds: float = 0.0
    statuses: list[int] = field(default_factory=list)  # answers to the next notifications (then 202)
    validations: list[dict[str, str]] = field(default_factory=list)
    notifications: list[bytes] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.mode, self.slow_seconds = "echo", 0.0
            self.statuses.clear()
            self.validations.clear()
            self.notifications.clear()

    def received(self) -> list[bytes]:
        with self.lock:
            return list(self.notifications)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The first ``count`` notification bodies, polling with a deadline."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            got = self.received()
            if len(got) >= count:
                return got
            time.sleep(0.02)
        raise AssertionError(f"expected {count} notifications, got {len(self.received())}")

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            token = request.query_params.get("validationToken")
            if token is not None:
                with self.lock:
                    self.validations.append({"token": token, "content_type": request.headers.get("content-type", "")})
                    mode, delay = self.mode, self.slow_seconds
                if mode == "slow":
                    import asyncio

                    await asyncio.sleep(delay)
                if mode == "wrong":
                    return PlainTextResponse(token.upper())
                if mode == "html":
                    return Response(token, media_type="text/html")
                if mode == "error":
                    return PlainTextResponse("no", 500)
                return PlainTextResponse(token)
            body = await request.body()
            with self.lock:
                status = self.statuses.pop(0) if self.statuses else 202
                if 200 <= status < 300:
                    self.notifications.append(body)
            return Response(status_code=status)

        return Starlette(routes=[Route("/api/notifications/graph", hook, methods=["POST"])])


@pytest.fixture(scope="session")
def webhook_server(graph_sandbox: GraphStack) -> Iterator[Webhook]:
    hook = Webhook()
    port = free_port()
    with LoopbackServer(hook.app(), port, name="webhook"):
        hook.url = f"http://127.0.0.1:{port}/api/notifications/graph"
        yield hook
        # The notifier's keep-alive connection would hold the webhook's shutdown for a second.
        graph_sandbox.graph.notifier.close()


@pytest.fixture
def webhook(webhook_server: Webhook) -> Iterator[Webhook]:
    webhook_server.reset()
    yield webhook_server
    webhook_server.reset()

