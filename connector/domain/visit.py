"""A video visit: one appointment's Teams meeting and what is known of who is in it.

Stored per (tenant+endpoint, appointment). It holds the meeting's ids, the EHR user id of the
clinician who launched it and times; never the patient's name or number (those are read
from FHIR when a page or a message needs them).

Graph's call events are reduced here, purely, to the patient's presence
(invited -> lobby -> in visit -> left) and to the steps the reports count. Reducing is
idempotent and tolerant of order: participants are tracked by id, so a repeated or late
notification changes nothing it should not.
"""

from __future__ import annotations

import hashlib
from datetime import datetime, timedelta
from enum import Enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from connector.domain.meeting import CallEvent, CallEventKind, ParticipantRole

# A patient link works from its making until this long after the appointment's end.
JOIN_LINK_GRACE = timedelta(hours=2)
# 16 random bytes would do (128 bits); 24 keep a margin and still make a short link.
JOIN_TOKEN_BYTES = 24
JOIN_TOKEN_PATTERN = r"^[A-Za-z0-9_-]{32}$"


class PatientPresence(str, Enum):
    invited = "invited"  # not seen in the meeting yet
    lobby = "lobby"  # waiting to be admitted
    in_visit = "in_visit"  # admitted
    left = "left"  # was there, is gone


class VisitStep(str, Enum):
    """What the reports count (usage events), each at most once per visit and step."""

    lobby = "lobby"
    admitted = "admitted"
    started = "started"  # the patient and the clinician are both in
    ended = "ended"


class Visit(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    tenant_id: str
    endpoint_id: str
    appointment_id: str = Field(pattern=r"^[A-Za-z0-9.-]{1,64}$")
    meeting_id: str
    join_web_url: str
    organizer_user_id: str
    ehr_user_id: str | None = None  # the launching clinician's Cerner user id
    department: str | None = None  # the appointment's Location id, for reports
    appointment_start: AwareDatetime
    appointment_end: AwareDatetime
    patient: PatientPresence = PatientPresence.invited
    provider_in_meeting: bool = False
    # Graph participant ids (opaque, no names) of guests in the lobby and in the meeting, and
    # when each participant was last reported on (a late, older report changes nothing).
    guests_in_lobby: list[str] = Field(default_factory=list)
    guests_in_meeting: list[str] = Field(default_factory=list)
    staff_in_meeting: list[str] = Field(default_factory=list)  # the organisation's side (clinician, nurse)
    participants_seen: dict[str, AwareDatetime] = Field(default_factory=dict)
    link_sent_at: AwareDatetime | None = None
    lobby_since: AwareDatetime | None = None
    admitted_at: AwareDatetime | None = None
    started_at: AwareDatetime | None = None
    ended_at: AwareDatetime | None = None
    written_back: bool = False
    # The Graph subscription to this meeting's call events (None: live status not available yet).
    subscription_id: str | None = None
    created_at: AwareDatetime
    updated_at: AwareDatetime

    @property
    def link_expires_at(self) -> datetime:
        return self.appointment_end + JOIN_LINK_GRACE


class LinkAudience(str, Enum):
    patient = "patient"  # opens the patient's join page
    provider = "provider"  # redirects straight to the Teams meeting (the link written into the EHR)


class JoinLink(BaseModel):
    """A visit link's row. Its key is the SHA-256 of the token: the table never holds a
    working link, so reading the table does not let anyone into a visit."""

    model_config = ConfigDict(frozen=True)

    token_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    audience: LinkAudience = LinkAudience.patient
    tenant_id: str
    endpoint_id: str
    appointment_id: str
    created_at: AwareDatetime
    expires_at: AwareDatetime


def token_hash(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SubscriptionLink(BaseModel):
    """Which visit a Graph subscription reports on, and the hash of its clientState."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str = Field(pattern=r"^[A-Za-z0-9-]{1,64}$")
    tenant_id: str
    endpoint_id: str
    appointment_id: str
    client_state_hash: str = Field(pattern=r"^[0-9a-f]{64}$")
    expires_at: AwareDatetime


def apply_call_event(visit: Visit, event: CallEvent) -> tuple[Visit, list[VisitStep]]:
    """The visit after ``event`` and the steps it completed for the first time."""
    lobby, meeting, staff = set(visit.guests_in_lobby), set(visit.guests_in_meeting), set(visit.staff_in_meeting)
    seen = dict(visit.participants_seen)
    for change in event.roster:
        last = seen.get(change.participant_id)
        if last is not None and event.at < last:
            continue  # Graph retried an older report after a newer one: the newer one stands
        seen[change.participant_id] = event.at
        if change.role is ParticipantRole.organizer:
            (staff.discard if change.left else staff.add)(change.participant_id)
            continue
        lobby.discard(change.participant_id)
        meeting.discard(change.participant_id)
        if change.left:
            continue
        (lobby if change.in_lobby else meeting).add(change.participant_id)
    if event.kind is CallEventKind.call_ended:
        lobby, meeting, staff = set(), set(), set()
    provider_in = bool(staff)  # anyone of the organisation: the clinician, or a colleague covering

    at = event.at
    changes: dict = {"guests_in_lobby": sorted(lobby), "guests_in_meeting": sorted(meeting),
                     "staff_in_meeting": sorted(staff), "provider_in_meeting": provider_in,
                     "participants_seen": seen}
    steps: list[VisitStep] = []
    if meeting:
        changes["patient"] = PatientPresence.in_visit
        if visit.admitted_at is None:
            changes["admitted_at"] = at
            steps.append(VisitStep.admitted)
    elif lobby:
        changes["patient"] = PatientPresence.lobby
    elif visit.patient is not PatientPresence.invited:
        changes["patient"] = PatientPresence.left
    if lobby and visit.lobby_since is None:
        changes["lobby_since"] = at
        steps.insert(0, VisitStep.lobby)
    if meeting and provider_in and visit.started_at is None:
        changes["started_at"] = at
        steps.append(VisitStep.started)
    started = visit.started_at is not None or "started_at" in changes
    if event.kind is CallEventKind.call_ended and started and visit.ended_at is None:
        changes["ended_at"] = at
        steps.append(VisitStep.ended)
    return visit.model_copy(update={**changes, "updated_at": max(visit.updated_at, at)}), steps


def lobby_wait(visit: Visit) -> timedelta | None:
    if visit.lobby_since is None or visit.admitted_at is None:
        return None
    return max(visit.admitted_at - visit.lobby_since, timedelta(0))


def visit_duration(visit: Visit) -> timedelta | None:
    if visit.started_at is None or visit.ended_at is None:
        return None
    return max(visit.ended_at - visit.started_at, timedelta(0))
