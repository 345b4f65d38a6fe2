"""``parse_event_grid``: ACS SMS events from Event Grid, checked and reduced.

The bodies are the published examples, as they are written:

- the handshake: "Endpoint validation with Event Grid event schema"
  (learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema);
- the SMS events: "Azure Communication Services - SMS events"
  (learn.microsoft.com/azure/event-grid/communication-services-telephony-sms-events), in its
  2025 version (camelCase data, but ``Tag``) and its 2022 version / the REST spec's examples
  (github.com/Azure/azure-rest-api-specs, specification/eventgrid/data-plane/Microsoft.Communication/
  stable/2018-01-01/examples: PascalCase data).
"""

from __future__ import annotations

import copy
import dataclasses
import json
from datetime import datetime, timedelta, timezone

import pytest

from connector.adapters.acs.events import (
    MAX_BODY_BYTES,
    MAX_EVENTS,
    DeliveryReport,
    DeliveryStatus,
    InboundSms,
    Keyword,
    parse_event_grid,
    sms_keyword,
)
from connector.errors import InvalidInput
from dev.sandbox.acs.delivery_reports import delivery_report_event
from dev.sandbox.acs.inbound import InboundMessage, sms_received_event

NOTIFICATION = {"aeg-event-type": "Notification"}
HANDSHAKE = {"aeg-event-type": "SubscriptionValidation"}

VALIDATION_EVENT = {
    "id": "2d1781af-3a4c-4d7c-bd0c-e34b19da4e66",
    "topic": "/subscriptions/xxxxxxxx-xxxx-xxxx-xxxx-xxxxxxxxxxxx",
    "subject": "",
    "data": {
        "validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
        "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/estest/validate?id=512d38b6-"
                         "c7b8-40c8-89fe-f46f9e9622b6&t=2018-04-26T20:30:54.4538837Z&apiVersion=2018-05-01-preview"
                         "&token=1A1A1A1A",
    },
    "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
    "eventTime": "2018-01-25T22:12:19.4556811Z",
    "metadataVersion": "1",
    "dataVersion": "1",
}

# The 2025 article: camelCase data, "Tag" capitalised, "from" without its "+".
DELIVERY_REPORT_2025 = {
    "id": "Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
    "topic": "/subscriptions/{subscription-id}/resourceGroups/{group-name}/providers/microsoft.communication/"
             "communicationservices/{communication-services-resource-name}",
    "subject": "/phonenumber/15555555555",
    "data": {
        "messageId": "Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
        "from": "15555555555",
        "to": "+15555555555",
        "deliveryStatus": "Delivered",
        "deliveryStatusDetails": "No error.",
        "receivedTimestamp": "2020-09-18T00:22:20.2855749Z",
        "deliveryAttempts": [{"timestamp": "2020-09-18T00:22:14.9315918Z", "segmentsSucceeded": 1,
                              "segmentsFailed": 0}],
        "Tag": "Optional customer-tag set in the original message",
    },
    "eventType": "Microsoft.Communication.SMSDeliveryReportReceived",
    "dataVersion": "1.0",
    "metadataVersion": "1",
    "eventTime": "2020-09-18T00:22:20Z",
}

# The 2022 article (and the spec's CloudEvents example's data): PascalCase data, no tag.
DELIVERY_REPORT_2022 = {
    **{k: v for k, v in DELIVERY_REPORT_2025.items() if k != "data"},
    "data": {
        "MessageId": "Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
        "From": "15555555555",
        "To": "+15555555555",
        "DeliveryStatus": "Delivered",
        "DeliveryStatusDetails": "No error.",
        "ReceivedTimestamp": "2020-09-18T00:22:20.2855749Z",
        "DeliveryAttempts": [{"Timestamp": "2020-09-18T00:22:14.9315918Z", "SegmentsSucceeded": 1,
                              "SegmentsFailed": 0}],
    },
}

