"""Reminders: the timer fans out one scan job per endpoint; scan jobs claim and enqueue due
messages; the sender sends each when it fires; the poison queue's trigger records a message
the host gave up on (the admin API lists it and can replay it)."""

import logging

import azure.functions as func

from connector import telemetry
from connector.composition import container

bp = func.Blueprint()
log = logging.getLogger("connector.reminders")


@bp.timer_trigger(arg_name="timer", schedule="%CONNECTOR_REMINDER_SCAN_SCHEDULE%", run_on_startup=False)
@telemetry.traced("timer")
def fan_out_reminder_scans(timer: func.TimerRequest) -> None:
    container().reminder_scan.fan_out()


@bp.queue_trigger(arg_name="msg", queue_name="%CONNECTOR_SCAN_QUEUE%", connection="AzureWebJobsStorage")
@telemetry.traced("queue")
def scan_endpoint(msg: func.QueueMessage) -> None:
    from connector.services.reminder_scan import ScanJob

    job = ScanJob.model_validate_json(msg.get_body())
    telemetry.tag(tenant=job.tenant_id, endpoint_id=job.endpoint_id)
    container().reminder_scan.scan_endpoint(job.tenant_id, job.endpoint_id)


@bp.queue_trigger(arg_name="msg", queue_name="%CONNECTOR_SEND_QUEUE%", connection="AzureWebJobsStorage")
@telemetry.traced("queue")
def send_notification(msg: func.QueueMessage) -> None:
    from connector.domain.notification import NotificationRef

    ref = NotificationRef.model_validate_json(msg.get_body())
    _tag(ref)
    container().reminder_sender.send(ref)


@bp.queue_trigger(arg_name="msg", queue_name="%CONNECTOR_SEND_QUEUE%-poison", connection="AzureWebJobsStorage")
@telemetry.traced("queue")
def notification_gave_up(msg: func.QueueMessage) -> None:
    from connector.domain.notification import NotificationRef

    ref = NotificationRef.model_validate_json(msg.get_body())
    _tag(ref)
    container().reminder_sender.mark_failed(ref)


def _tag(ref) -> None:
    from connector.domain.notification import notification_keys

    telemetry.tag(tenant=ref.tenant_id, endpoint_id=ref.endpoint_id, notification_id=notification_keys(ref)[1])
