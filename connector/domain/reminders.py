"""Confirmations and reminders: which messages an appointment is due, and when they may go.

Pure rules (no I/O): the scan asks :func:`due_messages` for each virtual appointment it sees,
with the notification rows already claimed for it; the sender asks :func:`quiet_until`
before it texts. Each due message is claimed by a conditional insert keyed by (endpoint,
appointment, kind, offset, start instant), which is what makes it exactly once.

- **confirmation**: the first time the appointment is seen booked;
- **update**: the start moved after the patient was told a start (one per move; updates are
  numbered in ``offset_minutes``, so moving back to an earlier start is announced too);
- **cancellation**: cancelled after a confirmation;
- **reminder**: at each configured offset before the start (a reminder already more than
  :data:`LATE_GRACE` late when first seen is not sent: it would only confuse).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from pydantic import (
    AwareDatetime, BaseModel, BeforeValidator, ConfigDict, Field, WithJsonSchema, field_validator, model_validator,
)

from connector.domain.notification import NotificationClaim, NotificationKind, NotificationStatus, SkipReason
from connector.errors import rule_broken

LATE_GRACE = timedelta(minutes=15)
MAX_DELAY = timedelta(days=7)  # a Storage Queue message can be hidden seven days at most
BOOKED = frozenset({"booked", "pending"})
CANCELLED = frozenset({"cancelled"})
LANGUAGES = ("en", "es", "de", "fr")


# A clinic's local clock time, without an offset (JSON Schema's "time" format needs one).
CLOCK_TIME = r"^([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9])?$"
MIN_OFFSET, MAX_OFFSET = 5, 14 * 24 * 60  # minutes before the visit: 5 minutes to 14 days


def _clock_time(value):
    if isinstance(value, str):
        if not re.fullmatch(CLOCK_TIME, value):
            raise ValueError("must be a local clock time such as 21:00 (HH:MM or HH:MM:SS, no offset)")
        return time.fromisoformat(value)
    if isinstance(value, time) and value.tzinfo is not None:
        raise ValueError("must be a local clock time, without an offset")
    return value


ClockTime = Annotated[time, BeforeValidator(_clock_time), WithJsonSchema(
    {"type": "string", "pattern": CLOCK_TIME, "description": "local clock time in the endpoint's time zone"})]
# The range is checked by ReminderPolicy._offsets (with a sentence an admin can act on).
OffsetMinutes = Annotated[int, WithJsonSchema({"type": "integer", "minimum": MIN_OFFSET, "maximum": MAX_OFFSET})]


class VirtualVisitRule(BaseModel):
    """What marks an appointment as virtual: Cerner's video-visit markers (contained "Virtual
    Meeting Room" services or the Video Visit type), and/or codes the clinic uses."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cerner_video_visit: bool = True
    appointment_type_codes: tuple[str, ...] = Field(default=(), max_length=50)
    service_type_codes: tuple[str, ...] = Field(default=(), max_length=50)


