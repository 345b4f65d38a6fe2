"""Patient links: minted tokens stored only as hashes, the join page's landing, and the SMS that
carries a link (consents, linked number, the patient's mobile and language read from FHIR).

Runs on the fakes of ``tests/fakes.py`` with patients from the Cerner seed and Cerner's examples.
"""

from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from datetime import date, datetime, timedelta, timezone

import pytest

from connector.adapters.fhir.parsing import parse_resource
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.tenant import Consent, Tenant
from connector.domain.visit import LinkAudience, Visit
from connector.errors import UnprocessableInput, UpstreamUnavailable
from connector.services.patient_links import NO_CONSENT, NO_NUMBER, PatientLinks
from dev.sandbox.cerner.seed import build_seed
from tests.conftest import DATA
from tests.fakes import (
    FakeClock, FakeEndpointRepository, FakeIdSource, FakeJoinLinkRepository, FakeSmsSender, FakeTenantRepository,
    FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
ADMIN = "aaaaaaaa-bbbb-cccc-dddd-eeeeeeeeeeee"
PUBLIC = "https://visits.example.org/"
NUMBER = "+18005550100"
NOW = datetime(2025, 3, 3, 15, 0, tzinfo=timezone.utc)  # 09:00 in Chicago
SEED = build_seed(today=date(2025, 3, 3), tz="America/Chicago")
SOFIA = "12744003"  # Spanish, mobile 3125550103
LAN = "12744001"  # English, mobile 3125550101


def patient(patient_id: str):
    return parse_resource(next(p for p in SEED.patients if p["id"] == patient_id), expected="Patient").resource


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url="https://fhir-ehr.cerner.com/r4/x",
                environment=Environment.production, display_name="Family Medicine Clinic",
                timezone="America/Chicago", linked_number=NUMBER, created_at=NOW - timedelta(days=30))
    return FhirEndpoint(**{**base, **changes})


def visit(**changes) -> Visit:
    base = dict(tenant_id=TENANT, endpoint_id="main", appointment_id="4826003", meeting_id="MSo-1",
                join_web_url="https://teams.microsoft.com/l/meetup-join/1", organizer_user_id="dr@example.org",
                appointment_start=datetime(2025, 3, 3, 16, 30, tzinfo=timezone.utc),
                appointment_end=datetime(2025, 3, 3, 16, 45, tzinfo=timezone.utc), created_at=NOW, updated_at=NOW)
    return Visit(**{**base, **changes})


class World:
    def __init__(self, *, consents: int = 2, ep: FhirEndpoint | None = None, v: Visit | None = None):
        self.clock = FakeClock(NOW)
        self.ids = FakeIdSource()
        self.links = FakeJoinLinkRepository()
        self.visit = v or visit()
        self.visits = FakeVisitRepository(self.visit)
        self.endpoint = ep or endpoint()
        self.endpoints = FakeEndpointRepository(self.endpoint)
        consent = Consent(by_oid=ADMIN, at=NOW - timedelta(days=1))
        self.tenants = FakeTenantRepository(Tenant(
            tenant_id=TENANT, region="us", created_at=NOW - timedelta(days=60),
            sms_terms_consent=consent if consents >= 1 else None, sms_data_consent=consent if consents >= 2 else None))
        self.sms = FakeSmsSender()
        self.service = PatientLinks(self.links, self.visits, self.endpoints, self.tenants, self.sms, self.clock,
                                    self.ids, public_base_url=PUBLIC)


@pytest.fixture
def world() -> World:
    return World()


def token_of(link: str) -> str:
    match = re.fullmatch(r"https://visits\.example\.org/api/j/([A-Za-z0-9_-]{32})(\?hl=[a-z]{2})?", link)
    assert match, link
    return match.group(1)


# == mint ===================================================================================================


def test_mint_stores_only_the_sha256_of_the_token(world):
    link = world.service.mint(world.visit)
    token = token_of(link)
    [row] = world.links.rows
    assert row["token_hash"] == hashlib.sha256(token.encode()).hexdigest()
    assert token not in json.dumps(row)
    assert (row["tenant_id"], row["endpoint_id"], row["appointment_id"]) == (TENANT, "main", "4826003")
    stored = world.links.links[row["token_hash"]]
    assert stored.created_at == NOW and stored.expires_at == world.visit.link_expires_at
    assert stored.expires_at == world.visit.appointment_end + timedelta(hours=2)


