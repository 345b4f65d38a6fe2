"""``LocalFunctionsHost``: the pieces wired together, started and stopped as one."""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import MutableMapping
from concurrent.futures import Future
from datetime import timedelta
from functools import partial
from pathlib import Path

from dev.host.app_loader import LoadedFunction, import_app, index_functions
from dev.host.config import HostConfig, apply_local_settings, load_host_config, resolve_setting_refs
from dev.host.http import AdminInvoker, FunctionsHttpApp
from dev.host.ncrontab import parse_schedule
from dev.host.queues import QueueListener, QueueListenerOptions, invoke_queue
from dev.host.storage import ensure_queue, queue_service_client
from dev.host.timers import TimerListener, invoke_timer
from dev.host.worker import API_CALL_REASON, Worker
from dev.sandbox.server import LoopbackServer, free_port

logger = logging.getLogger("dev.host")

# The host waits up to maxPollingInterval (default 1 min) on an idle queue; locally that
# would make every demo wait, so poll at most this often unless told otherwise.
LOCAL_MAX_POLL = timedelta(seconds=2)


class LocalFunctionsHost:
    """Runs a Python v2 FunctionApp like ``func start``: HTTP on 127.0.0.1:<port>, timers on
    their schedules, queue triggers fed from storage.

    ``port=0`` picks a free port. ``poll_interval`` (seconds) overrides the idle-queue poll.
    ``environ`` defaults to ``os.environ``: local.settings.json values are added to it at
    start (never overriding) and removed again at stop.
    """

    def __init__(
        self,
        project_dir: str | Path = ".",
        app_ref: str = "function_app:app",
        port: int = 7071,
        poll_interval: float | None = None,
        *,
        environ: MutableMapping[str, str] | None = None,
    ) -> None:
        self.project_dir = Path(project_dir).resolve()
        self.app_ref = app_ref
        self.port = port or free_port()
        self.poll_interval = poll_interval
        self._environ = os.environ if environ is None else environ
        self.config = HostConfig()
        self.functions: list[LoadedFunction] = []
        self._worker = Worker()
        self._server: LoopbackServer | None = None
        self._timers: list[TimerListener] = []
        self._queues: list[QueueListener] = []
        self._added_settings: list[str] = []
        self._added_sys_path = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> "LocalFunctionsHost":
        """Load everything, then start; a bad setting or schedule fails here, before serving."""
        try:
            self._load()
            self._worker.start()
            self._start_queues()
            self._start_timers()
            self._start_http()
        except BaseException:
            self.stop()
            raise
        logger.info("host started on %s with %d function(s)", self.url, len(self.functions))
        return self

    def _load(self) -> None:
        self._added_settings = apply_local_settings(self.project_dir, self._environ)
        self.config = load_host_config(self.project_dir)
        self._added_sys_path = str(self.project_dir) not in sys.path
        self.functions = index_functions(import_app(self.project_dir, self.app_ref))
        # Resolve every schedule and queue name now so a missing setting fails the start.
        self._timers = [
            TimerListener(
                f,
                parse_schedule(str(f.trigger["schedule"]), self._environ, used_by=f.name),
                self._worker,
                run_on_startup=bool(f.trigger.get("runOnStartup")),
            )
            for f in self.functions
            if f.kind == "timer"
        ]
        self._queues = [self._queue_listener(f) for f in self.functions if f.kind == "queue"]

    def _queue_listener(self, function: LoadedFunction) -> QueueListener:
        # The host lower-cases queue names (storage requires it).
        name = resolve_setting_refs(str(function.trigger["queueName"]), self._environ, function.name).lower()
        service = queue_service_client(function.trigger.get("connection"), self._environ, function.name)
        queues = self.config.queues
        poll = self.poll_interval
        if poll is None:
            poll = min(queues.max_polling_interval, LOCAL_MAX_POLL).total_seconds()
        options = QueueListenerOptions(
            max_dequeue_count=queues.max_dequeue_count,
            retry_visibility=queues.visibility_timeout,
            batch_size=queues.batch_size,
            poll_interval=poll,
        )
        # Created lazily by _start_queues; the clients themselves do no I/O yet.
        return QueueListener(
            function,
            service.get_queue_client(name),
            service.get_queue_client(f"{name}-poison"),
            self._worker,
            options,
        )

    def _start_queues(self) -> None:
        for listener in self._queues:
            for client in (listener.queue, listener.poison):
                ensure_queue(client)
            listener.start()

    def _start_timers(self) -> None:
        for listener in self._timers:
            listener.start()

    def _start_http(self) -> None:
        portal = self.project_dir / "portal"
        app = FunctionsHttpApp(
            self.functions,
            self._worker,
            route_prefix=self.config.route_prefix,
            admin_invokers=self._admin_invokers(),
            portal_dir=portal if portal.is_dir() else None,
        )
        self._server = LoopbackServer(app, self.port, name="dev.host.http").start()
        for route in app.routes:
            methods = ",".join(sorted(route.methods)) if route.methods else "ALL"
            logger.info("  %s: [%s] %s%s", route.function.name, methods, self.url, route.template.display)

    def _admin_invokers(self) -> dict[str, AdminInvoker]:
        """What ``POST /admin/functions/{name}`` runs for each non-HTTP function."""
        invokers: dict[str, AdminInvoker] = {}
        for function in self.functions:
            if function.kind == "timer":
                invokers[function.name] = partial(self._fire_timer_now, function)
            elif function.kind == "queue":
                invokers[function.name] = partial(self._run_queue_function_now, function)
        return invokers

    def _fire_timer_now(self, function: LoadedFunction, _input: str) -> Future:
        return invoke_timer(self._worker, function, reason=API_CALL_REASON)

    def _run_queue_function_now(self, function: LoadedFunction, text: str) -> Future:
        return invoke_queue(self._worker, function, text.encode("utf-8"))

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving, stop listeners, drain the worker; every thread is joined."""
        if self._server is not None:
            self._server.stop(timeout)
            self._server = None
            logger.info("host on %s stopping", self.url)
        listeners: list[TimerListener | QueueListener] = [*self._timers, *self._queues]
        for listener in listeners:
            listener.stop(timeout)
        self._timers, self._queues = [], []
        self._worker.stop(timeout)
        for name in self._added_settings:
            self._environ.pop(name, None)
        self._added_settings = []
        if self._added_sys_path and str(self.project_dir) in sys.path:
            sys.path.remove(str(self.project_dir))
        self._added_sys_path = False

    def __enter__(self) -> "LocalFunctionsHost":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
