"""The patient's mobile number for SMS, read from FHIR at send time and normalised to E.164.

Cerner sends US numbers as bare digits (``9132684302``); SMS needs E.164 (``+19132684302``).
The normaliser is deliberately small (no phonenumbers dependency). It knows:
- the North American Numbering Plan (NANP) fully enough for SMS: 10 digits, optional leading 1,
  area code and exchange starting 2-9 and not N11, any of ``( ) - . /`` and spaces;
- numbers already written internationally (``+44 20 7946 0958``, ``+44 (0)20 ...``): kept if
  they have 7-15 digits and a country code not starting with 0. Only +1 numbers are checked
  against their national plan; other countries' plans are not validated.
National numbers of countries outside NANP cannot be interpreted (``ValueError`` for such a
``default_region``), nor are international dialling prefixes (``011``, ``00``) or extensions.
"""

from __future__ import annotations

from datetime import UTC, date, datetime

from fhir.resources.R4B.patient import Patient
from fhir.resources.R4B.period import Period

# NANP members that use ISO codes we expect in practice: the US, its territories, Canada.
NANP_REGIONS = frozenset({"US", "CA", "PR", "VI", "GU", "AS", "MP"})

# Digits (ASCII only: str.isdigit also accepts other scripts) and the punctuation people write.
_ALLOWED = frozenset("0123456789 -.()/")
_NANP_LEADING = frozenset("23456789")


def mobile_phone_e164(
    patient: Patient, default_region: str = "US", *, now: datetime | None = None
) -> str | None:
    """The patient's preferred mobile number as E.164, or None if there is no usable one.

    Candidates: ``Patient.telecom`` entries with system phone or sms, use mobile, a value, and
    a period in effect ``now``; by rank (1 first, unranked last), then document order. The
    first candidate that normalises wins, so one garbled entry does not hide a good one.
    Contacts' numbers (``Patient.contact``) are not the patient's and are never used."""
    _check_region(default_region)
    moment = now or datetime.now(UTC)
    candidates = [
        (point.rank is None, point.rank or 0, i, point.value)
        for i, point in enumerate(patient.telecom or [])
        if point.system in ("phone", "sms")
        and point.use == "mobile"
        and point.value
        and _in_effect(point.period, moment)
    ]
    for *_, value in sorted(candidates):
        number = normalize_phone_e164(value, default_region)
        if number:
            return number
    return None


def normalize_phone_e164(raw: str, default_region: str = "US") -> str | None:
    """``raw`` as E.164 (``+15555551234``), or None if it is not a number we can dial.

    ``default_region`` says how to read numbers without ``+``; only NANP regions are known."""
    _check_region(default_region)
    text = raw.strip()
    if text[:4].lower() == "tel:":  # RFC 3966 form, e.g. tel:+1-555-555-1234
        text = text[4:]
    international = text.startswith("+")
    if international:
        # "(0)" marks a national trunk prefix that is not dialled from abroad: +44 (0)20 ...
        text = text[1:].replace("(0)", "", 1)
    if not text or not set(text) <= _ALLOWED:
        return None
    digits = "".join(ch for ch in text if ch.isdigit())
    if international and not digits.startswith("1"):
        return f"+{digits}" if 7 <= len(digits) <= 15 and digits[0] != "0" else None
    if len(digits) == 11 and digits.startswith("1"):
        digits = digits[1:]
    return _nanp(digits)


def _check_region(region: str) -> None:
    if region not in NANP_REGIONS:
        raise ValueError(f"default_region must be a NANP region {sorted(NANP_REGIONS)}")


def _nanp(ten: str) -> str | None:
    area, exchange = ten[:3], ten[3:6]
    valid = (
        len(ten) == 10
        and area[0] in _NANP_LEADING
        and exchange[0] in _NANP_LEADING
        and area[1:] != "11"  # N11 codes (211, 911, ...) are service codes, not numbers
        and exchange[1:] != "11"
    )
    return f"+1{ten}" if valid else None


def _in_effect(period: Period | None, now: datetime) -> bool:
    """Started and not ended at ``now``. FHIR dateTime may be a year, year-month or date:
    a start counts from its first instant, an end lasts until its last."""
    if period is None:
        return True
    if period.start is not None and now < _bounds(period.start)[0]:
        return False
    return period.end is None or now < _bounds(period.end)[1]


def _bounds(value: str | date | datetime) -> tuple[datetime, datetime]:
    """First instant of ``value`` and the instant after its last, in UTC."""
    if isinstance(value, datetime):
        instant = value if value.tzinfo else value.replace(tzinfo=UTC)
        return instant, instant
    if isinstance(value, date):
        start = datetime(value.year, value.month, value.day, tzinfo=UTC)
        return start, datetime.fromordinal(value.toordinal() + 1).replace(tzinfo=UTC)
    year, _, month = str(value).partition("-")  # R4B keeps "YYYY" and "YYYY-MM" as strings
    if month:
        start = datetime(int(year), int(month), 1, tzinfo=UTC)
        after = datetime(int(year) + int(month) // 12, int(month) % 12 + 1, 1, tzinfo=UTC)
        return start, after
    return (
        datetime(int(year), 1, 1, tzinfo=UTC),
        datetime(int(year) + 1, 1, 1, tzinfo=UTC),
    )
