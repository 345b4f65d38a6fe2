"""A day's appointments as the sandbox "PowerChart" page lists them (read live from the store)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from zoneinfo import ZoneInfo

from .seed import is_video_visit, participant
from .store import ResourceStore


@dataclass(frozen=True)
class ScheduledVisit:
    appointment_id: str
    start: datetime  # aware, in the clinic's zone
    end: datetime
    status: str
    is_video: bool
    description: str
    patient_id: str
    patient_display: str
    practitioner_id: str | None
    practitioner_display: str | None
    location_id: str | None
    location_display: str | None
    encounter_id: str | None  # what an EHR launch passes as context; None: no launch possible


def appointments_on(store: ResourceStore, day: date, tz: ZoneInfo) -> list[ScheduledVisit]:
    encounters = {e["appointment"][0]["reference"]: e["id"] for e in store.all("Encounter") if e.get("appointment")}
    visits = []
    for appointment in store.all("Appointment"):
        if "start" not in appointment:
            continue
        start = datetime.fromisoformat(appointment["start"]).astimezone(tz)
        if start.date() != day:
            continue
        patient = participant(appointment, "Patient") or ("", "")
        practitioner = participant(appointment, "Practitioner") or (None, None)
        location = participant(appointment, "Location") or (None, None)
        visits.append(ScheduledVisit(
            appointment_id=appointment["id"], start=start,
            end=datetime.fromisoformat(appointment["end"]).astimezone(tz), status=appointment["status"],
            is_video=is_video_visit(appointment), description=appointment.get("description", ""),
            patient_id=patient[0], patient_display=patient[1],
            practitioner_id=practitioner[0], practitioner_display=practitioner[1],
            location_id=location[0], location_display=location[1],
            encounter_id=encounters.get(f"Appointment/{appointment['id']}"),
        ))
    return sorted(visits, key=lambda v: (v.start, v.appointment_id))