class ReminderPolicy(BaseModel):
    """An endpoint's SMS policy (its locations and time zone are the endpoint's own). Quiet hours
    need a start and an end that differ, or both 00:00 for none (422 otherwise)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    enabled: bool = False
    confirmation: bool = True
    update: bool = True
    cancellation: bool = True
    # Distinct, kept in descending order (the document says uniqueItems: a repeat is a 400).
    reminder_offsets_minutes: tuple[OffsetMinutes, ...] = Field(default=(1440, 60), max_length=5,
                                                                json_schema_extra={"uniqueItems": True})
    quiet_hours_start: ClockTime = time(21, 0)  # local: nothing is sent from here ...
    quiet_hours_end: ClockTime = time(8, 0)  # ... to here, unless the visit is sooner
    default_language: str = Field(default="en", pattern=r"^(en|es|de|fr)$")
    country: str = Field(default="US", pattern=r"^(US|CA)$")
    look_ahead_days: int = Field(default=8, ge=1, le=30)
    virtual_visit: VirtualVisitRule = VirtualVisitRule()

    @field_validator("reminder_offsets_minutes")
    @classmethod
    def _offsets(cls, value: tuple[int, ...]) -> tuple[int, ...]:
        if any(not MIN_OFFSET <= offset <= MAX_OFFSET for offset in value):
            raise ValueError("reminder offsets must be between 5 minutes and 14 days")
        if len(set(value)) != len(value):
            raise ValueError("reminder offsets must differ")
        return tuple(sorted(value, reverse=True))

    @model_validator(mode="after")
    def _quiet_hours(self) -> "ReminderPolicy":
        # Between two fields, so no JSON Schema states it: a rule, answered 422 (the description says it).
        if self.quiet_hours_start == self.quiet_hours_end and self.quiet_hours_start != time(0):
            raise rule_broken("quiet hours need a start and an end that differ (or both 00:00 for none)")
        return self


@dataclass(frozen=True)
class AppointmentSnapshot:
    """What the scan knows of an appointment (read from FHIR, nothing about the patient but their id)."""

    appointment_id: str
    status: str
    start: datetime
    end: datetime
    patient_id: str | None
    location_id: str | None


@dataclass(frozen=True)
class Due:
    kind: NotificationKind
    appointment_start: datetime
    due_at: datetime
    offset_minutes: int = 0  # reminders only


def due_messages(appointment: AppointmentSnapshot, policy: ReminderPolicy, claims: list[NotificationClaim],
                 now: datetime) -> list[Due]:
    """The messages ``appointment`` is due that no row has claimed yet (``claims``: its rows)."""
    if not policy.enabled:
        return []
    # A reminder skipped because the visit had moved may be due again if it moves back.
    claimed = {(c.kind, c.offset_minutes, _utc(c.appointment_start)) for c in claims
               if not (c.kind is NotificationKind.reminder and c.skip_reason is SkipReason.moved)}
    told = [c for c in claims if c.kind in (NotificationKind.confirmation, NotificationKind.update)
            and c.status is not NotificationStatus.skipped]
    confirmed = any(c.kind is NotificationKind.confirmation for c in claims)
    updates = sum(1 for c in claims if c.kind is NotificationKind.update)
    start = appointment.start
    due: list[Due] = []

    def add(kind: NotificationKind, due_at: datetime, offset: int = 0) -> None:
        if (kind, offset, _utc(start)) not in claimed:
            due.append(Due(kind, start, due_at, offset))

    if appointment.status in CANCELLED:
        if policy.cancellation and told and start > now:
            if not any(c.kind is NotificationKind.cancellation for c in claims):
                add(NotificationKind.cancellation, now)
        return due
    if appointment.status not in BOOKED or start <= now:
        return due
    if not confirmed:
        if policy.confirmation:
            add(NotificationKind.confirmation, now)
    elif told and policy.update:
        latest = max(told, key=lambda c: c.claimed_at)
        if _utc(latest.appointment_start) != _utc(start):
            # Numbered, so a visit moved back to a start announced before is announced again.
            add(NotificationKind.update, now, updates)
    for offset in policy.reminder_offsets_minutes:
        at = start - timedelta(minutes=offset)
        if at < now - LATE_GRACE or at > now + MAX_DELAY:
            continue  # too late to be useful, or a later scan will claim it
        add(NotificationKind.reminder, max(at, now), offset)
    return due


def quiet_until(now: datetime, policy: ReminderPolicy, zone: ZoneInfo, visit_start: datetime) -> datetime | None:
    """When a message due ``now`` may go, if ``now`` is in the clinic's quiet hours and the visit
    is not sooner than their end; else None (send now)."""
    start, end = policy.quiet_hours_start, policy.quiet_hours_end
    if start == end:
        return None
    local = now.astimezone(zone)
    clock = local.time()
    quiet = (start <= clock < end) if start < end else (clock >= start or clock < end)
    if not quiet:
        return None
    end_day = local.date() if clock < end else local.date() + timedelta(days=1)
    ends = datetime.combine(end_day, end, zone)
    return None if visit_start <= ends else ends


def _utc(moment: datetime) -> datetime:
    from datetime import timezone

    return moment.astimezone(timezone.utc)


class PreviewAppointment(BaseModel):
    """A sample appointment for the admin's template preview (no real patient)."""

    model_config = ConfigDict(extra="forbid")

    start: AwareDatetime | None = None
