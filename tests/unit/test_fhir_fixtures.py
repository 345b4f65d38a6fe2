"""Every JSON file in tests/data/fixtures goes through the connector's FHIR parser.

Each file has one row in EXPECTED: parsed as a type (with exactly these repairs, then content
checks) or rejected with a reason. Files are collected by glob, so a new fixture without a row
fails, and so does a row whose file is gone. Sources and licences: tests/data/fixtures/SOURCES.md.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

import pytest

from connector.adapters.fhir.parsing import (
    NO_RESOURCE_TYPE,
    FhirParseError,
    parse_bundle,
    parse_resource,
)
from connector.services.telecom import mobile_phone_e164

FIXTURES = Path(__file__).parents[1] / "data" / "fixtures"
FILES = sorted(path.relative_to(FIXTURES).as_posix() for path in FIXTURES.rglob("*.json"))
CERNER_TENANT = "https://fhir-ehr-code.cerner.com/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
# Reading "now" for the phone checks: after every fixture period started, before none ended.
NOW = datetime(2024, 6, 1, tzinfo=UTC)


def load(name: str) -> Any:
    return json.loads((FIXTURES / name).read_text(encoding="utf-8"))


@dataclass(frozen=True)
class Parses:
    resource_type: str
    repairs: tuple[str, ...] = ()
    check: Callable[[Any], None] | None = None


@dataclass(frozen=True)
class Rejected:
    reason: str


# --- content checks, one per fixture that matters to the connector --------------------------


def video_visit(appointment: Any) -> None:
    assert appointment.id == "4817572"
    assert appointment.status == "noshow"
    assert appointment.start == datetime(2020, 7, 10, 13, 0, tzinfo=UTC)
    assert appointment.end == datetime(2020, 7, 10, 13, 15, tzinfo=UTC)
    assert appointment.minutesDuration == 15
    assert appointment.serviceType[0].text == "Video Visit"
    rooms = {r.id: r for r in appointment.contained}
    assert {r.get_resource_type() for r in rooms.values()} == {"HealthcareService"}
    assert rooms["28"].type[0].text == "Patient Virtual Meeting Room"
    assert rooms["31"].type[0].text == "Provider Virtual Meeting Room"
    assert rooms["28"].telecom[0].system == "url"
    assert len(appointment.participant) == 5
    actors = [p.actor.reference for p in appointment.participant]
    assert actors == ["Patient/12724066", "Practitioner/593923", "Location/21304876", "#28", "#31"]


def cancelled_surgery(appointment: Any) -> None:
    assert appointment.id == "4822366"
    assert appointment.status == "cancelled"
    assert appointment.start == datetime(2020, 1, 23, 22, 10, tzinfo=UTC)
    # The empty action-comment extension is gone; the two with values stay, in order.
    assert [e.url.rsplit("/", 1)[-1] for e in appointment.extension] == [
        "is-cancelable",
        "is-reschedulable",
    ]
    assert appointment.text.div.startswith('<div xmlns="http://www.w3.org/1999/xhtml">')
    assert '\\"' not in appointment.text.div
    assert len(appointment.participant) == 3
    assert appointment.participant[1].actor.reference is None  # a room: display only
    assert appointment.participant[2].actor.reference == "Patient/12724066"


def published_appointment_bundle(bundle: Any) -> None:
    assert bundle.type == "searchset"
    assert len(bundle.entry) == 1
    entry = bundle.entry[0]
    # The inner fullUrl is kept: it is the one that names the unwrapped resource.
    assert entry.fullUrl == f"{CERNER_TENANT}/Appointment/4822366"
    cancelled_surgery(entry.resource)
    normalized = parse_bundle(load("cerner/appointment-search-patient-date.bundle.normalized.json"))
    # Same resource as the hand-normalised copy, value for value.
    assert entry.resource == normalized.resource.entry[0].resource


def normalized_appointment_bundle(bundle: Any) -> None:
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["Appointment"]
    cancelled_surgery(bundle.entry[0].resource)


def proposed_request(appointment: Any) -> None:
    assert appointment.id is None and appointment.status == "proposed"
    assert appointment.start is None
    assert appointment.requestedPeriod[0].start.utcoffset().total_seconds() == -5 * 3600
    assert [p.actor.reference for p in appointment.participant] == [
        "Patient/12724066",
        "Location/21304876",
    ]


def cerner_patient_with_mobile(patient: Any) -> None:
    assert patient.id == "12783127"
    assert [t.use for t in patient.telecom] == ["work", "home", "mobile"]
    assert mobile_phone_e164(patient, now=NOW) == "+19132684302"


def cerner_patient_without_mobile(patient: Any) -> None:
    assert patient.id == "12724067"
    assert [t.rank for t in patient.telecom] == [1, 1]  # were "1" on the wire
    assert mobile_phone_e164(patient, now=NOW) is None  # a home phone and an e-mail only


def patient_bundle(bundle: Any) -> None:
    assert bundle.total == 1
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["Patient"]
    cerner_patient_without_mobile(bundle.entry[0].resource)


def cerner_practitioner(practitioner: Any) -> None:
    assert practitioner.id == "4122622"
    npi = [i.value for i in practitioner.identifier if i.system == "http://hl7.org/fhir/sid/us-npi"]
    assert npi == ["1111111111"]


def practitioner_bundle(bundle: Any) -> None:
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["Practitioner"]
    cerner_practitioner(bundle.entry[0].resource)


def cerner_encounter(encounter: Any) -> None:
    assert (encounter.id, encounter.status) == ("97939518", "finished")
    assert encounter.subject.reference == "Patient/12724066"
    assert encounter.period.end == datetime(2020, 1, 7, 6, 0, tzinfo=UTC)


def encounter_page(bundle: Any) -> None:
    assert [e.resource.get_resource_type() for e in bundle.entry] == ["Encounter"] * 6
    assert [link.relation for link in bundle.link] == ["self", "next"]


def secure_metadata(capabilities: Any) -> None:
    assert (capabilities.fhirVersion, capabilities.kind) == ("4.0.1", "instance")
    (oauth,) = capabilities.rest[0].security.extension
    assert oauth.url.endswith("/StructureDefinition/oauth-uris")
    uris = {e.url: e.valueUri for e in oauth.extension}
    assert {"authorize", "token"} <= set(uris)
    assert uris["authorize"].endswith("/personas/provider/authorize")


def open_metadata(capabilities: Any) -> None:
    assert capabilities.fhirVersion == "4.0.1"
    security = capabilities.rest[0].security
    assert security.cors is True and security.extension is None
    assert "Appointment" in {r.type for r in capabilities.rest[0].resource}


def hl7_appointment(appointment: Any) -> None:
    assert (appointment.id, appointment.status) == ("example", "booked")
    assert appointment.start == datetime(2013, 12, 10, 9, 0, tzinfo=UTC)
    assert len(appointment.participant) == 3


def hl7_two_doctors(appointment: Any) -> None:
    actors = [p.actor.reference if p.actor else None for p in appointment.participant]
    assert actors == ["Patient/example", "Practitioner/example", "Practitioner/f202", None]


def hl7_request(appointment: Any) -> None:
    assert appointment.status == "proposed" and appointment.start is None
    assert appointment.requestedPeriod[0].start == date(2016, 6, 2)  # date-only is allowed


def hl7_patient(patient: Any) -> None:
    mobile = [t for t in patient.telecom if t.use == "mobile"]
    assert [(t.value, t.rank) for t in mobile] == [("(03) 3410 5613", 2)]
    # An Australian national number cannot be read with a US default: no number, not a guess.
    assert mobile_phone_e164(patient, now=NOW) is None


EXPECTED: dict[str, Parses | Rejected] = {
    "cerner/appointment-create-proposed.request.json": Parses(
        "Appointment", check=proposed_request
    ),
    "cerner/appointment-read-4817572-video-visit.json": Parses("Appointment", check=video_visit),
    "cerner/appointment-read-4822366.entry.json": Parses(
        "Appointment",
        repairs=(
            "(root): unwrapped-entry",
            "text.div: unescaped-div",
            "extension[0]: dropped-empty-extension",
        ),
        check=cancelled_surgery,
    ),
    "cerner/appointment-search-patient-date.bundle.json": Parses(
        "Bundle",
        repairs=(
            "entry[0].resource: unwrapped-entry",
            "entry[0].resource.text.div: unescaped-div",
            "entry[0].resource.extension[0]: dropped-empty-extension",
        ),
        check=published_appointment_bundle,
    ),
    "cerner/appointment-search-patient-date.bundle.normalized.json": Parses(
        "Bundle",
        repairs=("entry[0].resource.extension[0]: dropped-empty-extension",),
        check=normalized_appointment_bundle,
    ),
    "cerner/encounter-read-97939518.json": Parses("Encounter", check=cerner_encounter),
    "cerner/encounter-search-patient-paged.bundle.json": Parses("Bundle", check=encounter_page),
    "cerner/metadata-capabilitystatement-open.json": Parses(
        "CapabilityStatement", check=open_metadata
    ),
    "cerner/metadata-capabilitystatement-secure.json": Parses(
        "CapabilityStatement", check=secure_metadata
    ),
    "cerner/patient-12783127-bulk-export-mobile.json": Parses(
        "Patient", check=cerner_patient_with_mobile
    ),
    "cerner/patient-read-12724067.json": Parses(
        "Patient",
        repairs=("telecom[0].rank: rank-from-string", "telecom[1].rank: rank-from-string"),
        check=cerner_patient_without_mobile,
    ),
    "cerner/patient-search-id.bundle.json": Parses(
        "Bundle",
        repairs=(
            "entry[0].resource.telecom[0].rank: rank-from-string",
            "entry[0].resource.telecom[1].rank: rank-from-string",
        ),
        check=patient_bundle,
    ),
    "cerner/practitioner-read-4122622.json": Parses("Practitioner", check=cerner_practitioner),
    "cerner/practitioner-search-npi.bundle.json": Parses("Bundle", check=practitioner_bundle),
    "cerner/smart-configuration.json": Rejected(NO_RESOURCE_TYPE),
    "hl7-r4-examples/Appointment-2docs.json": Parses("Appointment", check=hl7_two_doctors),
    "hl7-r4-examples/Appointment-example.json": Parses("Appointment", check=hl7_appointment),
    "hl7-r4-examples/Appointment-examplereq.json": Parses("Appointment", check=hl7_request),
    "hl7-r4-examples/Encounter-example.json": Parses("Encounter"),
    "hl7-r4-examples/Patient-example.json": Parses("Patient", check=hl7_patient),
    "hl7-r4-examples/Practitioner-example.json": Parses("Practitioner"),
    "smart-app-launch-spec/smart-configuration.conformance-sample.json": Rejected(NO_RESOURCE_TYPE),
    "smart-app-launch-spec/token-response.symmetric-auth-example.json": Rejected(NO_RESOURCE_TYPE),
}


def test_fixtures_are_found() -> None:
    assert len(FILES) >= len(EXPECTED) > 0


def test_every_row_names_an_existing_fixture() -> None:
    stale = sorted(set(EXPECTED) - set(FILES))
    assert not stale, f"EXPECTED names fixtures that do not exist: {stale}"


@pytest.mark.parametrize("name", FILES, ids=FILES)
def test_fixture_outcome(name: str) -> None:
    expected = EXPECTED.get(name)
    if expected is None:
        pytest.fail(f"{name} has no row in EXPECTED: add its expected outcome")
    data = load(name)
    if isinstance(expected, Rejected):
        with pytest.raises(FhirParseError) as caught:
            parse_resource(data)
        assert expected.reason in str(caught.value)
        return
    parsed = parse_resource(data, expected=expected.resource_type)
    assert parsed.resource.get_resource_type() == expected.resource_type
    assert [str(r) for r in parsed.repairs] == list(expected.repairs)
    if expected.check is not None:
        expected.check(parsed.resource)