def test_a_link_is_short_and_on_the_public_base_url(world):
    link = world.service.mint(world.visit, "es")
    assert len(link) < 255 and link.startswith("https://visits.example.org/api/j/")
    assert "//api" not in link
    assert world.ids.issued and len(token_of(link)) == 32  # 24 random bytes


@pytest.mark.parametrize(("language", "suffix"), [("es", "?hl=es"), ("de", "?hl=de"), ("en", ""), (None, "")])
def test_a_non_english_link_names_its_language(world, language, suffix):
    link = world.service.mint(world.visit, language)
    assert link.endswith(token_of(link) + suffix)


def test_a_provider_link_is_minted_for_its_audience(world):
    provider = world.service.mint(world.visit, audience=LinkAudience.provider)
    patient_link = world.service.mint(world.visit)
    assert [row["audience"] for row in world.links.rows] == ["provider", "patient"]
    assert world.service.landing(token_of(provider)).audience is LinkAudience.provider
    assert world.service.landing(token_of(patient_link)).audience is LinkAudience.patient
    assert world.service.landing(token_of(provider)).visit == world.visit


def test_every_mint_is_a_new_token(world):
    one, two = world.service.mint(world.visit), world.service.mint(world.visit)
    assert token_of(one) != token_of(two) and len(world.links.links) == 2


# == landing ================================================================================================


def test_a_good_token_lands_on_its_visit(world):
    token = token_of(world.service.mint(world.visit))
    landing = world.service.landing(token)
    assert landing.visit == world.visit
    assert (landing.clinic, landing.timezone, landing.expired) == ("Family Medicine Clinic", "America/Chicago", False)


@pytest.mark.parametrize("token", ["", "short", "../../api/admin", "A" * 31, "A" * 33, "A" * 31 + "!", None])
def test_a_malformed_token_is_unknown_without_a_lookup(world, token):
    landing = world.service.landing(token)
    assert landing.visit is None and landing.expired is False
    assert world.links.lookups == 0


def test_an_unknown_token_is_unknown(world):
    world.service.mint(world.visit)
    landing = world.service.landing("Z" * 32)
    assert landing.visit is None and landing.expired is False and world.links.lookups == 1


def test_an_expired_link_says_so_with_the_clinic_name(world):
    token = token_of(world.service.mint(world.visit))
    world.clock.set(world.visit.appointment_end + timedelta(hours=2))
    landing = world.service.landing(token)
    assert landing.visit is None and landing.expired is True
    assert landing.clinic == "Family Medicine Clinic" and landing.timezone == "America/Chicago"
    world.clock.set(world.visit.appointment_end + timedelta(hours=2) - timedelta(seconds=1))
    assert world.service.landing(token).visit == world.visit


def test_a_clinic_without_a_display_name_is_your_clinic():
    world = World(ep=endpoint(display_name=""))
    token = token_of(world.service.mint(world.visit))
    assert world.service.landing(token).clinic == "your clinic"


# == unavailable_reason and send ===================================================================================


@pytest.mark.parametrize(("consents", "ep_changes", "reason"), [
    (2, {}, ""), (1, {}, NO_CONSENT), (0, {}, NO_CONSENT), (2, {"linked_number": None}, NO_NUMBER),
    (0, {"linked_number": None}, NO_CONSENT),
])
def test_unavailable_reason(consents, ep_changes, reason):
    world = World(consents=consents, ep=endpoint(**ep_changes))
    assert world.service.unavailable_reason(world.endpoint) == reason


def test_no_tenant_row_means_no_consent(world):
    world.tenants.tenants.clear()
    assert world.service.unavailable_reason(world.endpoint) == NO_CONSENT


@pytest.mark.parametrize(("consents", "ep_changes", "what_to_do"), [
    (1, {}, "administrator must give both SMS consents"),
    (0, {}, "administrator must give both SMS consents"),
    (2, {"linked_number": None}, "administrator can link one"),
])
def test_send_is_refused_without_consents_or_a_number_and_says_what_to_do(consents, ep_changes, what_to_do):
    world = World(consents=consents, ep=endpoint(**ep_changes))
    with pytest.raises(UnprocessableInput, match=what_to_do) as caught:
        world.service.send(world.endpoint, world.visit, patient(SOFIA))
    assert caught.value.http_status == 422
    assert world.sms.calls == 0 and world.links.rows == []


