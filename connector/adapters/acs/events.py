"""ACS SMS events as Azure Event Grid delivers them to our webhook: parsed, never kept whole.

Pure code (no SDK, no network, no logging): the webhook function (``POST /api/events/acs``)
hands it the request body and headers and gets :class:`ParsedEvents`: either the validation
code to echo, or typed events. Anything else is :class:`~connector.errors.InvalidInput`
naming the JSON path that is wrong, never the value (bodies hold phone numbers and message
text).

**Schema: the Event Grid event schema only.** The webhook's event subscription must be created
with ``--event-delivery-schema eventgridschema`` (the default for an ACS system topic). The
CloudEvents 1.0 schema is refused with a message saying so: its handshake is an HTTP
``OPTIONS`` with ``WebHook-Request-Origin`` answered by ``WebHook-Allowed-Origin`` headers
(https://learn.microsoft.com/azure/event-grid/end-point-validation-cloud-events-schema), a
second protocol for no gain here.

The handshake (https://learn.microsoft.com/azure/event-grid/end-point-validation-event-grid-events-schema,
formerly ``webhook-event-delivery#endpoint-validation-with-event-grid-events``): with header
``aeg-event-type: SubscriptionValidation`` Event Grid POSTs an array holding one event::

    [{"id": "2d1781af-...", "topic": "/subscriptions/...", "subject": "",
      "data": {"validationCode": "512d38b6-c7b8-40c8-89fe-f46f9e9622b6",
               "validationUrl": "https://rp-eastus2.eventgrid.azure.net:553/eventsubscriptions/.../validate?..."},
      "eventType": "Microsoft.EventGrid.SubscriptionValidationEvent",
      "eventTime": "2018-01-25T22:12:19.4556811Z", "metadataVersion": "1", "dataVersion": "1"}]

and the endpoint must answer **200** (202 "is not recognized") within 30 s with
``{"validationResponse": "<validationCode>"}`` (:meth:`ParsedEvents.validation_response`).
``validationUrl`` (the manual handshake) is ignored.

Notifications (``aeg-event-type: Notification``) are a JSON array of events (one per POST by
default; at most :data:`MAX_EVENTS` here, so a subscription's ``maxEventsPerBatch`` must not be
higher). The two ACS SMS events, from "Azure Communication Services - SMS events"
(https://learn.microsoft.com/azure/event-grid/communication-services-telephony-sms-events) and the
SDKs' ``AcsSmsDeliveryReportReceivedEventData`` / ``AcsSmsReceivedEventData`` models::

    {"id": "Outgoing_2020...", "topic": "...", "subject": "/phonenumber/15555555555",
     "eventType": "Microsoft.Communication.SMSDeliveryReportReceived", "eventTime": "2020-09-18T00:22:20Z",
     "data": {"messageId": "Outgoing_2020...", "from": "15555555555", "to": "+15555555555",
              "deliveryStatus": "Delivered" | "Failed", "deliveryStatusDetails": "No error.",
              "receivedTimestamp": "2020-09-18T00:22:20.2855749Z",
              "deliveryAttempts": [{"timestamp", "segmentsSucceeded", "segmentsFailed"}], "tag": "..."},
     "dataVersion": "1.0", "metadataVersion": "1"}

    {"id": "Incoming_2020...", "eventType": "Microsoft.Communication.SMSReceived", ...,
     "data": {"messageId": "Incoming_2020...", "from": "15555555555", "to": "15555555555",
              "message": "...", "receivedTimestamp": "2020-09-18T00:27:45.32Z", "segmentCount": 1}}

The published examples disagree on the case of the data fields (``MessageId``,
``DeliveryStatus`` in the 2022 article and the REST spec's examples; camelCase but ``Tag`` in
today's article), so data fields are matched without regard to case. Numbers come with or
without the ``+`` and are returned in E.164. Timestamps carry up to seven fractional digits.

What is kept: a delivery report's message id, status, time and our own ``tag`` (never its
``to``: the patient's number); an inbound SMS's message id, the sender's number (only so the
caller can hash it at once; excluded from ``repr``), our number, the keyword and the time. The
inbound **text is read for the keyword and dropped**: it may hold PHI.

Keywords (the whole message, case-insensitive, surrounding blanks and trailing ``.!`` ignored):
``stop`` for the toll-free carriers' opt-out words STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT
plus the ones ACS lists for short codes (REVOKE, OPTOUT, OPT OUT), so we never honour less
than the carrier does; ``start`` for START and UNSTOP, the words that lift the carrier's block;
``help`` for HELP and INFO. (SMS FAQ, opt-out handling:
https://learn.microsoft.com/azure/communication-services/concepts/sms/sms-faq#opt-out-handling.)
After a STOP, ACS still accepts sends to that recipient (202) and reports them ``Failed`` with
"Sender blocked for given recipient." (error 4007, "The Destination/To number has opted out",
https://learn.microsoft.com/azure/communication-services/concepts/troubleshooting-info#sms-error-codes);
:attr:`DeliveryReport.opted_out` says so.

Event Grid delivers at least once and in no particular order: the caller dedupes by
``message_id`` and orders STOP/START by ``received_at``. Other event types (and
``Microsoft.EventGrid.SubscriptionDeletedEvent``) are counted in :attr:`ParsedEvents.ignored`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Union

from connector.domain.sms_events import DeliveryReport, DeliveryStatus, InboundSms, Keyword
from connector.errors import InvalidInput, Problem

MAX_BODY_BYTES = 1_048_576  # Event Grid's 1 MB event limit; our SMS events are ~1 KB each
MAX_EVENTS = 100
MAX_ID_CHARS = 256
MAX_VALIDATION_CODE_CHARS = 256  # Event Grid sends a GUID
MAX_KEYWORD_CHARS = 16  # longer messages are not keywords; the rest is never looked at

VALIDATION_EVENT = "Microsoft.EventGrid.SubscriptionValidationEvent"
SUBSCRIPTION_DELETED_EVENT = "Microsoft.EventGrid.SubscriptionDeletedEvent"
DELIVERY_REPORT_EVENT = "Microsoft.Communication.SMSDeliveryReportReceived"
SMS_RECEIVED_EVENT = "Microsoft.Communication.SMSReceived"
HEADER_EVENT_TYPE = "aeg-event-type"
_HEADER_VALUES = ("SubscriptionValidation", "Notification", "SubscriptionDeletion")

_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)
_PHONE = re.compile(r"^\+?\d{3,15}$")
_BLOCKED_DETAILS = re.compile(r"sender blocked for given recipient|\b4007\b", re.IGNORECASE)


_KEYWORDS = {
    **dict.fromkeys(("STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT", "REVOKE", "OPTOUT", "OPT OUT",
                     "OPT-OUT"), Keyword.stop),
    **dict.fromkeys(("START", "UNSTOP"), Keyword.start),
    **dict.fromkeys(("HELP", "INFO"), Keyword.help),
}


Event = Union[DeliveryReport, InboundSms]


@dataclass(frozen=True)
class ParsedEvents:
    """Either a handshake (``validation_code``) or the events of a notification."""

    validation_code: str | None = None
    events: tuple[Event, ...] = ()
    ignored: int = 0  # events of other types, and subscription deletions

    @property
    def is_validation(self) -> bool:
        return self.validation_code is not None

    def validation_response(self) -> dict[str, str]:
        """The JSON body that completes the handshake (answer it with 200)."""
        if self.validation_code is None:
            raise ValueError("not a validation handshake")
        return {"validationResponse": self.validation_code}


def sms_keyword(message: str) -> Keyword | None:
    """The opt-out / opt-in / help keyword ``message`` is, if it is one."""
    text = message.strip()
    if len(text) > MAX_KEYWORD_CHARS:
        return None
    text = " ".join(text.rstrip(".!").split()).upper()
    return _KEYWORDS.get(text)


def parse_event_grid(body: bytes, headers: Mapping[str, str] | None = None) -> ParsedEvents:
    """A webhook POST from Event Grid (Event Grid schema), checked and reduced."""
    if len(body) > MAX_BODY_BYTES:
        raise _invalid("body", f"is larger than {MAX_BODY_BYTES} bytes")
    delivery_kind = _header(headers or {}, HEADER_EVENT_TYPE)
    if delivery_kind is not None and delivery_kind not in _HEADER_VALUES:
        raise _invalid(f"headers.{HEADER_EVENT_TYPE}", f"must be one of {', '.join(_HEADER_VALUES)}")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid("body", "is not JSON") from None
    if isinstance(document, dict):
        if "specversion" in {key.lower() for key in document}:
            raise _invalid("body", "is a CloudEvents 1.0 event; this webhook takes the Event Grid event schema")
        raise _invalid("body", "must be a JSON array of Event Grid events")
    if not isinstance(document, list):
        raise _invalid("body", "must be a JSON array of Event Grid events")
    if not document:
        raise _invalid("body", "must hold at least one event")
    if len(document) > MAX_EVENTS:
        raise _invalid("body", f"has more than {MAX_EVENTS} events")

    envelopes = [_envelope(raw, f"[{i}]") for i, raw in enumerate(document)]
    validations = [i for i, (_, event_type, _) in enumerate(envelopes) if event_type == VALIDATION_EVENT]
    if delivery_kind == "SubscriptionValidation" or validations:
        if delivery_kind not in (None, "SubscriptionValidation"):
            raise _invalid(f"[{validations[0]}].eventType",
                           f"is a subscription validation, which comes only with {HEADER_EVENT_TYPE}: "
                           "SubscriptionValidation")
        if len(document) != 1 or not validations:
            raise _invalid("body", "must hold exactly one Microsoft.EventGrid.SubscriptionValidationEvent")
        return ParsedEvents(validation_code=_validation_code(envelopes[0][2], "[0].data"))

    events: list[Event] = []
    ignored = 0
    for i, (event_id, event_type, raw) in enumerate(envelopes):
        path = f"[{i}]"
        if event_type == DELIVERY_REPORT_EVENT:
            events.append(_delivery_report(event_id, raw, path))
        elif event_type == SMS_RECEIVED_EVENT:
            events.append(_inbound_sms(event_id, raw, path))
        else:
            ignored += 1
    return ParsedEvents(events=tuple(events), ignored=ignored)


# --- internals -----------------------------------------------------------------------


def _invalid(path: str, problem: str) -> InvalidInput:
    return InvalidInput(f"The Event Grid delivery is not one we can read: {path} {problem}.",
                        problems=[Problem(path, problem)])


def _header(headers: Mapping[str, str], name: str) -> str | None:
    value = headers.get(name)
    if value is None:
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == name), None)
    return value.strip() if isinstance(value, str) else None


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "must be a JSON object")
    return value


def _text(value: Any, path: str, *, max_chars: int = MAX_ID_CHARS) -> str:
    if not isinstance(value, str) or not value:
        raise _invalid(path, "must be a non-empty string")
    if len(value) > max_chars:
        raise _invalid(path, f"is longer than {max_chars} characters")
    return value


def _optional_text(value: Any, path: str, *, max_chars: int = MAX_ID_CHARS) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str):
        raise _invalid(path, "must be a string")
    if len(value) > max_chars:
        raise _invalid(path, f"is longer than {max_chars} characters")
    return value


def _field(data: dict[str, Any], name: str) -> Any:
    """``data[name]``, or the same field spelt in another case (``MessageId``, ``Tag``)."""
    if name in data:
        return data[name]
    folded = name.lower()
    return next((value for key, value in data.items() if isinstance(key, str) and key.lower() == folded), None)


def _moment(value: Any, path: str) -> datetime:
    """An ISO 8601 date-time with an offset and up to seven fractional digits, in UTC."""
    match = _DATETIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise _invalid(path, "must be an ISO 8601 date and time with an offset")
    seconds, fraction, offset = match.groups()
    fraction = (fraction or ".0")[:7].ljust(7, "0")
    try:
        moment = datetime.fromisoformat(f"{seconds}{fraction}{'+00:00' if offset.upper() == 'Z' else offset}")
    except ValueError:
        raise _invalid(path, "must be an ISO 8601 date and time with an offset") from None
    return moment.astimezone(timezone.utc)


def _phone(value: Any, path: str) -> str:
    """A number as ACS writes it (``15555555555``, ``+15555555555``, a short code) in E.164."""
    if not isinstance(value, str) or not _PHONE.match(value.strip()):
        raise _invalid(path, "must be a phone number (digits, with or without a leading +)")
    digits = value.strip().lstrip("+")
    return digits if len(digits) <= 6 and not value.strip().startswith("+") else f"+{digits}"


def _envelope(raw: Any, path: str) -> tuple[str, str, dict[str, Any]]:
    event = _object(raw, path)
    if "eventType" not in event and "specversion" in {key.lower() for key in event}:
        raise _invalid(path, "is a CloudEvents 1.0 event; this webhook takes the Event Grid event schema")
    event_id = _text(event.get("id"), f"{path}.id")
    event_type = _text(event.get("eventType"), f"{path}.eventType")
    return event_id, event_type, event


def _received_at(event: dict[str, Any], data: dict[str, Any], path: str) -> datetime:
    stamp = _field(data, "receivedTimestamp")
    if stamp is not None:
        return _moment(stamp, f"{path}.data.receivedTimestamp")
    return _moment(event.get("eventTime"), f"{path}.eventTime")


def _validation_code(event: dict[str, Any], path: str) -> str:
    data = _object(event.get("data"), path)
    code = _text(_field(data, "validationCode"), f"{path}.validationCode", max_chars=MAX_VALIDATION_CODE_CHARS)
    if not code.isprintable():
        raise _invalid(f"{path}.validationCode", "must be printable")
    return code


def _delivery_report(event_id: str, event: dict[str, Any], path: str) -> DeliveryReport:
    data = _object(event.get("data"), f"{path}.data")
    message_id = _text(_field(data, "messageId"), f"{path}.data.messageId")
    raw_status = _text(_field(data, "deliveryStatus"), f"{path}.data.deliveryStatus")
    details = _optional_text(_field(data, "deliveryStatusDetails"), f"{path}.data.deliveryStatusDetails",
                             max_chars=1024)
    tag = _optional_text(_field(data, "tag"), f"{path}.data.tag")
    try:
        status = DeliveryStatus(raw_status.strip().lower())
    except ValueError:
        status = DeliveryStatus.unknown
    opted_out = status is DeliveryStatus.failed and bool(details and _BLOCKED_DETAILS.search(details))
    return DeliveryReport(event_id=event_id, message_id=message_id, status=status,
                          received_at=_received_at(event, data, path), tag=tag, opted_out=opted_out)


def _inbound_sms(event_id: str, event: dict[str, Any], path: str) -> InboundSms:
    data = _object(event.get("data"), f"{path}.data")
    message_id = _text(_field(data, "messageId"), f"{path}.data.messageId")
    from_number = _phone(_field(data, "from"), f"{path}.data.from")
    to_number = _phone(_field(data, "to"), f"{path}.data.to")
    message = _field(data, "message")
    if not isinstance(message, str):
        raise _invalid(f"{path}.data.message", "must be a string")
    return InboundSms(event_id=event_id, message_id=message_id, from_number=from_number, to_number=to_number,
                      keyword=sms_keyword(message), received_at=_received_at(event, data, path))
