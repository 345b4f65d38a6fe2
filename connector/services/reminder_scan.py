"""Finding the messages that are due: the timer fans out, each scan job claims and enqueues.

    jobs = scan.fan_out()                       # one ScanJob per SMS-ready endpoint, on a queue
    result = scan.scan_endpoint(tenant, endpoint)   # a queue-triggered job

A scan job reads the endpoint's appointments with SMART Backend Services (Cerner searches
Appointment by one location plus ``date`` ge/lt, so the endpoint names its locations), keeps
the virtual ones, and asks the domain which messages each is due. Each due message is claimed
by a conditional insert (a row that says queued) and put on the send queue, hidden until it is
due: two scans racing claim it once, and a claim costs two writes. A claim whose enqueue failed
is written back as ``claimed`` and queued by a later scan (the failed job's retry, 30 s on); one
whose scan died between the two writes still says queued and is queued again once it is
``LOST_AFTER`` past due and not done. A duplicate message on the queue is harmless: the sender
acts on the row.

Finding and sending are separate (the sender re-reads everything when the message fires).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone

from pydantic import BaseModel

from connector.domain.endpoint import FhirEndpoint
from connector.domain.integration import BACKEND_SCOPES
from connector.domain.notification import NotificationClaim, NotificationRef, NotificationStatus, SkipReason
from connector.domain.reminders import AppointmentSnapshot, ReminderPolicy, due_messages
from connector.errors import ConcurrencyConflict, ConnectorError, UpstreamUnavailable
from connector.services import fhir_context
from connector.services.ports import (
    BackendTokens, Clock, EndpointRepository, NotificationRepository, Queue, ScanFhir, TenantRepository,
)

log = logging.getLogger("connector.reminders")

# A claim whose enqueue failed is queued by a scan this long after it was made.
REQUEUE_AFTER = timedelta(seconds=30)
# A row that says queued, untried by the sender this long after it was due: its message never
# reached the queue (the scan died between the claim and the enqueue). The sender tries a message
# seconds after it is due (quiet hours move the row's due time).
LOST_AFTER = timedelta(minutes=10)
# Rows older than this cannot matter to appointments in the look-ahead (first seen <= 30 days ahead).
CLAIMS_LOOK_BACK = timedelta(days=90)
PAGE_SIZE = 100  # Cerner's largest _count


class ScanJob(BaseModel):
    """One endpoint to scan (a queue message: ids only)."""

    tenant_id: str
    endpoint_id: str


@dataclass
class ScanResult:
    appointments: int = 0
    virtual: int = 0
    claimed: int = 0
    requeued: int = 0
    not_queued: int = 0  # claimed, but the queue write failed: stranded until a later scan
    skipped_resources: int = 0
    by_kind: dict[str, int] = field(default_factory=dict)


def not_ready_reason(endpoint: FhirEndpoint, tenant, policy: ReminderPolicy) -> str | None:
    """Why this endpoint's reminders are off (None: they are on)."""
    if not policy.enabled:
        return "reminders are off"
    if tenant is None or not tenant.sms_allowed:
        return "SMS is not consented"
    if not endpoint.linked_number:
        return "no SMS number is linked"
    if not endpoint.backend_client_id or not endpoint.token_url:
        return "no backend client id"
    if not endpoint.location_ids:
        return "no locations to scan"
    if not endpoint.meeting_organizer and not endpoint.department_organizers:
        return "no Teams meeting organizer (the messages carry the visit's link)"
    return None


