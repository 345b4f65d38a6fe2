"""A Teams online meeting for one visit, and what Graph tells us happens in it.

The meeting is made with ``createOrGet`` and an ``externalId`` derived from (endpoint,
appointment), so relaunches and both parties land in the same meeting. Call events come
from Graph change notifications and are reduced to :class:`RosterChange` values: the
domain never sees Graph's JSON.
"""

from __future__ import annotations

import hashlib
from enum import Enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

# Graph limits externalId to 255 characters; ours is short and says nothing about the patient.
EXTERNAL_ID_PREFIX = "vv1-"


def meeting_external_id(tenant_id: str, endpoint_id: str, appointment_id: str) -> str:
    """The same (endpoint, appointment) always gives the same id; nothing in it is PHI."""
    digest = hashlib.sha256(f"{tenant_id}\n{endpoint_id}\n{appointment_id}".encode()).hexdigest()
    return f"{EXTERNAL_ID_PREFIX}{digest[:40]}"


class MeetingRequest(BaseModel):
    """What a meeting is made from. The subject never names the patient."""

    model_config = ConfigDict(frozen=True)

    tenant_id: str  # the customer's Entra tenant: app-only tokens are asked for in it
    organizer_user_id: str  # Entra object id (or UPN) of the account that owns the meeting
    external_id: str = Field(max_length=255)
    subject: str = Field(max_length=255)
    start: AwareDatetime
    end: AwareDatetime


class OnlineMeeting(BaseModel):
    model_config = ConfigDict(frozen=True)

    meeting_id: str
    join_web_url: str
    created: bool = False  # True when this call created it (Graph answered 201, not 200)


class CallSubscription(BaseModel):
    """A Graph change-notification subscription to one meeting's call events."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    resource: str
    expires_at: AwareDatetime


class ParticipantRole(str, Enum):
    organizer = "organizer"  # the clinician's meeting account (or anyone in the organisation)
    guest = "guest"  # anyone from outside the organisation: the patient and their companions


class RosterChange(BaseModel):
    """One participant's state as a call event reports it."""

    model_config = ConfigDict(frozen=True)

    participant_id: str
    role: ParticipantRole
    in_lobby: bool = False
    left: bool = False


class CallEventKind(str, Enum):
    call_started = "callStarted"
    call_ended = "callEnded"
    roster_updated = "rosterUpdated"


class CallEvent(BaseModel):
    """One meeting call event from a Graph change notification, validated and reduced."""

    model_config = ConfigDict(frozen=True)

    subscription_id: str
    client_state: str | None
    kind: CallEventKind
    at: AwareDatetime
    roster: tuple[RosterChange, ...] = ()
