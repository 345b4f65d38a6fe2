"""Fault switches shared by every simulator: inject 429 (with Retry-After), 5xx and latency.

``POST /_sandbox/faults`` with a JSON body arms a fault, ``DELETE /_sandbox/faults`` clears
all, ``GET /_sandbox/faults`` shows what is armed. A fault applies to requests whose path
starts with ``path_prefix`` (default: every path except ``/_sandbox``), for ``count``
requests (default: until cleared)::

    {"status": 429, "retry_after": 2, "count": 1, "path_prefix": "/r4/"}
    {"status": 503, "count": 2}
    {"latency_ms": 300}

Tests can also arm faults in-process through :class:`FaultSwitches`.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import asdict, dataclass

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route
from starlette.types import ASGIApp, Receive, Scope, Send

CONTROL_PATH = "/_sandbox/faults"


@dataclass
class Fault:
    status: int | None = None
    retry_after: int | None = None
    latency_ms: int = 0
    count: int | None = None  # None: until cleared
    path_prefix: str = "/"

    def matches(self, path: str) -> bool:
        return path.startswith(self.path_prefix) and not path.startswith("/_sandbox")


class FaultSwitches:
    """The armed faults of one simulator. Thread-safe: tests arm them from another thread."""

    def __init__(self) -> None:
        self._faults: list[Fault] = []
        self._lock = threading.Lock()

    def arm(self, fault: Fault) -> None:
        with self._lock:
            self._faults.append(fault)

    def clear(self) -> None:
        with self._lock:
            self._faults.clear()

    def armed(self) -> list[Fault]:
        with self._lock:
            return list(self._faults)

    def take(self, path: str) -> Fault | None:
        """The first fault matching ``path``, counting one use of it."""
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    if fault.count is not None:
                        fault.count -= 1
                        if fault.count <= 0:
                            self._faults.remove(fault)
                    return fault
        return None


class FaultInjectionMiddleware:
    """ASGI middleware applying the armed faults before the simulator sees the request."""

    def __init__(self, app: ASGIApp, switches: FaultSwitches) -> None:
        self.app = app
        self.switches = switches

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            fault = self.switches.take(scope["path"])
            if fault is not None:
                if fault.latency_ms:
                    await asyncio.sleep(fault.latency_ms / 1000)
                if fault.status is not None:
                    headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else None
                    body = {"error": "sandbox_injected_fault", "status": fault.status}
                    await JSONResponse(body, fault.status, headers=headers)(scope, receive, send)
                    return
        await self.app(scope, receive, send)


def control_routes(switches: FaultSwitches) -> list[Route]:
    """The ``/_sandbox/faults`` routes operating ``switches``."""

    async def faults(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await request.json()
                fault = Fault(**body)
            except (ValueError, TypeError) as exc:
                return JSONResponse({"error": "invalid_fault", "detail": str(exc)}, 400)
            switches.arm(fault)
        elif request.method == "DELETE":
            switches.clear()
        return JSONResponse({"armed": [asdict(f) for f in switches.armed()]})

    return [Route(CONTROL_PATH, faults, methods=["GET", "POST", "DELETE"])]
