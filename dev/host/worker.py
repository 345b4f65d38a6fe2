"""Runs user functions the way the Python worker does: sync functions in a thread pool, async
functions on ONE long-lived event loop (so clients cached by async code across invocations
stay bound to the same loop), with the host's "Executing/Executed" log lines."""

from __future__ import annotations

import asyncio
import concurrent.futures
import logging
import os
import threading
import time
import uuid
from typing import Any

from dev.host.app_loader import LoadedFunction

logger = logging.getLogger("dev.host.worker")

# The invocation reason the host logs for HTTP requests and admin-API runs.
API_CALL_REASON = "This function was programmatically called via the host APIs."


class Worker:
    """Invokes functions; ``invoke`` returns a ``concurrent.futures.Future`` usable from any
    thread (``.result()``) or event loop (``asyncio.wrap_future``)."""

    def __init__(self, max_threads: int | None = None) -> None:
        # The Python worker's default pool size for Python 3.9+.
        self._max_threads = max_threads or min(32, (os.cpu_count() or 1) + 4)
        self._executor: concurrent.futures.ThreadPoolExecutor | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._loop_thread: threading.Thread | None = None

    def start(self) -> None:
        self._executor = concurrent.futures.ThreadPoolExecutor(
            self._max_threads, thread_name_prefix="dev.host.worker"
        )
        self._loop = asyncio.new_event_loop()
        self._loop_thread = threading.Thread(target=self._run_loop, name="dev.host.worker-loop", daemon=True)
        self._loop_thread.start()

    def _run_loop(self) -> None:
        assert self._loop is not None
        asyncio.set_event_loop(self._loop)
        try:
            self._loop.run_forever()
        finally:
            self._loop.run_until_complete(self._loop.shutdown_asyncgens())
            self._loop.close()

    def invoke(
        self, function: LoadedFunction, trigger_value: Any, *, reason: str
    ) -> concurrent.futures.Future:
        """Start one invocation with the trigger value passed by keyword (the binding's name)."""
        if self._executor is None or self._loop is None:
            raise RuntimeError("worker is not running")
        if function.is_async:
            return asyncio.run_coroutine_threadsafe(
                self._run_async(function, trigger_value, reason), self._loop
            )
        return self._executor.submit(self._run_sync, function, trigger_value, reason)

    def _run_sync(self, function: LoadedFunction, trigger_value: Any, reason: str) -> Any:
        invocation = _Invocation(function.name, reason)
        try:
            result = function.user_function(**{function.arg_name: trigger_value})
        except BaseException:
            invocation.failed()
            raise
        invocation.succeeded()
        return result

    async def _run_async(self, function: LoadedFunction, trigger_value: Any, reason: str) -> Any:
        invocation = _Invocation(function.name, reason)
        try:
            result = await function.user_function(**{function.arg_name: trigger_value})
        except BaseException:
            invocation.failed()
            raise
        invocation.succeeded()
        return result

    def stop(self, timeout: float = 10.0) -> None:
        """Let running invocations finish, cancel leftover async tasks, join every thread."""
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None
        if self._loop is not None and self._loop_thread is not None:
            if self._loop.is_running():
                asyncio.run_coroutine_threadsafe(_cancel_other_tasks(), self._loop).result(timeout)
                self._loop.call_soon_threadsafe(self._loop.stop)
            self._loop_thread.join(timeout)
            if self._loop_thread.is_alive():
                logger.warning("worker event loop did not stop within %.0f s", timeout)
        self._loop = None
        self._loop_thread = None


async def _cancel_other_tasks() -> None:
    current = asyncio.current_task()
    tasks = [t for t in asyncio.all_tasks() if t is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class _Invocation:
    """The host's invocation log lines. Only the function name, id, outcome and duration are
    logged: never the trigger payload (it may hold PHI)."""

    def __init__(self, name: str, reason: str) -> None:
        self.name = name
        self.id = uuid.uuid4()
        self.started = time.perf_counter()
        logger.info("Executing 'Functions.%s' (Reason='%s', Id=%s)", name, reason, self.id)

    def _ms(self) -> int:
        return round((time.perf_counter() - self.started) * 1000)

    def succeeded(self) -> None:
        logger.info(
            "Executed 'Functions.%s' (Succeeded, Id=%s, Duration=%dms)", self.name, self.id, self._ms()
        )

    def failed(self) -> None:
        logger.exception(
            "Executed 'Functions.%s' (Failed, Id=%s, Duration=%dms)", self.name, self.id, self._ms()
        )
