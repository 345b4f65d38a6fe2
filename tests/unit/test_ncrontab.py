"""NCRONTAB (seconds first, as Functions timers spell it) converted for croniter."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest

from dev.host.config import MissingSettingError
from dev.host.ncrontab import parse_schedule, to_croniter_expression


def utc(year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0) -> datetime:
    return datetime(year, month, day, hour, minute, second, tzinfo=timezone.utc)


def test_seconds_move_from_first_to_last_for_croniter() -> None:
    assert to_croniter_expression("0 */5 * * * *") == "*/5 * * * * 0"
    assert to_croniter_expression("0 30 9 * * 1-5") == "30 9 * * 1-5 0"


@pytest.mark.parametrize(
    ("schedule", "after", "expected"),
    [
        ("0 */5 * * * *", utc(2024, 1, 1, 0, 2, 30), utc(2024, 1, 1, 0, 5, 0)),
        # Strictly after: an occurrence equal to the base time is not returned.
        ("0 */5 * * * *", utc(2024, 1, 1, 0, 5, 0), utc(2024, 1, 1, 0, 10, 0)),
        ("*/10 * * * * *", utc(2024, 1, 1, 0, 0, 1), utc(2024, 1, 1, 0, 0, 10)),
        ("*/10 * * * * *", utc(2024, 1, 1, 0, 0, 55), utc(2024, 1, 1, 0, 1, 0)),
        # Friday 10:00 -> Monday 09:30 (weekdays only).
        ("0 30 9 * * 1-5", utc(2024, 1, 5, 10, 0, 0), utc(2024, 1, 8, 9, 30, 0)),
        ("0 30 9 * * Mon-Fri", utc(2024, 1, 5, 10, 0, 0), utc(2024, 1, 8, 9, 30, 0)),
        # NCrontab ANDs day-of-month with day-of-week: the next Friday the 13th.
        ("0 0 0 13 * 5", utc(2024, 1, 1), utc(2024, 9, 13)),
        ("0 0 12 1 Jan *", utc(2024, 6, 1), utc(2025, 1, 1, 12)),
    ],
)
def test_next_occurrence_in_utc(schedule: str, after: datetime, expected: datetime) -> None:
    assert parse_schedule(schedule, {}).next_after(after) == expected


def test_next_occurrence_converts_other_time_zones_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    nxt = parse_schedule("0 0 * * * *", {}).next_after(datetime(2024, 1, 1, 10, 30, tzinfo=plus_two))
    assert nxt == utc(2024, 1, 1, 9, 0) and nxt.tzinfo == timezone.utc


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        parse_schedule("0 0 * * * *", {}).next_after(datetime(2024, 1, 1))


def test_setting_reference_resolves_from_the_environment() -> None:
    schedule = parse_schedule("%MY_SCHEDULE%", {"MY_SCHEDULE": "*/10 * * * * *"})
    assert schedule.expression == "*/10 * * * * *"
    assert schedule.next_after(utc(2024, 1, 1, 0, 0, 3)) == utc(2024, 1, 1, 0, 0, 10)


def test_missing_setting_is_named_in_the_error() -> None:
    with pytest.raises(MissingSettingError, match="MY_SCHEDULE") as error:
        parse_schedule("%MY_SCHEDULE%", {}, used_by="reminder_scan")
    assert "reminder_scan" in str(error.value)
    assert isinstance(error.value, ValueError)


@pytest.mark.parametrize(
    ("schedule", "reason"),
    [
        ("* * * * *", "5 field"),  # classic 5-field cron: seconds are required
        ("", "0 field"),
        ("0 0 0 * * * *", "7 field"),
        ("61 * * * * *", "second field '61'"),
        ("0 0 25 * * *", "hour field '25'"),
        ("0 0 0 0 * *", "day field '0'"),
        ("0 0 0 * 13 *", "month field '13'"),
        ("0 0 0 * * 8", "day-of-week field '8'"),
        ("*/0 * * * * *", "second field"),
        ("0 0 0 L * *", "unsupported characters in the day field"),
        ("0 0 0 * * 5#3", "unsupported characters in the day-of-week field"),
        ("0 0 0 30 2 *", "never occurs"),
    ],
)
def test_bad_schedules_are_rejected_clearly(schedule: str, reason: str) -> None:
    with pytest.raises(ValueError, match="invalid NCRONTAB schedule") as error:
        parse_schedule(schedule, {})
    assert reason in str(error.value)
    assert "{second} {minute} {hour} {day} {month} {day-of-week}" in str(error.value)
