"""What ``POST /sms`` does: check the request, answer per recipient, keep an outbox.

Per recipient, as ACS (API 2021-03-07) answers inside a 202 ``{"value": [...]}``:

- not E.164 (NANP-checked for +1) -> ``httpStatusCode`` 400, "Invalid To phone number format.";
- matching a :class:`RecipientFailure` rule (default: numbers ending in 0000) -> that failure;
- opted out of ``from`` (texted STOP to it, see :mod:`.inbound`) -> accepted as ACS does (202,
  a message id) but never delivered: not in the outbox, and a ``Failed`` delivery report
  ("Sender blocked for given recipient.") when ``enableDeliveryReport`` is set;
- otherwise sent: ``Outgoing_<yyyyMMddHHmmss><guid>`` message id, 202, into the outbox, and a
  delivery report when ``enableDeliveryReport`` is set.

Delivery reports are kept in memory (``/_sandbox/delivery-reports``) and, when an
:class:`~.event_grid.EventGrid` is attached, published to its webhook subscriptions
``report_delay`` seconds after the send ("delivered shortly after"). Inbound messages
(:meth:`SmsGateway.receive`, ``POST /_sandbox/inbound``) apply the carriers' STOP / START and
are published as ``SMSReceived`` events.

Repeatable requests follow ACS's "repeatable requests" rules (OASIS Repeatable Requests 1.0),
per recipient: ``repeatabilityRequestId`` (a GUID) plus ``repeatabilityFirstSent`` (RFC 1123)
mark it repeatable; the same id again with the same content within the tracked window returns
the ORIGINAL answer (same messageId, ``repeatabilityResult: "accepted"``) and sends nothing; the
same id with other content, or malformed headers, is ``rejected`` with 400; a first-sent time
outside the window is ``rejected`` with 412. Outcomes of 5xx are not remembered, so a repeat
re-executes them, as the rules say. (Microsoft's page states the 5-minute window for Email and
Rooms; the sandbox applies it to SMS too, so a sender that reuses an id must reuse its
first-sent time and expect 412 after five minutes.)

Request-level refusals: a malformed body, or a recipient that is not a number at all, is 400;
``from`` not owned by the resource (or not SMS-capable) is 401, as the SDK's live tests expect;
over the per-number rate limit (:mod:`.rate_limit`: 200 message units a minute, ACS's toll-free
limit) is 429 with ``Retry-After``, and nothing of the request is sent or remembered.
"""

from __future__ import annotations

import re
import threading
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from email.utils import parsedate_to_datetime
from typing import Any

from .delivery_reports import delivery_report_event
from .errors import BAD_REQUEST, NOT_FOUND, TOO_MANY_REQUESTS, UNAUTHORIZED, AcsError
from .event_grid import EventGrid
from .inbound import InboundMessage, OptOutList, carrier_keyword, sms_received_event
from .inventory import PhoneNumberInventory
from .rate_limit import SlidingWindowLimiter
from .wire import iso, utc_now

MAX_RECIPIENTS = 100
MAX_MESSAGE_LENGTH = 2048
INVALID_TO = "Invalid To phone number format."
BAD_FIRST_SENT = ("Request sent with Invalid DateTime value for repeatability-first-sent. "
                  "Expected is DateTime ,RFC1123 pattern.")  # ACS's wording
BAD_REQUEST_ID = "Request sent with invalid repeatability-request-id. Expected is a GUID."
DEFAULT_RECIPIENT_ERROR = "The sandbox refuses recipients ending in this suffix."
MISMATCH = "A request with this repeatability-request-id was already sent with different content."

_DIALLABLE = re.compile(r"^\+?\d+$")
_E164 = re.compile(r"^\+[1-9]\d{6,14}$")
_NANP = re.compile(r"^\+1[2-9]\d{2}[2-9]\d{6}$")


def is_e164(number: str) -> bool:
    return bool(_E164.match(number)) and (not number.startswith("+1") or bool(_NANP.match(number)))


@dataclass(frozen=True)
class RecipientFailure:
    """Recipients whose number ends with ``suffix`` are refused with this per-recipient answer."""

    suffix: str
    http_status_code: int = 400
    error_message: str = DEFAULT_RECIPIENT_ERROR


@dataclass(frozen=True)
class SentMessage:
    from_: str
    to: str
    message: str
    message_id: str
    sent_at: datetime
    tag: str | None

    def to_json(self) -> dict[str, Any]:
        return {"from": self.from_, "to": self.to, "message": self.message, "messageId": self.message_id,
                "sent_at": iso(self.sent_at), "tag": self.tag}


