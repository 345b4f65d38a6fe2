"""The Cerner simulator's seed data, discovery documents and pure rules, without a server."""

from __future__ import annotations

import json
from datetime import date, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.capabilitystatement import CapabilityStatement
from pydantic import ValidationError

from dev.sandbox.cerner.discovery import capability_statement, smart_configuration
from dev.sandbox.cerner.errors import FhirError
from dev.sandbox.cerner.patch import apply_appointment_patch
from dev.sandbox.cerner.scopes import SCOPES_SUPPORTED
from dev.sandbox.cerner.search import SearchError, date_range, parse_date
from dev.sandbox.cerner.seed import build_seed, is_video_visit
from dev.sandbox.cerner.store import next_version
from dev.sandbox.cerner.urls import CernerUrls

TODAY = date(2026, 1, 15)
CHICAGO = ZoneInfo("America/Chicago")
# Cerner's published examples, copied with their attribution (tests/data/fixtures/SOURCES.md).
CERNER_FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures" / "cerner"


def cerner_fixture(name: str) -> dict:
    return json.loads((CERNER_FIXTURES / name).read_text())


def validation_failures(seed) -> dict[tuple[str, str], str]:
    failures = {}
    for resource in seed.resources():
        try:
            get_fhir_model_class(resource["resourceType"]).model_validate(resource)
        except ValidationError as error:
            failures[(resource["resourceType"], resource["id"])] = str(error)
    return failures


def test_every_seeded_resource_is_valid_r4b_except_the_one_deliberate_quirk():
    seed = build_seed(today=TODAY)
    failures = validation_failures(seed)
    assert list(failures) == [("Appointment", seed.cancelled_id)]
    assert "extension.0.valueString" in failures[("Appointment", seed.cancelled_id)]
    assert validation_failures(build_seed(today=TODAY, quirks=False)) == {}


def test_seed_is_deterministic_and_tracks_today():
    assert build_seed(today=TODAY) == build_seed(today=TODAY)
    later = build_seed(today=TODAY + timedelta(days=1))
    assert later.appointment("4826001")["start"] != build_seed(today=TODAY).appointment("4826001")["start"]


def test_seed_covers_the_demo_day():
    seed = build_seed(today=TODAY)
    assert (len(seed.practitioners), len(seed.patients), len(seed.locations)) == (3, 8, 2)
    days = [datetime.fromisoformat(a["start"]).astimezone(CHICAGO).date() for a in seed.appointments]
    assert days.count(TODAY) == 9 and days.count(TODAY + timedelta(days=1)) == 4
    assert [a["status"] for a in seed.appointments].count("cancelled") == 1
    assert len(seed.video_visit_ids) == 8
    video_days = {d for a, d in zip(seed.appointments, days) if is_video_visit(a)}
    assert video_days == {TODAY, TODAY + timedelta(days=1)}
    for location in seed.location_ids:  # each department has virtual visits to scan
        assert any(f"Location/{location}" in json.dumps(seed.appointment(i)) for i in seed.video_visit_ids)
    # Every booked video visit can be launched: it has an Encounter pointing back at it.
    for appointment_id in seed.video_visit_ids:
        if seed.appointment(appointment_id)["status"] == "booked":
            assert seed.encounter_for(appointment_id) is not None
    assert seed.video_visit_id == "4826003"


def test_linked_video_visits_carry_cerners_contained_meeting_rooms():
    seed = build_seed(today=TODAY)
    assert seed.linked_video_visit_ids == ["4826001", "4826009"]
    visit = seed.appointment("4826009")
    published = cerner_fixture("appointment-read-4817572-video-visit.json")
    # As published: patient room first, then provider room, referenced from participants.
    assert [c["type"][0]["text"] for c in visit["contained"]] == \
        [c["type"][0]["text"] for c in published["contained"]] == \
        ["Patient Virtual Meeting Room", "Provider Virtual Meeting Room"]
    assert [c["id"] for c in visit["contained"]] == ["28", "31"]
    assert set(visit["contained"][0]) == set(published["contained"][0])
    assert {"#28", "#31"} <= {p["actor"].get("reference") for p in visit["participant"]}
    assert visit["contained"][1]["telecom"][0]["value"] == "https://vv.example.org/rooms/4826009/provider"
    # A two-part version, like the published "2-1" of a video visit with links.
    assert visit["meta"]["versionId"] == "1-1" and published["meta"]["versionId"] == "2-1"


def test_video_visits_waiting_for_links_have_no_rooms_but_the_video_visit_type():
    seed = build_seed(today=TODAY)
    visit = seed.appointment(seed.video_visit_id)
    assert "contained" not in visit
    assert not any(p["actor"].get("reference", "").startswith("#") for p in visit["participant"])
    assert visit["meta"]["versionId"] == "1"
    assert is_video_visit(visit)
    assert visit["serviceType"][0]["coding"][0]["code"] == "2572307911"
    assert visit["start"] == "2026-01-15T16:30:00.000Z"  # video visits: UTC with milliseconds
    assert seed.appointment("4826002")["start"] == "2026-01-15T09:00:00-06:00"  # in person: local offset
    assert not is_video_visit(seed.appointment("4826002"))


def test_patient_telecom_reproduces_cerners_shape():
    seed = build_seed(today=TODAY)
    lan = seed.patients[0]
    mobile = next(t for t in lan["telecom"] if t.get("use") == "mobile")
    assert (mobile["system"], mobile["value"], mobile["rank"]) == ("phone", "3125550101", "1")  # string rank
    assert mobile["extension"][0]["valueUrl"] == "(312)555-0101"
    published = cerner_fixture("patient-read-12724067.json")["telecom"][0]
    assert set(mobile) == set(published) - {"extension"} | {"extension"}
    assert type(mobile["rank"]) is type(published["rank"])
    # The SMS edge cases: home phone only, and no phone at all.
    uses = {p["id"]: {t.get("use") for t in p["telecom"] if t["system"] == "phone"} for p in seed.patients}
    assert uses["12744006"] == {"home"} and uses["12744008"] == set()
    assert "\\n" in lan["address"][0]["text"]  # literal backslash-n, as Cerner publishes


