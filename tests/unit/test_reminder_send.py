"""Sending one due message: everything re-checked when it fires (skips with their reasons), quiet
hours, opt-outs (the keyed list and Cerner's communication preference), the patient's language,
ACS sends made once with a repeatability id kept on the row, throttling, failures and replays.

Runs with the real Visits and PatientLinks use cases on the fakes of ``tests/fakes.py``; FHIR
holds the Cerner sandbox seed (2025-03-03 in Chicago, UTC-6) and Cerner's published Patient.
"""

from __future__ import annotations

import copy
import hashlib
import hmac
import json
import re
import uuid
from datetime import date, datetime, time, timedelta, timezone

import pytest

from connector.adapters.storage.tables import StorageUnavailable
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.integration import BACKEND_SCOPES
from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, SkipReason, notification_tag,
)
from connector.domain.reminders import ReminderPolicy
from connector.domain.tenant import Consent, Tenant
from connector.domain.usage import UsageKind
from connector.domain.visit import token_hash
from connector.errors import ConfigurationError, Conflict, NotFound, UpstreamError, UpstreamUnavailable
from connector.services.patient_links import PatientLinks
from connector.services.reminder_send import (
    MIN_THROTTLE_DELAY, REPEATABILITY_WINDOW, ReminderSender, number_hash,
)
from connector.services.visits import Visits
from dev.sandbox.cerner.seed import build_seed
from tests.conftest import DATA
from tests.fakes import (
    FakeBackendTokens, FakeClock, FakeEndpointRepository, FakeIdSource, FakeJoinLinkRepository, FakeMeetings,
    FakeNotificationRepository, FakeOptOutRepository, FakeQueue, FakeScanFhir, FakeSmsSender,
    FakeSubscriptionRepository, FakeTenantRepository, FakeUsageEventLog, FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
OTHER = "99999999-8888-7777-6666-555555555555"
ADMIN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
BASE = "https://fhir-ehr.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
TOKEN_URL = "https://authorization.cerner.com/tenants/ec2458f2/protocols/oauth2/token"
PUBLIC = "https://visits.example.org"
NUMBER = "+18005550100"
KEY = b"k" * 32
SEED = build_seed(today=date(2025, 3, 3), tz="America/Chicago")
NOW = datetime(2025, 3, 3, 15, 30, tzinfo=timezone.utc)  # 09:30 in Chicago
SOFIA_VISIT, ASHA_VISIT, OMAR_VISIT, JAMES_VISIT, LAN_VISIT = "4826003", "4826005", "4826008", "4826009", "4826010"
SOFIA, ASHA, LAN = "12744003", "12744005", "12744001"
SOFIA_MOBILE, ASHA_MOBILE = "+13125550103", "+13125550105"
C, U, X, R = (NotificationKind.confirmation, NotificationKind.update, NotificationKind.cancellation,
              NotificationKind.reminder)
LINK = r"https://visits\.example\.org/api/j/([A-Za-z0-9_-]{32})"


def start_of(appointment_id: str) -> datetime:
    return datetime.fromisoformat(SEED.appointment(appointment_id)["start"].replace("Z", "+00:00"))


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                display_name="Family Medicine Clinic", timezone="America/Chicago", linked_number=NUMBER,
                backend_client_id="backend-client", token_url=TOKEN_URL, location_ids=["32216101", "32216102"],
                meeting_organizer="clinic.teams@example.org", reminder_policy=ReminderPolicy(enabled=True),
                created_at=NOW - timedelta(days=30))
    return FhirEndpoint(**{**base, **changes})


def tenant(consents: bool = True) -> Tenant:
    consent = Consent(by_oid=ADMIN, at=NOW - timedelta(days=2)) if consents else None
    return Tenant(tenant_id=TENANT, region="us", created_at=NOW - timedelta(days=60), sms_terms_consent=consent,
                  sms_data_consent=consent)


def claim(appointment_id: str, kind: NotificationKind = R, offset: int = 0, *, due_at: datetime | None = NOW,
          **changes) -> NotificationClaim:
    if kind is R and not offset:
        offset = 60
    base = dict(tenant_id=TENANT, endpoint_id="main", appointment_id=appointment_id, kind=kind, offset_minutes=offset,
                appointment_start=start_of(appointment_id), status=NotificationStatus.queued,
                claimed_at=NOW - timedelta(hours=20), queued_at=NOW - timedelta(hours=20), due_at=due_at,
                department="32216101")
    return NotificationClaim(**{**base, **changes})


