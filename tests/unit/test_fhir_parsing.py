"""Error paths and repairs of the FHIR parser, and the mobile-number helper.

Values that look like PHI (a name, a phone number) are planted in bad documents to prove that
errors name the path and the kind of problem, never the value.
"""

from __future__ import annotations

import copy
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from connector.adapters.fhir.parsing import (
    NO_RESOURCE_TYPE,
    UNKNOWN_RESOURCE_TYPE,
    FhirParseError,
    parse_bundle,
    parse_resource,
)
from connector.adapters.fhir.repairs import RepairKind
from connector.services.telecom import mobile_phone_e164, normalize_phone_e164
from connector.errors import InvalidUpstreamData, UpstreamError

PHI = "Jane Q. Citizen"
NOW = datetime(2024, 6, 1, tzinfo=UTC)
TENANT = "https://fhir-ehr.cerner.com/r4/tenant"


def appointment(**changes: Any) -> dict[str, Any]:
    resource = {
        "resourceType": "Appointment",
        "id": "4817572",
        "status": "booked",
        "start": "2020-07-10T13:00:00.000Z",
        "participant": [
            {"actor": {"reference": "Patient/12724066"}, "status": "accepted"},
            {"actor": {"reference": "Practitioner/593923"}, "status": "accepted"},
        ],
    }
    resource.update(changes)
    return resource