SMS_RECEIVED_2025 = {
    "id": "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
    "topic": "/subscriptions/aaaa0a0a-bb1b-cc2c-dd3d-eeeeee4e4e4e/resourcegroups/acse2e/providers/"
             "microsoft.communication/communicationservices/{communication-services-resource-name}",
    "subject": "/phonenumber/15555555555",
    "data": {
        "messageId": "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
        "from": "15555555555",
        "to": "15555555555",
        "message": "Great to connect with Azure Communication Services events",
        "receivedTimestamp": "2020-09-18T00:27:45.32Z",
        "segmentCount": 1,
    },
    "eventType": "Microsoft.Communication.SMSReceived",
    "dataVersion": "1.0",
    "metadataVersion": "1",
    "eventTime": "2020-09-18T00:27:47Z",
}

# The REST spec's Event Grid schema example (PascalCase data, with SegmentCount).
SMS_RECEIVED_SPEC = {
    "id": "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
    "topic": "/subscriptions/50ad1522-5c2c-4d9a-a6c8-67c11ecb75b8/resourcegroups/acse2e/providers/"
             "microsoft.communication/communicationservices/{communication-services-resource-name}",
    "subject": "/phonenumber/15555555555",
    "data": {
        "MessageId": "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
        "From": "15555555555",
        "To": "15555555555",
        "Message": "Great to connect with ACS events",
        "ReceivedTimestamp": "2020-09-18T00:27:45.32Z",
        "SegmentCount": 1,
    },
    "eventType": "Microsoft.Communication.SMSReceived",
    "dataVersion": "1.0",
    "metadataVersion": "1",
    "eventTime": "2020-09-18T00:27:47Z",
}

PATIENT = "+13125550147"
OUR_NUMBER = "+18445550199"
PHI_TEXT = "Stop texting Jane Roe, DOB 1961-04-02, about her oncology visit"


def body(*events: dict) -> bytes:
    return json.dumps(list(events)).encode()


def inbound(message: str, **data) -> dict:
    event = copy.deepcopy(SMS_RECEIVED_2025)
    event["data"].update({"message": message, "from": PATIENT, "to": OUR_NUMBER, **data})
    return event


def refused(raw: bytes, headers: dict | None = NOTIFICATION) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_event_grid(raw, headers)
    return caught.value


def where(error: InvalidInput) -> str:
    assert len(error.problems) == 1
    return error.problems[0].field


# --- the handshake ---------------------------------------------------------------------


