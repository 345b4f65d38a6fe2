"""What ACS tells us after a message: delivery reports and patients' replies (Event Grid).

    sms_events.apply(parsed.events)

A delivery report updates the notification row its tag names (delivered, or not; "blocked"
when the recipient had replied STOP to that number) and counts a delivered message for the
reports. A STOP or START reply is recorded in the tenant's opt-out list as a keyed hash of the
sender's number (the number itself is hashed at once and goes nowhere); the tenant is the owner
of the number it was sent to. Event Grid delivers at least once and in no order: a report
already applied changes nothing, and the later of STOP and START wins.
"""

from __future__ import annotations

import hashlib
import logging

from connector.domain.sms_events import DeliveryReport, DeliveryStatus, InboundSms, Keyword
from connector.domain.usage import UsageEvent, UsageKind
from connector.errors import ConcurrencyConflict, ConfigurationError, Conflict
from connector.services.ports import NotificationRepository, OptOutRepository, PhoneNumberRepository, UsageEventLog
from connector.services.reminder_send import number_hash

log = logging.getLogger("connector.sms")


class SmsEvents:
    def __init__(self, notifications: NotificationRepository, opt_outs: OptOutRepository,
                 numbers: PhoneNumberRepository, usage: UsageEventLog, *, opt_out_key: bytes | None):
        self._notifications = notifications
        self._opt_outs = opt_outs
        self._numbers = numbers
        self._usage = usage
        self._opt_out_key = opt_out_key

    def apply(self, events) -> int:
        applied = 0
        for event in events:
            if isinstance(event, DeliveryReport):
                applied += self._delivery(event)
            elif isinstance(event, InboundSms):
                applied += self._reply(event)
        return applied

    def _delivery(self, report: DeliveryReport) -> int:
        stored = self._notifications.by_tag(report.tag) if report.tag else None
        if stored is None or stored.item.acs_message_id not in (None, report.message_id):
            return 0  # not one of our rows (a visit link has no row), or another message's
        status = "blocked" if report.opted_out else report.status.value.lower()
        if stored.item.delivery_status == status:
            return 0
        try:
            self._notifications.record_outcome(stored.item.model_copy(update={
                "delivery_status": status, "delivered_at": report.received_at}), stored.etag)
        except ConcurrencyConflict:
            raise  # Event Grid retries the POST; the next read sees the new row
        if report.status is DeliveryStatus.delivered:
            self._count(stored.item, report)
        log.info("delivery report for endpoint %s: %s", stored.item.endpoint_id, status)
        return 1

    def _count(self, claim, report: DeliveryReport) -> None:
        try:
            self._usage.append([UsageEvent(
                tenant_id=claim.tenant_id, event_id=hashlib.sha256(report.message_id.encode()).hexdigest()[:32],
                at=claim.sent_at or report.received_at, kind=UsageKind.sms_delivered, endpoint_id=claim.endpoint_id,
                department=claim.department)])
        except Conflict:
            pass  # delivered twice by Event Grid: counted once

    def _reply(self, sms: InboundSms) -> int:
        if sms.keyword not in (Keyword.stop, Keyword.start):
            return 0
        tenant_id = self._numbers.owner_of(sms.to_number)
        if tenant_id is None:
            log.warning("a reply to a number no tenant of this stamp owns was ignored")
            return 0
        if self._opt_out_key is None:
            raise ConfigurationError("CONNECTOR_OPTOUT_KEY is not set: a STOP cannot be recorded")
        changed = self._opt_outs.record_choice(
            tenant_id, number_hash(self._opt_out_key, tenant_id, sms.from_number),
            opted_out=sms.keyword is Keyword.stop, at=sms.received_at)
        log.info("tenant %s: a patient replied %s%s", tenant_id, sms.keyword.value, "" if changed else " (older)")
        return int(changed)