@dataclass(frozen=True)
class _SendRequest:
    from_: str
    recipients: list[dict[str, Any]]
    message: str
    enable_delivery_report: bool
    tag: str | None

    @classmethod
    def parse(cls, body: dict[str, Any]) -> _SendRequest:
        sender, recipients, message = body.get("from"), body.get("smsRecipients"), body.get("message")
        options = body.get("smsSendOptions") or {}
        if not isinstance(sender, str) or not sender:
            raise AcsError(400, BAD_REQUEST, "from is required.")
        if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
            raise AcsError(400, BAD_REQUEST, f"smsRecipients must list 1 to {MAX_RECIPIENTS} recipients.")
        if not all(isinstance(r, dict) and isinstance(r.get("to"), str) for r in recipients):
            raise AcsError(400, BAD_REQUEST, "Every recipient needs a to.")
        if any(not _DIALLABLE.match(r["to"]) for r in recipients):
            raise AcsError(400, BAD_REQUEST, INVALID_TO)  # not even a number: the whole request fails
        if not isinstance(message, str) or len(message) > MAX_MESSAGE_LENGTH:
            raise AcsError(400, BAD_REQUEST, f"message is required, at most {MAX_MESSAGE_LENGTH} characters.")
        if not isinstance(options, dict) or not isinstance(options.get("enableDeliveryReport", False), bool):
            raise AcsError(400, BAD_REQUEST, "smsSendOptions.enableDeliveryReport must be a boolean.")
        tag = options.get("tag")
        if tag is not None and not isinstance(tag, str):
            raise AcsError(400, BAD_REQUEST, "smsSendOptions.tag must be a string.")
        return cls(sender, recipients, message, options.get("enableDeliveryReport", False), tag)


@dataclass
class _Remembered:
    fingerprint: tuple[str, ...]
    first_sent: datetime
    answer: dict[str, Any] = field(default_factory=dict)


def _answer(to: str, status: int, *, message_id: str | None = None, error: str | None = None,
            repeatability: str | None = None) -> dict[str, Any]:
    """One ``SmsSendResponseItem``, keys in the order ACS writes them."""
    item: dict[str, Any] = {"to": to}
    if message_id:
        item["messageId"] = message_id
    item["httpStatusCode"] = status
    if repeatability:
        item["repeatabilityResult"] = repeatability
    item["successful"] = status == 202
    if error:
        item["errorMessage"] = error
    return item