class World:
    def __init__(self, ep: FhirEndpoint | None = None, *, tenants: tuple[Tenant, ...] | None = None,
                 opt_out_key: bytes | None = KEY):
        self.clock = FakeClock(NOW)
        self.ids = FakeIdSource()
        self.endpoints = FakeEndpointRepository(ep or endpoint())
        self.tenants = FakeTenantRepository(*(tenant(),) if tenants is None else tenants)
        self.notifications = FakeNotificationRepository()
        self.fhir = FakeScanFhir(*SEED.resources())
        self.fhir.tokens = {"backend-access-token"}
        self.tokens = FakeBackendTokens()
        self.visit_rows = FakeVisitRepository()
        self.meetings = FakeMeetings()
        self.usage = FakeUsageEventLog()
        self.visits = Visits(self.visit_rows, FakeSubscriptionRepository(), self.meetings, self.usage, self.clock,
                             self.ids, notification_url=f"{PUBLIC}/api/notifications/graph")
        self.join_links = FakeJoinLinkRepository()
        self.links = PatientLinks(self.join_links, self.visit_rows, self.endpoints, self.tenants, FakeSmsSender(),
                                  self.clock, self.ids, public_base_url=PUBLIC)
        self.sms = FakeSmsSender()
        self.opt_outs = FakeOptOutRepository()
        self.queue = FakeQueue()
        self.sender = ReminderSender(self.notifications, self.endpoints, self.tenants, self.fhir, self.tokens,
                                     self.visits, self.links, self.sms, self.opt_outs, self.queue, self.usage,
                                     self.clock, opt_out_key=opt_out_key)

    def add(self, row: NotificationClaim) -> NotificationRef:
        self.notifications.put(row)
        return NotificationRef.of(row)

    def row(self, ref: NotificationRef) -> NotificationClaim:
        return self.notifications.item(ref)

    def edit(self, resource_type: str, resource_id: str, change) -> None:
        document = copy.deepcopy(self.fhir.resources[(resource_type, resource_id)])
        change(document)
        self.fhir.put(document)

    def texts(self) -> list[str]:
        return [m["message"] for m in self.sms.sent]


@pytest.fixture
def world() -> World:
    return World()


def assert_skipped(world: World, ref: NotificationRef, reason: SkipReason) -> None:
    row = world.row(ref)
    assert (row.status, row.skip_reason) == (NotificationStatus.skipped, reason)
    assert world.sms.calls == 0 and world.sms.sent == []
    assert world.meetings.create_calls == 0 and world.join_links.links == {}
    assert world.queue.sent == [] and world.usage.events == []
    assert row.repeatability_id is None and row.acs_message_id is None


# == sending ================================================================================================


def test_a_due_reminder_is_texted_once_in_the_patients_language_with_a_join_link(world):
    ref = world.add(claim(SOFIA_VISIT, R, 60))
    assert world.sender.send(ref) is NotificationStatus.sent
    [sent] = world.sms.sent
    assert (sent["from_number"], sent["to_number"]) == (NUMBER, SOFIA_MOBILE)
    match = re.fullmatch(
        r"Family Medicine Clinic: recordatorio, su videoconsulta es hoy a las 10:30\. Entre desde su movil, "
        rf"sin aplicacion: {LINK}\?hl=es Responda STOP para no recibir mas mensajes\.", sent["message"])
    assert match, sent["message"]
    link = world.join_links.links[token_hash(match.group(1))]
    assert (link.tenant_id, link.endpoint_id, link.appointment_id) == (TENANT, "main", SOFIA_VISIT)
    assert world.visit_rows.visit(SOFIA_VISIT).meeting_id == "MSo-fake-meeting-0001"
    assert sent["tag"] == notification_tag(ref)
    assert sent["first_sent"] == NOW
    assert str(uuid.UUID(sent["repeatability_id"])) == sent["repeatability_id"]

    row = world.row(ref)
    assert (row.status, row.acs_message_id, row.sent_at, row.attempts) == (
        NotificationStatus.sent, "acs-message-0001", NOW, 1)
    assert (row.repeatability_id, row.first_attempt_at) == (sent["repeatability_id"], NOW)
    [event] = world.usage.events
    assert (event.kind, event.tenant_id, event.endpoint_id, event.department, event.at) == (
        UsageKind.sms_sent, TENANT, "main", "32216101", NOW)
    assert event.event_id == hashlib.sha256(notification_tag(ref).encode()).hexdigest()[:32]


def test_the_sender_reads_fhir_with_a_backend_services_token(world):
    world.sender.send(world.add(claim(SOFIA_VISIT)))
    assert world.tokens.calls == [(TENANT, "main", TOKEN_URL, BACKEND_SCOPES)]
    assert world.fhir.reads() == [("Appointment", SOFIA_VISIT), ("Patient", SOFIA)]
    assert {token for *_, token in world.fhir.calls} == {"backend-access-token"}


