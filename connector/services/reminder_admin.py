"""The admin's side of reminders: an endpoint's policy, a preview of every message, failed
messages and their replay. Tenants see only their own endpoints and rows."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from connector.domain import patient_messages
from connector.domain.endpoint import FhirEndpoint
from connector.domain.notification import NotificationClaim, NotificationRef, NotificationStatus
from connector.domain.reminders import ReminderPolicy
from connector.domain.sms_text import segments
from connector.errors import NotFound
from connector.services.admin_setup import required_etag, stored_endpoint
from connector.services.ports import Clock, EndpointRepository, NotificationRepository, Versioned
from connector.services.reminder_send import ReminderSender

audit = logging.getLogger("connector.audit")


@dataclass(frozen=True)
class PreviewMessage:
    kind: str
    language: str
    text: str
    segments: int


class ReminderAdmin:
    def __init__(self, endpoints: EndpointRepository, notifications: NotificationRepository, sender: ReminderSender,
                 clock: Clock, *, public_base_url: str):
        self._endpoints = endpoints
        self._notifications = notifications
        self._sender = sender
        self._clock = clock
        self._base = public_base_url.rstrip("/")

    def policy(self, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint]:
        return stored_endpoint(self._endpoints, tenant_id, endpoint_id)

    def set_policy(self, tenant_id: str, endpoint_id: str, policy: ReminderPolicy,
                   if_match: str | None) -> Versioned[FhirEndpoint]:
        stored = stored_endpoint(self._endpoints, tenant_id, endpoint_id)
        etag = required_etag(if_match)
        self._endpoints.save_endpoint(stored.item.model_copy(update={"reminder_policy": policy}), etag)
        audit.info("tenant %s set the reminder policy of endpoint %s (enabled=%s)", tenant_id, endpoint_id,
                   policy.enabled)
        return stored_endpoint(self._endpoints, tenant_id, endpoint_id)

    def preview(self, tenant_id: str, endpoint_id: str, start: datetime | None = None) -> list[PreviewMessage]:
        """Every message in every language for a sample appointment (tomorrow at 10:00 by default)."""
        endpoint = stored_endpoint(self._endpoints, tenant_id, endpoint_id).item
        zone = ZoneInfo(endpoint.timezone)
        today = self._clock.now().astimezone(zone).date()
        when = (start or datetime.combine(today + timedelta(days=1), datetime.min.time().replace(hour=10),
                                         zone)).astimezone(zone)
        link = f"{self._base}/api/j/{'S' * 32}"
        out = []
        for kind in patient_messages.NOTIFICATION_SMS:
            for language in patient_messages.LANGUAGES:
                text = patient_messages.notification_sms(
                    kind, language, clinic=endpoint.display_name or "Your clinic", start=when, today=today,
                    link=None if kind == "cancellation" else f"{link}{'' if language == 'en' else '?hl=' + language}")
                out.append(PreviewMessage(kind, language, text, segments(text)))
        return out

    def failed(self, tenant_id: str) -> list[NotificationClaim]:
        return sorted((v.item for v in self._notifications.for_tenant(tenant_id, NotificationStatus.failed)),
                      key=lambda c: c.claimed_at)

    def replay(self, tenant_id: str, ref: NotificationRef) -> NotificationClaim:
        if ref.tenant_id != tenant_id:
            raise NotFound("no such notification")
        stored_endpoint(self._endpoints, tenant_id, ref.endpoint_id)
        replayed = self._sender.replay(ref)
        audit.info("tenant %s replayed a %s of endpoint %s", tenant_id, ref.kind.value, ref.endpoint_id)
        return replayed
