"""Delivery reports as Event Grid delivers them: ``Microsoft.Communication.SMSDeliveryReportReceived``.

The event (Event Grid schema) follows the example in Azure's "Azure Communication Services
- SMS events" article
(https://learn.microsoft.com/azure/event-grid/communication-services-telephony-sms-events,
checked against its 2025-01 version and the REST spec's examples,
https://github.com/Azure/azure-rest-api-specs/tree/main/specification/eventgrid/data-plane/Microsoft.Communication/stable/2018-01-01/examples)::

    {"id": "Outgoing_202009180022138813a09b-...", "topic": "/subscriptions/.../communicationservices/<name>",
     "subject": "/phonenumber/15555555555",
     "data": {"messageId", "from", "to", "deliveryStatus": "Delivered" | "Failed",
              "deliveryStatusDetails": "No error.", "receivedTimestamp",
              "deliveryAttempts": [{"timestamp", "segmentsSucceeded", "segmentsFailed"}], "tag"},
     "eventType": "Microsoft.Communication.SMSDeliveryReportReceived", "dataVersion": "1.0",
     "metadataVersion": "1", "eventTime": "2020-09-18T00:22:20Z"}

The published examples disagree on the case of the data fields (the 2022 article and the
spec's CloudEvents example write ``MessageId``, ``DeliveryStatus``...; today's article and the
SDKs' models write camelCase, but ``Tag``); the sandbox writes camelCase throughout, as the
SDK models deserialize it. It writes ``from`` in E.164 like ``to`` (the article's example drops
the ``+`` on ``from``). Consumers should accept both spellings of each.

A recipient who texted STOP to a toll-free number is blocked by ACS and the carrier: the send
is still accepted (202) and the report says ``Failed`` with ``deliveryStatusDetails`` "Sender
blocked for given recipient." (SMS FAQ, "How does Azure Communication Services handle opt-outs
for toll-free numbers?", https://learn.microsoft.com/azure/communication-services/concepts/sms/sms-faq#opt-out-handling;
the troubleshooting page lists the matching code, 4007 "The Destination/To number has opted
out of receiving messages from you", as carried in ``DeliveryStatusDetails``:
https://learn.microsoft.com/azure/communication-services/concepts/troubleshooting-info#sms-error-codes).
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .wire import event_time, iso

EVENT_TYPE = "Microsoft.Communication.SMSDeliveryReportReceived"
DELIVERED, FAILED = "Delivered", "Failed"
NO_ERROR = "No error."
SENDER_BLOCKED = "Sender blocked for given recipient."  # ACS's wording (SMS FAQ) for an opted-out recipient
SANDBOX_SUBSCRIPTION = "00000000-0000-0000-0000-000000000000"
# Characters GSM 03.38 encodes in one septet (basic set) or two (extension table).
_GSM7_BASIC = set(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
_GSM7_EXTENDED = set("^{}\\[~]|€\f")


def segment_count(message: str) -> int:
    """How many SMS segments carriers bill ``message`` as (GSM-7: 160/153, else UCS-2: 70/67)."""
    if all(ch in _GSM7_BASIC or ch in _GSM7_EXTENDED for ch in message):
        units, single, part = sum(2 if ch in _GSM7_EXTENDED else 1 for ch in message), 160, 153
    else:
        units, single, part = len(message.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else -(-units // part)


def topic(resource_name: str) -> str:
    return (f"/subscriptions/{SANDBOX_SUBSCRIPTION}/resourceGroups/sandbox/providers/"
            f"microsoft.communication/communicationservices/{resource_name}")


def delivery_report_event(
    *, resource_name: str, message_id: str, from_: str, to: str, message: str,
    sent_at: datetime, tag: str | None, blocked: bool = False,
) -> dict[str, Any]:
    """The report for one sent message, as one Event Grid event: delivered, or failed because
    the recipient opted out (``blocked``)."""
    attempted = sent_at + timedelta(seconds=1)
    received = sent_at + timedelta(seconds=2)
    segments = segment_count(message)
    data: dict[str, Any] = {
        "messageId": message_id,
        "from": from_,
        "to": to,
        "deliveryStatus": FAILED if blocked else DELIVERED,
        "deliveryStatusDetails": SENDER_BLOCKED if blocked else NO_ERROR,
        "receivedTimestamp": iso(received),
        "deliveryAttempts": [
            {"timestamp": iso(attempted), "segmentsSucceeded": 0 if blocked else segments,
             "segmentsFailed": segments if blocked else 0},
        ],
    }
    if tag is not None:
        data["tag"] = tag
    return {
        "id": message_id,
        "topic": topic(resource_name),
        "subject": f"/phonenumber/{from_.lstrip('+')}",
        "data": data,
        "eventType": EVENT_TYPE,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": event_time(received),
    }
