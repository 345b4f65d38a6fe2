"""Reading what a visit needs out of FHIR R4 resources (``fhir.resources.R4B`` models).

Pure functions: no I/O. They take Cerner's shapes as published (participants by reference,
video visits marked by contained "Virtual Meeting Room" HealthcareServices or the Video Visit
appointment type, languages coded in BCP 47 next to Cerner's own code set).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated
from zoneinfo import ZoneInfo

from fhir.resources.R4B.appointment import Appointment
from fhir.resources.R4B.encounter import Encounter
from fhir.resources.R4B.patient import Patient

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field

from connector.errors import InvalidUpstreamData

BCP47 = "urn:ietf:bcp:47"
VIDEO_VISIT_TEXT = "video visit"
MEETING_ROOM_SUFFIX = "virtual meeting room"
# Appointments a clinician may still hold a visit for.
OPEN_STATUSES = frozenset({"booked", "arrived", "checked-in", "pending"})
DEFAULT_MINUTES = 30


def _fhir_date_time(value):
    if value is not None and not isinstance(value, str):
        raise ValueError("a FHIR dateTime is a string")  # pydantic would read a number as Unix time
    return value


_DateTime = Annotated[datetime | None, BeforeValidator(_fhir_date_time)]


class _Reference(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    reference: str | None = None


class _Participant(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)
    actor: _Reference | None = None


class AppointmentTimes(BaseModel):
    """What a reminder scan reads of an Appointment: id, status, times, participants.

    A scan walks thousands of appointments and uses a handful of fields, so it validates this
    projection rather than the whole R4B model (most of a scan's CPU otherwise); the sender
    reads and parses the full resource when the message fires. The functions of this module
    that read these fields accept either."""

    model_config = ConfigDict(extra="ignore", frozen=True)
    id: str = Field(pattern=r"^[A-Za-z0-9\-.]{1,64}$")  # FHIR's id type
    status: str | None = None
    start: _DateTime = None
    end: _DateTime = None
    minutesDuration: int | None = Field(default=None, gt=0)
    participant: list[_Participant] = []


def participant_id(appointment: Appointment | AppointmentTimes, resource_type: str) -> str | None:
    """The id of the first participant of ``resource_type`` (``Patient/123`` -> ``123``)."""
    prefix = f"{resource_type}/"
    for participant in appointment.participant or []:
        reference = participant.actor.reference if participant.actor else None
        if reference and reference.startswith(prefix):
            return reference[len(prefix):]
    return None


def appointment_of(encounter: Encounter) -> str | None:
    """The Appointment an Encounter was booked from (how a launched app finds the visit)."""
    for reference in encounter.appointment or []:
        if reference.reference and reference.reference.startswith("Appointment/"):
            return reference.reference.split("/", 1)[1]
    return None


@dataclass(frozen=True)
class Window:
    start: datetime
    end: datetime


def window(appointment: Appointment | AppointmentTimes) -> Window:
    """Start and end as aware datetimes; an end is derived from minutesDuration when absent."""
    start = appointment.start
    if not isinstance(start, datetime) or start.tzinfo is None:
        raise InvalidUpstreamData("the appointment has no start time with a time zone")
    end = appointment.end
    if not isinstance(end, datetime) or end.tzinfo is None or end <= start:
        end = start + timedelta(minutes=appointment.minutesDuration or DEFAULT_MINUTES)
    return Window(start, end)


def has_times(appointment: Appointment | AppointmentTimes) -> bool:
    """Does the appointment have a start with a time zone (what a visit needs)?"""
    start = appointment.start
    return isinstance(start, datetime) and start.tzinfo is not None


def is_video_visit(appointment: Appointment) -> bool:
    """Cerner's markers: a contained meeting room, or the Video Visit appointment/service type."""
    return is_video_visit_json(appointment.model_dump(mode="json", exclude_none=True))


def is_video_visit_json(appointment: dict) -> bool:
    """:func:`is_video_visit` on the Appointment's JSON (a scan decides before it parses)."""
    for contained in _list(appointment.get("contained")):
        if isinstance(contained, dict) and contained.get("resourceType") == "HealthcareService" and any(
                MEETING_ROOM_SUFFIX in str(t.get("text") or "").lower()
                for t in _list(contained.get("type")) if isinstance(t, dict)):
            return True
    for concept in [*_list(appointment.get("serviceType")), appointment.get("appointmentType")]:
        if not isinstance(concept, dict):
            continue
        texts = [str(concept.get("text") or ""), *(str(c.get("display") or "") for c in _list(concept.get("coding"))
                                                  if isinstance(c, dict))]
        if any(VIDEO_VISIT_TEXT in text.lower() for text in texts):
            return True
    return False


def codes_json(concepts) -> set[str]:
    """Every code of the given CodeableConcepts' JSON (any system)."""
    return {c["code"] for concept in concepts if isinstance(concept, dict)
            for c in _list(concept.get("coding")) if isinstance(c, dict) and isinstance(c.get("code"), str)}


def _list(value) -> list:
    return value if isinstance(value, list) else []


def today_search(patient_id: str, now: datetime, zone: ZoneInfo) -> list[tuple[str, str]]:
    """Appointment search parameters for the patient's appointments today in the clinic's zone.

    Cerner allows one of patient / practitioner / location with ``date`` given twice, ``ge`` and
    ``lt``, each with a time and a zone (a practitioner cannot be added: the caller filters)."""
    start = datetime.combine(now.astimezone(zone).date(), datetime.min.time(), zone)
    return [("patient", patient_id), ("date", f"ge{start.isoformat()}"),
            ("date", f"lt{(start + timedelta(days=1)).isoformat()}")]


def patient_name(patient: Patient) -> str:
    """The name to show the clinician (official first, then usual, then any)."""
    names = sorted(patient.name or [], key=lambda n: {"official": 0, "usual": 1}.get(n.use or "", 2))
    for name in names:
        if name.text:
            return name.text
        parts = [*(name.given or []), name.family or ""]
        shown = " ".join(p for p in parts if p)
        if shown:
            return shown
    return "Unnamed patient"


COMMUNICATION_PREFERENCE = "https://fhir-ehr.cerner.com/r4/StructureDefinition/communication-preference"
CONTACT_POINT_SYSTEM = "http://hl7.org/fhir/contact-point-system"
COMMUNICATION_TOPIC = "http://terminology.hl7.org/CodeSystem/communication-topic"


def reminder_channels(patient: Patient) -> set[str] | None:
    """How the patient wants appointment reminders, from Cerner's communication-preference
    extension (``sms``, ``email``, ``phone``, ``fax``...); None when the chart says nothing."""
    channels: set[str] | None = None
    for extension in patient.extension or []:
        if extension.url != COMMUNICATION_PREFERENCE:
            continue
        parts = {part.url: part for part in extension.extension or []}
        topic = parts.get("communication-type")
        if topic is None or not _has_code(topic.valueCodeableConcept, COMMUNICATION_TOPIC, "appointment-reminder"):
            continue
        method = parts.get("contact-method")
        codes = {c.code for c in (method.valueCodeableConcept.coding or []) if c.system == CONTACT_POINT_SYSTEM} \
            if method is not None and method.valueCodeableConcept is not None else set()
        channels = (channels or set()) | {code for code in codes if code}
    return channels


def _has_code(concept, system: str, code: str) -> bool:
    return concept is not None and any(c.system == system and c.code == code for c in concept.coding or [])


def code_set(concepts) -> set[str]:
    """Every code of the given CodeableConcepts (any system)."""
    return {c.code for concept in concepts or [] if concept is not None for c in concept.coding or [] if c.code}


def preferred_language(patient: Patient) -> str | None:
    """The patient's preferred language as a BCP 47 primary tag (``es``), if FHIR says so."""
    communications = sorted(patient.communication or [], key=lambda c: not c.preferred)
    for communication in communications:
        for coding in communication.language.coding or []:
            if coding.system == BCP47 and coding.code:
                return coding.code.split("-")[0].lower()
    return None