def test_a_second_delivery_of_the_queue_message_sends_nothing(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    world.clock.advance(minutes=1)
    assert world.sender.send(ref) is None
    assert world.sms.calls == 1 and len(world.usage.events) == 1 and world.meetings.create_calls == 1


def test_the_row_never_holds_the_number_or_the_text(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    stored = world.row(ref).model_dump_json()
    assert "3125550103" not in stored and "videoconsulta" not in stored and "/api/j/" not in stored
    assert all("3125550103" not in json.dumps(m.model_dump(mode="json")) for m in world.queue.sent)


def test_an_english_confirmation_names_today_and_has_a_link_without_a_language(world):
    world.sender.send(world.add(claim(ASHA_VISIT, C, due_at=NOW)))
    [text] = world.texts()
    assert re.fullmatch(rf"Family Medicine Clinic: your video visit is today at 1:00 PM\. Join from your phone, "
                        rf"no app needed: {LINK} Reply STOP to opt out\.", text), text
    assert world.sms.sent[0]["to_number"] == ASHA_MOBILE


def test_a_confirmation_for_tomorrow_names_the_day(world):
    world.sender.send(world.add(claim(LAN_VISIT, C)))
    [text] = world.texts()
    assert text.startswith("Family Medicine Clinic: your video visit is on Mar 4 at 9:00 AM. Join from your phone")


def test_a_clinic_without_a_display_name_is_your_clinic():
    world = World(endpoint(display_name=""))
    world.sender.send(world.add(claim(ASHA_VISIT, C)))
    assert world.texts()[0].startswith("Your clinic: your video visit is today at 1:00 PM.")


def test_without_a_language_in_the_chart_the_policy_default_is_used():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=True, default_language="de")))
    world.edit("Patient", ASHA, lambda p: p.pop("communication"))
    world.sender.send(world.add(claim(ASHA_VISIT, C)))
    [text] = world.texts()
    assert re.fullmatch(rf"Family Medicine Clinic: Ihre Videosprechstunde ist heute um 13:00\. Ohne App vom Handy "
                        rf"teilnehmen: {LINK}\?hl=de Antworten Sie STOP, um keine SMS mehr zu erhalten\.", text), text


def test_a_language_we_do_not_write_falls_back_to_the_policy_default():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=True, default_language="fr")))
    world.edit("Patient", ASHA, lambda p: p.update(communication=[
        {"language": {"coding": [{"system": "urn:ietf:bcp:47", "code": "pt-BR"}], "text": "Portuguese"},
         "preferred": True}]))
    world.sender.send(world.add(claim(ASHA_VISIT, C)))
    assert world.texts()[0].startswith("Family Medicine Clinic : votre téléconsultation est aujourd'hui à 13:00.")
    assert "?hl=fr " in world.texts()[0]


def test_the_chart_language_wins_over_the_policy_default():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=True, default_language="fr")))
    world.sender.send(world.add(claim(SOFIA_VISIT)))
    assert "recordatorio" in world.texts()[0]


def test_no_text_ever_carries_the_patients_name(world):
    for appointment_id, patient_id in ((SOFIA_VISIT, SOFIA), (ASHA_VISIT, ASHA), (LAN_VISIT, LAN)):
        world.sender.send(world.add(claim(appointment_id, C)))
    assert len(world.texts()) == 3
    names = {part.lower() for p in SEED.patients for n in p["name"] for part in [n.get("family", ""),
                                                                                *n.get("given", [])] if part}
    assert {"garcia", "sofia", "patel", "asha", "nguyen", "lan"} <= names
    for text in world.texts():
        words = set(re.findall(r"[a-z]+", text.lower()))
        assert words.isdisjoint(names), text


# == skipped, with the reason ================================================================================


def test_gone_when_the_endpoint_was_removed(world):
    world.endpoints.endpoints.clear()
    ref = world.add(claim(SOFIA_VISIT))
    assert world.sender.send(ref) is NotificationStatus.skipped
    assert_skipped(world, ref, SkipReason.gone)


def test_gone_when_the_appointment_no_longer_exists(world):
    del world.fhir.resources[("Appointment", SOFIA_VISIT)]
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.gone)


def test_policy_off_stops_sending():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=False)))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.policy_off)
    assert world.fhir.calls == []


@pytest.mark.parametrize("tenants", [(tenant(consents=False),), ()], ids=["withdrawn", "no-tenant"])
def test_no_consent_stops_sending_at_once(tenants):
    world = World(tenants=tenants)
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.no_consent)
    assert world.fhir.calls == []


