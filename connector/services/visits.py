"""Visits: one Teams meeting per appointment, its live state, and what the reports count.

    visit = visits.ensure_visit(endpoint, appointment, ehr_user_id=...)   # idempotent
    visits.apply_call_events(events)        # Graph change notifications (clientState checked)
    visits.renew_subscriptions()            # the timer keeps live status alive

``ensure_visit`` makes the meeting with ``createOrGet`` and an externalId derived from
(endpoint, appointment), so a relaunch, a second clinician and the patient all land in the
same meeting even when two launches race (the losing insert re-reads the winner's row). It
then subscribes to the meeting's call events; a subscription that fails leaves the visit
usable (the page says live status is unavailable) and is tried again at the next launch.

Call events are applied with the visit's ETag (a concurrent notification makes one of the
two re-read and re-apply), and each report step becomes a usage event with a deterministic
id, so a notification Graph delivers twice is counted once.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
from collections.abc import Iterable
from datetime import timedelta

from fhir.resources.R4B.appointment import Appointment

from connector.domain.endpoint import FhirEndpoint
from connector.domain.meeting import CallEvent, MeetingRequest, OnlineMeeting, meeting_external_id
from connector.domain.usage import UsageEvent, UsageKind
from connector.domain.visit import (
    SubscriptionLink, Visit, VisitStep, apply_call_event, lobby_wait, visit_duration,
)
from connector.errors import ConcurrencyConflict, ConfigurationError, Conflict, ConnectorError, NotAuthorized
from connector.services import fhir_context
from connector.services.ports import (
    Clock, IdSource, Meetings, SubscriptionRepository, UsageEventLog, Versioned, VisitRepository,
)

log = logging.getLogger("connector.visits")

# Graph keeps a meeting call-event subscription at most three days; ask for a little less and
# renew well before the end.
SUBSCRIPTION_LIFETIME = timedelta(days=2, hours=12)
RENEW_BEFORE = timedelta(hours=12)
# After this, nobody needs live status for the visit any more: its subscription is let go.
LIVE_STATUS_AFTER_END = timedelta(hours=2)
MEETING_SUBJECT = "Video visit"  # never the patient's name: Teams shows subjects widely
SAVE_ATTEMPTS = 5

_USAGE_KIND = {
    VisitStep.lobby: UsageKind.lobby,
    VisitStep.admitted: UsageKind.lobby_wait,
    VisitStep.started: UsageKind.visit_started,
    VisitStep.ended: UsageKind.visit_ended,
}


class NoOrganizer(ConfigurationError):
    """No Teams account is configured to own this endpoint's (or department's) meetings."""

    http_status = 409
    code = "no_meeting_organizer"


class ForgedNotification(NotAuthorized):
    """A change notification whose clientState does not match its subscription's."""


