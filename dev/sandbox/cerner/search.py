"""Search rules, as Cerner enforces them for the resources the connector reads.

Appointment (the rules that shape the connector's reminder scan):

- ``_id`` (comma list) alone; *or* exactly one of ``patient`` / ``practitioner`` /
  ``location`` (comma lists, bare ids or ``Type/id``) plus ``date``;
- ``date`` matches ``Appointment.start``; given once (``eq`` when unprefixed, a date means
  the whole local day, a dateTime needs a zone) or twice as a closed range (one of
  ``ge``/``gt`` and one of ``le``/``lt``); one prefixed value is an open range, as in
  Cerner's published example ``date=ge2020-01-01T22:22:16.270Z``;
- ``status`` (comma list) filters.

Patient, Practitioner, Location: ``_id``. Encounter: ``_id``, or ``patient``/``subject``
(plus optional ``status``). Unknown parameters are a 400, not silently ignored: a
connector that sends a parameter Cerner does not know should find out here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

from .store import Resource

APPOINTMENT_STATUSES = ("proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                        "entered-in-error", "checked-in", "waitlist")
ENCOUNTER_STATUSES = ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                      "entered-in-error", "unknown")
ACTORS = {"patient": "Patient", "practitioner": "Practitioner", "location": "Location"}

Params = list[tuple[str, str]]
Predicate = Callable[[Resource], bool]


class SearchError(ValueError):
    """A search the server refuses (400), with the diagnostics the caller will read."""


@dataclass(frozen=True)
class SearchQuery:
    predicate: Predicate
    honours_count: bool = True  # Cerner: "_count ... Not honored when '_id' is set"


def build_query(resource_type: str, params: Params, tz: ZoneInfo) -> SearchQuery:
    rules = _RULES.get(resource_type)
    if rules is None:
        raise SearchError(f"Search is not supported for {resource_type} in this simulator.")
    allowed, build = rules
    for name, _ in params:
        if name not in allowed and name != "_count":
            supported = ", ".join(f"'{n}'" for n in sorted(allowed | {"_count"}))
            raise SearchError(f"Unsupported search parameter '{name}' for {resource_type}. Supported: {supported}.")
    return build(params, tz)


def _values(params: Params, name: str) -> list[str]:
    return [value for key, value in params if key == name]


def _single(params: Params, name: str) -> str | None:
    values = _values(params, name)
    if len(values) > 1:
        raise SearchError(f"The '{name}' parameter may be given only once.")
    if values and not values[0]:
        raise SearchError(f"The '{name}' parameter must not be empty.")
    return values[0] if values else None


def _ids(value: str, name: str, resource_type: str) -> set[str]:
    ids = set()
    for item in value.split(","):
        item = item.strip().removeprefix(f"{resource_type}/")
        if not re.fullmatch(r"[A-Za-z0-9\-.]{1,64}", item):
            raise SearchError(f"The '{name}' parameter must be a comma separated list of {resource_type} ids.")
        ids.add(item)
    return ids


def _codes(value: str | None, name: str, allowed: tuple[str, ...]) -> set[str] | None:
    if value is None:
        return None
    codes = set(value.split(","))
    bad = sorted(codes - set(allowed))
    if bad:
        raise SearchError(f"Invalid '{name}' value(s) {bad}. Allowed: {', '.join(allowed)}.")
    return codes


def _by_id(params: Params, tz: ZoneInfo) -> SearchQuery:
    value = _single(params, "_id")
    if value is None:
        raise SearchError("The '_id' parameter must be set.")
    ids = _ids(value, "_id", "")
    return SearchQuery(lambda r: r["id"] in ids, honours_count=False)


def _appointment(params: Params, tz: ZoneInfo) -> SearchQuery:
    actors = [name for name in ACTORS if _values(params, name)]
    statuses = _codes(_single(params, "status"), "status", APPOINTMENT_STATUSES)
    if _values(params, "_id"):
        if actors or _values(params, "date"):
            raise SearchError("The '_id' parameter cannot be combined with 'patient', 'practitioner', "
                              "'location' or 'date'.")
        by_id = _by_id(params, tz)
        return SearchQuery(lambda r: by_id.predicate(r) and (statuses is None or r["status"] in statuses),
                           honours_count=False)
    if not actors:
        raise SearchError("Either the '_id' parameter or one of the 'patient', 'practitioner' or 'location' "
                          "parameters must be set.")
    if len(actors) > 1:
        raise SearchError("Only one of the 'patient', 'practitioner' or 'location' parameters may be set; "
                          f"got {', '.join(repr(a) for a in actors)}.")
    name = actors[0]
    value = _single(params, name)
    assert value is not None
    references = {f"{ACTORS[name]}/{i}" for i in _ids(value, name, ACTORS[name])}
    dates = _values(params, "date")
    if not dates:
        raise SearchError("The 'date' parameter must be set when searching by 'patient', 'practitioner' or "
                          "'location'.")
    in_range = date_range(dates, tz)

    def matches(resource: Resource) -> bool:
        actors_of = {p.get("actor", {}).get("reference") for p in resource.get("participant", [])}
        start = resource.get("start")
        return (bool(references & actors_of) and start is not None
                and in_range(datetime.fromisoformat(start))
                and (statuses is None or resource["status"] in statuses))

    return SearchQuery(matches)


def _encounter(params: Params, tz: ZoneInfo) -> SearchQuery:
    subjects = [name for name in ("patient", "subject") if _values(params, name)]
    statuses = _codes(_single(params, "status"), "status", ENCOUNTER_STATUSES)
    if _values(params, "_id"):
        if subjects:
            raise SearchError("The '_id' parameter cannot be combined with 'patient' or 'subject'.")
        return _by_id(params, tz)
    if len(subjects) != 1:
        raise SearchError("Exactly one of the '_id', 'patient' or 'subject' parameters must be set.")
    value = _single(params, subjects[0])
    assert value is not None
    references = {f"Patient/{i}" for i in _ids(value, subjects[0], "Patient")}
    return SearchQuery(lambda r: r["subject"]["reference"] in references
                       and (statuses is None or r["status"] in statuses))


_RULES: dict[str, tuple[frozenset[str], Callable[[Params, ZoneInfo], SearchQuery]]] = {
    "Appointment": (frozenset({"_id", "patient", "practitioner", "location", "date", "status"}), _appointment),
    "Encounter": (frozenset({"_id", "patient", "subject", "status"}), _encounter),
    "Patient": (frozenset({"_id"}), _by_id),
    "Practitioner": (frozenset({"_id"}), _by_id),
    "Location": (frozenset({"_id"}), _by_id),
}

# -- dates ------------------------------------------------------------------------------

_DATE_VALUE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}-\d{2}-\d{2}(T.*)?)$")
_LOWER, _UPPER = ("ge", "gt"), ("le", "lt")


@dataclass(frozen=True)
class DateBound:
    """A search value as the interval [low, high) it stands for, and how to compare."""

    prefix: str
    low: datetime
    high: datetime

    def admits(self, moment: datetime) -> bool:
        return {
            "eq": lambda: self.low <= moment < self.high,
            "ge": lambda: moment >= self.low,
            "gt": lambda: moment >= self.high,
            "le": lambda: moment < self.high,
            "lt": lambda: moment < self.low,
        }[self.prefix]()


def parse_date(value: str, tz: ZoneInfo) -> DateBound:
    match = _DATE_VALUE.match(value)
    if not match:
        raise SearchError(f"Invalid 'date' value '{value}': expected [prefix]YYYY-MM-DD or "
                          "[prefix]YYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm).")
    prefix, text, time_part = match.group(1) or "eq", match.group(2), match.group(3)
    if prefix not in ("eq", *_LOWER, *_UPPER):
        raise SearchError(f"Unsupported 'date' prefix '{prefix}'. Supported: ge, gt, le, lt (or none).")
    try:
        if time_part is None:
            # A date is the whole local day (23 or 25 hours when DST changes). Bounds are kept
            # in UTC: Python compares two datetimes sharing one tzinfo by wall time.
            day = date.fromisoformat(text)
            low, high = (datetime.combine(d, datetime.min.time(), tz).astimezone(timezone.utc)
                         for d in (day, day + timedelta(days=1)))
            return DateBound(prefix, low, high)
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise SearchError(f"Invalid 'date' value '{value}'.") from None
    if moment.tzinfo is None:
        raise SearchError(f"The 'date' value '{value}' has a time but no time zone (add Z or an offset).")
    # The value's precision is its interval: to the millisecond, second or minute given.
    digits = len(time_part.split("+")[0].split("-")[0].rstrip("Z"))
    step = {6: timedelta(minutes=1), 9: timedelta(seconds=1)}.get(digits, timedelta(milliseconds=1))
    moment = moment.astimezone(timezone.utc)
    return DateBound(prefix, moment, moment + step)


def date_range(values: list[str], tz: ZoneInfo) -> Callable[[datetime], bool]:
    bounds = [parse_date(v, tz) for v in values]
    if len(bounds) > 2:
        raise SearchError("The 'date' parameter may be given at most twice.")
    if len(bounds) == 2:
        prefixes = sorted(b.prefix in _LOWER for b in bounds)
        if prefixes != [False, True] or any(b.prefix == "eq" for b in bounds):
            raise SearchError("When 'date' is given twice it must form a closed range: one 'ge' or 'gt' "
                              "value and one 'le' or 'lt' value.")
    return lambda moment: all(b.admits(moment) for b in bounds)