def test_no_number_linked():
    world = World(endpoint(linked_number=None))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.no_number)


def test_moved_when_the_start_changed(world):
    world.edit("Appointment", SOFIA_VISIT, lambda a: a.update(start="2025-03-03T17:30:00.000Z",
                                                              end="2025-03-03T17:45:00.000Z"))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.moved)


def test_the_same_start_in_another_spelling_is_not_a_move(world):
    world.edit("Appointment", SOFIA_VISIT, lambda a: a.update(start="2025-03-03T10:30:00-06:00",
                                                              end="2025-03-03T10:45:00-06:00"))
    ref = world.add(claim(SOFIA_VISIT))
    assert world.sender.send(ref) is NotificationStatus.sent


def test_cancelled_when_a_reminder_finds_the_visit_cancelled(world):
    world.edit("Appointment", SOFIA_VISIT, lambda a: a.update(status="cancelled"))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.cancelled)


def test_a_cancellation_of_a_visit_booked_again_is_not_sent(world):
    ref = world.add(claim(ASHA_VISIT, X))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.moved)


@pytest.mark.parametrize("status", ["arrived", "checked-in", "fulfilled", "noshow"])
def test_started_when_the_visit_has_moved_on(world, status):
    world.edit("Appointment", SOFIA_VISIT, lambda a: a.update(status=status))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.started)


def test_started_when_the_message_fires_after_the_start(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.clock.set(start_of(SOFIA_VISIT) + timedelta(minutes=1))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.started)


@pytest.mark.parametrize("appointment_id", [OMAR_VISIT, JAMES_VISIT], ids=["no-phone", "home-phone-only"])
def test_no_mobile(world, appointment_id):
    ref = world.add(claim(appointment_id, C))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.no_mobile)


def test_opted_out_by_a_stop_on_the_tenants_list(world):
    world.opt_outs.record_choice(TENANT, number_hash(KEY, TENANT, SOFIA_MOBILE), opted_out=True,
                                 at=NOW - timedelta(days=1))
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.opted_out)


def test_a_later_start_or_another_tenants_stop_does_not_opt_out(world):
    hashed = number_hash(KEY, TENANT, SOFIA_MOBILE)
    world.opt_outs.record_choice(TENANT, hashed, opted_out=True, at=NOW - timedelta(days=2))
    world.opt_outs.record_choice(TENANT, hashed, opted_out=False, at=NOW - timedelta(days=1))
    world.opt_outs.record_choice(OTHER, number_hash(KEY, OTHER, SOFIA_MOBILE), opted_out=True, at=NOW)
    assert world.sender.send(world.add(claim(SOFIA_VISIT))) is NotificationStatus.sent


def cerner_patient(*, mobile: bool, method: str = "fax") -> dict:
    """Cerner's published Patient (its communication preference: appointment reminders by fax)."""
    document = json.loads((DATA / "fixtures" / "cerner" / "patient-read-12724067.json").read_text())
    if mobile:
        document["telecom"].append({"id": "CI-PH-29811920-9", "system": "phone", "value": "8165550199",
                                    "use": "mobile", "rank": 1})
    if method != "fax":
        [preference] = [e for e in document["extension"] if e["url"].endswith("communication-preference")]
        [contact] = [e for e in preference["extension"] if e["url"] == "contact-method"]
        contact["valueCodeableConcept"] = {"coding": [{"system": "http://hl7.org/fhir/contact-point-system",
                                                       "code": method}]}
    return document


def joe_smart_visit(world: World, patient: dict) -> None:
    world.fhir.put(patient)

    def to_joe(appointment):
        appointment["participant"][0]["actor"] = {"reference": "Patient/12724067", "display": "SMART, JOE"}
    world.edit("Appointment", ASHA_VISIT, to_joe)


def test_opted_out_when_the_chart_prefers_another_channel_for_reminders(world):
    joe_smart_visit(world, cerner_patient(mobile=True))
    ref = world.add(claim(ASHA_VISIT, C))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.opted_out)
    assert world.fhir.reads("Patient") == [("Patient", "12724067")]


def test_cerners_published_patient_prefers_fax_before_anything_about_a_mobile(world):
    joe_smart_visit(world, cerner_patient(mobile=False))  # home phone only, and reminders by fax
    ref = world.add(claim(ASHA_VISIT, C))
    world.sender.send(ref)
    assert_skipped(world, ref, SkipReason.opted_out)  # the chart's word comes first


