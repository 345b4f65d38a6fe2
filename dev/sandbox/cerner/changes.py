"""Appointments that change after the seed, for the reminder tests: reschedules, cancellations,
and a bulk "week" of booked appointments for scale tests. Sandbox-only: in Cerner these
happen inside Millennium (a scheduler moves or cancels a visit), not through FHIR.

What a change looks like from FHIR, as in Cerner: the same Appointment id, ``meta.versionId``
moved on (``N`` -> ``N+1``; a video visit keeps its second part, ``2-1`` -> ``3-1``),
``meta.lastUpdated`` the moment of the change, so a reader's ETag / If-Match no longer matches.

- reschedule: ``start``, ``end``, ``minutesDuration`` and ``requestedPeriod`` move (video
  visits keep Cerner's UTC-with-milliseconds form, in-person ones the clinic's offset), the
  narrative follows, an optional reason goes into Cerner's ``reschedule-reason`` extension,
  and the visit's Encounter moves with it. Only ``proposed`` and ``booked`` appointments can
  be rescheduled (Cerner's ``is-reschedulable``). Whether Millennium keeps the id on every
  kind of reschedule is not documented; the sandbox keeps it, so a reminder keyed on
  (appointment, kind, start) meets a new start on the same id;
- cancel: ``status`` = ``cancelled`` (from any status Cerner's patch sequences can cancel),
  a ``cancelationReason`` (the standard coding and the reason's text), ``is-cancelable`` and
  ``is-reschedulable`` false, the Encounter ``cancelled``;
- bulk: ``count`` booked appointments at one Location from ``start``, evenly spread over
  ``spread_hours``, every ``1/video_ratio``-th a video visit, for ``patients`` new patients
  in turn (and the seed's practitioners in turn). No Encounters: scans do not need them.

Bulk patients' mobile numbers are fictional: the NANP reserves 555-0100 to 555-0199 for
fiction in *every* area code, so patient ``k`` (counted across all bulk calls) gets
``{BULK_AREA_CODES[k // 100]}-555-01{k % 100:02}``, starting in area code 773 so that no
bulk number equals a seeded one (312-555-01xx). That gives ``MAX_BULK_PATIENTS`` (1600)
distinct numbers. Names are drawn from short fictional lists; every fifth patient prefers
Spanish (Cerner's code 154).
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from datetime import date, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from . import shapes
from .patch import TRANSITIONS
from .seed import ENGLISH, SPANISH, display, is_video_visit
from .shapes import CERNER_EXT, Tenant
from .store import Resource, ResourceStore, instant

# Illinois area codes (Chicago first), 312 left out: the seed's numbers are 312-555-01xx.
BULK_AREA_CODES = ("773", "872", "630", "331", "708", "464", "847", "224", "815", "779", "217", "447", "309", "861",
                   "618", "730")
MAX_BULK_PATIENTS = 100 * len(BULK_AREA_CODES)
MAX_BULK_COUNT = 5000
MAX_SPREAD_HOURS = 24 * 31
FIRST_BULK_PATIENT_ID = 12760001
FIRST_BULK_APPOINTMENT_ID = 4840001
RESCHEDULABLE = ("proposed", "booked")
_FAMILIES = ("ABBOTT", "BANERJEE", "CASTILLO", "DUBOIS", "EZE", "FISCHER", "GUPTA", "HOLM", "IBRAHIM", "JANSEN",
             "KIM", "LARSEN", "MENDEZ", "NOVAK", "OYELARAN", "PETROV", "QUINN", "ROSSI", "SATO", "TANAKA")
_GIVENS = ("ALEX", "BEA", "CARLOS", "DANA", "ELI", "FARAH", "GRETA", "HUGO", "INES", "JONAS", "KEMI", "LUIS",
           "MAYA", "NIKO", "OLGA", "PRIYA", "RAFAEL", "SANA", "TOMAS", "UMA")
_MINUTES = (15, 20, 30)
_REASONS = ("Follow-up", "Medication review", "Blood pressure check", "Lab results", "Annual visit")


class ChangeRefused(ValueError):
    """The change cannot be made (unknown appointment: ``status`` 404; wrong state: 409; bad input: 400)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.status = status


