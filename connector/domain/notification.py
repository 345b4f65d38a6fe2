"""The record that one message about one appointment was claimed, queued, and sent (or not).

Its key is (tenant+endpoint, appointment+kind+offset+start): claiming it with a conditional
insert is what makes each confirmation and reminder go out exactly once, even when scans race.
The row holds ids, times and outcomes; never the phone number or the text.

    claimed ─► queued ─► sent ─► (delivered | undelivered, from ACS's delivery report)
       │          ├─► skipped   (no longer due, opted out, no consent or number: with a reason)
       │          └─► failed    (the queue gave up: the poison queue holds it; an admin may replay)
       └─ a claim never queued (a crash in between) is queued again by the next scan
"""

from __future__ import annotations

from enum import Enum

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field


class NotificationKind(str, Enum):
    confirmation = "confirmation"
    update = "update"
    cancellation = "cancellation"
    reminder = "reminder"


class NotificationStatus(str, Enum):
    claimed = "claimed"
    queued = "queued"
    sent = "sent"
    skipped = "skipped"
    failed = "failed"


class SkipReason(str, Enum):
    moved = "moved"  # the appointment starts at another time now (an update covers it)
    cancelled = "cancelled"
    started = "started"  # too late: the visit has begun
    not_virtual = "not_virtual"
    gone = "gone"  # the appointment or the endpoint no longer exists
    policy_off = "policy_off"
    no_consent = "no_consent"
    no_number = "no_number"  # no SMS number linked to the endpoint
    no_mobile = "no_mobile"  # the patient has no usable mobile number
    opted_out = "opted_out"


class NotificationClaim(BaseModel):
    model_config = ConfigDict(validate_assignment=True)

    tenant_id: str
    endpoint_id: str
    appointment_id: str
    kind: NotificationKind
    offset_minutes: int = 0  # reminders: minutes before the start; updates: which update (0, 1, ...)
    # The appointment start the message is about: a reschedule is a new message.
    appointment_start: AwareDatetime
    status: NotificationStatus = NotificationStatus.claimed
    claimed_at: AwareDatetime
    due_at: AwareDatetime | None = None
    department: str | None = None  # the appointment's Location id, for reports
    queued_at: AwareDatetime | None = None
    # Kept from the first attempt, so a retried send is the same request to ACS (never twice).
    repeatability_id: str | None = None
    first_attempt_at: AwareDatetime | None = None
    attempts: int = 0
    acs_message_id: str | None = None
    sent_at: AwareDatetime | None = None
    skip_reason: SkipReason | None = None
    failure: str | None = Field(default=None, max_length=200)  # an error class or ACS status, never a text
    delivery_status: str | None = Field(default=None, max_length=40)
    delivered_at: AwareDatetime | None = None
    replays: int = 0


def notification_keys(claim: "NotificationClaim | NotificationRef") -> tuple[str, str]:
    """(partition, row) of a message's row: one partition per endpoint, the appointment's rows
    side by side. Keys name instants in UTC: Cerner sends one instant as ``Z`` and as ``-05:00``."""
    from datetime import timezone

    start = claim.appointment_start.astimezone(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    numbered = claim.kind is NotificationKind.reminder or (claim.kind is NotificationKind.update and claim.offset_minutes)
    kind = claim.kind.value + (str(claim.offset_minutes) if numbered else "")
    return f"{claim.tenant_id}_{claim.endpoint_id}", f"{claim.appointment_id}_{kind}_{start}"


def notification_tag(claim: "NotificationClaim | NotificationRef") -> str:
    """What ACS hands back in a delivery report for the message: its row's key (ids only)."""
    partition, row = notification_keys(claim)
    return f"{partition}|{row}"


class NotificationRef(BaseModel):
    """What a queue message carries: the row's key, nothing else (no PHI on the queue)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tenant_id: str
    endpoint_id: str
    appointment_id: str = Field(pattern=r"^[A-Za-z0-9.-]{1,64}$")
    kind: NotificationKind
    offset_minutes: int = 0
    appointment_start: AwareDatetime

    @classmethod
    def of(cls, claim: NotificationClaim) -> "NotificationRef":
        return cls(tenant_id=claim.tenant_id, endpoint_id=claim.endpoint_id, appointment_id=claim.appointment_id,
                   kind=claim.kind, offset_minutes=claim.offset_minutes, appointment_start=claim.appointment_start)