def test_practitioner_npis_pass_the_luhn_check():
    def valid(npi: str) -> bool:
        digits = [int(d) for d in "80840" + npi]
        total = sum(d if i % 2 == 0 else (d * 2 - 9 if d * 2 > 9 else d * 2) for i, d in enumerate(reversed(digits)))
        return total % 10 == 0

    seed = build_seed(today=TODAY)
    assert all(valid(p["identifier"][0]["value"]) for p in seed.practitioners)


def test_scopes_supported_is_cerners_published_list():
    assert list(SCOPES_SUPPORTED) == cerner_fixture("smart-configuration.json")["scopes_supported"]


def test_smart_configuration_matches_cerners_shape():
    published = cerner_fixture("smart-configuration.json")
    ours = smart_configuration(CernerUrls("http://127.0.0.1:8081", "ec2458f2-1e24-41c8-b71b-0e701af7583d"))
    assert set(published) - set(ours) == {"management_endpoint", "introspection_endpoint"}
    assert set(ours) - set(published) == {"code_challenge_methods_supported"}
    assert ours["capabilities"] == [c for c in published["capabilities"] if c != "health-cards"]
    for key in ("token_endpoint_auth_methods_supported", "token_endpoint_auth_signing_alg_values_supported",
                "grant_types_supported", "response_types_supported"):
        assert ours[key] == published[key]
    assert ours["authorization_endpoint"] == ("http://127.0.0.1:8081/tenants/ec2458f2-1e24-41c8-b71b-0e701af7583d"
                                              "/protocols/oauth2/profiles/smart-v1/personas/provider/authorize")


def test_capability_statement_is_valid_r4b_with_oauth_uris():
    statement = capability_statement(CernerUrls("http://127.0.0.1:8081", "t-1"), TODAY)
    CapabilityStatement.model_validate(statement)
    uris = {e["url"] for e in statement["rest"][0]["security"]["extension"][0]["extension"]}
    assert uris == {"authorize", "token", "revoke"}


@pytest.mark.parametrize("value, prefix, moment", [
    ("ge2026-01-15T10:00:00Z", "ge", "2026-01-15T10:00:00+00:00"),
    ("lt2026-01-15T10:00:00-06:00", "lt", "2026-01-15T16:00:00+00:00"),
    ("ge2026-01-15T10:00:00.250Z", "ge", "2026-01-15T10:00:00.250000+00:00"),
    ("ge2019-12-07T22:22:16.270Z", "ge", "2019-12-07T22:22:16.270000+00:00"),  # Cerner's example
])
def test_date_values_are_ge_or_lt_an_instant(value, prefix, moment):
    bound = parse_date(value, CHICAGO)
    assert (bound.prefix, bound.moment.isoformat()) == (prefix, moment)


@pytest.mark.parametrize("value", [
    "2026-1-5", "tomorrow",
    "2026-01-15", "ge2026-01-15",  # no time component
    "ge2026-01-15T10:00:00", "ge2026-01-15T10:00Z",  # no zone; no seconds
    "2026-01-15T10:00:00Z", "eq2026-01-15T10:00:00Z", "gt2026-01-15T10:00:00Z", "le2026-01-15T10:00:00Z",
    "ne2026-01-15T10:00:00Z",  # only ge and lt
])
def test_bad_date_values_are_refused(value):
    with pytest.raises(SearchError):
        parse_date(value, CHICAGO)


def test_date_ranges_need_one_ge_and_one_lt():
    in_range = date_range(["lt2026-01-16T00:00:00Z", "ge2026-01-15T00:00:00Z"], CHICAGO)
    assert in_range(datetime.fromisoformat("2026-01-15T00:00:00+00:00"))
    assert not in_range(datetime.fromisoformat("2026-01-16T00:00:00+00:00"))
    for values in (["ge2026-01-15T00:00:00Z"] * 2, ["lt2026-01-15T00:00:00Z"] * 2, ["ge2026-01-15T00:00:00Z"] * 3):
        with pytest.raises(SearchError):
            date_range(values, CHICAGO)


def test_patch_follows_cerners_status_sequences():
    booked = build_seed(today=TODAY).appointment("4826003")
    outcome = apply_appointment_patch(booked, [{"op": "replace", "path": "/status", "value": "checked-in"}])
    checked_in = outcome.resource
    assert checked_in["status"] == "checked-in" and booked["status"] == "booked"
    assert outcome.video_links is False
    with pytest.raises(FhirError) as refused:
        apply_appointment_patch(checked_in, [{"op": "replace", "path": "/status", "value": "booked"}])
    assert refused.value.status == 422
    # test is not among Cerner's documented operations: refused like any other.
    with pytest.raises(FhirError) as not_documented:
        apply_appointment_patch(booked, [{"op": "test", "path": "/status", "value": "booked"}])
    assert not_documented.value.status == 422
    with pytest.raises(FhirError) as not_a_patch:
        apply_appointment_patch(booked, {"op": "replace"})
    assert not_a_patch.value.status == 400


@pytest.mark.parametrize("version, links, expected", [
    ("1", False, "2"), ("1", True, "2-1"), ("2-1", False, "3-1"), ("2-1", True, "3-2"), ("10", False, "11"),
])
def test_versions_move_like_cerners_two_part_video_visit_versions(version, links, expected):
    assert next_version(version, links) == expected
