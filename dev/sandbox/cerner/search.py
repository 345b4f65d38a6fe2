"""Search rules, as Cerner enforces them for the resources the connector reads.

Appointment (fhir.cerner.com/millennium/r4/base/workflow/appointment/#search; the rules that
shape the connector's reminder scan and its launch):

- ``_id`` (comma list) alone; *or* exactly one of ``patient`` / ``practitioner`` /
  ``location`` (comma lists, bare ids or ``Type/id``) plus ``date`` (or
  ``-date-or-req-period``). "The patient, practitioner, and location parameters may be
  included only once and may not be used in combination": ``patient=1&practitioner=2`` is a
  400, so a caller that knows both searches by patient and filters on the practitioner;
- ``date`` is given "once with a prefix and time component" or "twice with the prefixes ge
  and lt ... [to] define an upper and lower bound": only ``ge`` and ``lt``, always with a
  time and a zone (``date=ge2019-12-07T22:22:16.270Z``). A bare date, ``eq``, ``gt`` or
  ``le`` is a 400 here (a Cerner integrator's code says it too: "They allow only 'ge' and
  'lt', and they require a timestamp");
- "Search by date returns appointments with a status other than proposed that start or end
  within the date range provided"; ``-date-or-req-period`` also returns proposed ones whose
  requested period starts or ends in it. Either may be given, not both;
- ``status`` (comma list) filters. Results are sorted by ``start``, earliest first.

Patient, Practitioner, Location: ``_id``. Encounter: ``_id``, or ``patient``/``subject``
(plus optional ``status``). Unknown parameters are a 400, not silently ignored: a
connector that sends a parameter Cerner does not know should find out here.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone
from zoneinfo import ZoneInfo

from .store import Resource

APPOINTMENT_STATUSES = ("proposed", "pending", "booked", "arrived", "fulfilled", "cancelled", "noshow",
                        "entered-in-error", "checked-in", "waitlist")
ENCOUNTER_STATUSES = ("planned", "arrived", "triaged", "in-progress", "onleave", "finished", "cancelled",
                      "entered-in-error", "unknown")
ACTORS = {"patient": "Patient", "practitioner": "Practitioner", "location": "Location"}
DATE_PARAMS = ("date", "-date-or-req-period")

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
    date_params = [name for name in DATE_PARAMS if _values(params, name)]
    if _values(params, "_id"):
        if actors or date_params:
            raise SearchError("The '_id' parameter cannot be combined with 'patient', 'practitioner', "
                              "'location', 'date' or '-date-or-req-period'.")
        by_id = _by_id(params, tz)
        return SearchQuery(lambda r: by_id.predicate(r) and (statuses is None or r["status"] in statuses),
                           honours_count=False)
    if not actors:
        raise SearchError("Either the '_id' parameter or one of the 'patient', 'practitioner' or 'location' "
                          "parameters must be set.")
    if len(actors) > 1:
        raise SearchError("The 'patient', 'practitioner' and 'location' parameters may not be used in "
                          f"combination; got {', '.join(repr(a) for a in actors)}. Only one of them may be set.")
    name = actors[0]
    value = _single(params, name)
    assert value is not None
    references = {f"{ACTORS[name]}/{i}" for i in _ids(value, name, ACTORS[name])}
    if not date_params:
        raise SearchError("The 'date' or '-date-or-req-period' parameter must be set when searching by "
                          "'patient', 'practitioner' or 'location'.")
    if len(date_params) > 1:
        raise SearchError("Either the 'date' or the '-date-or-req-period' parameter may be provided, not both.")
    in_range = date_range(_values(params, date_params[0]), tz)
    with_requests = date_params[0] == "-date-or-req-period"

    def matches(resource: Resource) -> bool:
        actors_of = {p.get("actor", {}).get("reference") for p in resource.get("participant", [])}
        if not references & actors_of or (statuses is not None and resource["status"] not in statuses):
            return False
        if resource["status"] == "proposed":
            # "Search by -date-or-req-period ... also returns appointments with a status of
            # proposed that either are requested to start or end between the dates provided."
            return with_requests and any(_starts_or_ends_in(period, in_range)
                                         for period in resource.get("requestedPeriod", []))
        # "Search by date returns appointments with a status other than proposed that start
        # or end within the date range provided."
        return _starts_or_ends_in(resource, in_range)

    return SearchQuery(matches)


def _starts_or_ends_in(element: Resource, in_range: Callable[[datetime], bool]) -> bool:
    moments = [element.get("start"), element.get("end")]
    return any(in_range(_moment(m)) for m in moments if m)


def _moment(value: str) -> datetime:
    """An instant from a FHIR dateTime; a bare date (proposed requests) is its UTC midnight."""
    moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
    return moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)


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
    "Appointment": (frozenset({"_id", "patient", "practitioner", "location", *DATE_PARAMS, "status"}),
                    _appointment),
    "Encounter": (frozenset({"_id", "patient", "subject", "status"}), _encounter),
    "Patient": (frozenset({"_id"}), _by_id),
    "Practitioner": (frozenset({"_id"}), _by_id),
    "Location": (frozenset({"_id"}), _by_id),
}

# -- dates ------------------------------------------------------------------------------

# A prefix, then a dateTime with seconds and a zone: Cerner wants "a prefix and time
# component" and (appointment.md) only the prefixes ge and lt.
_DATE_VALUE = re.compile(r"^(eq|ne|gt|lt|ge|le|sa|eb|ap)?(\d{4}-\d{2}-\d{2})(T\d{2}:\d{2}:\d{2}(\.\d{1,9})?"
                         r"(Z|[+-]\d{2}:\d{2})?)?$")
_PREFIXES = ("ge", "lt")


@dataclass(frozen=True)
class DateBound:
    """One ``date`` value: ``ge`` (at or after) or ``lt`` (before) an instant."""

    prefix: str
    moment: datetime  # aware, UTC

    def admits(self, moment: datetime) -> bool:
        return moment >= self.moment if self.prefix == "ge" else moment < self.moment


def parse_date(value: str, tz: ZoneInfo) -> DateBound:
    """``ge`` or ``lt`` and a dateTime with a time zone, e.g. ``ge2019-12-07T22:22:16.270Z``.

    ``tz`` is unused: Cerner takes no zone-less values, so none is interpreted locally
    (kept in the signature for callers that pass the clinic's zone).
    """
    match = _DATE_VALUE.match(value)
    if not match:
        raise SearchError(f"Invalid date value '{value}': expected geYYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm) or "
                          "ltYYYY-MM-DDThh:mm:ss[.sss](Z|+hh:mm).")
    prefix, time_part, zone = match.group(1), match.group(3), match.group(5)
    if prefix not in _PREFIXES:
        raise SearchError(f"Unsupported date prefix '{prefix or ''}' in '{value}': the value needs the prefix "
                          "'ge' or 'lt'.")
    if time_part is None:
        raise SearchError(f"The date value '{value}' needs a time component, e.g. "
                          f"{prefix}{match.group(2)}T00:00:00.000Z.")
    if zone is None:
        raise SearchError(f"The date value '{value}' has a time but no time zone (add Z or an offset).")
    try:
        moment = datetime.fromisoformat(match.group(2) + time_part.replace("Z", "+00:00"))
    except ValueError:
        raise SearchError(f"Invalid date value '{value}'.") from None
    return DateBound(prefix, moment.astimezone(timezone.utc))


def date_range(values: list[str], tz: ZoneInfo) -> Callable[[datetime], bool]:
    """The range ``values`` stand for: one ``ge`` or ``lt`` bound, or one of each."""
    if len(values) > 2:
        raise SearchError("The date parameter may be given at most twice.")
    bounds = [parse_date(v, tz) for v in values]
    if len(bounds) == 2 and sorted(b.prefix for b in bounds) != ["ge", "lt"]:
        raise SearchError("When the date parameter is given twice it must define a lower and an upper bound: "
                          "one 'ge' value and one 'lt' value.")
    return lambda moment: all(b.admits(moment) for b in bounds)
