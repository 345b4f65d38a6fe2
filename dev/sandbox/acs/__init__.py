"""An Azure Communication Services resource on loopback: phone numbers and SMS.

It speaks the data-plane REST APIs that azure-communication-phonenumbers (1.4.0, api-version
2025-06-01) and azure-communication-sms (1.1.0, api-version 2021-03-07) call, and checks every
request's HMAC-SHA256 signature against the resource's access key, so both SDKs run unchanged
with ``AzureKeyCredential(key)``:

- phone numbers: search (long-running), search result, purchase (long-running), list, get,
  release (long-running); operations progress notStarted -> running -> succeeded/failed at a
  configurable :class:`LroPace` (see :mod:`.phone_numbers_api`);
- SMS: ``POST /sms`` with per-recipient answers, repeatable requests, an outbox,
  ``SMSDeliveryReportReceived`` events (see :mod:`.messaging`) and ACS's per-number rate limit
  (200 message units a minute, 429 + Retry-After beyond it: :mod:`.rate_limit`);
- inbound SMS from a simulated patient, with the carriers' STOP / START opt-out for toll-free
  numbers, as ``SMSReceived`` events (:mod:`.inbound`);
- Event Grid webhook subscriptions with the validation handshake, pushing both event types
  from a background thread with retries and a delivery log (:mod:`.event_grid`);
- ``/_sandbox/...`` controls (see :mod:`.sandbox_api`) and the shared ``/_sandbox/faults``.

Build it with :func:`create_app`; serve it with :class:`dev.sandbox.server.LoopbackServer`
(plain http is fine: the SDKs' HMAC policy does not insist on https), or run the whole
sandbox with ``python -m dev.stack --no-host``.
"""

from .app import create_app
from .event_grid import EventGrid, EventSubscription, SubscriptionRefused
from .hmac_auth import generate_access_key
from .inbound import InboundMessage, OptOutList
from .messaging import RecipientFailure, SentMessage, SmsGateway
from .operations import LroPace
from .inventory import PhoneNumberInventory
from .rate_limit import SlidingWindowLimiter

__all__ = [
    "EventGrid",
    "EventSubscription",
    "InboundMessage",
    "LroPace",
    "OptOutList",
    "PhoneNumberInventory",
    "RecipientFailure",
    "SentMessage",
    "SlidingWindowLimiter",
    "SmsGateway",
    "SubscriptionRefused",
    "create_app",
    "generate_access_key",
]
