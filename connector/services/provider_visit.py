"""The clinician's side of a visit: launch -> the right appointment -> meeting -> the page.

    session = provider.open(signed_in)                 # after SmartLaunch.complete
    page = provider.page(session)                      # visit details read from FHIR now
    status = provider.status(session)                  # the patient's live state
    sent = provider.send_link(session)                 # SMS with the patient's /api/j/ link

Finding the appointment: through the launch's Encounter (``Encounter.appointment``), else
today's open appointments of the patient in the clinic's zone, preferring those with the
launching practitioner; several left: the clinician picks (``choose``). Everything the page
shows is read from FHIR with the launch's own token at request time and is never stored.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import datetime
from zoneinfo import ZoneInfo

from fhir.resources.R4B.appointment import Appointment

from connector.domain.endpoint import FhirEndpoint
from connector.domain.launch import SESSION_TTL, LaunchSession
from connector.domain.visit import PatientPresence, Visit
from connector.errors import NotAuthenticated, NotAuthorized, NotFound, UnprocessableInput
from connector.services import fhir_context
from connector.services.patient_links import PatientLinks
from connector.services.ports import Clock, EndpointRepository, FhirReader, IdSource, Versioned
from connector.services.smart_launch import LaunchRefused, SignedIn, token_expiry
from connector.services.visits import Visits
from connector.services.concurrency import together
from connector.services.write_back import write_back_links

log = logging.getLogger("connector.visits")
CLOSED_STATUSES = frozenset({"cancelled", "noshow", "entered-in-error"})
RELAUNCH_FOR_DETAILS = ("The EHR sign-in behind this page has ended: launch the visit again from PowerChart to see "
                        "the patient's details or text them the link.")


@dataclass(frozen=True)
class Candidate:
    appointment_id: str
    start: datetime  # in the clinic's zone
    description: str
    is_video: bool


@dataclass(frozen=True)
class ProviderPage:
    """What the provider page shows; ``candidates`` instead of a visit while picking."""

    clinic: str
    timezone: str
    candidates: tuple[Candidate, ...] = ()
    appointment_id: str | None = None
    patient_name: str = ""
    birth_date: str = ""
    start: datetime | None = None
    end: datetime | None = None
    description: str = ""
    status: str = ""
    join_url: str = ""
    sms_ready: bool = False
    sms_unavailable_reason: str = ""
    live_status: bool = False
    details_need_relaunch: bool = False  # the EHR sign-in behind the page has expired


@dataclass(frozen=True)
class VisitStatus:
    patient: PatientPresence
    provider_in_meeting: bool
    link_sent_at: datetime | None
    lobby_since: datetime | None
    admitted_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    live_status: bool


class ProviderVisit:
    def __init__(self, endpoints: EndpointRepository, fhir: FhirReader, visits: Visits, links: PatientLinks,
                 clock: Clock, ids: IdSource):
        self._endpoints = endpoints
        self._fhir = fhir
        self._visits = visits
        self._links = links
        self._clock = clock
        self._ids = ids

    def open(self, signed_in: SignedIn) -> LaunchSession:
        """Find the appointment; with exactly one, make sure its meeting exists."""
        endpoint, tokens = signed_in.endpoint, signed_in.tokens
        if signed_in.user_type not in (None, "Practitioner"):
            raise LaunchRefused("This app is for clinicians: open the visit from PowerChart.")
        practitioner = signed_in.user_id
        now = self._clock.now()
        appointments, etags = self._appointments(endpoint, tokens.access_token, tokens.encounter, tokens.patient,
                                                 practitioner)
        session = LaunchSession(
            session_id=self._ids.token(16), tenant_id=endpoint.tenant_id, endpoint_id=endpoint.endpoint_id,
            patient_id=tokens.patient, practitioner_id=practitioner, access_token=tokens.access_token,
            token_expires_at=token_expiry(now, tokens), expires_at=now + SESSION_TTL,
            candidates=tuple(a.id for a in appointments) if len(appointments) > 1 else (),
        )
        department = None
        if len(appointments) == 1:
            self._prepare(endpoint, session, appointments[0], etags.get(appointments[0].id))
            session = session.model_copy(update={"appointment_id": appointments[0].id})
            department = fhir_context.participant_id(appointments[0], "Location")
        self._visits.record_launch(endpoint, department)  # a launch that got this far
        return session

    def choose(self, session: LaunchSession, appointment_id: str) -> LaunchSession:
        """The clinician picked one of the launch's candidate appointments."""
        if appointment_id not in session.candidates:
            raise NotAuthorized("that appointment is not one this launch offered")
        endpoint = self._endpoint(session)
        appointment, etag = self._fhir.read_versioned(endpoint.base_url, self._token(session), "Appointment",
                                                      appointment_id)
        self._prepare(endpoint, session, appointment, etag)
        return session.model_copy(update={"appointment_id": appointment_id, "candidates": ()})

    def page(self, session: LaunchSession) -> ProviderPage:
        endpoint = self._endpoint(session)
        zone = ZoneInfo(endpoint.timezone)
        common = {"clinic": endpoint.display_name or "Your clinic", "timezone": endpoint.timezone}
        if session.appointment_id is None:
            candidates = []
            for appointment_id in session.candidates:
                appointment = self._fhir.read(endpoint.base_url, self._token(session), "Appointment", appointment_id)
                candidates.append(Candidate(appointment_id, fhir_context.window(appointment).start.astimezone(zone),
                                            appointment.description or "", fhir_context.is_video_visit(appointment)))
            return ProviderPage(candidates=tuple(sorted(candidates, key=lambda c: c.start)), **common)
        visit = self._visit(session)
        if not session.token_usable(self._clock.now()):
            # The EHR's token (minutes) ends long before the page (hours): the meeting and the
            # live status stay; what needs FHIR waits for a relaunch.
            return ProviderPage(
                appointment_id=session.appointment_id, start=visit.item.appointment_start.astimezone(zone),
                end=visit.item.appointment_end.astimezone(zone), join_url=visit.item.join_web_url,
                sms_unavailable_reason=RELAUNCH_FOR_DETAILS, live_status=visit.item.subscription_id is not None,
                details_need_relaunch=True, **common)
        appointment, patient = self._appointment_and_patient(endpoint, session)
        when = fhir_context.window(appointment)
        sms_reason = self._links.unavailable_reason(endpoint)
        return ProviderPage(
            appointment_id=session.appointment_id,
            patient_name=fhir_context.patient_name(patient) if patient else "",
            birth_date=patient.birthDate.isoformat() if patient and patient.birthDate else "",
            start=when.start.astimezone(zone), end=when.end.astimezone(zone),
            description=appointment.description or "", status=appointment.status or "",
            join_url=visit.item.join_web_url, sms_ready=not sms_reason, sms_unavailable_reason=sms_reason,
            live_status=visit.item.subscription_id is not None, **common,
        )

    def status(self, session: LaunchSession) -> VisitStatus:
        visit = self._visit(session).item
        return VisitStatus(
            patient=visit.patient, provider_in_meeting=visit.provider_in_meeting, link_sent_at=visit.link_sent_at,
            lobby_since=visit.lobby_since, admitted_at=visit.admitted_at, started_at=visit.started_at,
            ended_at=visit.ended_at, live_status=visit.subscription_id is not None)

    def send_link(self, session: LaunchSession):
        """Text the patient their join link (mobile read from FHIR now, never stored)."""
        endpoint = self._endpoint(session)
        stored = self._visit(session)
        _, patient = self._appointment_and_patient(endpoint, session)
        if patient is None:
            raise UnprocessableInput("the appointment names no patient to text")
        sent = self._links.send(endpoint, stored.item, patient)
        self._visits.record_link_sent(stored)
        return sent

    # -- helpers -----------------------------------------------------------------------------

    def _prepare(self, endpoint: FhirEndpoint, session: LaunchSession, appointment: Appointment,
                 etag: str | None = None) -> None:
        """The meeting first; then, at the same time, live status and the write-back."""
        stored = self._visits.ensure_meeting(endpoint, appointment, ehr_user_id=session.practitioner_id)
        calls = [lambda: self._visits.ensure_live_status(stored)]
        if endpoint.write_back_links and not stored.item.written_back:
            def write_back() -> None:
                if write_back_links(self._fhir, self._links, endpoint, session.access_token, stored.item,
                                    appointment=appointment, etag=etag):
                    self._visits.mark_written_back(stored)
            calls.append(write_back)
        together(*calls)

    def _appointments(self, endpoint: FhirEndpoint, token: str, encounter_id: str | None, patient_id: str | None,
                      practitioner_id: str | None) -> tuple[list[Appointment], dict[str, str]]:
        """The launch's candidate appointments, and the ETags of those read one by one."""
        if encounter_id:
            try:
                encounter = self._fhir.read(endpoint.base_url, token, "Encounter", encounter_id)
            except (NotFound, NotAuthorized):
                encounter = None  # fall back to the patient's appointments today
            appointment_id = fhir_context.appointment_of(encounter) if encounter else None
            if appointment_id:
                appointment, etag = self._fhir.read_versioned(endpoint.base_url, token, "Appointment", appointment_id)
                if (appointment.status or "") in CLOSED_STATUSES:
                    raise LaunchRefused(f"This appointment is {appointment.status}, so there is no visit to hold.")
                return [appointment], ({appointment.id: etag} if etag else {})
        if not patient_id:
            raise LaunchRefused("The EHR sent no patient or encounter with this launch. "
                                "Open the app from the patient's chart or the appointment.")
        found = self._fhir.search(endpoint.base_url, token, "Appointment",
                                  fhir_context.today_search(patient_id, self._clock.now(), ZoneInfo(endpoint.timezone)))
        open_today = [a for a in found if (a.status or "") in fhir_context.OPEN_STATUSES and fhir_context.has_times(a)]
        mine = [a for a in open_today if practitioner_id and
                fhir_context.participant_id(a, "Practitioner") == practitioner_id]
        chosen = mine or open_today
        if not chosen:
            raise LaunchRefused("This patient has no open appointment today, so there is no visit to start.")
        return sorted(chosen, key=lambda a: fhir_context.window(a).start), {}

    def _appointment_and_patient(self, endpoint: FhirEndpoint, session: LaunchSession):
        """The visit's Appointment and its patient, read now. The launch's patient context is read
        alongside the Appointment and used only if the Appointment names that same patient."""
        token = self._token(session)
        read = self._fhir.read
        if session.patient_id:
            appointment, patient = together(
                lambda: read(endpoint.base_url, token, "Appointment", session.appointment_id),
                lambda: read(endpoint.base_url, token, "Patient", session.patient_id))
        else:
            appointment, patient = read(endpoint.base_url, token, "Appointment", session.appointment_id), None
        named = fhir_context.participant_id(appointment, "Patient") or session.patient_id
        if named and (patient is None or patient.id != named):
            patient = read(endpoint.base_url, token, "Patient", named)
        return appointment, (patient if named else None)

    def _endpoint(self, session: LaunchSession) -> FhirEndpoint:
        stored = self._endpoints.get_endpoint(session.tenant_id, session.endpoint_id)
        if stored is None:
            raise NotFound("this EHR is no longer registered with the connector")
        return stored.item

    def _visit(self, session: LaunchSession) -> Versioned[Visit]:
        if session.appointment_id is None:
            raise UnprocessableInput("pick the appointment first")
        stored = self._visits.get(session.tenant_id, session.endpoint_id, session.appointment_id)
        if stored is None:
            raise NotFound("this visit is not known here; launch it again from the EHR")
        return stored

    def _token(self, session: LaunchSession) -> str:
        if not session.token_usable(self._clock.now()):
            raise NotAuthenticated("the EHR sign-in behind this page has expired; launch the visit again "
                                   "from PowerChart to read or text the patient")
        return session.access_token