def test_a_chart_preferring_sms_is_texted_without_the_name(world):
    joe_smart_visit(world, cerner_patient(mobile=True, method="sms"))
    assert world.sender.send(world.add(claim(ASHA_VISIT, C))) is NotificationStatus.sent
    [sent] = world.sms.sent
    assert sent["to_number"] == "+18165550199"
    assert "SMART" not in sent["message"].upper().replace("SMARTPHONE", "") and "JOE" not in sent["message"].upper()
    assert sent["message"].startswith("Family Medicine Clinic: your video visit is today at 1:00 PM.")  # English


def test_no_opt_out_key_is_a_configuration_error_before_anything_is_sent():
    world = World(opt_out_key=None)
    ref = world.add(claim(SOFIA_VISIT))
    with pytest.raises(ConfigurationError):
        world.sender.send(ref)
    assert world.sms.calls == 0 and world.row(ref).status is NotificationStatus.queued


# == when: quiet hours and early copies =====================================================================


def test_a_message_due_in_quiet_hours_waits_for_their_end(world):
    night = datetime(2025, 3, 4, 4, 0, tzinfo=timezone.utc)  # 22:00 in Chicago; the visit is at 09:00
    world.clock.set(night)
    ref = world.add(claim(LAN_VISIT, C, due_at=night))
    assert world.sender.send(ref) is NotificationStatus.queued
    morning = datetime(2025, 3, 4, 14, 0, tzinfo=timezone.utc)  # 08:00 in Chicago
    assert world.row(ref).due_at == morning and world.row(ref).status is NotificationStatus.queued
    assert world.queue.sent == [ref] and world.queue.delays == [timedelta(hours=10)]
    assert world.sms.calls == 0 and world.meetings.create_calls == 0

    world.clock.set(night + timedelta(hours=1))  # a duplicate copy at 23:00 waits too, for the new due time
    assert world.sender.send(ref) is NotificationStatus.queued
    assert world.queue.delays[-1] == timedelta(hours=9)

    world.clock.set(morning)
    assert world.sender.send(ref) is NotificationStatus.sent
    assert world.texts()[0].startswith("Family Medicine Clinic: your video visit is today at 9:00 AM.")


def test_a_visit_sooner_than_the_end_of_quiet_hours_is_texted_at_night():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=True, quiet_hours_end=time(9, 30))))
    night = datetime(2025, 3, 4, 4, 0, tzinfo=timezone.utc)
    world.clock.set(night)
    assert world.sender.send(world.add(claim(LAN_VISIT, C, due_at=night))) is NotificationStatus.sent
    assert world.queue.sent == []


def test_without_quiet_hours_night_is_like_day():
    world = World(endpoint(reminder_policy=ReminderPolicy(enabled=True, quiet_hours_start=time(0),
                                                          quiet_hours_end=time(0))))
    night = datetime(2025, 3, 4, 4, 0, tzinfo=timezone.utc)
    world.clock.set(night)
    assert world.sender.send(world.add(claim(LAN_VISIT, C, due_at=night))) is NotificationStatus.sent


def test_an_early_copy_is_put_back_until_the_message_is_due(world):
    ref = world.add(claim(SOFIA_VISIT, due_at=NOW))
    etag = world.notifications.etag(ref)
    world.clock.set(NOW - timedelta(hours=2))
    assert world.sender.send(ref) is NotificationStatus.queued
    assert world.queue.sent == [ref] and world.queue.delays == [timedelta(hours=2)]
    assert world.notifications.etag(ref) == etag and world.sms.calls == 0 and world.fhir.calls == []
    world.clock.set(NOW - timedelta(seconds=4))  # queue visibility is not to the millisecond
    assert world.sender.send(ref) is NotificationStatus.sent


# == ACS: once, throttled, failing ==========================================================================