def moment(value: Any, tz: ZoneInfo, name: str = "start") -> datetime:
    """An ISO 8601 date-time; one without an offset is read in the clinic's zone."""
    if not isinstance(value, str):
        raise ChangeRefused(f"'{name}' must be an ISO 8601 date-time string")
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise ChangeRefused(f"'{name}' is not an ISO 8601 date-time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=tz)


# -- reschedule and cancel ----------------------------------------------------------------------


def reschedule(store: ResourceStore, appointment_id: str, start: datetime, minutes: int | None, *,
               tz: ZoneInfo, now: datetime, reason: str | None = None) -> Resource:
    if minutes is not None and (isinstance(minutes, bool) or not isinstance(minutes, int) or not 1 <= minutes <= 1440):
        raise ChangeRefused("'minutes' must be a whole number of minutes from 1 to 1440")

    def move(appointment: Resource) -> None:
        if appointment["status"] not in RESCHEDULABLE:
            raise ChangeRefused(f"a {appointment['status']} appointment cannot be rescheduled", 409)
        duration = minutes or appointment.get("minutesDuration") or _minutes_between(appointment)
        end = start + timedelta(minutes=duration)
        video = is_video_visit(appointment)
        fmt = instant if video else (lambda m: m.astimezone(tz).isoformat(timespec="seconds"))
        appointment.update(start=fmt(start), end=fmt(end), minutesDuration=duration,
                           requestedPeriod=[{"start": fmt(start), "end": fmt(end)}])
        appointment["text"] = shapes.appointment_text(status=appointment["status"], video=video, start=fmt(start),
                                                      end=fmt(end))
        if reason:
            _set_extension(appointment, "reschedule-reason", {"valueCodeableConcept": {"text": reason}})

    changed = _change(store, appointment_id, move, now)
    _change_encounter(store, appointment_id, now, lambda e: e["period"].update(start=instant(start)))
    return changed


def cancel(store: ResourceStore, appointment_id: str, *, now: datetime, reason: str | None = None) -> Resource:
    def cancelled(appointment: Resource) -> None:
        if "cancelled" not in TRANSITIONS.get(appointment["status"], ()):
            raise ChangeRefused(f"a {appointment['status']} appointment cannot be cancelled", 409)
        appointment["status"] = "cancelled"
        # The standard coding Cerner sends next to its own (code set 14229) one; the sandbox
        # knows no tenant code for an arbitrary reason, so only the text carries it.
        appointment["cancelationReason"] = {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/appointment-cancellation-reason",
                        "code": "pat", "display": "Patient", "userSelected": False}],
            "text": reason or "Patient request",
        }
        for name in ("is-cancelable", "is-reschedulable"):
            _set_extension(appointment, name, {"valueBoolean": False})
        appointment["text"] = shapes.appointment_text(status="cancelled", video=is_video_visit(appointment),
                                                      start=appointment.get("start", ""),
                                                      end=appointment.get("end", ""))

    changed = _change(store, appointment_id, cancelled, now)
    _change_encounter(store, appointment_id, now, lambda e: e.update(status="cancelled"))
    return changed


def _change(store: ResourceStore, appointment_id: str, mutate, now: datetime) -> Resource:
    changed = store.change("Appointment", appointment_id, mutate, now)
    if changed is None:
        raise ChangeRefused(f"Appointment/{appointment_id} was not found", 404)
    return changed


def _change_encounter(store: ResourceStore, appointment_id: str, now: datetime, mutate) -> None:
    reference = f"Appointment/{appointment_id}"
    for encounter in store.all("Encounter"):
        if any(a.get("reference") == reference for a in encounter.get("appointment", [])):
            store.change("Encounter", encounter["id"], mutate, now)