def searchset(*entries: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Bundle", "type": "searchset", "entry": list(entries)}


def rejection(data: Any, **kwargs: Any) -> FhirParseError:
    with pytest.raises(FhirParseError) as caught:
        parse_resource(data, **kwargs)
    return caught.value


def assert_no_leak(error: FhirParseError, *values: str) -> None:
    """Not in the message, the repr, the HTTP body, nor anything chained to the error."""
    shown = [str(error), repr(error), json.dumps(error.as_dict())]
    for value in values:
        assert all(value not in text for text in shown), value
    assert error.__cause__ is None and error.__context__ is None


# --- what is not a resource ------------------------------------------------------------------


def test_error_is_an_invalid_upstream_data_error() -> None:
    assert issubclass(FhirParseError, InvalidUpstreamData)
    assert issubclass(FhirParseError, UpstreamError)
    assert FhirParseError("x").http_status == 502


@pytest.mark.parametrize(
    "document",
    [
        {"access_token": "secret-token", "token_type": "Bearer", "patient": "12724066"},
        {"resourceType": "", "id": "1"},
        {},
    ],
    ids=["token-response", "empty-resourceType", "empty-object"],
)
def test_a_document_without_resource_type_is_not_a_resource(document: dict[str, Any]) -> None:
    error = rejection(document)
    assert str(error) == NO_RESOURCE_TYPE
    assert error.problems[0].field == "(root)"
    assert_no_leak(error, "secret-token", "12724066")


def test_a_json_array_is_not_a_resource() -> None:
    assert "not a JSON object" in str(rejection([appointment()]))


@pytest.mark.parametrize("name", [PHI, "JaneCitizen", "HumanName", "Resource", "DomainResource", 7])
def test_an_unknown_resource_type_is_rejected_without_echoing_it(name: Any) -> None:
    error = rejection({"resourceType": name, "id": "1"})
    assert str(error) == UNKNOWN_RESOURCE_TYPE
    assert_no_leak(error, str(name))


def test_an_unexpected_resource_type_names_both_types() -> None:
    error = rejection({"resourceType": "Patient", "id": "1"}, expected="Appointment")
    assert str(error) == "resourceType: expected Appointment, got Patient"
    error = rejection({"resourceType": "Patient"}, expected=("Appointment", "Encounter"))
    assert "expected Appointment or Encounter, got Patient" in str(error)
    assert (
        parse_resource(appointment(), expected=("Encounter", "Appointment")).resource.id
        == "4817572"
    )


def test_a_contained_resource_of_unknown_type_is_rejected_with_its_path() -> None:
    error = rejection(appointment(contained=[{"resourceType": "VirtualRoom", "name": PHI}]))
    assert str(error) == f"contained[0]: {UNKNOWN_RESOURCE_TYPE}"
    assert_no_leak(error, PHI, "VirtualRoom")


def test_a_bundle_entry_without_resource_type_is_rejected_with_its_path() -> None:
    error = rejection(searchset({"resource": {"id": "1", "name": [{"text": PHI}]}}))
    assert str(error) == f"entry[0].resource: {NO_RESOURCE_TYPE}"
    assert_no_leak(error, PHI)


# --- validation errors: where and what, never the value ------------------------------------


def test_a_wrongly_typed_element_names_its_path_not_its_value() -> None:
    bad = appointment()
    bad["participant"][1]["actor"] = PHI  # a Reference must be an object
    error = rejection(bad)
    assert "participant[1].actor" in str(error)
    assert "must be a JSON object" in str(error)
    assert_no_leak(error, PHI)


def test_an_unknown_element_names_its_path_not_its_value() -> None:
    bad = appointment()
    bad["participant"][0]["actor"]["patientName"] = PHI
    error = rejection(bad)
    assert str(error) == (
        "Appointment is not valid FHIR R4: participant[0].actor.patientName: "
        "is not an element of this FHIR type (extra_forbidden)"
    )
    assert_no_leak(error, PHI)


def test_a_malformed_primitive_names_its_path_not_its_value() -> None:
    error = rejection({"resourceType": "Patient", "birthDate": PHI, "telecom": [{"rank": "first"}]})
    fields = {problem.field for problem in error.problems}
    assert fields == {"birthDate", "telecom[0].rank"}
    assert "(and 1 more)" in str(error)
    assert_no_leak(error, PHI, "first")


def test_errors_inside_a_bundle_carry_the_full_path() -> None:
    bad = appointment()
    bad["participant"][1]["actor"] = {"reference": "Practitioner/1", "display": 12345}
    error = rejection(searchset({"fullUrl": f"{TENANT}/Appointment/4817572", "resource": bad}))
    assert error.problems[0].field == "entry[0].resource.participant[1].actor.display"
    assert "(string_type)" in error.problems[0].message
    assert_no_leak(error, "12345")


def test_a_missing_required_element_is_named() -> None:
    bad = appointment()
    del bad["status"]
    error = rejection(bad)
    assert error.problems[0].field == "status"
    assert "is required but missing" in str(error)


def test_problems_are_capped() -> None:
    bad = appointment(participant=[{"actor": PHI, "status": "accepted"}] * 50)
    error = rejection(bad)
    assert len(error.problems) == 20
    assert "(and 49 more)" in str(error)
    assert_no_leak(error, PHI)


# --- repairs --------------------------------------------------------------------------------


def test_a_nested_bundle_entry_is_unwrapped_keeping_the_fullurl_that_names_it() -> None:
    inner = appointment(id="4822366")
    published = searchset(
        {
            "fullUrl": f"{TENANT}/Appointment/4817517",
            "resource": {"fullUrl": f"{TENANT}/Appointment/4822366", "resource": inner},
        }
    )
    parsed = parse_bundle(published)
    entry = parsed.resource.entry[0]
    assert entry.resource.get_resource_type() == "Appointment"
    assert entry.resource.id == "4822366"
    assert entry.fullUrl == f"{TENANT}/Appointment/4822366"
    assert [(r.path, r.kind) for r in parsed.repairs] == [
        ("entry[0].resource", RepairKind.unwrapped_entry)
    ]


def test_an_unwrapped_entry_keeps_the_outer_fullurl_when_only_it_agrees() -> None:
    published = searchset(
        {
            "fullUrl": f"{TENANT}/Appointment/4817572",
            "resource": {"fullUrl": f"{TENANT}/Appointment/1", "resource": appointment()},
        }
    )
    assert parse_bundle(published).resource.entry[0].fullUrl == f"{TENANT}/Appointment/4817572"


def test_a_wrapper_that_is_not_exactly_an_entry_is_not_unwrapped() -> None:
    odd = searchset({"resource": {"resource": appointment(), "search": {"mode": "match"}}})
    assert str(rejection(odd)) == f"entry[0].resource: {NO_RESOURCE_TYPE}"


def test_a_document_that_is_a_bundle_entry_is_unwrapped() -> None:
    parsed = parse_resource({"fullUrl": f"{TENANT}/Appointment/4817572", "resource": appointment()})
    assert parsed.resource.id == "4817572"
    assert [str(r) for r in parsed.repairs] == ["(root): unwrapped-entry"]


def test_repairs_do_not_change_the_callers_data() -> None:
    data = {
        "fullUrl": "x",
        "resource": appointment(comment="", extension=[{"url": "u", "valueString": ""}]),
    }
    before = copy.deepcopy(data)
    parse_resource(data)
    assert data == before


def test_an_empty_extension_value_drops_the_extension() -> None:
    url = "https://fhir-ehr.cerner.com/r4/StructureDefinition/"
    parsed = parse_resource(
        appointment(
            extension=[
                {"valueString": "", "url": url + "action-comment"},
                {"valueBoolean": False, "url": url + "is-cancelable"},
            ]
        )
    )
    assert [e.url for e in parsed.resource.extension] == [url + "is-cancelable"]
    assert [str(r) for r in parsed.repairs] == ["extension[0]: dropped-empty-extension"]


def test_an_empty_string_member_is_dropped() -> None:
    parsed = parse_resource(appointment(comment="", description="Video Visit"))
    assert parsed.resource.comment is None
    assert parsed.resource.description == "Video Visit"
    assert [str(r) for r in parsed.repairs] == ["comment: dropped-empty-string"]


def test_an_empty_string_in_a_modifier_extension_is_rejected_not_repaired() -> None:
    bad = appointment(
        modifierExtension=[{"url": "https://example.org/cancelled-by", "valueString": ""}]
    )
    error = rejection(bad)
    assert error.problems[0].field == "modifierExtension[0].valueString"


def test_an_empty_string_in_an_array_is_rejected_not_repaired() -> None:
    error = rejection({"resourceType": "Patient", "name": [{"given": ["", PHI]}]})
    assert error.problems[0].field == "name[0].given[0]"
    assert_no_leak(error, PHI)


def test_a_string_rank_becomes_an_integer_and_a_bad_one_is_rejected() -> None:
    parsed = parse_resource(
        {"resourceType": "Patient", "telecom": [{"system": "phone", "rank": "2"}]}
    )
    assert parsed.resource.telecom[0].rank == 2
    assert [str(r) for r in parsed.repairs] == ["telecom[0].rank: rank-from-string"]
    zero = rejection({"resourceType": "Patient", "telecom": [{"rank": "0"}]})
    assert zero.problems[0].field == "telecom[0].rank"


def test_only_a_fully_escaped_div_is_unescaped() -> None:
    escaped = '<div xmlns=\\"http://www.w3.org/1999/xhtml\\"><p class=\\"x\\">Appointment</p></div>'
    parsed = parse_resource(appointment(text={"status": "generated", "div": escaped}))
    assert (
        parsed.resource.text.div
        == '<div xmlns="http://www.w3.org/1999/xhtml"><p class="x">Appointment</p></div>'
    )
    clean = '<div xmlns="http://www.w3.org/1999/xhtml"><p>say \\"hi\\"</p></div>'
    parsed = parse_resource(appointment(text={"status": "generated", "div": clean}))
    assert parsed.resource.text.div == clean and parsed.repairs == ()


# --- bundles --------------------------------------------------------------------------------


def test_parse_bundle_checks_entry_types_but_allows_search_outcomes() -> None:
    outcome = {
        "resource": {
            "resourceType": "OperationOutcome",
            "issue": [{"severity": "warning", "code": "processing"}],
        },
        "search": {"mode": "outcome"},
    }
    parsed = parse_bundle(
        searchset({"resource": appointment()}, outcome), entry_types="Appointment"
    )
    assert len(parsed.resource.entry) == 2
    patient = {"resource": {"resourceType": "Patient", "id": "12724066"}}
    with pytest.raises(FhirParseError) as caught:
        parse_bundle(searchset({"resource": appointment()}, patient), entry_types="Appointment")
    assert str(caught.value) == "entry[1].resource: expected Appointment, got Patient"


def test_parse_bundle_rejects_a_single_resource() -> None:
    with pytest.raises(FhirParseError, match="expected Bundle, got Appointment"):
        parse_bundle(appointment())


# --- phone numbers --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "e164"),
    [
        ("5555551234", "+15555551234"),  # Cerner: digits only
        ("(555) 555-1234", "+15555551234"),
        ("(816)204-1030", "+18162041030"),  # Cerner's iso21090-TEL-address rendering
        ("555.555.1234", "+15555551234"),
        ("1-555-555-1234", "+15555551234"),
        ("1 (555) 555-1234", "+15555551234"),
        ("+1 555 555 1234", "+15555551234"),
        ("+15555551234", "+15555551234"),
        ("tel:+1-555-555-1234", "+15555551234"),
        (" 555 555 1234 ", "+15555551234"),
        ("+44 20 7946 0958", "+442079460958"),
        ("+44 (0)20 7946 0958", "+442079460958"),
        ("+61 3 3410 5613", "+61334105613"),
    ],
)
def test_phone_numbers_normalise_to_e164(raw: str, e164: str) -> None:
    assert normalize_phone_e164(raw) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "",
        "   ",
        "+",
        "555-1234",  # local number: area code unknown
        "0555551234",  # area codes start 2-9
        "1555551234",
        "155555512345",
        "25555512345",  # 11 digits not starting with 1
        "911-555-1234",  # N11 is a service code
        "555-911-1234",
        "555-055-1234",  # exchanges start 2-9
        "+1 555 555 123",
        "+1 155 555 1234",
        "+0 20 7946 0958",
        "+12345",  # too short for E.164
        "+1234567890123456",  # too long for E.164
        "555-555-1234 x12",  # extensions cannot receive SMS
        "(03) 3410 5613",  # Australian national number, US default
        "011 44 20 7946 0958",  # international prefixes are not interpreted
        "five five five",
        "\u0665\u0665\u0665\u0665\u0665\u0665\u0661\u0662\u0663\u0664",  # non-ASCII digits
    ],
)
def test_unusable_phone_numbers_give_none(raw: str) -> None:
    assert normalize_phone_e164(raw) is None


