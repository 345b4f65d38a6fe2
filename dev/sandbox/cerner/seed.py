"""Deterministic seed data: a small clinic day around ``today`` in the clinic's time zone.

Same ``(tenant_id, today, tz)`` -> byte-identical resources. Names, numbers and e-mail
addresses are fictional: phone numbers use the 555-01xx range reserved for fiction,
addresses and meeting rooms use reserved example domains.

The day: 3 practitioners, 8 patients, 2 departments (Locations), 13 appointments spread
over today (from 08:00 to 20:00 local, so a demo at any office hour still has upcoming
visits) and tomorrow; 8 of them video visits (two with their Video Visit links already
written, the others waiting for them), one cancelled, one fulfilled, and an
Encounter for every appointment a clinician would launch from (``Encounter.appointment``
is how a launched app finds the appointment: SMART v1 launch context has no appointment).
Patients cover the SMS cases: mobile number, home phone only, no phone at all, Spanish.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from zoneinfo import ZoneInfo

from . import shapes
from .shapes import Tenant
from .store import Resource, instant

DEFAULT_TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"  # Cerner's public sandbox tenant id
# A second Cerner domain (another health system's), fictional. Cerner serves every domain from
# the same hosts, told apart by the tenant id in the path; the sandbox serves both.
SECOND_TENANT = "5d1c7e9a-3b24-4f68-9a0d-7c41e2b8f356"
SANDBOX_TENANTS = (DEFAULT_TENANT, SECOND_TENANT)

# id, family, given, suffix, NPI (check digit valid), gender, work phone
_PRACTITIONERS = (
    ("4122701", "Rivera", "Elena", "MD", "1234567893", "female", "3125550190"),
    ("4122702", "Chen", "Wei", "MD", "1245319599", "male", "3125550191"),
    ("4122703", "Adeyemi", "Funmi", "NP", "1356780126", "female", "3125550192"),
)
# id, name, phone, street
_LOCATIONS = (
    ("32216101", "Family Medicine Clinic", "3125550180", "100 Example Ave"),
    ("32216102", "Cardiology Clinic", "3125550181", "200 Example Ave"),
)
ENGLISH, SPANISH = ("151", "en", "English"), ("154", "es", "Spanish")
# id, FAMILY, GIVEN, gender, birth date, mobile, home phone, language, GP index
_PATIENTS = (
    ("12744001", "NGUYEN", "LAN", "female", date(1984, 3, 12), "3125550101", None, ENGLISH, 0),
    ("12744002", "OKONKWO", "CHIDI", "male", date(1971, 11, 2), "3125550102", "3125550112", ENGLISH, 1),
    ("12744003", "GARCIA", "SOFIA", "female", date(1990, 6, 25), "3125550103", None, SPANISH, 0),
    ("12744004", "BERGSTROM", "ERIK", "male", date(1958, 1, 30), "3125550104", None, ENGLISH, 1),
    ("12744005", "PATEL", "ASHA", "female", date(2001, 9, 14), "3125550105", None, ENGLISH, 2),
    ("12744006", "MORRISON", "JAMES", "male", date(1966, 4, 8), None, "3125550116", ENGLISH, 0),
    ("12744007", "KOWALSKI", "ANNA", "female", date(1979, 12, 19), "3125550107", None, ENGLISH, 2),
    ("12744008", "HASSAN", "OMAR", "male", date(1995, 7, 3), None, None, ENGLISH, 1),
)
# id, day offset, local start, minutes, video, status, patient, practitioner, location
# (indexes into the tables above), encounter id (None: no encounter)
_APPOINTMENTS = (
    ("4826001", 0, time(8, 0), 15, True, "fulfilled", 0, 0, 0, "97960001"),
    ("4826002", 0, time(9, 0), 30, False, "booked", 1, 1, 1, None),
    ("4826003", 0, time(10, 30), 15, True, "booked", 2, 0, 0, "97960003"),
    ("4826004", 0, time(11, 15), 30, False, "cancelled", 3, 1, 1, None),
    ("4826005", 0, time(13, 0), 20, True, "booked", 4, 2, 0, "97960005"),
    ("4826006", 0, time(14, 30), 30, False, "booked", 5, 1, 1, "97960006"),
    ("4826007", 0, time(16, 0), 15, True, "booked", 6, 0, 0, "97960007"),
    ("4826008", 0, time(18, 0), 15, True, "booked", 7, 2, 0, "97960008"),
    ("4826009", 0, time(20, 0), 15, True, "booked", 5, 0, 1, "97960009"),
    ("4826010", 1, time(9, 0), 15, True, "booked", 0, 0, 0, "97960010"),
    ("4826011", 1, time(10, 0), 30, False, "booked", 1, 1, 1, None),
    ("4826012", 1, time(13, 30), 15, True, "booked", 2, 2, 0, "97960012"),
    ("4826013", 1, time(15, 0), 20, False, "booked", 3, 0, 1, "97960013"),
)
# Video visits whose links were already written (another vendor, or a visit already held):
# they read with contained meeting rooms. The other video visits wait for their links.
_LINKED = frozenset({"4826001", "4826009"})
_REASONS = ("Follow-up", "Medication review", "Blood pressure check", "Lab results", "Annual visit")
_ENCOUNTER_STATUS = {"fulfilled": "finished", "booked": "planned", "arrived": "arrived"}


@dataclass(frozen=True)
class SeedData:
    today: date
    tz: ZoneInfo
    practitioners: tuple[Resource, ...]
    patients: tuple[Resource, ...]
    locations: tuple[Resource, ...]
    appointments: tuple[Resource, ...]
    encounters: tuple[Resource, ...]

    def resources(self) -> Iterator[Resource]:
        yield from (*self.practitioners, *self.patients, *self.locations, *self.appointments, *self.encounters)

    def appointment(self, appointment_id: str) -> Resource:
        return next(a for a in self.appointments if a["id"] == appointment_id)

    def encounter_for(self, appointment_id: str) -> Resource | None:
        reference = f"Appointment/{appointment_id}"
        return next((e for e in self.encounters if e["appointment"][0]["reference"] == reference), None)

    @property
    def video_visit_ids(self) -> list[str]:
        return [a["id"] for a in self.appointments if is_video_visit(a)]

    @property
    def video_visit_id(self) -> str:
        """The first booked video visit today that has an Encounter: what tests and demos launch."""
        return next(a["id"] for a in self.appointments
                    if is_video_visit(a) and a["status"] == "booked" and self.encounter_for(a["id"])
                    and datetime.fromisoformat(a["start"]).astimezone(self.tz).date() == self.today)

    @property
    def linked_video_visit_ids(self) -> list[str]:
        """Video visits whose links were already patched (they have contained meeting rooms)."""
        return [a["id"] for a in self.appointments if is_video_visit(a) and a.get("contained")]

    @property
    def cancelled_id(self) -> str:
        return next(a["id"] for a in self.appointments if a["status"] == "cancelled")

    @property
    def practitioner_ids(self) -> list[str]:
        return [p["id"] for p in self.practitioners]

    @property
    def patient_ids(self) -> list[str]:
        return [p["id"] for p in self.patients]

    @property
    def location_ids(self) -> list[str]:
        return [loc["id"] for loc in self.locations]


def is_video_visit(appointment: Resource) -> bool:
    """Cerner's video-visit markers: the contained meeting rooms or the Video Visit type."""
    rooms = any(c.get("resourceType") == "HealthcareService" for c in appointment.get("contained", []))
    codes = {c.get("code") for t in appointment.get("serviceType", []) for c in t.get("coding", [])}
    return rooms or shapes.VIDEO_VISIT_CODE in codes


