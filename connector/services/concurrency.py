"""Run independent outside calls at the same time (a launch waits on the slowest, not the sum).

    subscription, written = together(lambda: visits.ensure_live_status(v), lambda: write_back(...))

A small shared thread pool: the calls are I/O-bound (HTTP to Graph and the EHR) and the Python
worker runs each invocation on a thread of its own anyway. The first exception is raised after
every call has finished, so nothing is left running behind a failed launch. Each call runs in a
copy of the caller's context (``contextvars``), so the invocation's telemetry span is current
there too: the call's spans and log records stay under the invocation, not in a trace of their own.
"""

from __future__ import annotations

import contextvars
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="connector-together")


def together(*calls: Callable[[], Any]) -> list[Any]:
    if len(calls) == 1:
        return [calls[0]()]
    # One copy per call: a context can be entered by one thread at a time.
    futures = [_POOL.submit(contextvars.copy_context().run, call) for call in calls]
    errors = [f.exception() for f in futures]  # waits for all
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]
