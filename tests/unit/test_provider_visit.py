"""The clinician's side: from a completed launch to the right appointment, its meeting, the page
(read from FHIR at request time), the live status and the SMS link.

ProviderVisit runs with the real Visits and PatientLinks use cases on the fakes of
``tests/fakes.py``; FHIR holds the Cerner sandbox seed and Cerner's published examples.
"""

from __future__ import annotations

import copy
import json
from datetime import date, datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest

from connector.adapters.fhir.parsing import parse_resource
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.launch import SESSION_TTL, LaunchSession, Persona
from connector.domain.meeting import CallEvent, CallEventKind, ParticipantRole, RosterChange
from connector.domain.smart import SmartConfiguration, TokenResponse
from connector.domain.tenant import Consent, Tenant
from connector.domain.visit import PatientPresence
from connector.errors import (
    InvalidUpstreamData, NotAuthenticated, NotAuthorized, NotFound, UnprocessableInput, UpstreamUnavailable,
)
from connector.services import fhir_context
from connector.services.patient_links import PatientLinks
from connector.services.patient_visit import RUNNING_LATE, PatientVisit
from connector.services.provider_visit import ProviderVisit
from connector.services.smart_launch import LaunchRefused, SignedIn
from connector.services.visits import Visits
from dev.sandbox.cerner.seed import build_seed
from tests.conftest import DATA
from tests.fakes import (
    FakeClock, FakeEndpointRepository, FakeFhirReader, FakeIdSource, FakeJoinLinkRepository, FakeMeetings,
    FakeSmsSender, FakeSubscriptionRepository, FakeTenantRepository, FakeUsageEventLog, FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
BASE = "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
TODAY = date(2025, 3, 3)
NOW = datetime(2025, 3, 3, 16, 0, tzinfo=timezone.utc)  # 10:00 in Chicago
SEED = build_seed(today=TODAY, tz="America/Chicago")
TOKEN = "launch-access-token"
CERNER = DATA / "fixtures" / "cerner"


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                display_name="Family Medicine Clinic", timezone="America/Chicago", linked_number="+18005550100",
                meeting_organizer="clinic.teams@example.org", created_at=NOW - timedelta(days=30))
    return FhirEndpoint(**{**base, **changes})


def cerner_fixture(name: str) -> dict:
    return json.loads((CERNER / name).read_text())


class World:
    def __init__(self, ep: FhirEndpoint | None = None):
        self.clock = FakeClock(NOW)
        self.ids = FakeIdSource()
        self.endpoint = ep or endpoint()
        self.endpoints = FakeEndpointRepository(self.endpoint)
        self.fhir = FakeFhirReader(*SEED.resources())
        self.visit_rows = FakeVisitRepository()
        self.subscriptions = FakeSubscriptionRepository()
        self.meetings = FakeMeetings()
        self.usage = FakeUsageEventLog()
        self.visits = Visits(self.visit_rows, self.subscriptions, self.meetings, self.usage, self.clock, self.ids,
                             notification_url="https://visits.example.org/api/graph/notifications")
        consent = Consent(by_oid="aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee", at=NOW)
        self.tenants = FakeTenantRepository(Tenant(tenant_id=TENANT, region="us", created_at=NOW,
                                                   sms_terms_consent=consent, sms_data_consent=consent))
        self.join_links = FakeJoinLinkRepository()
        self.sms = FakeSmsSender()
        self.links = PatientLinks(self.join_links, self.visit_rows, self.endpoints, self.tenants, self.sms, self.clock,
                                  self.ids, public_base_url="https://visits.example.org")
        self.provider = ProviderVisit(self.endpoints, self.fhir, self.visits, self.links, self.clock, self.ids)

    def signed_in(self, *, patient: str | None = None, encounter: str | None = None, user_id: str | None = "4122701",
                  user_type: str | None = "Practitioner", expires_in: int = 3600) -> SignedIn:
        tokens = TokenResponse(access_token=TOKEN, expires_in=expires_in, patient=patient, encounter=encounter)
        config = SmartConfiguration(authorization_endpoint=f"{BASE}/authorize", token_endpoint=f"{BASE}/token")
        return SignedIn(self.endpoint, Persona.provider, tokens, config, user_type, user_id)

    def open(self, **kwargs) -> LaunchSession:
        return self.provider.open(self.signed_in(**kwargs))

    def searches(self) -> list:
        return [what for method, _, what, _ in self.fhir.calls if method == "search"]


