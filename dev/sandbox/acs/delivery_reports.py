"""Delivery reports as Event Grid delivers them: ``Microsoft.Communication.SMSDeliveryReportReceived``.

The event (Event Grid schema) follows the example in Azure's "Azure Communication Services
- SMS events" article; the sandbox writes ``from`` in E.164 like ``to`` (the article's
example drops the ``+`` on ``from``) and ``tag`` in camelCase like every other data field.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from .wire import iso

EVENT_TYPE = "Microsoft.Communication.SMSDeliveryReportReceived"
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
    sent_at: datetime, tag: str | None,
) -> dict[str, Any]:
    """A delivered report for one sent message, as one Event Grid event."""
    attempted = sent_at + timedelta(seconds=1)
    received = sent_at + timedelta(seconds=2)
    data: dict[str, Any] = {
        "messageId": message_id,
        "from": from_,
        "to": to,
        "deliveryStatus": "Delivered",
        "deliveryStatusDetails": "No error.",
        "receivedTimestamp": iso(received),
        "deliveryAttempts": [
            {"timestamp": iso(attempted), "segmentsSucceeded": segment_count(message), "segmentsFailed": 0},
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
        "eventTime": received.strftime("%Y-%m-%dT%H:%M:%SZ"),
    }
