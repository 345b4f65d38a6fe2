"""The patient portal's SMART launch: it lands on the same visit page as the SMS link.

    url = patient_visit.open(signed_in)     # -> /api/j/{token} of today's video visit

The appointment comes from the launch's Encounter, else from the patient's open video visits
today (the next one to start, or the one in progress). The meeting is made if the clinician
has not launched yet (``createOrGet`` makes both sides land in the same meeting either way).
"""

from __future__ import annotations

from datetime import timedelta
from zoneinfo import ZoneInfo

from connector.services import fhir_context
from connector.services.patient_links import PatientLinks
from connector.services.ports import Clock, FhirReader
from connector.services.smart_launch import LaunchRefused, SignedIn
from connector.services.visits import Visits

# A visit still counts as "now" this long after its planned end.
RUNNING_LATE = timedelta(minutes=30)


class PatientVisit:
    def __init__(self, fhir: FhirReader, visits: Visits, links: PatientLinks, clock: Clock):
        self._fhir = fhir
        self._visits = visits
        self._links = links
        self._clock = clock

    def open(self, signed_in: SignedIn) -> str:
        endpoint, tokens = signed_in.endpoint, signed_in.tokens
        patient_id = tokens.patient or (signed_in.user_id if signed_in.user_type == "Patient" else None)
        if not patient_id:
            raise LaunchRefused("The patient portal sent no patient with this launch.")
        appointment = None
        if tokens.encounter:
            encounter = self._fhir.read(endpoint.base_url, tokens.access_token, "Encounter", tokens.encounter)
            appointment_id = fhir_context.appointment_of(encounter)
            if appointment_id:
                appointment = self._fhir.read(endpoint.base_url, tokens.access_token, "Appointment", appointment_id)
        if appointment is None:
            appointment = self._next_video_visit(endpoint, tokens.access_token, patient_id)
        if fhir_context.participant_id(appointment, "Patient") != patient_id:
            raise LaunchRefused("This appointment is not yours.")
        if (appointment.status or "") not in fhir_context.OPEN_STATUSES or not fhir_context.is_video_visit(appointment):
            raise LaunchRefused("This appointment is not an upcoming video visit. If you expected one, please call "
                                "your clinic.")
        stored = self._visits.ensure_visit(endpoint, appointment, ehr_user_id=None)
        return self._links.mint(stored.item)

    def _next_video_visit(self, endpoint, token: str, patient_id: str):
        now = self._clock.now()
        found = self._fhir.search(endpoint.base_url, token, "Appointment",
                                  fhir_context.today_search(patient_id, now, ZoneInfo(endpoint.timezone)))
        upcoming = [a for a in found if (a.status or "") in fhir_context.OPEN_STATUSES
                    and fhir_context.has_times(a) and fhir_context.is_video_visit(a) and fhir_context.window(a).end + RUNNING_LATE > now]
        if not upcoming:
            raise LaunchRefused("You have no video visit today. If you expected one, please call your clinic.")
        return min(upcoming, key=lambda a: fhir_context.window(a).start)
