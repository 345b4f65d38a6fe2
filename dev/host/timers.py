"""Timer triggers: one thread per timer fires it on its NCRONTAB schedule (UTC)."""

from __future__ import annotations

import concurrent.futures
import contextlib
import logging
from datetime import datetime, timedelta, timezone

from azure.functions.timer import TimerRequest  # func.TimerRequest is abstract

from dev.host.app_loader import LoadedFunction
from dev.host.listener import ListenerThread
from dev.host.ncrontab import NcrontabSchedule
from dev.host.worker import Worker

logger = logging.getLogger("dev.host.timers")

# A firing later than this after its due time is reported as past due (e.g. the machine slept).
PAST_DUE_AFTER = timedelta(seconds=1)


def _utcnow() -> datetime:
    return datetime.now(timezone.utc)


def _status(last: datetime | None, next_due: datetime | None) -> dict[str, str]:
    """The ScheduleStatus shape the host passes (Last / Next / LastUpdated, ISO 8601)."""
    status = {"LastUpdated": _utcnow().isoformat()}
    if last is not None:
        status["Last"] = last.isoformat()
    if next_due is not None:
        status["Next"] = next_due.isoformat()
    return status


def invoke_timer(
    worker: Worker,
    function: LoadedFunction,
    *,
    past_due: bool = False,
    last: datetime | None = None,
    next_due: datetime | None = None,
    reason: str = "Timer fired",
) -> concurrent.futures.Future:
    """Invoke a timer function once with a concrete ``TimerRequest``."""
    request = TimerRequest(
        past_due=past_due, schedule_status=_status(last, next_due), schedule={"AdjustForDST": True}
    )
    return worker.invoke(function, request, reason=reason)


class TimerListener(ListenerThread):
    """Fires ``function`` on ``schedule`` until stopped. Invocations of one timer never overlap
    (the host runs timers as singletons); occurrences missed while it ran are skipped."""

    kind = "timer"

    def __init__(
        self,
        function: LoadedFunction,
        schedule: NcrontabSchedule,
        worker: Worker,
        *,
        run_on_startup: bool = False,
    ) -> None:
        super().__init__(function.name)
        self.function = function
        self.schedule = schedule
        self._worker = worker
        self._run_on_startup = run_on_startup

    def _describe(self) -> str:
        return f"schedule {self.schedule.expression!r} (UTC)"

    def _run(self) -> None:
        last: datetime | None = None
        due = self.schedule.next_after(_utcnow())
        if self._run_on_startup:
            self._fire(reason="RunOnStartup", last=None, next_due=due)
        while not self._stop.wait(max(0.0, (due - _utcnow()).total_seconds())):
            now = _utcnow()
            if now < due:
                continue  # Event.wait may return a hair early: wait for the rest
            next_due = self.schedule.next_after(now)
            self._fire(
                reason=f"Timer fired at {now.isoformat()}",
                last=last,
                next_due=next_due,
                past_due=now - due > PAST_DUE_AFTER,
            )
            last = due
            due = self.schedule.next_after(_utcnow())

    def _fire(
        self, *, reason: str, last: datetime | None, next_due: datetime | None, past_due: bool = False
    ) -> None:
        # A failure was logged by the worker; a failing timer keeps its schedule.
        with contextlib.suppress(Exception):
            invoke_timer(
                self._worker, self.function, past_due=past_due, last=last, next_due=next_due, reason=reason
            ).result()