def test_the_validation_handshake_gives_the_code_to_echo() -> None:
    parsed = parse_event_grid(body(VALIDATION_EVENT), HANDSHAKE)

    assert parsed.is_validation and parsed.events == () and parsed.ignored == 0
    assert parsed.validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    assert parsed.validation_response() == {"validationResponse": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"}


def test_the_handshake_is_recognised_by_its_body_and_any_header_case() -> None:
    assert parse_event_grid(body(VALIDATION_EVENT)).validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"
    upper = {"AEG-Event-Type": "SubscriptionValidation"}
    assert parse_event_grid(body(VALIDATION_EVENT), upper).validation_code == "512d38b6-c7b8-40c8-89fe-f46f9e9622b6"


def test_a_validation_event_must_come_alone_and_as_a_handshake() -> None:
    smuggled = refused(body(DELIVERY_REPORT_2025, VALIDATION_EVENT), NOTIFICATION)
    assert where(smuggled) == "[1].eventType"
    assert "SubscriptionValidation" in smuggled.message

    assert where(refused(body(VALIDATION_EVENT, VALIDATION_EVENT), HANDSHAKE)) == "body"
    assert where(refused(body(DELIVERY_REPORT_2025), HANDSHAKE)) == "body"
    with pytest.raises(ValueError):
        parse_event_grid(body(DELIVERY_REPORT_2025), NOTIFICATION).validation_response()


@pytest.mark.parametrize("code, problem", [
    ("", "must be a non-empty string"),
    ("x" * 257, "is longer than 256 characters"),
    ("abc\ndef", "must be printable"),
    (42, "must be a non-empty string"),
])
def test_a_malformed_validation_code_is_refused(code, problem: str) -> None:
    event = copy.deepcopy(VALIDATION_EVENT)
    event["data"]["validationCode"] = code

    error = refused(body(event), HANDSHAKE)

    assert (error.problems[0].field, error.problems[0].message) == ("[0].data.validationCode", problem)


# --- delivery reports -------------------------------------------------------------------


def test_a_delivery_report_as_the_2025_article_writes_it() -> None:
    parsed = parse_event_grid(body(DELIVERY_REPORT_2025), NOTIFICATION)

    assert parsed.validation_code is None and parsed.ignored == 0
    assert parsed.events == (DeliveryReport(
        event_id="Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
        message_id="Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910",
        status=DeliveryStatus.delivered,
        received_at=datetime(2020, 9, 18, 0, 22, 20, 285574, tzinfo=timezone.utc),
        tag="Optional customer-tag set in the original message",
        opted_out=False),)


def test_a_delivery_report_with_pascal_case_data_reads_the_same() -> None:
    [report] = parse_event_grid(body(DELIVERY_REPORT_2022), NOTIFICATION).events

    assert isinstance(report, DeliveryReport)
    assert (report.message_id, report.status, report.tag, report.opted_out) == (
        "Outgoing_202009180022138813a09b-0cbf-4304-9b03-1546683bb910", DeliveryStatus.delivered, None, False)
    assert report.received_at == datetime(2020, 9, 18, 0, 22, 20, 285574, tzinfo=timezone.utc)


@pytest.mark.parametrize("status, details, expected, opted_out", [
    ("Failed", "Sender blocked for given recipient.", DeliveryStatus.failed, True),
    ("FAILED", "4007: The Destination/To number has opted out of receiving messages from you", DeliveryStatus.failed,
     True),
    ("Failed", "The Destination/To number isn't reachable", DeliveryStatus.failed, False),
    ("Failed", None, DeliveryStatus.failed, False),
    ("Delivered", "Sender blocked for given recipient.", DeliveryStatus.delivered, False),
    ("Expired", "5002", DeliveryStatus.unknown, False),
])
def test_failed_reports_and_opt_out_blocks(status: str, details, expected: DeliveryStatus, opted_out: bool) -> None:
    event = copy.deepcopy(DELIVERY_REPORT_2025)
    event["data"]["deliveryStatus"] = status
    if details is None:
        del event["data"]["deliveryStatusDetails"]
    else:
        event["data"]["deliveryStatusDetails"] = details

    [report] = parse_event_grid(body(event), NOTIFICATION).events

    assert (report.status, report.opted_out) == (expected, opted_out)


def test_without_received_timestamp_the_event_time_is_used() -> None:
    event = copy.deepcopy(DELIVERY_REPORT_2025)
    del event["data"]["receivedTimestamp"]

    [report] = parse_event_grid(body(event), NOTIFICATION).events

    assert report.received_at == datetime(2020, 9, 18, 0, 22, 20, tzinfo=timezone.utc)


def test_offsets_are_turned_into_utc() -> None:
    event = copy.deepcopy(DELIVERY_REPORT_2025)
    event["data"]["receivedTimestamp"] = "2020-09-17T19:22:20.5-05:00"

    [report] = parse_event_grid(body(event), NOTIFICATION).events

    assert report.received_at == datetime(2020, 9, 18, 0, 22, 20, 500000, tzinfo=timezone.utc)


# --- inbound SMS ----------------------------------------------------------------------


def test_an_inbound_sms_as_the_2025_article_writes_it() -> None:
    [sms] = parse_event_grid(body(SMS_RECEIVED_2025), NOTIFICATION).events

    assert sms == InboundSms(
        event_id="Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
        message_id="Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
        from_number="+15555555555", to_number="+15555555555", keyword=None,
        received_at=datetime(2020, 9, 18, 0, 27, 45, 320000, tzinfo=timezone.utc))


def test_an_inbound_sms_as_the_spec_example_writes_it() -> None:
    [sms] = parse_event_grid(body(SMS_RECEIVED_SPEC), NOTIFICATION).events

    assert (sms.message_id, sms.from_number, sms.to_number, sms.keyword) == (
        "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e", "+15555555555", "+15555555555", None)


@pytest.mark.parametrize("message, keyword", [
    ("STOP", Keyword.stop), ("stop", Keyword.stop), ("  Stop.  ", Keyword.stop), ("STOP!", Keyword.stop),
    ("StopAll", Keyword.stop), ("unsubscribe", Keyword.stop), ("Cancel", Keyword.stop), ("END", Keyword.stop),
    ("quit", Keyword.stop), ("Revoke", Keyword.stop), ("opt out", Keyword.stop), ("OPTOUT", Keyword.stop),
    ("START", Keyword.start), ("unstop", Keyword.start), ("Help", Keyword.help), ("info", Keyword.help),
    ("Please stop", None), ("STOPP", None), ("yes", None), ("", None), ("stop " * 10, None), (PHI_TEXT, None),
])
def test_keywords(message: str, keyword: Keyword | None) -> None:
    [sms] = parse_event_grid(body(inbound(message)), NOTIFICATION).events

    assert sms.keyword is keyword
    assert sms_keyword(message) is keyword
    assert (sms.from_number, sms.to_number) == (PATIENT, OUR_NUMBER)


def test_the_text_is_not_kept_and_the_number_is_not_in_repr() -> None:
    parsed = parse_event_grid(body(inbound(PHI_TEXT)), NOTIFICATION)
    [sms] = parsed.events

    kept = dataclasses.asdict(sms)
    assert set(kept) == {"event_id", "message_id", "from_number", "to_number", "keyword", "received_at"}
    assert all(PHI_TEXT not in str(value) and "oncology" not in str(value) for value in kept.values())
    assert kept["from_number"] == PATIENT
    assert PATIENT not in repr(parsed) and PATIENT.lstrip("+") not in repr(sms)
    assert OUR_NUMBER in repr(sms)


def test_a_short_code_sender_keeps_its_digits() -> None:
    [sms] = parse_event_grid(body(inbound("HELP", **{"from": "12345"})), NOTIFICATION).events

    assert (sms.from_number, sms.keyword) == ("12345", Keyword.help)


# --- batches ----------------------------------------------------------------------------


def test_a_batch_keeps_its_order_and_counts_what_it_ignores() -> None:
    blob_created = {"id": "93902694-901e-008f-6f95-7153a806873c", "eventType": "Microsoft.Storage.BlobCreated",
                    "subject": "/blobServices/default/containers/c/blobs/b", "eventTime": "2020-08-13T17:18:13Z",
                    "data": {"api": "PutBlob"}, "dataVersion": "", "metadataVersion": "1"}
    deleted = {"id": "d1", "eventType": "Microsoft.EventGrid.SubscriptionDeletedEvent", "subject": "",
               "eventTime": "2020-08-13T17:18:13Z", "data": {"eventSubscriptionId": "/subscriptions/x"},
               "dataVersion": "1", "metadataVersion": "1"}

    parsed = parse_event_grid(body(inbound("STOP"), blob_created, DELIVERY_REPORT_2025, deleted, inbound("START")),
                              NOTIFICATION)

    assert [type(e).__name__ for e in parsed.events] == ["InboundSms", "DeliveryReport", "InboundSms"]
    assert [getattr(e, "keyword", None) for e in parsed.events] == [Keyword.stop, None, Keyword.start]
    assert parsed.ignored == 2


def test_the_sandboxes_events_parse_to_what_it_sent() -> None:
    sent_at = datetime(2024, 5, 6, 14, 0, tzinfo=timezone.utc)
    report = delivery_report_event(resource_name="acs-sandbox", message_id="Outgoing_1", from_=OUR_NUMBER, to=PATIENT,
                                   message="Your visit", sent_at=sent_at, tag="visit-link", blocked=True)
    received = sms_received_event(resource_name="acs-sandbox", inbound=InboundMessage(
        "Incoming_1", PATIENT, OUR_NUMBER, "unsubscribe", sent_at, "stop"))

    parsed = parse_event_grid(body(report, received), NOTIFICATION)

    assert parsed.events == (
        DeliveryReport(event_id="Outgoing_1", message_id="Outgoing_1", status=DeliveryStatus.failed,
                       received_at=sent_at + timedelta(seconds=2), tag="visit-link", opted_out=True),
        InboundSms(event_id="Incoming_1", message_id="Incoming_1", from_number=PATIENT, to_number=OUR_NUMBER,
                   keyword=Keyword.stop, received_at=sent_at),
    )


# --- refusals ---------------------------------------------------------------------------


def test_cloud_events_are_refused_with_a_reason() -> None:
    cloud_event = {"id": "Incoming_1", "source": "/subscriptions/x", "specversion": "1.0",
                   "type": "Microsoft.Communication.SMSReceived", "time": "2020-09-18T00:27:47Z",
                   "subject": "/phonenumber/15555555555", "data": SMS_RECEIVED_SPEC["data"]}

    single = refused(json.dumps(cloud_event).encode())
    batch = refused(body(cloud_event))

    assert (where(single), where(batch)) == ("body", "[0]")
    assert all("CloudEvents" in e.message and "Event Grid event schema" in e.message for e in (single, batch))


@pytest.mark.parametrize("raw, path, problem", [
    (b"{not json", "body", "is not JSON"),
    (b"\xff\xfe", "body", "is not JSON"),
    (b'{"value": []}', "body", "must be a JSON array of Event Grid events"),
    (b'"text"', "body", "must be a JSON array of Event Grid events"),
    (b"[]", "body", "must hold at least one event"),
    (b"[42]", "[0]", "must be a JSON object"),
])
def test_malformed_bodies(raw: bytes, path: str, problem: str) -> None:
    error = refused(raw)

    assert (error.problems[0].field, error.problems[0].message) == (path, problem)


def test_size_and_count_limits() -> None:
    too_many = body(*([DELIVERY_REPORT_2025] * (MAX_EVENTS + 1)))
    assert parse_event_grid(body(*([DELIVERY_REPORT_2025] * MAX_EVENTS)), NOTIFICATION).events[-1].message_id
    assert refused(too_many).problems[0].message == f"has more than {MAX_EVENTS} events"

    padded = body(DELIVERY_REPORT_2025)[:-1] + b" " * MAX_BODY_BYTES + b"]"
    assert refused(padded).problems[0].message == f"is larger than {MAX_BODY_BYTES} bytes"


def test_an_unknown_delivery_header_is_refused() -> None:
    error = refused(body(DELIVERY_REPORT_2025), {"aeg-event-type": "Surprise"})

    assert where(error) == "headers.aeg-event-type"


def _broken(event: dict, *path_and_value) -> dict:
    event = copy.deepcopy(event)
    *keys, last, value = path_and_value
    target = event
    for key in keys:
        target = target[key]
    if value is KeyError:
        target.pop(last, None)
    else:
        target[last] = value
    return event


@pytest.mark.parametrize("event, path", [
    (_broken(DELIVERY_REPORT_2025, "id", KeyError), "[0].id"),
    (_broken(DELIVERY_REPORT_2025, "eventType", 7), "[0].eventType"),
    (_broken(DELIVERY_REPORT_2025, "data", KeyError), "[0].data"),
    (_broken(DELIVERY_REPORT_2025, "data", "messageId", KeyError), "[0].data.messageId"),
    (_broken(DELIVERY_REPORT_2025, "data", "deliveryStatus", ""), "[0].data.deliveryStatus"),
    (_broken(DELIVERY_REPORT_2025, "data", "Tag", ["a"]), "[0].data.tag"),
    (_broken(DELIVERY_REPORT_2025, "data", "receivedTimestamp", "18/09/2020 00:22"), "[0].data.receivedTimestamp"),
    (_broken(_broken(DELIVERY_REPORT_2025, "data", "receivedTimestamp", KeyError), "eventTime", KeyError),
     "[0].eventTime"),
    (_broken(inbound("STOP"), "data", "from", "Jane Roe"), "[0].data.from"),
    (_broken(inbound("STOP"), "data", "to", "+1 (844) 555-0199"), "[0].data.to"),
    (_broken(inbound("STOP"), "data", "message", None), "[0].data.message"),
    (_broken(inbound("STOP"), "data", "messageId", KeyError), "[0].data.messageId"),
])
def test_malformed_events_name_the_path(event: dict, path: str) -> None:
    assert where(refused(body(event))) == path


def test_refusals_never_carry_values() -> None:
    secrets_in_event = _broken(_broken(inbound(PHI_TEXT), "data", "from", "+1312555014x"), "data", "messageId",
                               PHI_TEXT)

    error = refused(body(secrets_in_event))

    rendered = json.dumps(error.as_dict())
    assert where(error) == "[0].data.from"
    assert "1312555014" not in rendered and "Jane" not in rendered and "oncology" not in rendered
