"""Run independent outside calls at the same time (a launch waits on the slowest, not the sum).

    subscription, written = together(lambda: visits.ensure_live_status(v), lambda: write_back(...))

A small shared thread pool: the calls are I/O-bound (HTTP to Graph and the EHR) and the Python
worker runs each invocation on a thread of its own anyway. The first exception is raised after
every call has finished, so nothing is left running behind a failed launch.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

_POOL = ThreadPoolExecutor(max_workers=32, thread_name_prefix="connector-together")


def together(*calls: Callable[[], Any]) -> list[Any]:
    if len(calls) == 1:
        return [calls[0]()]
    futures = [_POOL.submit(call) for call in calls]
    errors = [f.exception() for f in futures]  # waits for all
    first = next((e for e in errors if e is not None), None)
    if first is not None:
        raise first
    return [f.result() for f in futures]
