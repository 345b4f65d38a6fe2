"""What ACS reports after a message, as the connector sees it (parsed in adapters/acs/events.py).

No text of an inbound message is kept beyond its keyword; the sender's number is hashed by
whoever receives it, at once, and is never logged (it is left out of ``repr``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from enum import Enum


class DeliveryStatus(str, Enum):
    delivered = "delivered"
    failed = "failed"
    unknown = "unknown"  # a status ACS does not document (it documents Delivered and Failed)


class Keyword(str, Enum):
    stop = "stop"
    start = "start"
    help = "help"


@dataclass(frozen=True)
class DeliveryReport:
    """``SMSDeliveryReportReceived``: what became of a message we sent."""

    event_id: str
    message_id: str
    status: DeliveryStatus
    received_at: datetime
    tag: str | None = None
    opted_out: bool = False  # failed because the recipient texted STOP to the sending number


@dataclass(frozen=True)
class InboundSms:
    """``SMSReceived``: a text to one of our numbers, reduced to its keyword."""

    event_id: str
    message_id: str
    from_number: str = field(repr=False)  # E.164 (a short code as is); hash it at once, never log or store it
    to_number: str  # our number, E.164
    keyword: Keyword | None
    received_at: datetime