@pytest.fixture
def world() -> World:
    return World()


def guest(**flags) -> RosterChange:
    return RosterChange(participant_id="guest-1", role=ParticipantRole.guest, **flags)


# == open ===================================================================================================


def test_open_through_the_encounter_finds_the_appointment_and_makes_the_meeting(world):
    session = world.open(patient="12744003", encounter="97960003")
    assert session.appointment_id == "4826003" and session.candidates == ()
    assert world.fhir.reads() == [("Encounter", "97960003"), ("Appointment", "4826003")]
    assert world.searches() == []
    assert all(token == TOKEN for *_, token in world.fhir.calls)
    visit = world.visit_rows.visit("4826003")
    assert world.meetings.create_calls == 1 and visit.ehr_user_id == "4122701"
    assert visit.subscription_id is not None
    assert (session.tenant_id, session.endpoint_id, session.patient_id, session.practitioner_id) == (
        TENANT, "main", "12744003", "4122701")
    assert session.access_token == TOKEN
    assert session.token_expires_at == NOW + timedelta(seconds=3570)
    assert session.expires_at == NOW + SESSION_TTL
    assert len(session.session_id) == 22
    [launch] = world.usage.events
    assert launch.kind.value == "launch" and launch.department == "32216101"


def test_open_with_cerners_published_encounter(world):
    # Cerner's example Encounter 97939518 points at Appointment/4818609: the published video visit, moved to today
    encounter = cerner_fixture("encounter-read-97939518.json")
    appointment = cerner_fixture("appointment-read-4817572-video-visit.json")
    appointment.update(id="4818609", status="booked", start="2025-03-03T17:00:00.000Z", end="2025-03-03T17:15:00.000Z")
    world.fhir.put(encounter)
    world.fhir.put(appointment)
    session = world.open(patient="12724066", encounter="97939518")
    assert session.appointment_id == "4818609"
    visit = world.visit_rows.visit("4818609")
    assert visit.department == "21304876"
    assert (visit.appointment_start, visit.appointment_end) == (datetime(2025, 3, 3, 17, 0, tzinfo=timezone.utc),
                                                                datetime(2025, 3, 3, 17, 15, tzinfo=timezone.utc))


def test_without_an_encounter_todays_open_appointments_are_searched(world):
    session = world.open(patient="12744005", user_id="4122703")
    assert session.appointment_id == "4826005"
    [params] = world.searches()
    assert params == [("patient", "12744005"), ("date", "ge2025-03-03T00:00:00-06:00"),
                      ("date", "lt2025-03-04T00:00:00-06:00")]
    assert world.meetings.create_calls == 1


def test_an_encounter_without_an_appointment_falls_back_to_the_search(world):
    encounter = copy.deepcopy(SEED.encounter_for("4826005"))
    encounter["id"] = "99999"
    encounter.pop("appointment")
    world.fhir.put(encounter)
    assert world.open(patient="12744005", encounter="99999").appointment_id == "4826005"
    assert len(world.searches()) == 1


def test_the_search_day_is_the_clinics_day(world):
    world.clock.set(datetime(2025, 3, 4, 3, 0, tzinfo=timezone.utc))  # still the 3rd in Chicago (21:00)
    world.open(patient="12744005")
    [params] = world.searches()
    assert params[1] == ("date", "ge2025-03-03T00:00:00-06:00")


