"""Usage events behind the reports: what happened, never who (no PHI)."""

from __future__ import annotations

from enum import Enum

from pydantic import AwareDatetime, BaseModel, Field


class UsageKind(str, Enum):
    launch = "launch"
    lobby = "lobby"  # the patient entered the lobby
    visit_started = "visit_started"
    visit_ended = "visit_ended"
    lobby_wait = "lobby_wait"  # admitted; duration = time in the lobby
    no_show = "no_show"
    sms_sent = "sms_sent"
    sms_delivered = "sms_delivered"


class UsageEvent(BaseModel):
    tenant_id: str
    event_id: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")
    at: AwareDatetime
    kind: UsageKind
    endpoint_id: str | None = None
    department: str | None = None
    duration_seconds: float | None = None