def test_the_repeatability_id_is_made_once_and_kept_across_retries(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [UpstreamError("Azure Communication Services refused the SMS (HTTP 400)")]
    with pytest.raises(UpstreamError):
        world.sender.send(ref)
    row = world.row(ref)
    assert (row.status, row.attempts, row.first_attempt_at) == (NotificationStatus.queued, 1, NOW)
    first_id = row.repeatability_id
    assert first_id is not None and str(uuid.UUID(first_id)) == first_id

    world.clock.advance(minutes=1)
    assert world.sender.send(ref) is NotificationStatus.sent
    [sent] = world.sms.sent
    assert (sent["repeatability_id"], sent["first_sent"]) == (first_id, NOW)
    row = world.row(ref)
    assert (row.repeatability_id, row.first_attempt_at, row.attempts) == (first_id, NOW, 2)
    assert row.sent_at == NOW + timedelta(minutes=1)


@pytest.mark.parametrize("retry_after, delay", [(30.0, timedelta(seconds=30)), (1.0, MIN_THROTTLE_DELAY),
                                                (None, MIN_THROTTLE_DELAY)])
def test_a_throttled_send_goes_back_on_the_queue_after_retry_after_keeping_its_request_id(world, retry_after, delay):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [UpstreamUnavailable("Azure Communication Services is busy (HTTP 429)",
                                            retry_after=retry_after)]
    assert world.sender.send(ref) is NotificationStatus.queued
    assert world.queue.sent == [ref] and world.queue.delays == [delay]
    row = world.row(ref)
    assert (row.status, row.failure, row.attempts) == (NotificationStatus.queued, None, 1)
    # Kept: a racing copy's attempt under this id may have been accepted; ACS then answers the
    # retry with that message rather than sending a second one.
    first_id = row.repeatability_id
    assert first_id is not None and row.first_attempt_at == NOW

    world.clock.advance(delay)
    assert world.sender.send(ref) is NotificationStatus.sent
    assert [(m["repeatability_id"], m["first_sent"]) for m in world.sms.sent] == [(first_id, NOW)]


def test_a_throttle_longer_than_acs_remembers_the_request_starts_a_new_one(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [UpstreamUnavailable("Azure Communication Services is busy (HTTP 429)", retry_after=280.0)]
    assert world.sender.send(ref) is NotificationStatus.queued
    assert world.queue.delays == [timedelta(seconds=280)]
    row = world.row(ref)
    assert (row.repeatability_id, row.first_attempt_at, row.attempts) == (None, None, 1)  # 280 s + margin > 5 min

    world.clock.advance(seconds=280)
    assert world.sender.send(ref) is NotificationStatus.sent
    [sent] = world.sms.sent
    assert sent["first_sent"] == NOW + timedelta(seconds=280) and sent["repeatability_id"] == world.row(ref).repeatability_id


def test_a_send_whose_row_a_racing_copy_changed_still_records_sent(world):
    ref = world.add(claim(SOFIA_VISIT))
    racing = {}

    def meanwhile(**request):  # while ACS accepts this text, a racing copy bumps the row
        stored = world.notifications.get_notification(ref)
        world.notifications.record_outcome(stored.item.model_copy(update={"attempts": stored.item.attempts + 1}),
                                           stored.etag)
        racing["done"] = True

    world.sms.before_send = meanwhile
    assert world.sender.send(ref) is NotificationStatus.sent
    row = world.row(ref)
    assert racing and (row.status, row.attempts) == (NotificationStatus.sent, 2)
    assert row.acs_message_id == world.sms.sent[0]["message_id"]
    assert world.queue.sent == []  # nothing left to send it again


@pytest.mark.parametrize("error", [UpstreamError("Azure Communication Services refused the SMS (HTTP 400)"),
                                   UpstreamUnavailable("Azure Communication Services is busy (HTTP 503)")])
def test_other_acs_errors_raise_for_the_host_to_retry(world, error):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [error]
    with pytest.raises(type(error)):
        world.sender.send(ref)
    assert world.queue.sent == [] and world.row(ref).status is NotificationStatus.queued


def test_a_cancellation_has_no_link_and_makes_no_meeting(world):
    world.edit("Appointment", ASHA_VISIT, lambda a: a.update(status="cancelled"))
    ref = world.add(claim(ASHA_VISIT, X))
    assert world.sender.send(ref) is NotificationStatus.sent
    assert world.texts() == ["Family Medicine Clinic: your video visit today at 1:00 PM is cancelled. Please call us "
                             "to book again. Reply STOP to opt out."]
    assert world.meetings.create_calls == 0 and world.visit_rows.visits == {} and world.join_links.links == {}


def test_an_update_carries_the_new_time_and_a_link(world):
    world.edit("Appointment", ASHA_VISIT, lambda a: a.update(start="2025-03-03T20:00:00.000Z",
                                                             end="2025-03-03T20:20:00.000Z"))
    ref = world.add(claim(ASHA_VISIT, U, appointment_start=datetime(2025, 3, 3, 20, 0, tzinfo=timezone.utc)))
    assert world.sender.send(ref) is NotificationStatus.sent
    assert re.fullmatch(rf"Family Medicine Clinic: your video visit has moved\. It is now today at 2:00 PM\. "
                        rf"Join here: {LINK} Reply STOP to opt out\.", world.texts()[0]), world.texts()[0]


# == the poison queue and replays ===========================================================================


def test_mark_failed_records_the_failure_on_a_row_not_done_yet(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sender.mark_failed(ref)
    row = world.row(ref)
    assert (row.status, row.failure) == (NotificationStatus.failed, "gave up after the queue's retries")
    world.sender.mark_failed(ref, "UpstreamError")
    assert world.row(ref).failure == "UpstreamError"


@pytest.mark.parametrize("status", [NotificationStatus.sent, NotificationStatus.skipped])
def test_mark_failed_leaves_finished_rows_alone(world, status):
    ref = world.add(claim(SOFIA_VISIT, status=status))
    etag = world.notifications.etag(ref)
    world.sender.mark_failed(ref)
    assert world.row(ref).status is status and world.notifications.etag(ref) == etag


def test_mark_failed_of_a_missing_row_is_a_no_op(world):
    world.sender.mark_failed(NotificationRef.of(claim(SOFIA_VISIT)))
    assert world.notifications.items() == []


def test_a_failed_message_is_sent_again_by_a_replay(world):
    ref = world.add(claim(SOFIA_VISIT, status=NotificationStatus.failed, failure="gave up"))
    replayed = world.sender.replay(ref)
    assert (replayed.status, replayed.failure, replayed.replays) == (NotificationStatus.queued, None, 1)
    assert world.row(ref) == replayed
    assert world.queue.sent == [ref] and world.queue.delays == [timedelta(0)]
    assert world.sender.send(ref) is NotificationStatus.sent and len(world.sms.sent) == 1


def test_a_replay_whose_enqueue_fails_is_left_claimed_for_the_next_scan_not_lost(world):
    ref = world.add(claim(SOFIA_VISIT, status=NotificationStatus.failed, failure="gave up"))
    world.queue.error = StorageUnavailable("queue send could not be written")
    with pytest.raises(StorageUnavailable):
        world.sender.replay(ref)
    row = world.row(ref)
    # Claimed: what a scan's stranded-claims sweep queues (REQUEUE_AFTER after claimed_at).
    assert (row.status, row.failure, row.replays) == (NotificationStatus.claimed, None, 1)
    with pytest.raises(Conflict, match="on its way"):
        world.sender.replay(ref)
    world.queue.error = None
    assert world.sender.send(ref) is NotificationStatus.sent and len(world.sms.sent) == 1


def test_a_second_replay_is_a_conflict(world):
    ref = world.add(claim(SOFIA_VISIT, status=NotificationStatus.failed))
    world.sender.replay(ref)
    with pytest.raises(Conflict):
        world.sender.replay(ref)
    assert len(world.queue.sent) == 1 and world.row(ref).replays == 1


@pytest.mark.parametrize("status", [NotificationStatus.queued, NotificationStatus.sent, NotificationStatus.skipped,
                                    NotificationStatus.claimed])
def test_only_a_failed_message_can_be_replayed(world, status):
    ref = world.add(claim(SOFIA_VISIT, status=status))
    with pytest.raises(Conflict):
        world.sender.replay(ref)
    assert world.queue.sent == []


def test_replaying_a_missing_row_is_not_found(world):
    with pytest.raises(NotFound):
        world.sender.replay(NotificationRef.of(claim(SOFIA_VISIT)))


def test_a_replay_within_five_minutes_keeps_the_repeatability_id(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [UpstreamError("refused (HTTP 400)")]
    with pytest.raises(UpstreamError):
        world.sender.send(ref)
    rid = world.row(ref).repeatability_id
    world.sender.mark_failed(ref)
    world.clock.advance(REPEATABILITY_WINDOW - timedelta(seconds=30))
    replayed = world.sender.replay(ref)
    assert (replayed.repeatability_id, replayed.first_attempt_at) == (rid, NOW)
    world.sender.send(ref)
    assert [(m["repeatability_id"], m["first_sent"]) for m in world.sms.sent] == [(rid, NOW)]


def test_a_later_replay_makes_a_new_repeatability_id(world):
    ref = world.add(claim(SOFIA_VISIT))
    world.sms.errors = [UpstreamError("refused (HTTP 400)")]
    with pytest.raises(UpstreamError):
        world.sender.send(ref)
    rid = world.row(ref).repeatability_id
    world.sender.mark_failed(ref)
    later = NOW + REPEATABILITY_WINDOW + timedelta(minutes=1)
    world.clock.set(later)
    replayed = world.sender.replay(ref)
    assert (replayed.repeatability_id, replayed.first_attempt_at) == (None, None)
    world.sender.send(ref)
    [sent] = world.sms.sent
    assert sent["repeatability_id"] != rid and sent["first_sent"] == later
    assert world.row(ref).repeatability_id == sent["repeatability_id"]


# == number_hash ============================================================================================


def test_number_hash_is_an_hmac_per_tenant_and_key():
    expected = hmac.new(KEY, f"{TENANT}:{SOFIA_MOBILE}".encode(), hashlib.sha256).hexdigest()
    assert number_hash(KEY, TENANT, SOFIA_MOBILE) == expected
    assert number_hash(KEY, TENANT, SOFIA_MOBILE) == number_hash(KEY, TENANT, SOFIA_MOBILE)
    assert number_hash(KEY, OTHER, SOFIA_MOBILE) != expected
    assert number_hash(b"j" * 32, TENANT, SOFIA_MOBILE) != expected
    assert number_hash(KEY, TENANT, ASHA_MOBILE) != expected
    assert re.fullmatch(r"[0-9a-f]{64}", expected) and "3125550103" not in expected


# == retries against ACS's repeatable-request rules =========================================================


class RepeatableAcs(FakeSmsSender):
    """ACS's repeatable requests as the project's ACS sandbox models them (dev/sandbox/acs/messaging.py): the
    same id with the same content returns the original answer and sends nothing; the same id with other content
    is refused (400); a first-sent time more than five minutes from now is refused (412). ``lose_answers``
    accepted sends whose answer never arrives; until ``throttled_until`` every send is a 429 (nothing kept)."""

    def __init__(self, clock: FakeClock):
        super().__init__()
        self.clock = clock
        self.remembered: dict[str, tuple[tuple, str]] = {}
        self.requests: list[dict] = []
        self.lose_answers = 0
        self.throttled_until: datetime | None = None

    def send(self, *, from_number: str, to_number: str, message: str, repeatability_id: str,
             first_sent: datetime, tag: str | None = None) -> str:
        self.calls += 1
        self.requests.append({"message": message, "repeatability_id": repeatability_id, "first_sent": first_sent})
        now = self.clock.now()
        if self.throttled_until is not None and now < self.throttled_until:
            raise UpstreamUnavailable("Azure Communication Services is busy (HTTP 429)", retry_after=60)
        if abs(now - first_sent) > REPEATABILITY_WINDOW:
            raise UpstreamError("Azure Communication Services refused the SMS (HTTP 412)")
        fingerprint = (from_number, to_number, message, first_sent)
        if repeatability_id in self.remembered:
            known, message_id = self.remembered[repeatability_id]
            if known != fingerprint:
                raise UpstreamError("Azure Communication Services refused the SMS (HTTP 400)")
            return message_id
        self.sent.append({"from_number": from_number, "to_number": to_number, "message": message,
                          "repeatability_id": repeatability_id, "first_sent": first_sent, "tag": tag})
        message_id = f"acs-message-{len(self.sent):04d}"
        self.remembered[repeatability_id] = (fingerprint, message_id)
        if self.lose_answers:
            self.lose_answers -= 1
            raise UpstreamUnavailable("Azure Communication Services did not answer")
        return message_id


def repeatable_world() -> World:
    world = World()
    world.sms = RepeatableAcs(world.clock)
    world.sender = ReminderSender(world.notifications, world.endpoints, world.tenants, world.fhir, world.tokens,
                                  world.visits, world.links, world.sms, world.opt_outs, world.queue, world.usage,
                                  world.clock, opt_out_key=KEY)
    return world


def test_a_throttled_message_is_sent_when_acs_lets_it_within_the_window():
    world = repeatable_world()
    world.sms.throttled_until = NOW + timedelta(minutes=2)
    ref = world.add(claim(SOFIA_VISIT))
    while (status := world.sender.send(ref)) is NotificationStatus.queued:
        world.clock.advance(world.queue.delays[-1])
    assert status is NotificationStatus.sent and len(world.sms.sent) == 1
    # Each throttled try was a new request; the one ACS took is the row's.
    assert world.sms.requests[-1]["repeatability_id"] == world.row(ref).repeatability_id


def test_a_retry_after_a_lost_answer_repeats_the_same_request():
    world = repeatable_world()
    world.sms.lose_answers = 1
    ref = world.add(claim(SOFIA_VISIT))
    with pytest.raises(UpstreamUnavailable):
        world.sender.send(ref)
    world.clock.advance(seconds=20)
    assert world.sender.send(ref) is NotificationStatus.sent
    first, second = world.sms.requests
    assert first == second
    assert len(world.sms.sent) == 1 and world.row(ref).acs_message_id == "acs-message-0001"


def test_a_message_throttled_longer_than_the_repeatability_window_is_still_sent():
    world = repeatable_world()
    world.sms.throttled_until = NOW + REPEATABILITY_WINDOW + timedelta(minutes=2)
    ref = world.add(claim(SOFIA_VISIT))
    while (status := world.sender.send(ref)) is NotificationStatus.queued:
        world.clock.advance(world.queue.delays[-1])
    assert status is NotificationStatus.sent and len(world.sms.sent) == 1