def test_a_non_nanp_default_region_is_refused() -> None:
    with pytest.raises(ValueError, match="NANP"):
        normalize_phone_e164("020 7946 0958", default_region="GB")
    assert normalize_phone_e164("613-555-0142", default_region="CA") == "+16135550142"


def patient(*telecom: dict[str, Any], contact_phone: str | None = None) -> Any:
    data: dict[str, Any] = {"resourceType": "Patient", "id": "1", "telecom": list(telecom)}
    if contact_phone:
        data["contact"] = [
            {"telecom": [{"system": "phone", "value": contact_phone, "use": "mobile"}]}
        ]
    return parse_resource(data, expected="Patient").resource


def mobile(value: str, rank: int | None = None, **period: str) -> dict[str, Any]:
    point: dict[str, Any] = {"system": "phone", "value": value, "use": "mobile"}
    if rank is not None:
        point["rank"] = rank
    if period:
        point["period"] = period
    return point


def test_mobile_phone_prefers_the_lowest_rank() -> None:
    p = patient(
        mobile("5555550003"),
        mobile("5555550002", rank=2),
        {"system": "phone", "value": "5555550001", "use": "home", "rank": 1},
        {**mobile("5555550004", rank=1), "system": "sms"},
    )
    assert mobile_phone_e164(p, now=NOW) == "+15555550004"


def test_mobile_phone_skips_ended_future_and_garbled_numbers() -> None:
    p = patient(
        mobile("5555550001", rank=1, end="2014"),
        mobile("5555550002", rank=1, end="2024-05-31T23:59:59Z"),
        mobile("5555550003", rank=1, start="2024-07"),
        mobile("not a number", rank=1),
        mobile("5555550005", rank=2, end="2024-06"),  # the whole of June 2024
    )
    assert mobile_phone_e164(p, now=NOW) == "+15555550005"


def test_mobile_phone_ignores_other_uses_systems_and_the_contacts() -> None:
    p = patient(
        {**mobile("5555550001"), "use": "home"},
        {"system": "phone", "value": "5555550002"},
        {**mobile("someone@example.org"), "system": "email"},
        {**mobile("5555550004"), "system": "fax"},
        contact_phone="5555550005",
    )
    assert mobile_phone_e164(p, now=NOW) is None
    assert mobile_phone_e164(patient(), now=NOW) is None
