"""Inbound SMS (``Microsoft.Communication.SMSReceived``) and the carriers' opt-out list.

The event, as Azure's "Azure Communication Services - SMS events" article shows it (2025-01
version, https://learn.microsoft.com/azure/event-grid/communication-services-telephony-sms-events;
the data's fields as the SDKs' ``AcsSmsReceivedEventData`` models name them)::

    {"id": "Incoming_20200918002745d29ebbea-3341-4466-9690-0a03af35228e",
     "topic": "/subscriptions/.../communicationservices/<name>", "subject": "/phonenumber/15555555555",
     "data": {"messageId": "Incoming_...", "from": "15555555555", "to": "15555555555",
              "message": "...", "receivedTimestamp": "2020-09-18T00:27:45.32Z", "segmentCount": 1},
     "eventType": "Microsoft.Communication.SMSReceived", "dataVersion": "1.0",
     "metadataVersion": "1", "eventTime": "2020-09-18T00:27:47Z"}

The sandbox writes both numbers in E.164 (with ``+``; the article's example has none) and
the subject as the resource's own number (``to``), as delivery reports name the sender.

Opt-out, as ACS describes it for US toll-free numbers (SMS FAQ, "Opt-out handling",
https://learn.microsoft.com/azure/communication-services/concepts/sms/sms-faq#opt-out-handling):
the carrier enforces it and it cannot be overridden; after **STOP** "Azure Communication
Services detects STOP messages and blocks all further messages to the recipient. The delivery
report will indicate a failed delivery with status message as 'Sender blocked for given
recipient.'"; **START** or **UNSTOP** resubscribes; the STOP, UNSTOP and START messages are
still relayed to you as ``SMSReceived`` events. The block is per (sender number, recipient):
"blocks all texts sent from this number". The carrier's auto-replies ("NETWORK MSG: You
replied with the word STOP...") go to the handset, not through the resource, so they appear
nowhere here.

Keywords (case-insensitive, the whole message but surrounding blanks, as carriers match them):
opt-out STOP, STOPALL, UNSUBSCRIBE, CANCEL, END, QUIT (the toll-free industry set; ACS's FAQ
names STOP, and for short codes also QUIT, END, REVOKE, OPT OUT, CANCEL, UNSUBSCRIBE); opt-in
START, UNSTOP. HELP gets no carrier handling on toll-free numbers and changes nothing.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .delivery_reports import segment_count, topic
from .wire import event_time, iso

EVENT_TYPE = "Microsoft.Communication.SMSReceived"
OPT_OUT_KEYWORDS = frozenset({"STOP", "STOPALL", "UNSUBSCRIBE", "CANCEL", "END", "QUIT"})
OPT_IN_KEYWORDS = frozenset({"START", "UNSTOP"})


def carrier_keyword(message: str) -> str | None:
    """``"stop"`` or ``"start"`` when the carrier acts on ``message``, else None."""
    word = message.strip().upper()
    if word in OPT_OUT_KEYWORDS:
        return "stop"
    if word in OPT_IN_KEYWORDS:
        return "start"
    return None


@dataclass(frozen=True)
class OptOut:
    sender: str  # the resource's number the recipient texted STOP to
    recipient: str
    since: datetime

    def to_json(self) -> dict[str, str]:
        return {"sender": self.sender, "recipient": self.recipient, "since": iso(self.since)}


class OptOutList:
    """Who texted STOP to which of our numbers (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._entries: dict[tuple[str, str], OptOut] = {}

    def apply(self, sender: str, recipient: str, keyword: str | None, now: datetime) -> None:
        with self._lock:
            if keyword == "stop":
                self._entries.setdefault((sender, recipient), OptOut(sender, recipient, now))
            elif keyword == "start":
                self._entries.pop((sender, recipient), None)

    def blocks(self, sender: str, recipient: str) -> bool:
        with self._lock:
            return (sender, recipient) in self._entries

    def entries(self) -> list[OptOut]:
        with self._lock:
            return sorted(self._entries.values(), key=lambda e: e.since)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()


@dataclass(frozen=True)
class InboundMessage:
    message_id: str
    from_: str
    to: str
    message: str
    received_at: datetime
    keyword: str | None

    def to_json(self) -> dict[str, Any]:
        return {"messageId": self.message_id, "from": self.from_, "to": self.to, "message": self.message,
                "receivedAt": iso(self.received_at), "carrierKeyword": self.keyword}


def sms_received_event(*, resource_name: str, inbound: InboundMessage) -> dict[str, Any]:
    published = inbound.received_at + timedelta(seconds=2)
    return {
        "id": inbound.message_id,
        "topic": topic(resource_name),
        "subject": f"/phonenumber/{inbound.to.lstrip('+')}",
        "data": {
            "messageId": inbound.message_id,
            "from": inbound.from_,
            "to": inbound.to,
            "message": inbound.message,
            "receivedTimestamp": iso(inbound.received_at),
            "segmentCount": segment_count(inbound.message),
        },
        "eventType": EVENT_TYPE,
        "dataVersion": "1.0",
        "metadataVersion": "1",
        "eventTime": event_time(published),
    }
