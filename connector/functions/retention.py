"""Housekeeping: once a day, rows past their retention are deleted (services/retention.py)."""

import azure.functions as func

from connector import telemetry
from connector.composition import container

bp = func.Blueprint()


@bp.timer_trigger(arg_name="timer", schedule="%CONNECTOR_RETENTION_SCHEDULE%", run_on_startup=False)
@telemetry.traced("timer")
def purge_expired_rows(timer: func.TimerRequest) -> None:
    container().retention.run()  # logs its counts itself, per table