class Visits:
    def __init__(self, visits: VisitRepository, subscriptions: SubscriptionRepository, meetings: Meetings,
                 usage: UsageEventLog, clock: Clock, ids: IdSource, *, notification_url: str):
        self._visits = visits
        self._subscriptions = subscriptions
        self._meetings = meetings
        self._usage = usage
        self._clock = clock
        self._ids = ids
        self._notification_url = notification_url

    # -- making the meeting ------------------------------------------------------------------

    def ensure_visit(self, endpoint: FhirEndpoint, appointment: Appointment, *,
                     ehr_user_id: str | None) -> Versioned[Visit]:
        """The visit with its meeting and, where possible, its live status subscription."""
        return self.ensure_live_status(self.ensure_meeting(endpoint, appointment, ehr_user_id=ehr_user_id))

    def ensure_meeting(self, endpoint: FhirEndpoint, appointment: Appointment, *,
                       ehr_user_id: str | None) -> Versioned[Visit]:
        """The visit and its Teams meeting, made if this is the appointment's first launch."""
        stored = self._visits.get_visit(endpoint.tenant_id, endpoint.endpoint_id, appointment.id or "")
        return stored if stored is not None else self._create(endpoint, appointment, ehr_user_id)

    def ensure_live_status(self, stored: Versioned[Visit]) -> Versioned[Visit]:
        """Subscribe to the meeting's call events unless the visit has a subscription or is over."""
        if stored.item.subscription_id is None and not self._live_status_over(stored.item):
            return self._subscribe(stored)
        return stored

    def _create(self, endpoint: FhirEndpoint, appointment: Appointment, ehr_user_id: str | None) -> Versioned[Visit]:
        department = fhir_context.participant_id(appointment, "Location")
        organizer = endpoint.organizer_for(department)
        if not organizer:
            raise NoOrganizer(
                "No Teams account is set to own this clinic's video visits. Ask your administrator to set "
                "the meeting organizer of this FHIR endpoint in the connector's portal.")
        when = fhir_context.window(appointment)
        meeting = self._meetings.create_or_get(MeetingRequest(
            tenant_id=endpoint.tenant_id, organizer_user_id=organizer,
            external_id=meeting_external_id(endpoint.tenant_id, endpoint.endpoint_id, appointment.id or ""),
            subject=MEETING_SUBJECT, start=when.start, end=when.end,
        ))
        now = self._clock.now()
        visit = Visit(
            tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id, appointment_id=appointment.id,
            meeting_id=meeting.meeting_id, join_web_url=meeting.join_web_url, organizer_user_id=organizer,
            ehr_user_id=ehr_user_id, department=department, appointment_start=when.start,
            appointment_end=when.end, created_at=now, updated_at=now,
        )
        created = self._visits.add_visit(visit)
        stored = self._visits.get_visit(endpoint.tenant_id, endpoint.endpoint_id, visit.appointment_id)
        if stored is None:  # added and gone at once: storage is not answering as it should
            raise ConcurrencyConflict("the visit could not be read back; try again")
        log.info("visit %s meeting %s (%s)", _visit_ref(visit), "created" if created else "reused",
                 "new in Teams" if meeting.created else "existing in Teams")
        return stored

    def _subscribe(self, stored: Versioned[Visit]) -> Versioned[Visit]:
        visit = stored.item
        client_state = self._ids.token(32)
        try:
            subscription = self._meetings.subscribe_call_events(
                visit.tenant_id, OnlineMeeting(meeting_id=visit.meeting_id, join_web_url=visit.join_web_url),
                notification_url=self._notification_url, client_state=client_state,
                expires_at=self._clock.now() + SUBSCRIPTION_LIFETIME)
        except ConnectorError as exc:
            log.warning("visit %s: live status not available (%s)", _visit_ref(visit), type(exc).__name__)
            return stored
        ours = subscription.subscription_id
        # Known before the visit names it, so no notification for it is ever "unknown".
        self._subscriptions.add_subscription(SubscriptionLink(
            subscription_id=ours, tenant_id=visit.tenant_id,
            endpoint_id=visit.endpoint_id, appointment_id=visit.appointment_id,
            client_state_hash=_digest(client_state), expires_at=subscription.expires_at))
        updated = self._update(stored, lambda v: v if v.subscription_id else v.model_copy(update={"subscription_id": ours}))
        if updated.item.subscription_id != ours:
            # Another launch subscribed first: one subscription per meeting is enough.
            self._subscriptions.remove_subscription(ours)
            try:
                self._meetings.delete_subscription(visit.tenant_id, ours)
            except ConnectorError as exc:  # unrenewed, it expires within three days
                log.warning("surplus subscription %s not deleted: %s", ours, type(exc).__name__)
        return updated

    def _live_status_over(self, visit: Visit) -> bool:
        return visit.ended_at is not None or self._clock.now() > visit.appointment_end + LIVE_STATUS_AFTER_END

    # -- live state ----------------------------------------------------------------------------

    def apply_call_events(self, events: Iterable[CallEvent]) -> int:
        """Apply notifications; returns how many were applied. Raises :class:`ForgedNotification`
        when any event's clientState does not match (those events change nothing)."""
        applied, forged = 0, 0
        for event in events:
            stored_link = self._subscriptions.get_subscription(event.subscription_id)
            if stored_link is None:
                log.info("notification for unknown subscription ignored")
                continue
            link = stored_link.item
            if not event.client_state or not hmac.compare_digest(_digest(event.client_state), link.client_state_hash):
                forged += 1
                log.warning("notification refused: clientState does not match subscription %s", link.subscription_id)
                continue
            stored = self._visits.get_visit(link.tenant_id, link.endpoint_id, link.appointment_id)
            if stored is None:
                continue
            steps: list[VisitStep] = []

            def change(visit: Visit) -> Visit:
                updated, completed = apply_call_event(visit, event)
                steps[:] = completed
                return updated

            stored = self._update(stored, change)
            self._record_steps(stored.item, steps)
            applied += 1
        if forged:
            raise ForgedNotification("the notification's clientState does not match its subscription")
        return applied

    def _record_steps(self, visit: Visit, steps: list[VisitStep]) -> None:
        events = []
        for step in steps:
            at = {VisitStep.lobby: visit.lobby_since, VisitStep.admitted: visit.admitted_at,
                  VisitStep.started: visit.started_at, VisitStep.ended: visit.ended_at}[step]
            duration = {VisitStep.admitted: lobby_wait(visit), VisitStep.ended: visit_duration(visit)}.get(step)
            events.append(UsageEvent(
                tenant_id=visit.tenant_id, event_id=f"{_visit_ref(visit)}-{step.value}",
                at=at or self._clock.now(), kind=_USAGE_KIND[step], endpoint_id=visit.endpoint_id,
                department=visit.department,
                duration_seconds=duration.total_seconds() if duration is not None else None))
        self._append(events)

    def record_launch(self, endpoint: FhirEndpoint, department: str | None) -> None:
        self._append([UsageEvent(tenant_id=endpoint.tenant_id, event_id=self._ids.hex(8), at=self._clock.now(),
                                 kind=UsageKind.launch, endpoint_id=endpoint.endpoint_id, department=department)])

    def record_link_sent(self, stored: Versioned[Visit]) -> Versioned[Visit]:
        now = self._clock.now()
        updated = self._update(stored, lambda v: v.model_copy(update={"link_sent_at": now, "updated_at": now}))
        self._append([UsageEvent(tenant_id=updated.item.tenant_id, event_id=self._ids.hex(8), at=now,
                                 kind=UsageKind.sms_sent, endpoint_id=updated.item.endpoint_id,
                                 department=updated.item.department)])
        return updated

    def mark_written_back(self, stored: Versioned[Visit]) -> Versioned[Visit]:
        return self._update(stored, lambda v: v.model_copy(update={"written_back": True}))

    def _append(self, events: list[UsageEvent]) -> None:
        for event in events:  # one at a time: a duplicate (Graph delivered twice) must not sink the rest
            try:
                self._usage.append([event])
            except Conflict:
                pass

    def get(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> Versioned[Visit] | None:
        return self._visits.get_visit(tenant_id, endpoint_id, appointment_id)

    # -- subscriptions -------------------------------------------------------------------------

    def renew_subscriptions(self) -> tuple[int, int]:
        """Renew subscriptions that expire soon; let go of those whose visit is over.
        Returns (renewed, dropped)."""
        now = self._clock.now()
        renewed = dropped = 0
        for stored in self._subscriptions.expiring_before(now + RENEW_BEFORE):
            link = stored.item
            visit = self._visits.get_visit(link.tenant_id, link.endpoint_id, link.appointment_id)
            # Gone, over, or the loser of two launches that subscribed at once: let it expire.
            if visit is None or self._live_status_over(visit.item) or \
                    visit.item.subscription_id != link.subscription_id:
                self._subscriptions.remove_subscription(link.subscription_id)
                dropped += 1
                continue
            try:
                granted = self._meetings.renew_subscription(link.tenant_id, link.subscription_id,
                                                            now + SUBSCRIPTION_LIFETIME)
                self._subscriptions.save_subscription(link.model_copy(update={"expires_at": granted}), stored.etag)
            except ConcurrencyConflict:
                continue  # another timer renewed it just now
            except ConnectorError as exc:
                log.warning("subscription %s not renewed: %s", link.subscription_id, type(exc).__name__)
                continue
            renewed += 1
        return renewed, dropped

    # -- helpers -------------------------------------------------------------------------------

    def _update(self, stored: Versioned[Visit], change) -> Versioned[Visit]:
        """Apply ``change`` and save with the ETag; on a race, re-read and apply again."""
        for _ in range(SAVE_ATTEMPTS):
            updated = change(stored.item)
            try:
                etag = self._visits.save_visit(updated, stored.etag)
                return Versioned(updated, etag)
            except ConcurrencyConflict:
                again = self._visits.get_visit(stored.item.tenant_id, stored.item.endpoint_id,
                                               stored.item.appointment_id)
                if again is None:
                    raise
                stored = again
        raise ConcurrencyConflict("the visit kept changing; try again")


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()


def _visit_ref(visit: Visit) -> str:
    """A short, stable, non-identifying reference to a visit for logs and event ids."""
    raw = f"{visit.tenant_id}|{visit.endpoint_id}|{visit.appointment_id}"
    return hashlib.sha256(raw.encode()).hexdigest()[:16]

