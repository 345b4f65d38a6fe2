"""Queue triggers on %SETTING% queue names: one that succeeds and one that always raises."""

from __future__ import annotations

import time

import azure.functions as func


def build_app() -> tuple[func.FunctionApp, list[tuple[str, func.QueueMessage, float]]]:
    app = func.FunctionApp()
    calls: list[tuple[str, func.QueueMessage, float]] = []

    @app.queue_trigger(arg_name="msg", queue_name="%IN_QUEUE%", connection="AzureWebJobsStorage")
    def consume(msg: func.QueueMessage) -> None:
        calls.append(("consume", msg, time.monotonic()))

    @app.queue_trigger(arg_name="message", queue_name="%FAIL_QUEUE%", connection="AzureWebJobsStorage")
    def always_fails(message: func.QueueMessage) -> None:
        calls.append(("always_fails", message, time.monotonic()))
        raise RuntimeError("handler always fails")

    return app, calls
