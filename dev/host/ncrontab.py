"""NCRONTAB schedules as Azure Functions timers spell them, computed with croniter.

Functions uses six fields with SECONDS FIRST::

    {second} {minute} {hour} {day} {month} {day-of-week}

croniter's six-field form puts seconds LAST, so the fields are reordered here rather than
relying on a croniter option. NCrontab requires BOTH day-of-month and day-of-week to match
when both are restricted (``0 0 0 13 * Fri`` is Friday the 13th), unlike classic cron's OR,
hence ``day_or=False``. Occurrences are computed in UTC, the host's default time zone.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone

from croniter import CroniterError, croniter

from dev.host.config import resolve_setting_refs

_FORMAT = "{second} {minute} {hour} {day} {month} {day-of-week}"
# Seconds..day take numbers only; month and day-of-week also take names (Jan, Mon).
_NUMERIC_FIELD = re.compile(r"^[0-9*,/\-]+$")
_NAMED_FIELD = re.compile(r"^[0-9A-Za-z*,/\-]+$")
_FIELD_NAMES = ("second", "minute", "hour", "day", "month", "day-of-week")


def _invalid(schedule: str, reason: str) -> ValueError:
    return ValueError(f"invalid NCRONTAB schedule {schedule!r}: {reason}; expected {_FORMAT}")


def to_croniter_expression(schedule: str) -> str:
    """Reorder a six-field NCRONTAB expression for croniter (seconds moved to the end)."""
    fields = schedule.split()
    if len(fields) != 6:
        raise _invalid(schedule, f"{len(fields)} field(s) instead of 6")
    for name, field in zip(_FIELD_NAMES, fields, strict=True):
        pattern = _NAMED_FIELD if name in ("month", "day-of-week") else _NUMERIC_FIELD
        if not pattern.match(field):
            raise _invalid(schedule, f"unsupported characters in the {name} field {field!r}")
    second, *rest = fields
    return " ".join([*rest, second])


@dataclass(frozen=True)
class NcrontabSchedule:
    """A validated schedule; ``expression`` is the resolved NCRONTAB text."""

    expression: str
    cron_expression: str

    def next_after(self, moment: datetime) -> datetime:
        """The first occurrence strictly after ``moment`` (timezone-aware), in UTC."""
        if moment.tzinfo is None:
            raise ValueError("next_after needs a timezone-aware datetime")
        start = moment.astimezone(timezone.utc)
        return croniter(self.cron_expression, start, day_or=False).get_next(datetime)


def parse_schedule(
    schedule: str, environ: Mapping[str, str] | None = None, used_by: str = ""
) -> NcrontabSchedule:
    """Resolve ``%SETTING%`` references from ``environ`` (default ``os.environ``) and validate.

    Raises ``ValueError`` (``MissingSettingError`` for an unset setting) with a message that
    names the schedule, so a bad timer fails at host start rather than silently never firing.
    """
    resolved = resolve_setting_refs(schedule, os.environ if environ is None else environ, used_by)
    cron_expression = to_croniter_expression(resolved)
    if not _is_valid(cron_expression):
        raise _invalid(resolved, _first_bad_field(resolved))
    parsed = NcrontabSchedule(expression=resolved, cron_expression=cron_expression)
    try:
        parsed.next_after(datetime(2000, 1, 1, tzinfo=timezone.utc))
    except CroniterError as exc:  # e.g. "0 0 0 30 2 *": valid fields, no such date
        raise _invalid(resolved, "it never occurs") from exc
    return parsed


def _is_valid(cron_expression: str) -> bool:
    try:
        croniter(cron_expression, datetime(2000, 1, 1, tzinfo=timezone.utc), day_or=False)
    except (CroniterError, ValueError, KeyError):
        return False
    return True


def _first_bad_field(schedule: str) -> str:
    """Name the offending field (croniter's own message quotes its reordered expression,
    which would only confuse someone reading an NCRONTAB schedule)."""
    fields = schedule.split()
    for index, (name, field) in enumerate(zip(_FIELD_NAMES, fields, strict=True)):
        probe = ["*"] * 6
        probe[index] = field
        if not _is_valid(to_croniter_expression(" ".join(probe))):
            return f"the {name} field {field!r} is out of range or malformed"
    return "the fields do not combine into a valid schedule"