def test_several_candidates_make_a_session_to_choose_from_and_no_meeting_yet(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    assert session.appointment_id is None
    assert session.candidates == ("4826006", "4826009")  # by start time
    assert world.meetings.create_calls == 0 and world.visit_rows.visits == {}
    [launch] = world.usage.events
    assert launch.department is None


def test_the_launching_practitioners_own_appointment_wins(world):
    session = world.open(patient="12744006", user_id="4122702")  # 4826006 is theirs, 4826009 is not
    assert session.appointment_id == "4826006" and session.candidates == ()
    other = world.open(patient="12744006", user_id="4122703")  # neither is theirs: both offered
    assert other.candidates == ("4826006", "4826009")


@pytest.mark.parametrize("patient", ["12744004", "12744001"])  # cancelled only / fulfilled only today
def test_no_open_appointment_today_is_refused(world, patient):
    with pytest.raises(LaunchRefused, match="no open appointment today"):
        world.open(patient=patient)
    assert world.meetings.create_calls == 0


def test_a_launch_without_patient_or_encounter_is_refused(world):
    with pytest.raises(LaunchRefused, match="no patient or encounter"):
        world.open()


@pytest.mark.parametrize("user_type", ["Patient", "RelatedPerson", "Person"])
def test_only_clinicians_open_the_provider_page(world, user_type):
    with pytest.raises(LaunchRefused, match="for clinicians"):
        world.open(patient="12744003", encounter="97960003", user_type=user_type)
    assert world.fhir.calls == []


# == choose ==================================================================================================


def test_choose_refuses_an_appointment_the_launch_did_not_offer(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    calls = len(world.fhir.calls)
    for other in ("4826003", "4826005", "../4826006"):
        with pytest.raises(NotAuthorized, match="not one this launch offered"):
            world.provider.choose(session, other)
    assert len(world.fhir.calls) == calls and world.meetings.create_calls == 0


def test_choose_makes_the_chosen_visit(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    chosen = world.provider.choose(session, "4826009")
    assert chosen.appointment_id == "4826009" and chosen.candidates == ()
    assert chosen.session_id == session.session_id and chosen.access_token == TOKEN
    assert world.fhir.reads()[-1] == ("Appointment", "4826009")
    assert world.visit_rows.visit("4826009").department == "32216102"


def test_choose_with_an_expired_token_is_not_authenticated(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    world.clock.advance(seconds=3570)
    with pytest.raises(NotAuthenticated, match="launch the visit again"):
        world.provider.choose(session, "4826006")


# == page and status ==========================================================================================


def test_the_page_of_a_visit_reads_fhir_now(world):
    session = world.open(patient="12744003", encounter="97960003")
    page = world.provider.page(session)
    assert page.appointment_id == "4826003"
    assert (page.clinic, page.timezone) == ("Family Medicine Clinic", "America/Chicago")
    assert page.patient_name == "GARCIA, SOFIA" and page.birth_date == "1990-06-25"
    assert page.start.isoformat() == "2025-03-03T10:30:00-06:00" and page.end.isoformat() == "2025-03-03T10:45:00-06:00"
    assert (page.description, page.status) == ("Video Visit", "booked")
    assert page.join_url == world.visit_rows.visit("4826003").join_web_url
    assert (page.sms_ready, page.sms_unavailable_reason, page.live_status) == (True, "", True)

    renamed = copy.deepcopy(next(p for p in SEED.patients if p["id"] == "12744003"))
    renamed["name"][0]["text"] = "GARCIA LOPEZ, SOFIA"
    world.fhir.put(renamed)
    assert world.provider.page(session).patient_name == "GARCIA LOPEZ, SOFIA"  # never cached or stored
    assert "GARCIA" not in world.visit_rows.visit("4826003").model_dump_json()


def test_the_page_says_why_sms_is_not_ready():
    world = World(endpoint(linked_number=None))
    session = world.open(patient="12744003", encounter="97960003")
    page = world.provider.page(session)
    assert page.sms_ready is False and "link one" in page.sms_unavailable_reason


def test_the_page_while_choosing_lists_the_candidates_in_the_clinics_zone(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    before = len(world.fhir.reads())
    page = world.provider.page(session)
    assert [c.appointment_id for c in page.candidates] == ["4826006", "4826009"]
    assert [c.start.isoformat() for c in page.candidates] == ["2025-03-03T14:30:00-06:00", "2025-03-03T20:00:00-06:00"]
    assert [c.is_video for c in page.candidates] == [False, True]
    assert page.appointment_id is None and page.join_url == ""
    assert len(world.fhir.reads()) == before + 2


def test_the_page_outlives_the_ehr_token_without_reading_fhir(world):
    session = world.open(patient="12744003", encounter="97960003")
    world.clock.advance(seconds=3570)
    before = len(world.fhir.reads())
    page = world.provider.page(session)
    assert page.details_need_relaunch and page.patient_name == "" and not page.sms_ready
    assert "launch the visit again" in page.sms_unavailable_reason
    assert page.join_url.startswith("https://teams.microsoft.com/") and page.start is not None
    assert len(world.fhir.reads()) == before  # nothing read with a token that has ended


def test_the_page_of_a_visit_that_is_gone_is_not_found(world):
    session = world.open(patient="12744003", encounter="97960003")
    world.visit_rows.visits.clear()
    with pytest.raises(NotFound):
        world.provider.page(session)


def test_status_reports_the_live_state(world):
    session = world.open(patient="12744003", encounter="97960003")
    visit = world.visit_rows.visit("4826003")
    state = world.meetings.client_states[visit.subscription_id]
    world.visits.apply_call_events([CallEvent(subscription_id=visit.subscription_id, client_state=state,
                                              kind=CallEventKind.roster_updated, at=NOW + timedelta(minutes=25),
                                              roster=(guest(in_lobby=True),))])
    status = world.provider.status(session)
    assert status.patient is PatientPresence.lobby and status.lobby_since == NOW + timedelta(minutes=25)
    assert (status.provider_in_meeting, status.admitted_at, status.live_status) == (False, None, True)
    world.clock.advance(hours=3)  # status needs no FHIR token
    assert world.provider.status(session).patient is PatientPresence.lobby


def test_status_while_choosing_asks_to_pick_first(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    with pytest.raises(UnprocessableInput, match="pick the appointment first"):
        world.provider.status(session)


# == send_link ================================================================================================


def test_send_link_texts_the_patient_and_records_it(world):
    session = world.open(patient="12744003", encounter="97960003")
    sent = world.provider.send_link(session)
    [message] = world.sms.sent
    assert message["to_number"] == "+13125550103" and "/api/j/" in message["message"]
    assert (sent.to_last_digits, sent.language) == ("0103", "es")
    assert world.visit_rows.visit("4826003").link_sent_at == NOW
    assert world.usage.kinds() == ["launch", "sms_sent"]
    assert world.fhir.reads()[-2:] == [("Appointment", "4826003"), ("Patient", "12744003")]


def test_send_link_with_an_expired_token_is_not_authenticated_and_sends_nothing(world):
    session = world.open(patient="12744003", encounter="97960003")
    world.clock.advance(seconds=3570)
    with pytest.raises(NotAuthenticated, match="launch the visit again"):
        world.provider.send_link(session)
    assert world.sms.sent == [] and world.visit_rows.visit("4826003").link_sent_at is None


def test_send_link_before_choosing_is_refused(world):
    session = world.open(patient="12744006", user_id=None, user_type=None)
    with pytest.raises(UnprocessableInput):
        world.provider.send_link(session)
    assert world.sms.sent == []


# == write-back on open ========================================================================================


def test_open_writes_the_links_back_when_the_endpoint_asks_for_it():
    world = World(endpoint(write_back_links=True))
    session = world.open(patient="12744006", user_id="4122701")  # 4826009: has meeting rooms
    assert session.appointment_id == "4826009"
    [patch] = world.fhir.patches
    visit = world.visit_rows.visit("4826009")
    links = {op["path"]: op["value"] for op in patch["operations"]}
    provider_link, patient_link = links["/contained/0/telecom/0/value"], links["/contained/1/telecom/0/value"]
    assert world.links.landing(provider_link.rsplit("/", 1)[1]).audience.value == "provider"
    patient_landing = world.links.landing(patient_link.rsplit("/", 1)[1])
    assert patient_landing.audience.value == "patient" and patient_landing.visit == visit
    assert patch["if_match"] == 'W/"1"'
    assert visit.written_back is True
    world.open(patient="12744006", user_id="4122701")
    assert len(world.fhir.patches) == 1  # written once


def test_a_failed_write_back_does_not_fail_the_launch_and_is_tried_again():
    world = World(endpoint(write_back_links=True))
    world.fhir.errors["patch"] = UpstreamUnavailable("the EHR is busy")
    session = world.open(patient="12744006", user_id="4122701")
    assert session.appointment_id == "4826009" and world.visit_rows.visit("4826009").written_back is False
    world.open(patient="12744006", user_id="4122701")
    assert len(world.fhir.patches) == 1 and world.visit_rows.visit("4826009").written_back is True


def test_no_write_back_unless_the_endpoint_asks_for_it(world):
    world.open(patient="12744006", user_id="4122701")
    assert world.fhir.patches == [] and world.visit_rows.visit("4826009").written_back is False


# == the patient portal's launch (PatientVisit) ===================================================================




def patient_open(world: World, *, patient: str | None = None, encounter: str | None = None,
                 user_type: str | None = None, user_id: str | None = None) -> str:
    tokens = TokenResponse(access_token=TOKEN, expires_in=3600, patient=patient, encounter=encounter)
    config = SmartConfiguration(authorization_endpoint=f"{BASE}/authorize", token_endpoint=f"{BASE}/token")
    signed_in = SignedIn(world.endpoint, Persona.patient, tokens, config, user_type, user_id)
    return PatientVisit(world.fhir, world.visits, world.links, world.clock).open(signed_in)


def test_the_patient_launch_lands_on_a_patient_link_of_todays_video_visit(world):
    link = patient_open(world, patient="12744003")
    landing = world.links.landing(link.rsplit("/", 1)[1])
    assert landing.visit.appointment_id == "4826003" and landing.audience.value == "patient"
    assert landing.visit.ehr_user_id is None  # no clinician launched it
    assert world.meetings.create_calls == 1


def test_the_patient_launch_and_the_clinician_share_one_meeting(world):
    world.open(patient="12744003", encounter="97960003")
    link = patient_open(world, patient="12744003", encounter="97960003")
    assert world.links.landing(link.rsplit("/", 1)[1]).visit.meeting_id == world.visit_rows.visit("4826003").meeting_id
    assert len(world.meetings.meetings) == 1


def test_the_patient_launch_picks_the_video_visit_not_the_office_visit(world):
    link = patient_open(world, patient="12744006")  # 4826006 (office, 14:30) and 4826009 (video, 20:00)
    assert world.links.landing(link.rsplit("/", 1)[1]).visit.appointment_id == "4826009"


def test_the_patient_from_fhir_user_when_the_token_names_none(world):
    link = patient_open(world, user_type="Patient", user_id="12744003")
    assert world.links.landing(link.rsplit("/", 1)[1]).visit.appointment_id == "4826003"


def test_a_visit_running_late_is_still_offered_for_half_an_hour(world):
    world.clock.set(datetime(2025, 3, 3, 16, 45, tzinfo=timezone.utc) + RUNNING_LATE - timedelta(seconds=1))
    assert patient_open(world, patient="12744003")
    world.clock.advance(seconds=1)
    with pytest.raises(LaunchRefused, match="no video visit today"):
        patient_open(world, patient="12744003")


@pytest.mark.parametrize("patient", ["12744001", "12744002", "12744004"])  # fulfilled / office visit / cancelled
def test_no_video_visit_today_is_refused(world, patient):
    with pytest.raises(LaunchRefused, match="no video visit today"):
        patient_open(world, patient=patient)
    assert world.meetings.create_calls == 0


def test_another_patients_appointment_is_refused(world):
    with pytest.raises(LaunchRefused, match="not yours"):
        patient_open(world, patient="12744003", encounter="97960005")  # 4826005 is 12744005's
    assert world.meetings.create_calls == 0 and world.join_links.rows == []


def test_a_patient_launch_without_a_patient_is_refused(world):
    with pytest.raises(LaunchRefused, match="no patient"):
        patient_open(world, user_type="Practitioner", user_id="4122701")


# == reading FHIR (fhir_context) ========================================================================================



HL7 = DATA / "fixtures" / "hl7-r4-examples"


def model(document: dict):
    return parse_resource(document).resource


def hl7(name: str):
    return model(json.loads((HL7 / name).read_text()))


def test_participants_and_the_encounters_appointment():
    appointment = model(cerner_fixture("appointment-read-4817572-video-visit.json"))
    assert fhir_context.participant_id(appointment, "Patient") == "12724066"
    assert fhir_context.participant_id(appointment, "Practitioner") == "593923"
    assert fhir_context.participant_id(appointment, "Location") == "21304876"
    assert fhir_context.participant_id(appointment, "RelatedPerson") is None
    assert fhir_context.participant_id(hl7("Appointment-examplereq.json"), "Practitioner") is None  # no actor
    assert fhir_context.appointment_of(model(cerner_fixture("encounter-read-97939518.json"))) == "4818609"
    assert fhir_context.appointment_of(hl7("Encounter-example.json")) is None


def test_the_window_of_an_appointment():
    window = fhir_context.window(model(cerner_fixture("appointment-read-4817572-video-visit.json")))
    assert (window.start, window.end) == (datetime(2020, 7, 10, 13, 0, tzinfo=timezone.utc),
                                          datetime(2020, 7, 10, 13, 15, tzinfo=timezone.utc))
    no_end = dict(SEED.appointment("4826003"))
    no_end.pop("end")
    assert fhir_context.window(model(no_end)).end == datetime(2025, 3, 3, 16, 45, tzinfo=timezone.utc)
    backwards = {**SEED.appointment("4826003"), "end": "2025-03-03T16:00:00.000Z"}  # ends before it starts
    backwards.pop("minutesDuration")
    window = fhir_context.window(model(backwards))
    assert window.end - window.start == timedelta(minutes=fhir_context.DEFAULT_MINUTES) == timedelta(minutes=30)
    with pytest.raises(InvalidUpstreamData, match="no start time"):
        fhir_context.window(hl7("Appointment-examplereq.json"))


def test_video_visits_are_recognised_by_cerners_markers():
    assert fhir_context.is_video_visit(model(cerner_fixture("appointment-read-4817572-video-visit.json")))
    assert fhir_context.is_video_visit(model(SEED.appointment("4826003")))  # service type only
    assert fhir_context.is_video_visit(model(SEED.appointment("4826009")))  # meeting rooms too
    assert not fhir_context.is_video_visit(model(SEED.appointment("4826006")))
    assert not fhir_context.is_video_visit(hl7("Appointment-example.json"))


def test_today_is_the_clinics_day_from_midnight_to_midnight():
    # 02:00 UTC on the 4th is still the 3rd in Chicago: the search covers the 3rd there.
    params = fhir_context.today_search("12744006", datetime(2026, 12, 4, 2, 0, tzinfo=timezone.utc),
                                       ZoneInfo("America/Chicago"))
    assert params == [("patient", "12744006"), ("date", "ge2026-12-03T00:00:00-06:00"),
                      ("date", "lt2026-12-04T00:00:00-06:00")]


def test_the_patients_name_and_language():
    assert fhir_context.patient_name(hl7("Patient-example.json")) == "Peter James Chalmers"  # official first
    sofia = model(next(p for p in SEED.patients if p["id"] == "12744003"))
    assert fhir_context.patient_name(sofia) == "GARCIA, SOFIA"
    assert fhir_context.preferred_language(sofia) == "es"
    assert fhir_context.preferred_language(model(cerner_fixture("patient-read-12724067.json"))) == "en"
    assert fhir_context.preferred_language(hl7("Patient-example.json")) is None
    nameless = {"resourceType": "Patient", "id": "x"}
    assert fhir_context.patient_name(model(nameless)) == "Unnamed patient"


def test_the_preferred_language_wins_over_the_first():
    bilingual = {"resourceType": "Patient", "id": "x", "communication": [
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "en-US"}]}},
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "fr-CA"}]}, "preferred": True},
    ]}
    assert fhir_context.preferred_language(model(bilingual)) == "fr"
