"""Timer triggers: a %SETTING% schedule, a failing one, run_on_startup, and one for the admin API."""

from __future__ import annotations

import azure.functions as func


def build_app() -> tuple[func.FunctionApp, list[tuple[str, func.TimerRequest]]]:
    app = func.FunctionApp()
    calls: list[tuple[str, func.TimerRequest]] = []

    @app.timer_trigger(schedule="%TICK_SCHEDULE%", arg_name="tick_timer")
    def tick(tick_timer: func.TimerRequest) -> None:
        calls.append(("tick", tick_timer))

    @app.timer_trigger(schedule="*/1 * * * * *", arg_name="timer")
    def flaky(timer: func.TimerRequest) -> None:
        calls.append(("flaky", timer))
        raise RuntimeError("flaky timer failed")

    @app.timer_trigger(schedule="0 0 0 1 1 *", arg_name="timer", run_on_startup=True)
    def at_startup(timer: func.TimerRequest) -> None:
        calls.append(("at_startup", timer))

    # 29 February at 03:00 on a Monday: far enough from any test run never to fire by itself.
    @app.timer_trigger(schedule="0 0 3 29 2 1", arg_name="timer")
    async def nightly(timer: func.TimerRequest) -> None:
        calls.append(("nightly", timer))

    return app, calls
