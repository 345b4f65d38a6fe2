"""Request bodies are parsed strictly and as the document says: no coercion of JSON types, a
broken document constraint is a 400 naming the field, a rule between fields a 422."""

from __future__ import annotations

import json

import azure.functions as func
import pytest

from connector.domain.endpoint import EndpointChange, EndpointDraft
from connector.domain.reminders import ReminderPolicy
from connector.errors import InvalidInput, UnprocessableInput
from connector.functions.admin.numbers import LinkNumber
from connector.functions.admin.reminders import PreviewRequest
from connector.functions.admin.tenant import SmsConsents
from connector.functions.http import error_response, parse_body
from connector.functions.openapi import OPERATIONS, openapi_document


def request(body) -> func.HttpRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    return func.HttpRequest("PUT", "http://127.0.0.1:7071/api/admin/x", headers={}, params={}, body=raw)


@pytest.mark.parametrize("model, body, field", [
    (SmsConsents, {"data": 0, "terms": False}, "data"),  # the case: 0 is not false
    (SmsConsents, {"data": "true", "terms": True}, "data"),
    (ReminderPolicy, {"reminder_offsets_minutes": ["60"]}, "reminder_offsets_minutes.0"),
    (ReminderPolicy, {"enabled": 1}, "enabled"),
    (ReminderPolicy, {"look_ahead_days": 8.5}, "look_ahead_days"),
    (ReminderPolicy, {"quiet_hours_start": "21:00:00Z"}, "quiet_hours_start"),
    (ReminderPolicy, {"virtual_visit": {"cerner_video_visit": "yes"}}, "virtual_visit.cerner_video_visit"),
    (EndpointChange, {"write_back_links": 1}, "write_back_links"),
    (EndpointChange, {"display_name": None}, "display_name"),  # null only where null means "erase"
    (EndpointChange, {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    (EndpointDraft, {"base_url": "https://x.example/r4", "environment": "test", "client_auth": "client_secret_basic"},
     "body"),
    (LinkNumber, {"phone_number": 18005550100}, "phone_number"),
    (PreviewRequest, {"start": 0}, "start"),
])
def test_a_wrong_type_is_a_400_naming_the_field(model, body, field):
    with pytest.raises(InvalidInput) as refused:
        parse_body(request(body), model)
    assert type(refused.value) is InvalidInput
    assert field in [p.field for p in refused.value.problems], refused.value.problems
    answer = json.loads(error_response(refused.value).get_body())
    assert answer["error"] == "invalid_input" and set(answer) == {"error", "message", "problems"}


def test_json_types_are_taken_as_the_document_says():
    policy = parse_body(request({"reminder_offsets_minutes": [30, 2880.0], "quiet_hours_start": "20:30",
                                 "enabled": True}), ReminderPolicy)
    assert policy.reminder_offsets_minutes == (2880, 30)  # 2880.0 is an integer in JSON Schema too
    assert str(policy.quiet_hours_start) == "20:30:00" and policy.enabled is True
    change = parse_body(request({"environment": "test", "meeting_organizer": None}), EndpointChange)
    assert change.given() == {"environment": "test", "meeting_organizer": None}
    assert parse_body(request({"terms": True, "data": False}), SmsConsents) == SmsConsents(terms=True, data=False)


def test_a_rule_between_fields_is_a_422():
    with pytest.raises(UnprocessableInput) as refused:
        parse_body(request({"quiet_hours_start": "10:00", "quiet_hours_end": "10:00"}), ReminderPolicy)
    assert refused.value.http_status == 422 and refused.value.problems[0].field == "body"


def test_every_request_body_is_a_documented_component_that_forbids_other_fields():
    components = openapi_document()["components"]["schemas"]
    for op in OPERATIONS:
        if op.body is not None:
            assert components[op.body.__name__]["additionalProperties"] is False, op.operation_id


def test_the_document_states_what_the_models_only_checked_in_code():
    schemas = openapi_document()["components"]["schemas"]
    change, draft, policy = schemas["EndpointChange"], schemas["EndpointDraft"], schemas["ReminderPolicy"]
    assert "America/Chicago" in change["properties"]["timezone"]["enum"] == draft["properties"]["timezone"]["enum"]
    assert "default" not in change["properties"]["display_name"]  # left out, not null
    assert change["properties"]["department_organizers"]["propertyNames"]["pattern"]
    assert draft["then"]["required"] == ["client_secret_name"]
    offsets = policy["properties"]["reminder_offsets_minutes"]
    assert offsets["uniqueItems"] is True and (offsets["items"]["minimum"], offsets["items"]["maximum"]) == (5, 20160)
    assert "format" not in policy["properties"]["quiet_hours_start"]  # a local clock time, no offset