def _set_extension(resource: Resource, name: str, value: dict[str, Any]) -> None:
    url = f"{CERNER_EXT}/{name}"
    extensions = [e for e in resource.get("extension", []) if e.get("url") != url]
    resource["extension"] = [*extensions, {**value, "url": url}]


def _minutes_between(appointment: Resource) -> int:
    start = datetime.fromisoformat(appointment["start"].replace("Z", "+00:00"))
    end = datetime.fromisoformat(appointment["end"].replace("Z", "+00:00"))
    return max(int((end - start).total_seconds() // 60), 1)


# -- bulk -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class BulkRequest:
    location: str
    count: int
    start: datetime
    spread_hours: float = 72.0
    video_ratio: float = 0.5
    patients: int = 100
    location_name: str | None = None  # creates the Location when it does not exist yet

    @classmethod
    def from_json(cls, body: dict[str, Any], tz: ZoneInfo) -> "BulkRequest":
        known = set(cls.__dataclass_fields__)
        unknown = set(body) - known
        if unknown:
            raise ChangeRefused(f"unknown fields {sorted(unknown)}; use {', '.join(sorted(known))}")
        for name in ("location", "count", "start"):
            if name not in body:
                raise ChangeRefused(f"'{name}' is required")
        fields = {**body, "start": moment(body["start"], tz)}
        try:
            return cls(**fields)
        except TypeError as error:
            raise ChangeRefused(str(error)) from None

    def __post_init__(self) -> None:
        if not isinstance(self.location, str) or not self.location.replace("-", "").replace(".", "").isalnum():
            raise ChangeRefused("'location' must be a Location id")
        if isinstance(self.count, bool) or not isinstance(self.count, int) or not 1 <= self.count <= MAX_BULK_COUNT:
            raise ChangeRefused(f"'count' must be a whole number from 1 to {MAX_BULK_COUNT}")
        if not isinstance(self.spread_hours, (int, float)) or not 0 < self.spread_hours <= MAX_SPREAD_HOURS:
            raise ChangeRefused(f"'spread_hours' must be more than 0 and at most {MAX_SPREAD_HOURS}")
        if not isinstance(self.video_ratio, (int, float)) or not 0 <= self.video_ratio <= 1:
            raise ChangeRefused("'video_ratio' must be from 0 to 1")
        if isinstance(self.patients, bool) or not isinstance(self.patients, int) or not 1 <= self.patients:
            raise ChangeRefused("'patients' must be a whole number of at least 1")


@dataclass(frozen=True)
class BulkResult:
    location: str
    appointment_ids: list[str]
    patient_ids: list[str]
    video_ids: list[str]
    first_start: datetime
    last_start: datetime
    mobile_numbers: list[str] = field(default_factory=list)  # one per new patient, same order

    def as_json(self) -> dict[str, Any]:
        return {"location": self.location, "count": len(self.appointment_ids),
                "appointment_ids": self.appointment_ids, "patient_ids": self.patient_ids,
                "video_ids": self.video_ids, "video": len(self.video_ids),
                "first_start": self.first_start.isoformat(), "last_start": self.last_start.isoformat(),
                "mobile_numbers": self.mobile_numbers}


class BulkSeeder:
    """Hands out bulk ids and phone numbers across calls (thread-safe), and writes the resources."""

    def __init__(self, store: ResourceStore, tenant_id: str, tz: ZoneInfo, practitioners: list[tuple[str, str]]):
        self._store = store
        self._tenant_id = tenant_id
        self._tz = tz
        self._practitioners = practitioners
        self._patients_made = 0
        self._appointments_made = 0
        self._lock = threading.Lock()

    def seed(self, request: BulkRequest, now: datetime) -> BulkResult:
        with self._lock:
            location = self._location(request, now)
            if self._patients_made + request.patients > MAX_BULK_PATIENTS:
                raise ChangeRefused(f"the sandbox has fictional mobile numbers for {MAX_BULK_PATIENTS} bulk patients; "
                                    f"{self._patients_made} are made already")
            first_patient, first_appointment = self._patients_made, self._appointments_made
            self._patients_made += request.patients
            self._appointments_made += request.count
        t = Tenant(self._tenant_id, now)
        patients = [bulk_patient(t, first_patient + i, self._practitioners) for i in range(request.patients)]
        for patient in patients:
            self._store.put(patient)
        spread = timedelta(hours=request.spread_hours)
        appointment_ids, video_ids, starts = [], [], []
        for i in range(request.count):
            start = _minute(request.start + spread * i / request.count)
            video = int((i + 1) * request.video_ratio) > int(i * request.video_ratio)
            patient = patients[i % len(patients)]
            aid = str(FIRST_BULK_APPOINTMENT_ID + first_appointment + i)
            self._store.put(shapes.appointment(
                t, id=aid, start=start.astimezone(self._tz), minutes=_MINUTES[i % len(_MINUTES)], video=video,
                status="booked", patient=(patient["id"], display(patient)),
                practitioner=self._practitioners[i % len(self._practitioners)], location=location,
                reason=_REASONS[i % len(_REASONS)]))
            appointment_ids.append(aid)
            starts.append(start)
            if video:
                video_ids.append(aid)
        return BulkResult(location[0], appointment_ids, [p["id"] for p in patients], video_ids, min(starts),
                          max(starts), [p["telecom"][0]["value"] for p in patients])

    def _location(self, request: BulkRequest, now: datetime) -> tuple[str, str]:
        found = self._store.get("Location", request.location)
        if found is None:
            if not request.location_name:
                raise ChangeRefused(f"Location/{request.location} does not exist (give 'location_name' to make it)",
                                    404)
            found = shapes.location(Tenant(self._tenant_id, now), id=request.location, name=request.location_name,
                                    work_phone="3125550189",
                                    home=shapes.address("300 Example Ave", "Chicago", "IL", "60601", "work"))
            self._store.put(found)
        return found["id"], display(found)


def bulk_mobile_number(index: int) -> str:
    """The fictional mobile number of bulk patient ``index`` (0-based, across all bulk calls)."""
    if not 0 <= index < MAX_BULK_PATIENTS:
        raise ValueError(f"bulk patients are numbered 0 to {MAX_BULK_PATIENTS - 1}")
    return f"{BULK_AREA_CODES[index // 100]}55501{index % 100:02d}"


def bulk_patient(t: Tenant, index: int, practitioners: list[tuple[str, str]]) -> Resource:
    pid = str(FIRST_BULK_PATIENT_ID + index)
    family = _FAMILIES[index % len(_FAMILIES)]
    given = _GIVENS[(index // len(_FAMILIES)) % len(_GIVENS)]
    since = t.last_updated - timedelta(days=200)
    telecom = [shapes.phone(f"CI-PH-{39913300 + index}-0", bulk_mobile_number(index), "mobile", since)]
    return shapes.patient(
        t, id=pid, family=family, given=given, gender="female" if index % 2 else "male",
        birth_date=date(1950 + index % 55, 1 + index % 12, 1 + index % 28), mrn=str(800100 + index),
        telecom=telecom, language=SPANISH if index % 5 == 2 else ENGLISH,
        practitioner=practitioners[index % len(practitioners)],
        home=shapes.address(f"{10 + index} Sample St", "Chicago", "IL", "60614", "home"))


def _minute(value: datetime) -> datetime:
    return value.replace(second=0, microsecond=0)


def practitioners_of(store: ResourceStore) -> list[tuple[str, str]]:
    return sorted((p["id"], display(p)) for p in store.all("Practitioner"))


__all__ = ["BULK_AREA_CODES", "MAX_BULK_PATIENTS", "BulkRequest", "BulkResult", "BulkSeeder", "ChangeRefused",
           "bulk_mobile_number", "cancel", "moment", "practitioners_of", "reschedule"]