class ReminderScan:
    def __init__(self, tenants: TenantRepository, endpoints: EndpointRepository, notifications: NotificationRepository,
                 fhir: ScanFhir, tokens: BackendTokens, scan_queue: Queue, send_queue: Queue, clock: Clock):
        self._tenants = tenants
        self._endpoints = endpoints
        self._notifications = notifications
        self._fhir = fhir
        self._tokens = tokens
        self._scan_queue = scan_queue
        self._send_queue = send_queue
        self._clock = clock

    def fan_out(self) -> int:
        """Queue one scan job per endpoint whose reminders are on; returns how many."""
        jobs = 0
        for endpoint in self._endpoints.all_endpoints():
            tenant = self._tenants.get_tenant(endpoint.tenant_id)
            reason = not_ready_reason(endpoint, tenant.item if tenant else None, endpoint.reminder_policy)
            if reason:
                continue
            self._scan_queue.send(ScanJob(tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id))
            jobs += 1
        log.info("reminder scan fanned out to %d endpoint(s)", jobs)
        return jobs

    def scan_endpoint(self, tenant_id: str, endpoint_id: str) -> ScanResult:
        result = ScanResult()
        stored = self._endpoints.get_endpoint(tenant_id, endpoint_id)
        tenant = self._tenants.get_tenant(tenant_id)
        if stored is None:
            return result
        endpoint, policy = stored.item, stored.item.reminder_policy
        if not_ready_reason(endpoint, tenant.item if tenant else None, policy):
            return result
        now = self._clock.now()
        window_end = now + timedelta(days=policy.look_ahead_days)

        def token() -> str:  # asked for each page: cached, and fresh across a long walk
            return self._tokens.token(endpoint, endpoint.token_url, BACKEND_SCOPES)

        # One read of the endpoint's recent rows for the whole scan, not one per appointment.
        claims = self._notifications.recent(tenant_id, endpoint_id, since=now - CLAIMS_LOOK_BACK)
        by_appointment: dict[str, list[NotificationClaim]] = {}
        for claim in claims:
            by_appointment.setdefault(claim.appointment_id, []).append(claim)
        for location in endpoint.location_ids:
            pages = self._fhir.search_pages(endpoint.base_url, token, "Appointment", [
                ("location", location), ("date", f"ge{_instant(now)}"), ("date", f"lt{_instant(window_end)}"),
                ("_count", str(PAGE_SIZE))], select=lambda raw: is_virtual_json(raw, policy),
                model=fhir_context.AppointmentTimes)
            for page in pages:
                result.appointments += page.total_entries  # virtual or not
                result.skipped_resources += len(page.skipped)  # logged by id where they were skipped
                for appointment in page.resources:  # the virtual ones, as AppointmentTimes
                    try:
                        self._consider(endpoint, policy, appointment, location, now, result,
                                       by_appointment.get(appointment.id, []))
                    except ConnectorError:
                        raise  # storage or queue trouble: the job is retried, claims already made stand
                    except Exception as exc:  # one odd resource must not stop the endpoint's scan
                        result.skipped_resources += 1
                        log.warning("skipped appointment %s: %s", appointment.id, type(exc).__name__)
        result.requeued = self._requeue_stranded(endpoint, now, claims, result)
        if result.not_queued:
            # The job fails so that the host retries it: that retry, 30 s or more later, finds the
            # claims stranded and queues them (the appointments claimed since stand).
            raise UpstreamUnavailable(f"{result.not_queued} due message(s) were claimed but could not be queued")
        log.info("scanned endpoint %s: %d appointments, %d virtual, %d claimed, %d requeued",
                 endpoint.endpoint_id, result.appointments, result.virtual, result.claimed, result.requeued)
        return result

    def _consider(self, endpoint: FhirEndpoint, policy: ReminderPolicy, appointment, location: str,
                  now: datetime, result: ScanResult, claims: list[NotificationClaim]) -> None:
        if not fhir_context.has_times(appointment):  # virtual: the search selected only those
            return
        result.virtual += 1
        when = fhir_context.window(appointment)
        snapshot = AppointmentSnapshot(
            appointment_id=appointment.id, status=appointment.status or "", start=when.start, end=when.end,
            patient_id=fhir_context.participant_id(appointment, "Patient"),
            location_id=fhir_context.participant_id(appointment, "Location") or location)
        for due in due_messages(snapshot, policy, claims, now):
            claim = NotificationClaim(
                tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id, appointment_id=appointment.id,
                kind=due.kind, offset_minutes=due.offset_minutes, appointment_start=due.appointment_start,
                claimed_at=now, due_at=due.due_at, department=snapshot.location_id,
                status=NotificationStatus.queued, queued_at=now)  # queued next; written back if not
            etag = self._notifications.claim_notification(claim) or self._revive(claim)
            if not etag:
                continue  # another scan claimed it: it queues it too
            result.claimed += 1
            result.by_kind[due.kind.value] = result.by_kind.get(due.kind.value, 0) + 1
            self._enqueue(claim, etag, now, result)

    def _revive(self, claim: NotificationClaim) -> str | None:
        """A reminder skipped because the visit had moved, due again now that it is back at that
        start: its row is taken back (a conditional write: one scan wins). Returns its ETag."""
        stored = self._notifications.get_notification(claim)
        if stored is None or stored.item.skip_reason is not SkipReason.moved:
            return None
        try:
            return self._notifications.record_outcome(claim.model_copy(update={"replays": stored.item.replays}),
                                                      stored.etag)
        except ConcurrencyConflict:
            return None

    def _enqueue(self, claim: NotificationClaim, etag: str, now: datetime, result: ScanResult) -> bool:
        """Put a claimed message (its row says queued) on the send queue. If the write fails the
        row is written back as claimed, a stranded claim, and the scan goes on: one queue
        hiccup must not hold up the endpoint's other messages."""
        delay = max((claim.due_at or now) - now, timedelta(0))
        try:
            self._send_queue.send(NotificationRef.of(claim), delay=delay)
            return True
        except UpstreamUnavailable:
            result.not_queued += 1
        try:
            self._notifications.record_outcome(
                claim.model_copy(update={"status": NotificationStatus.claimed, "queued_at": None}), etag)
        except (ConcurrencyConflict, UpstreamUnavailable):
            pass  # still says queued: queued again LOST_AFTER past due
        return False

    def _requeue_stranded(self, endpoint: FhirEndpoint, now: datetime, claims: list[NotificationClaim],
                          result: ScanResult) -> int:
        """Queue what should be on the queue and is not: claims whose enqueue failed, and rows
        that say queued long past due (from the rows read when the scan began)."""
        requeued = 0
        for stored in self._notifications.for_endpoint(endpoint.tenant_id, endpoint.endpoint_id,
                                                       NotificationStatus.claimed):
            if stored.item.claimed_at < now - REQUEUE_AFTER:
                queued = stored.item.model_copy(update={"status": NotificationStatus.queued, "queued_at": now})
                try:
                    etag = self._notifications.record_outcome(queued, stored.etag)
                except ConcurrencyConflict:
                    continue  # another scan or a replay took it
                requeued += self._enqueue(queued, etag, now, result)
        for claim in claims:  # never tried by the sender, long past due: never reached the queue
            if (claim.status is NotificationStatus.queued and claim.attempts == 0
                    and (claim.due_at or claim.claimed_at) < now - LOST_AFTER):
                try:
                    self._send_queue.send(NotificationRef.of(claim))  # due already: at once
                    requeued += 1
                except UpstreamUnavailable:
                    result.not_queued += 1
        return requeued


def is_virtual_json(appointment: dict, policy: ReminderPolicy) -> bool:
    """The endpoint's rule on the Appointment's JSON: decided before anything is parsed."""
    rule = policy.virtual_visit
    if rule.cerner_video_visit and fhir_context.is_video_visit_json(appointment):
        return True
    types = fhir_context.codes_json([appointment.get("appointmentType")])
    services = fhir_context.codes_json(appointment.get("serviceType") or [])
    return bool(types & set(rule.appointment_type_codes) or services & set(rule.service_type_codes))


def _instant(moment: datetime) -> str:
    """Cerner wants a time and a zone on each ``date`` bound."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
