"""The record that one message about one appointment was claimed (and later sent).

Its key is (tenant+endpoint, appointment+kind+start): claiming it with a conditional insert
is what makes each confirmation and reminder go out exactly once, even when two scans race.
"""

from __future__ import annotations

from enum import Enum

from pydantic import AwareDatetime, BaseModel


class NotificationKind(str, Enum):
    confirmation = "confirmation"
    update = "update"
    cancellation = "cancellation"
    reminder = "reminder"


class NotificationStatus(str, Enum):
    claimed = "claimed"
    sent = "sent"
    skipped = "skipped"
    failed = "failed"


class NotificationClaim(BaseModel):
    tenant_id: str
    endpoint_id: str
    appointment_id: str
    kind: NotificationKind
    # The appointment start the message is about: a reschedule is a new message.
    appointment_start: AwareDatetime
    status: NotificationStatus = NotificationStatus.claimed
    claimed_at: AwareDatetime
    acs_message_id: str | None = None
    sent_at: AwareDatetime | None = None
