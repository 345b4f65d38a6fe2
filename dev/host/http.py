"""The host's HTTP front door (ASGI): HTTP triggers under the route prefix, the admin API to run
a non-HTTP function once, and the project's static ``portal/`` at ``/``. Nothing else."""

from __future__ import annotations

import asyncio
import concurrent.futures
import json
import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from dev.host.app_loader import LoadedFunction
from dev.host.routes import RouteTemplate
from dev.host.worker import API_CALL_REASON, Worker

logger = logging.getLogger("dev.host.http")

AdminInvoker = Callable[[str], concurrent.futures.Future]
_ADMIN_FUNCTIONS = "/admin/functions/"
# Computed by the server from the body the host sends; a function's own value would be wrong.
_HOP_HEADERS = {"content-length", "transfer-encoding"}


@dataclass(frozen=True)
class HttpRoute:
    template: RouteTemplate
    function: LoadedFunction
    methods: frozenset[str] | None  # None: every method, as when the trigger lists none

    @classmethod
    def of(cls, function: LoadedFunction, route_prefix: str) -> "HttpRoute":
        route = function.trigger.get("route") or function.name
        methods = function.trigger.get("methods")
        allowed = frozenset(str(m).upper() for m in methods) if methods else None
        return cls(RouteTemplate(route, route_prefix), function, allowed)


class FunctionsHttpApp:
    """ASGI app. Logs method, route template, status and duration only (never the concrete
    path, query, headers or body: they can carry tokens and PHI)."""

    def __init__(
        self,
        functions: Sequence[LoadedFunction],
        worker: Worker,
        *,
        route_prefix: str = "api",
        admin_invokers: Mapping[str, AdminInvoker] | None = None,
        portal_dir: Path | None = None,
    ) -> None:
        self._worker = worker
        self._prefix = route_prefix.strip("/")
        routes = [HttpRoute.of(f, self._prefix) for f in functions if f.kind == "http"]
        self.routes = sorted(routes, key=lambda r: r.template.precedence)
        self._admin = {name.lower(): invoke for name, invoke in (admin_invokers or {}).items()}
        self._portal = StaticFiles(directory=portal_dir, html=True) if portal_dir else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return  # lifespan is off and websockets are not a Functions feature
        started = time.perf_counter()
        status = 0

        async def send_and_record(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        label = await self._dispatch(scope, receive, send_and_record)
        ms = round((time.perf_counter() - started) * 1000)
        logger.info("%s %s -> %d (%d ms)", scope["method"], label, status, ms)

    async def _dispatch(self, scope: Scope, receive: Receive, send: Send) -> str:
        request = Request(scope, receive)
        path: str = scope["path"]
        if path.startswith("/admin/"):
            response, label = await self._admin_call(request)
            await response(scope, receive, send)
            return label
        path_matched: HttpRoute | None = None
        for route in self.routes:
            route_params = route.template.match(path)
            if route_params is None:
                continue
            path_matched = path_matched or route
            if route.methods is None or request.method in route.methods:
                response = await self._call(route.function, request, route_params)
                await response(scope, receive, send)
                return route.template.display
        if path_matched is not None:
            # RFC 9110: every method the resource serves, i.e. every function on this route template.
            template = path_matched.template.display
            served = {m for route in self.routes if route.template.display == template for m in route.methods or ()}
            allowed = ", ".join(sorted(served))
            response = JSONResponse({"error": "method_not_allowed"}, 405, headers={"Allow": allowed})
            await response(scope, receive, send)
            return path_matched.template.display
        if self._portal is not None and not self._under_prefix(path):
            try:
                await self._portal(scope, receive, send)
            except HTTPException as exc:  # raised before anything is sent (no 404.html etc.)
                error = "not_found" if exc.status_code == 404 else "method_not_allowed"
                headers = {"Allow": "GET, HEAD"} if exc.status_code == 405 else None  # static files
                await JSONResponse({"error": error}, exc.status_code, headers=headers)(scope, receive, send)
            return "<portal>"
        await JSONResponse({"error": "not_found"}, 404)(scope, receive, send)
        return "<no route>"

    def _under_prefix(self, path: str) -> bool:
        return bool(self._prefix) and (path == f"/{self._prefix}" or path.startswith(f"/{self._prefix}/"))

    async def _call(
        self, function: LoadedFunction, request: Request, route_params: dict[str, str]
    ) -> Response:
        http_request = func.HttpRequest(
            method=request.method,
            url=str(request.url),
            headers=_joined_headers(request),
            params=dict(request.query_params),  # HttpRequest does not parse the url's query
            route_params=route_params,
            body=await request.body(),
        )
        failure = JSONResponse({"error": "internal_error", "function": function.name}, 500)
        try:
            result = await asyncio.wrap_future(
                self._worker.invoke(function, http_request, reason=API_CALL_REASON)
            )
        except Exception:
            return failure  # the worker logged the traceback; callers learn nothing internal
        try:
            return to_starlette_response(result)
        except TypeError:
            logger.exception("function %s returned something that is not an HTTP response", function.name)
            return failure

    async def _admin_call(self, request: Request) -> tuple[Response, str]:
        """``POST /admin/functions/{name}`` with ``{"input": "..."}``: run a non-HTTP function
        once, answering 202 without waiting for it, like the real host."""
        name = (
            request.url.path[len(_ADMIN_FUNCTIONS) :] if request.url.path.startswith(_ADMIN_FUNCTIONS) else ""
        )
        label = f"{_ADMIN_FUNCTIONS}{{name}}"
        invoke = self._admin.get(name.lower())
        if invoke is None:
            return JSONResponse({"error": "not_found"}, 404), label
        if request.method != "POST":
            return JSONResponse({"error": "method_not_allowed"}, 405, headers={"Allow": "POST"}), label
        raw = await request.body()
        try:
            payload = json.loads(raw) if raw.strip() else {}
        except ValueError:
            return JSONResponse({"error": "invalid_json"}, 400), label
        value = payload.get("input", "") if isinstance(payload, dict) else ""
        invoke(value if isinstance(value, str) else json.dumps(value))
        return Response(status_code=202), label


def _joined_headers(request: Request) -> dict[str, str]:
    """Repeated request headers joined with ", " (one value per name, as the host delivers)."""
    headers: dict[str, str] = {}
    for name, value in request.headers.items():
        headers[name] = f"{headers[name]}, {value}" if name in headers else value
    return headers


def to_starlette_response(result: Any) -> Response:
    """Map what the function returned, as the worker's HTTP converter does."""
    if isinstance(result, str):
        result = func.HttpResponse(result)
    if not isinstance(result, func.HttpResponse):
        raise TypeError(f"an HTTP function must return func.HttpResponse or str, got {type(result).__name__}")
    headers = [(k, v) for k, v in result.headers.items() if k.lower() not in _HOP_HEADERS]
    if not any(k.lower() == "content-type" for k, _ in headers):
        mimetype = result.mimetype
        headers.append(
            (
                "content-type",
                f"{mimetype}; charset={result.charset}" if mimetype.startswith("text/") else mimetype,
            )
        )
    response = Response(content=result.get_body(), status_code=result.status_code)
    response.raw_headers.extend((k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in headers)
    return response