class SmsGateway:
    """The SMS side of one ACS resource: sends from the inventory's numbers into an outbox."""

    def __init__(
        self, inventory: PhoneNumberInventory, *, resource_name: str = "acs-sandbox",
        repeatability_window: timedelta = timedelta(minutes=5),
        recipient_failures: tuple[RecipientFailure, ...] = (RecipientFailure("0000"),),
        rate_limiter: SlidingWindowLimiter | None = None,
        events: EventGrid | None = None,
        report_delay: float = 0.5,
    ) -> None:
        self.inventory = inventory
        self.resource_name = resource_name
        self.repeatability_window = repeatability_window
        self.rate_limiter = rate_limiter
        self.events = events
        self.report_delay = report_delay
        self.opt_outs = OptOutList()
        self._lock = threading.Lock()
        self._failures = list(recipient_failures)
        self._outbox: list[SentMessage] = []
        self._blocked: list[SentMessage] = []
        self._reports: list[dict[str, Any]] = []
        self._inbound: list[InboundMessage] = []
        self._remembered: dict[str, _Remembered] = {}

    def send(self, body: dict[str, Any]) -> list[dict[str, Any]]:
        request = _SendRequest.parse(body)
        if not self.inventory.can_send_sms(request.from_):
            raise AcsError(401, UNAUTHORIZED,
                           f"The phone number {request.from_} is not owned by this resource or cannot send SMS.")
        if self.rate_limiter is not None:
            throttled = self.rate_limiter.take(request.from_, len(request.recipients))
            if throttled is not None:
                raise AcsError(
                    429, TOO_MANY_REQUESTS,
                    f"Too many requests: the number {request.from_} may send {throttled.limit} message units per "
                    f"{throttled.window_seconds:g} seconds. Retry after {throttled.retry_after} seconds.",
                    headers={"Retry-After": str(throttled.retry_after)})
        now = utc_now()
        with self._lock:
            self._forget_before(now - self.repeatability_window)
            reported = len(self._reports)
            answers = [self._one(request, recipient, now) for recipient in request.recipients]
            fresh = self._reports[reported:]
        if fresh and self.events is not None:
            self.events.publish(fresh, delay=self.report_delay)
        return answers

    def receive(self, from_: Any, to: Any, message: Any) -> InboundMessage:
        """A patient's phone texts ``message`` to our number ``to``: the carrier applies STOP /
        START, and the message is published as an ``SMSReceived`` event."""
        if not isinstance(from_, str) or not is_e164(from_):
            raise AcsError(400, BAD_REQUEST, "from must be a phone number in E.164 (+1...).")
        if not isinstance(to, str) or not self.inventory.can_receive_sms(to):
            raise AcsError(404, NOT_FOUND, "to must be a number this resource owns that can receive SMS.")
        if not isinstance(message, str) or not message or len(message) > MAX_MESSAGE_LENGTH:
            raise AcsError(400, BAD_REQUEST, f"message is required, at most {MAX_MESSAGE_LENGTH} characters.")
        now = utc_now()
        inbound = InboundMessage(f"Incoming_{now:%Y%m%d%H%M%S}{uuid.uuid4()}", from_, to, message, now,
                                 carrier_keyword(message))
        self.opt_outs.apply(to, from_, inbound.keyword, now)
        with self._lock:
            self._inbound.append(inbound)
        if self.events is not None:
            self.events.publish([sms_received_event(resource_name=self.resource_name, inbound=inbound)])
        return inbound

    # --- outbox, delivery reports, failure rules (in-process and via /_sandbox) -----

    def outbox(self) -> list[SentMessage]:
        with self._lock:
            return list(self._outbox)

    def clear_outbox(self) -> None:
        with self._lock:
            self._outbox.clear()
            self._blocked.clear()

    def blocked(self) -> list[SentMessage]:
        """Messages accepted but never delivered because the recipient opted out."""
        with self._lock:
            return list(self._blocked)

    def inbound(self) -> list[InboundMessage]:
        with self._lock:
            return list(self._inbound)

    def clear_inbound(self) -> None:
        with self._lock:
            self._inbound.clear()

    def delivery_reports(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._reports)

    def take_delivery_reports(self) -> list[dict[str, Any]]:
        """The pending reports, now no longer pending (for whoever pushes them to a webhook)."""
        with self._lock:
            reports, self._reports = self._reports, []
            return reports

    def recipient_failures(self) -> list[RecipientFailure]:
        with self._lock:
            return list(self._failures)

    def set_recipient_failures(self, failures: list[RecipientFailure]) -> None:
        with self._lock:
            self._failures = list(failures)

    # --- internals (lock held) ------------------------------------------------------

    def _one(self, request: _SendRequest, recipient: dict[str, Any], now: datetime) -> dict[str, Any]:
        to = recipient["to"]
        request_id, first_sent = recipient.get("repeatabilityRequestId"), recipient.get("repeatabilityFirstSent")
        if request_id is None and first_sent is None:
            return self._deliver(request, to, now)
        if not isinstance(request_id, str) or not _is_guid(request_id):
            return _answer(to, 400, error=BAD_REQUEST_ID, repeatability="rejected")
        sent_first = _rfc1123(first_sent)
        if sent_first is None:
            return _answer(to, 400, error=BAD_FIRST_SENT, repeatability="rejected")
        if abs(now - sent_first) > self.repeatability_window:
            minutes = int(self.repeatability_window.total_seconds() // 60)
            error = f"Repeatability-First-Sent is not within the {minutes} minutes tracking window."
            return _answer(to, 412, error=error, repeatability="rejected")
        fingerprint = (request.from_, to, request.message, first_sent)
        remembered = self._remembered.get(request_id.lower())
        if remembered is not None:
            if remembered.fingerprint != fingerprint:
                return _answer(to, 400, error=MISMATCH, repeatability="rejected")
            return dict(remembered.answer)  # the original answer; nothing is sent again
        answer = self._deliver(request, to, now, repeatability="accepted")
        if answer["httpStatusCode"] < 500:
            self._remembered[request_id.lower()] = _Remembered(fingerprint, sent_first, answer)
        return answer

    def _deliver(
        self, request: _SendRequest, to: str, now: datetime, repeatability: str | None = None
    ) -> dict[str, Any]:
        if not is_e164(to):
            return _answer(to, 400, error=INVALID_TO, repeatability=repeatability)
        rule = next((f for f in self._failures if to.endswith(f.suffix)), None)
        if rule is not None:
            return _answer(to, rule.http_status_code, error=rule.error_message, repeatability=repeatability)
        message_id = f"Outgoing_{now:%Y%m%d%H%M%S}{uuid.uuid4()}"
        sent = SentMessage(request.from_, to, request.message, message_id, now, request.tag)
        blocked = self.opt_outs.blocks(request.from_, to)
        (self._blocked if blocked else self._outbox).append(sent)
        if request.enable_delivery_report:
            self._reports.append(delivery_report_event(
                resource_name=self.resource_name, message_id=message_id, from_=request.from_, to=to,
                message=request.message, sent_at=now, tag=request.tag, blocked=blocked))
        return _answer(to, 202, message_id=message_id, repeatability=repeatability)

    def _forget_before(self, horizon: datetime) -> None:
        expired = [key for key, seen in self._remembered.items() if seen.first_sent < horizon]
        for key in expired:
            del self._remembered[key]


def _is_guid(value: str) -> bool:
    try:
        uuid.UUID(value)
    except ValueError:
        return False
    return len(value) == 36


def _rfc1123(value: Any) -> datetime | None:
    """An IMF-fixdate (``Tue, 11 Jan 2022 17:22:10 GMT``) as an aware datetime, else None."""
    if not isinstance(value, str) or not value.endswith(" GMT"):
        return None
    try:
        parsed = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return parsed if parsed.tzinfo is not None else None