def test_a_withdrawn_consent_stops_the_next_send_at_once(world):
    world.service.send(world.endpoint, world.visit, patient(SOFIA))
    stored = world.tenants.get_tenant(TENANT)
    world.tenants.save_tenant(stored.item.model_copy(update={"sms_data_consent": None}), stored.etag)
    with pytest.raises(UnprocessableInput):
        world.service.send(world.endpoint, world.visit, patient(SOFIA))
    assert world.sms.calls == 1


def test_a_patient_without_a_mobile_number_cannot_be_texted(world):
    home_phone_only = parse_resource(json.loads((DATA / "fixtures" / "cerner" / "patient-read-12724067.json")
                                                .read_text()), expected="Patient").resource
    for someone in (home_phone_only, patient("12744006"), patient("12744008")):
        with pytest.raises(UnprocessableInput, match="no mobile number"):
            world.service.send(world.endpoint, world.visit, someone)
    assert world.sms.calls == 0 and world.links.rows == []


def test_the_sms_goes_from_the_linked_number_to_the_e164_mobile_in_spanish(world):
    sent = world.service.send(world.endpoint, world.visit, patient(SOFIA))
    [message] = world.sms.sent
    assert message["from_number"] == NUMBER
    assert message["to_number"] == "+13125550103"
    assert message["tag"] == "visit-link" and message["first_sent"] == NOW
    uuid.UUID(message["repeatability_id"])
    link = message["message"].rsplit(" ", 1)[1]
    token = token_of(link)
    assert link.endswith("?hl=es") and "/api/j/" in link
    assert message["message"] == (
        # GSM-7: the accents outside it are dropped, so the text stays within two SMS segments
        f"Family Medicine Clinic: su videoconsulta es hoy a las 10:30. Unase desde su teléfono, sin aplicacion: {link}")
    assert (sent.to_last_digits, sent.language, sent.sent_at) == ("0103", "es", NOW)
    assert world.service.landing(token).visit == world.visit  # the texted link works


def test_an_english_speaker_gets_english_with_a_plain_link(world):
    world.service.send(world.endpoint, world.visit, patient(LAN))
    [message] = world.sms.sent
    assert message["to_number"] == "+13125550101"
    assert message["message"].startswith("Family Medicine Clinic: your video visit is today at 10:30 AM. ")
    assert "?hl=" not in message["message"]


def test_times_and_days_are_the_clinics_not_utc():
    # 23:30 in Chicago on the 3rd is 05:30 UTC on the 4th: still "today" for the patient
    late = visit(appointment_start=datetime(2025, 3, 4, 5, 30, tzinfo=timezone.utc),
                 appointment_end=datetime(2025, 3, 4, 5, 45, tzinfo=timezone.utc))
    world = World(v=late)
    world.service.send(world.endpoint, late, patient(LAN))
    assert "your video visit is today at 11:30 PM." in world.sms.sent[0]["message"]
    world.clock.set(datetime(2025, 3, 4, 4, 0, tzinfo=timezone.utc))  # 22:00 on the 3rd in Chicago
    world.service.send(world.endpoint, late, patient(LAN))
    assert "today at 11:30 PM" in world.sms.sent[1]["message"]
    tomorrow = visit(appointment_start=datetime(2025, 3, 4, 15, 0, tzinfo=timezone.utc),
                     appointment_end=datetime(2025, 3, 4, 15, 15, tzinfo=timezone.utc))
    world.clock.set(NOW)
    world.service.send(world.endpoint, tomorrow, patient(SOFIA))
    assert "su videoconsulta es el 4 mar a las 09:00." in world.sms.sent[2]["message"]


def test_an_sms_failure_reaches_the_caller(world):
    world.sms.errors.append(UpstreamUnavailable("ACS is throttling", retry_after=10))
    with pytest.raises(UpstreamUnavailable):
        world.service.send(world.endpoint, world.visit, patient(SOFIA))
    assert world.sms.sent == []


def test_no_phone_number_name_or_token_in_the_logs(world, caplog):
    with caplog.at_level(logging.DEBUG):
        world.service.send(world.endpoint, world.visit, patient(SOFIA))
        token = token_of(world.sms.sent[0]["message"].rsplit(" ", 1)[1])
        world.service.landing(token)
    assert caplog.records, "the send is logged"
    for secret in ("3125550103", "555-0103", "+13125550103", "GARCIA", "SOFIA", "Sofia", token,
                   hashlib.sha256(token.encode()).hexdigest()):
        assert secret not in caplog.text