def display(resource: Resource) -> str:
    """How Cerner labels a resource in references: the name text (Location: its name)."""
    name = resource.get("name")
    return name[0]["text"] if isinstance(name, list) else str(name)


def participant(appointment: Resource, resource_type: str) -> tuple[str, str] | None:
    """(id, display) of the first participant of ``resource_type``."""
    for p in appointment.get("participant", []):
        reference = p.get("actor", {}).get("reference", "")
        if reference.startswith(f"{resource_type}/"):
            return reference.split("/", 1)[1], p["actor"].get("display", "")
    return None


def build_seed(*, tenant_id: str = DEFAULT_TENANT, today: date, tz: str | ZoneInfo = "America/Chicago",
               quirks: bool = True) -> SeedData:
    """The seed for ``today`` in ``tz``. ``quirks=False`` drops the one R4B-invalid artefact."""
    zone = tz if isinstance(tz, ZoneInfo) else ZoneInfo(tz)
    t = Tenant(tenant_id, datetime.combine(today - timedelta(days=3), time(15, 4, 5), timezone.utc))
    practitioners = tuple(
        shapes.practitioner(t, id=pid, family=family, given=given, suffix=suffix, npi=npi, gender=gender,
                            work_phone=phone)
        for pid, family, given, suffix, npi, gender, phone in _PRACTITIONERS)
    locations = tuple(
        shapes.location(t, id=lid, name=name, work_phone=phone,
                        home=shapes.address(street, "Chicago", "IL", "60601", "work"))
        for lid, name, phone, street in _LOCATIONS)
    patients = tuple(_patient(t, row, i, practitioners) for i, row in enumerate(_PATIENTS))

    def who(resources: tuple[Resource, ...], index: int) -> tuple[str, str]:
        return resources[index]["id"], display(resources[index])

    appointments, encounters = [], []
    for n, (aid, day, at, minutes, video, status, pat, prac, loc, eid) in enumerate(_APPOINTMENTS):
        start = datetime.combine(today + timedelta(days=day), at, zone)
        actors = {"patient": who(patients, pat), "practitioner": who(practitioners, prac),
                  "location": who(locations, loc)}
        appointments.append(shapes.appointment(
            t, id=aid, start=start, minutes=minutes, video=video, status=status, reason=_REASONS[n % 5],
            action_comment_quirk=quirks and status == "cancelled", meeting_links=aid in _LINKED, **actors))
        if eid is not None:
            encounters.append(shapes.encounter(
                t, id=eid, fin=str(26000 + n), status=_ENCOUNTER_STATUS[status], start=start,
                minutes=minutes, appointment_id=aid, **actors))
    return SeedData(today, zone, practitioners, patients, locations, tuple(appointments), tuple(encounters))


def _patient(t: Tenant, row: tuple, index: int, practitioners: tuple[Resource, ...]) -> Resource:
    pid, family, given, gender, born, mobile, home_phone, language, gp = row
    since = t.last_updated - timedelta(days=200)
    telecom = []
    if mobile:
        telecom.append(shapes.phone(f"CI-PH-{29913300 + index}-0", mobile, "mobile", since))
    if home_phone:
        telecom.append(shapes.phone(f"CI-PH-{29913300 + index}-1", home_phone, "home", since))
    telecom.append({"id": f"CI-EM-{29822600 + index}-0", "system": "email",
                    "value": f"{given.lower()}.{family.lower()}@example.com", "use": "home", "rank": "1",
                    "period": {"start": instant(since)}})
    doctor = practitioners[gp]
    return shapes.patient(
        t, id=pid, family=family, given=given, gender=gender, birth_date=born, mrn=str(700100 + index),
        telecom=telecom, language=language, practitioner=(doctor["id"], display(doctor)),
        home=shapes.address(f"{10 + index * 7} Sample St", "Chicago", "IL", "60614", "home"))
