"""Sending one due message: everything is checked again when it fires, then ACS sends it once.

    sender.send(ref)            # the send queue's trigger; raises on failure (the host retries)
    sender.mark_failed(ref)     # the poison queue's trigger: the row says it gave up
    sender.replay(tenant, ref)  # an admin's replay of a failed message (never sends twice)

When the message fires the sender re-reads the appointment (moved, cancelled, started: skipped
with the reason), checks SMS consent and the linked number (a withdrawn consent stops at
once), reads the patient's mobile number from FHIR (never stored), honours the opt-out list
(a keyed hash), the chart's communication preference and quiet hours (a message due at night
waits for the morning unless the visit is sooner), writes the text in the patient's language
with the visit's join link, and sends through ACS with a repeatability id kept on the row, so
a retried send is never delivered twice. The row records the outcome, never the number or text.

ACS throttling (429) puts the message back on the queue after Retry-After: paced, not lost, and
not counted towards the poison queue.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import logging
import uuid
from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

from connector.domain import patient_messages
from connector.domain.endpoint import FhirEndpoint
from connector.domain.integration import BACKEND_SCOPES
from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, SkipReason, notification_tag,
)
from connector.domain.reminders import quiet_until
from connector.domain.visit import JOIN_TOKEN_BYTES
from connector.domain.usage import UsageEvent, UsageKind
from connector.errors import ConcurrencyConflict, ConfigurationError, Conflict, NotFound, UpstreamUnavailable
from connector.services import fhir_context
from connector.services.patient_links import PatientLinks
from connector.services.ports import (
    BackendTokens, Clock, EndpointRepository, FhirReader, NotificationRepository, OptOutRepository, Queue,
    SmsSender, TenantRepository, UsageEventLog, Versioned,
)
from connector.services.telecom import mobile_phone_e164
from connector.services.visits import Visits

log = logging.getLogger("connector.reminders")

# ACS keeps a repeatability id five minutes; a retry later than that cannot be matched.
REPEATABILITY_WINDOW = timedelta(minutes=5)
REPEATABILITY_MARGIN = timedelta(seconds=30)  # queue visibility and clocks are not exact
RECORD_SENT_ATTEMPTS = 5
MIN_THROTTLE_DELAY = timedelta(seconds=5)
EARLY_TOLERANCE = timedelta(seconds=5)  # queue visibility is not to the millisecond


def number_hash(key: bytes, tenant_id: str, e164: str) -> str:
    """The opt-out list's key for a number: HMAC-SHA256 under the stamp's key, per tenant."""
    return hmac.new(key, f"{tenant_id}:{e164}".encode(), hashlib.sha256).hexdigest()


class ReminderSender:
    def __init__(self, notifications: NotificationRepository, endpoints: EndpointRepository,
                 tenants: TenantRepository, fhir: FhirReader, tokens: BackendTokens, visits: Visits,
                 links: PatientLinks, sms: SmsSender, opt_outs: OptOutRepository, send_queue: Queue,
                 usage: UsageEventLog, clock: Clock, *, opt_out_key: bytes | None):
        self._notifications = notifications
        self._endpoints = endpoints
        self._tenants = tenants
        self._fhir = fhir
        self._tokens = tokens
        self._visits = visits
        self._links = links
        self._sms = sms
        self._opt_outs = opt_outs
        self._queue = send_queue
        self._usage = usage
        self._clock = clock
        self._opt_out_key = opt_out_key

    def send(self, ref: NotificationRef) -> NotificationStatus | None:
        """Send the message ``ref`` names, if it is still due; returns the row's new status
        (None when there was nothing to do). Raises when sending failed: the host retries."""
        stored = self._notifications.get_notification(ref)
        if stored is None or stored.item.status in (NotificationStatus.sent, NotificationStatus.skipped,
                                                    NotificationStatus.failed):
            return None  # done already (a duplicate or a replayed queue message), or given up
        claim = stored.item
        now = self._clock.now()
        if claim.due_at is not None and now < claim.due_at - EARLY_TOLERANCE:
            # A copy that came early (a duplicate, a replay): back on the queue until it is due.
            self._queue.send(ref, delay=claim.due_at - now)
            return NotificationStatus.queued
        endpoint_row = self._endpoints.get_endpoint(ref.tenant_id, ref.endpoint_id)
        if endpoint_row is None:
            return self._skip(stored, SkipReason.gone)
        endpoint, policy = endpoint_row.item, endpoint_row.item.reminder_policy
        if not policy.enabled:
            return self._skip(stored, SkipReason.policy_off)
        tenant = self._tenants.get_tenant(ref.tenant_id)
        if tenant is None or not tenant.item.sms_allowed:
            return self._skip(stored, SkipReason.no_consent)
        if not endpoint.linked_number:
            return self._skip(stored, SkipReason.no_number)
        if self._opt_out_key is None:
            raise ConfigurationError("CONNECTOR_OPTOUT_KEY is not set: reminders cannot honour opt-outs")

        token = self._tokens.token(endpoint, endpoint.token_url, BACKEND_SCOPES)
        try:
            appointment = self._fhir.read(endpoint.base_url, token, "Appointment", claim.appointment_id)
        except NotFound:
            return self._skip(stored, SkipReason.gone)
        reason = _no_longer_due(claim, appointment, now)
        if reason:
            return self._skip(stored, reason)
        start = fhir_context.window(appointment).start
        zone = ZoneInfo(endpoint.timezone)
        later = quiet_until(now, policy, zone, start)
        if later is not None:
            try:  # due later now: an early copy of the message waits too
                self._notifications.record_outcome(claim.model_copy(update={"due_at": later}), stored.etag)
            except ConcurrencyConflict:
                pass
            self._queue.send(ref, delay=later - now)  # the same row, at the end of the quiet hours
            log.info("notification for endpoint %s waits for the end of quiet hours", endpoint.endpoint_id)
            return NotificationStatus.queued

        patient_id = fhir_context.participant_id(appointment, "Patient")
        patient = self._fhir.read(endpoint.base_url, token, "Patient", patient_id) if patient_id else None
        channels = fhir_context.reminder_channels(patient) if patient else None
        if channels is not None and "sms" not in channels:
            return self._skip(stored, SkipReason.opted_out)  # the chart says: not by text
        number = mobile_phone_e164(patient, policy.country, now=now) if patient else None
        if number is None:
            return self._skip(stored, SkipReason.no_mobile)
        if self._opt_outs.is_opted_out(ref.tenant_id, number_hash(self._opt_out_key, ref.tenant_id, number)):
            return self._skip(stored, SkipReason.opted_out)

        language = patient_messages.language_or_default(fhir_context.preferred_language(patient),
                                                        policy.default_language)
        link = None
        if claim.kind is not NotificationKind.cancellation:
            visit = self._visits.ensure_visit(endpoint, appointment, ehr_user_id=None)
            link = self._links.mint(visit.item, language, token=self._link_token(claim))
        text = patient_messages.notification_sms(
            claim.kind.value, language, clinic=endpoint.display_name or "Your clinic",
            start=start.astimezone(zone), today=now.astimezone(zone).date(), link=link)
        return self._deliver(stored, endpoint, number, text, now)

    def _link_token(self, claim: NotificationClaim) -> str:
        """The message's own join token, derived from its row key under the stamp's key: every
        retry writes the same text, as a repeated request to ACS must."""
        digest = hmac.new(self._opt_out_key, f"join-link:{notification_tag(claim)}".encode(), hashlib.sha256)
        return base64.urlsafe_b64encode(digest.digest()[:JOIN_TOKEN_BYTES]).decode("ascii")

    def _deliver(self, stored: Versioned[NotificationClaim], endpoint: FhirEndpoint, number: str, text: str,
                 now: datetime) -> NotificationStatus:
        claim = stored.item
        if claim.repeatability_id is None:  # the first attempt: every retry repeats this request
            claim = claim.model_copy(update={"repeatability_id": str(uuid.uuid4()), "first_attempt_at": now})
        claim = claim.model_copy(update={"attempts": claim.attempts + 1})
        etag = self._notifications.record_outcome(claim, stored.etag)  # ours now: a racing sender re-reads
        try:
            message_id = self._sms.send(from_number=endpoint.linked_number, to_number=number, message=text,
                                        repeatability_id=claim.repeatability_id,
                                        first_sent=claim.first_attempt_at, tag=notification_tag(claim))
        except UpstreamUnavailable as exc:
            if getattr(exc, "retry_after", None) is not None or "429" in exc.message:
                delay = max(timedelta(seconds=exc.retry_after or 0), MIN_THROTTLE_DELAY)
                # The id is kept while ACS still knows it: another attempt under it may have been
                # accepted (a racing copy of this message), and then the retry gets that answer
                # back instead of a second text. Only an id that would have aged out is dropped.
                if now + delay + REPEATABILITY_MARGIN >= claim.first_attempt_at + REPEATABILITY_WINDOW:
                    try:
                        self._notifications.record_outcome(
                            claim.model_copy(update={"repeatability_id": None, "first_attempt_at": None}), etag)
                    except ConcurrencyConflict:
                        pass  # a racing attempt recorded something: the retry reads it
                self._queue.send(NotificationRef.of(claim), delay=delay)  # paced, not failed
                log.info("SMS for endpoint %s throttled; back on the queue", endpoint.endpoint_id)
                return NotificationStatus.queued
            raise
        sent = self._record_sent(claim, etag, message_id, now)
        self._count_sent(sent, now)
        log.info("%s sent for endpoint %s (ACS message %s)", claim.kind.value, endpoint.endpoint_id, message_id)
        return NotificationStatus.sent

    def _record_sent(self, claim: NotificationClaim, etag: str, message_id: str, now: datetime) -> NotificationClaim:
        """The row says sent, whatever a racing copy wrote meanwhile: ACS accepted this text, and
        a row left queued would be sent again."""
        update = {"status": NotificationStatus.sent, "acs_message_id": message_id, "sent_at": now}
        for _ in range(RECORD_SENT_ATTEMPTS):
            try:
                self._notifications.record_outcome(claim.model_copy(update=update), etag)
                return claim.model_copy(update=update)
            except ConcurrencyConflict:
                stored = self._notifications.get_notification(claim)
                if stored is None:
                    break
                if stored.item.status is NotificationStatus.sent:
                    return stored.item  # a racing copy got ACS's answer to the same request
                claim, etag = stored.item, stored.etag
        raise ConcurrencyConflict("the notification kept changing while its sent state was recorded")

    def _skip(self, stored: Versioned[NotificationClaim], reason: SkipReason) -> NotificationStatus:
        skipped = stored.item.model_copy(update={"status": NotificationStatus.skipped, "skip_reason": reason})
        try:
            self._notifications.record_outcome(skipped, stored.etag)
        except ConcurrencyConflict:
            pass  # someone else moved it on; the row says what happened
        log.info("%s skipped for endpoint %s: %s", stored.item.kind.value, stored.item.endpoint_id, reason.value)
        return NotificationStatus.skipped

    def _count_sent(self, claim: NotificationClaim, now: datetime) -> None:
        try:
            self._usage.append([UsageEvent(
                tenant_id=claim.tenant_id, event_id=hashlib.sha256(notification_tag(claim).encode()).hexdigest()[:32], at=now,
                kind=UsageKind.sms_sent, endpoint_id=claim.endpoint_id, department=claim.department)])
        except Conflict:
            pass

    # -- the poison queue and replays ------------------------------------------------------------

    def mark_failed(self, ref: NotificationRef, failure: str = "gave up after the queue's retries") -> None:
        stored = self._notifications.get_notification(ref)
        if stored is None or stored.item.status in (NotificationStatus.sent, NotificationStatus.skipped):
            return
        self._notifications.record_outcome(
            stored.item.model_copy(update={"status": NotificationStatus.failed, "failure": failure}), stored.etag)
        log.warning("%s for endpoint %s failed: %s", ref.kind.value, ref.endpoint_id, failure)

    def replay(self, ref: NotificationRef) -> NotificationClaim:
        """Put a failed message back on the queue, once (a second replay finds it on its way: 409).

        Within ACS's five-minute repeatability window the message's id is kept, so one ACS did
        accept before the failure is not delivered again; later ACS would refuse that id, so a
        new one is made. (A row fails only when no attempt recorded ACS's acceptance.)"""
        stored = self._notifications.get_notification(ref)
        if stored is None:
            raise NotFound("no such notification")
        if stored.item.status in (NotificationStatus.claimed, NotificationStatus.queued):
            raise Conflict(f"this notification is {stored.item.status.value}: it is on its way already "
                           "(a replay whose queue write failed is queued by the endpoint's next scan)")
        if stored.item.status is not NotificationStatus.failed:
            raise Conflict(f"only a failed notification can be replayed (this one is {stored.item.status.value})")
        item, now = stored.item, self._clock.now()
        fresh = item.first_attempt_at is None or now - item.first_attempt_at > REPEATABILITY_WINDOW
        # Claimed first, queued once the message is on the queue: if the enqueue fails the row
        # is a stranded claim, which the endpoint's next scan puts on the queue (never lost).
        replayed = item.model_copy(update={
            "status": NotificationStatus.claimed, "failure": None, "replays": item.replays + 1,
            **({"repeatability_id": None, "first_attempt_at": None} if fresh else {})})
        etag = self._notifications.record_outcome(replayed, stored.etag)  # a second replay: 409
        self._queue.send(NotificationRef.of(replayed))
        queued = replayed.model_copy(update={"status": NotificationStatus.queued, "queued_at": now})
        try:
            self._notifications.record_outcome(queued, etag)
        except ConcurrencyConflict:
            pass  # the sender got to it first
        return queued


def _no_longer_due(claim: NotificationClaim, appointment, now: datetime) -> SkipReason | None:
    status = appointment.status or ""
    if not fhir_context.has_times(appointment):
        return SkipReason.gone
    start = fhir_context.window(appointment).start
    if claim.kind is NotificationKind.cancellation:
        return None if status == "cancelled" else SkipReason.moved  # un-cancelled meanwhile
    if status == "cancelled":
        return SkipReason.cancelled
    if status not in ("booked", "pending"):
        return SkipReason.started
    if start != claim.appointment_start:
        return SkipReason.moved
    if start <= now:
        return SkipReason.started
    return None


