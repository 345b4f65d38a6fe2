"""Microsoft Graph change notifications for Teams meeting call events, parsed and reduced.

Pure code (no SDK, no network): the webhook function hands it the request body and gets
:class:`~connector.domain.meeting.CallEvent` values, or :class:`~connector.errors.InvalidInput`
naming the JSON path that is wrong (never the value).

What Graph sends (sources, all on learn.microsoft.com):

- The handshake (``/graph/change-notifications-delivery-webhooks#notificationurl-validation``):
  before it answers the subscription POST, Graph POSTs to ``notificationUrl?validationToken=...``;
  the endpoint must answer within 10 s with 200, ``Content-Type: text/plain`` and the URL-decoded
  token as the body. :func:`validation_token` picks it out of the query parameters.
- A ``changeNotificationCollection`` (``/graph/api/resources/changenotificationcollection``),
  one or more items for our subscriptions::

      {"value": [{"subscriptionId": "...", "clientState": "...", "changeType": "updated",
                  "tenantId": "<tid>", "resource": "communications/onlineMeetings(joinWebUrl='...')/meetingCallEvents",
                  "subscriptionExpirationDateTime": "...",
                  "resourceData": {"@odata.type": "#microsoft.graph.callevent", "@odata.id": "...", "id": "..."},
                  "encryptedContent": {"data", "dataSignature", "dataKey", "encryptionCertificateId",
                                       "encryptionCertificateThumbprint"}}],
       "validationTokens": ["<JWT>"]}

- The call event itself (``/graph/changenotifications-for-onlinemeeting``, "Decrypted payload
  examples", the page's current version)::

      {"@odata.type": "#microsoft.graph.callevent", "id": "...",
       "eventType": "callStarted" | "callEnded" | "rosterUpdated",
       "eventDateTime": "2022-02-28T00:00:00.0000000Z",
       "participants@delta": [{"id": "<participant id>", "isInLobby": true,
                               "info": {"identity": {"user": {"id", "displayName", "tenantId"}}},
                               "removedState": {"reason": "Participant has left the meeting call."}}]}

  Rich notifications carry it encrypted in ``encryptedContent`` (decrypted here when the
  certificate's private key is given: RSA-OAEP-SHA1 data key, HMAC-SHA256 check, AES-CBC with
  PKCS7 and the key's first 16 bytes as IV, per ``/graph/change-notifications-with-resource-data``).
  Without encryption the event's properties are in ``resourceData`` (what the page said until
  2024 and what the sandbox sends by default); today's page says basic notifications carry ids
  only, in which case there is nothing to reduce and the item is refused as lacking ``eventType``.
  Older versions of the page named the types ``Microsoft.Communication.CallStarted`` /
  ``CallEnded`` / ``CallRosterUpdate``, and the ``callEvent`` resource calls the property
  ``callEventType``; both spellings are read.

Roles: a participant whose identity is a ``user`` of the notification's own tenant
(``tenantId``), or whose user id is one of ``organizer_ids``, is the organizer side
(:attr:`ParticipantRole.organizer`: the clinician's meeting account or anyone in the
organisation). Everyone else (``guest`` identities of anonymous web joiners, ACS users, phone
numbers, users of other tenants) is a :attr:`ParticipantRole.guest`. A participant with a
``removedState`` has left; ``isInLobby`` says whether they wait in the lobby. Display names are
never read. Lifecycle notifications (``lifecycleEvent``) are not call events and are skipped.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import re
from collections.abc import Collection, Mapping
from datetime import datetime, timezone
from typing import Any

from connector.domain.meeting import CallEvent, CallEventKind, ParticipantRole, RosterChange
from connector.errors import InvalidInput, Problem

MAX_BODY_BYTES = 1_000_000
# Graph batches a handful of notifications per POST; an anonymous caller must not make us
# decrypt thousands (each costs an RSA decryption) before any clientState is checked.
MAX_NOTIFICATIONS = 100
MAX_VALIDATION_TOKEN_CHARS = 1024
_KINDS = {
    "callStarted": CallEventKind.call_started,
    "callEnded": CallEventKind.call_ended,
    "rosterUpdated": CallEventKind.roster_updated,
    "Microsoft.Communication.CallStarted": CallEventKind.call_started,
    "Microsoft.Communication.CallEnded": CallEventKind.call_ended,
    "Microsoft.Communication.CallRosterUpdate": CallEventKind.roster_updated,
}
_DATETIME = re.compile(r"^(\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2})(\.\d+)?(Z|[+-]\d{2}:\d{2})$", re.IGNORECASE)


def validation_token(params: Mapping[str, str]) -> str | None:
    """The token of Graph's validation handshake (already URL-decoded, as query parameters are),
    or None when this is not a handshake. Answer it as ``text/plain`` with status 200."""
    token = params.get("validationToken")
    if not token:
        return None
    if len(token) > MAX_VALIDATION_TOKEN_CHARS:
        raise _invalid("validationToken", "is longer than a Graph validation token can be")
    return token


def _invalid(path: str, problem: str) -> InvalidInput:
    return InvalidInput(f"The change notification is not one we can read: {path} {problem}.",
                        problems=[Problem(path, problem)])


def _object(value: Any, path: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise _invalid(path, "must be a JSON object")
    return value


def _text(value: Any, path: str, *, required: bool = True) -> str | None:
    if value is None and not required:
        return None
    if not isinstance(value, str) or (required and not value):
        raise _invalid(path, "must be a non-empty string" if required else "must be a string")
    return value


def _moment(value: Any, path: str) -> datetime:
    """Graph's DateTimeOffset (up to seven fractional digits, which ``fromisoformat`` refuses)."""
    match = _DATETIME.match(value) if isinstance(value, str) else None
    if match is None:
        raise _invalid(path, "must be an ISO 8601 date and time with an offset")
    seconds, fraction, offset = match.groups()
    fraction = (fraction or ".0")[:7].ljust(7, "0")  # "." and six digits
    try:
        moment = datetime.fromisoformat(f"{seconds}{fraction}{'+00:00' if offset.upper() == 'Z' else offset}")
    except ValueError:
        raise _invalid(path, "must be an ISO 8601 date and time with an offset") from None
    return moment.astimezone(timezone.utc)


def _role(identity: Any, path: str, tenant_id: str | None, organizer_ids: frozenset[str]) -> ParticipantRole:
    if identity is None:
        return ParticipantRole.guest
    identity = _object(identity, path)
    user = identity.get("user")
    if user is None:
        return ParticipantRole.guest
    user = _object(user, f"{path}.user")
    user_id = _text(user.get("id"), f"{path}.user.id", required=False)
    user_tenant = _text(user.get("tenantId"), f"{path}.user.tenantId", required=False)
    if user_id and user_id.lower() in organizer_ids:
        return ParticipantRole.organizer
    if user_tenant and tenant_id and user_tenant.lower() == tenant_id.lower():
        return ParticipantRole.organizer
    return ParticipantRole.guest


def _roster(event: dict[str, Any], path: str, tenant_id: str | None,
            organizer_ids: frozenset[str]) -> tuple[RosterChange, ...]:
    delta = event.get("participants@delta", [])
    if not isinstance(delta, list):
        raise _invalid(f"{path}.participants@delta", "must be a JSON array")
    changes = []
    for j, raw in enumerate(delta):
        where = f"{path}.participants@delta[{j}]"
        participant = _object(raw, where)
        participant_id = _text(participant.get("id"), f"{where}.id")
        in_lobby = participant.get("isInLobby", False)
        if in_lobby is None:
            in_lobby = False
        if not isinstance(in_lobby, bool):
            raise _invalid(f"{where}.isInLobby", "must be true or false")
        info = participant.get("info")
        identity = _object(info, f"{where}.info").get("identity") if info is not None else None
        role = _role(identity, f"{where}.info.identity", tenant_id, organizer_ids)
        removed = participant.get("removedState")
        if removed is not None and not isinstance(removed, dict):
            raise _invalid(f"{where}.removedState", "must be a JSON object")
        changes.append(RosterChange(participant_id=participant_id, role=role, in_lobby=in_lobby and removed is None,
                                    left=removed is not None))
    return tuple(changes)


def decrypt_content(encrypted: Mapping[str, Any], private_key: Any, *, path: str = "encryptedContent") -> bytes:
    """The plaintext of a rich notification's ``encryptedContent`` (``private_key``: the
    certificate's RSA private key, a ``cryptography`` key object or PEM bytes)."""
    from cryptography.hazmat.primitives import hashes, padding
    from cryptography.hazmat.primitives.asymmetric import padding as asym_padding
    from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    if isinstance(private_key, (bytes, str)):
        private_key = load_pem_private_key(private_key.encode() if isinstance(private_key, str) else private_key, None)
    parts = {}
    for name in ("data", "dataSignature", "dataKey"):
        try:
            parts[name] = base64.b64decode(_text(encrypted.get(name), f"{path}.{name}") or "", validate=True)
        except (binascii.Error, ValueError):
            raise _invalid(f"{path}.{name}", "must be base64") from None
    try:
        key = private_key.decrypt(parts["dataKey"], asym_padding.OAEP(
            mgf=asym_padding.MGF1(algorithm=hashes.SHA1()), algorithm=hashes.SHA1(), label=None))
    except ValueError:
        raise _invalid(f"{path}.dataKey", "cannot be decrypted with the notification certificate's key") from None
    expected = hmac.new(key, parts["data"], hashlib.sha256).digest()
    if len(key) not in (16, 24, 32) or not hmac.compare_digest(expected, parts["dataSignature"]):
        raise _invalid(f"{path}.dataSignature", "does not match the data: the notification was altered")
    try:
        decryptor = Cipher(algorithms.AES(key), modes.CBC(key[:16])).decryptor()
        padded = decryptor.update(parts["data"]) + decryptor.finalize()
        unpadder = padding.PKCS7(128).unpadder()
        return unpadder.update(padded) + unpadder.finalize()
    except ValueError:
        raise _invalid(f"{path}.data", "cannot be decrypted") from None


def _call_event(item: dict[str, Any], path: str, decryption_keys: Mapping[str, Any] | None) -> tuple[dict, str]:
    """The item's call event JSON and the path it was read from."""
    encrypted = item.get("encryptedContent")
    if encrypted is not None:
        where = f"{path}.encryptedContent"
        encrypted = _object(encrypted, where)
        certificate_id = _text(encrypted.get("encryptionCertificateId"), f"{where}.encryptionCertificateId")
        key = (decryption_keys or {}).get(certificate_id or "")
        if key is None:
            raise _invalid(f"{where}.encryptionCertificateId", "names no certificate whose key we hold")
        try:
            return _object(json.loads(decrypt_content(encrypted, key, path=where)), where), where
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise _invalid(where, "does not decrypt to JSON") from None
    where = f"{path}.resourceData"
    return _object(item.get("resourceData"), where), where


def parse_call_events(
    body: bytes,
    *,
    organizer_ids: Collection[str] = (),
    decryption_keys: Mapping[str, Any] | None = None,
) -> list[CallEvent]:
    """Every call event in a change notification POST body, in order.

    ``organizer_ids``: Entra object ids of the organizer accounts (the clinician's meeting
    account), counted as :attr:`ParticipantRole.organizer` even without a ``tenantId``.
    ``decryption_keys``: ``encryptionCertificateId`` -> private key, for rich notifications.
    The caller still has to compare each event's ``client_state`` with the subscription's.
    """
    if len(body) > MAX_BODY_BYTES:
        raise _invalid("body", f"is larger than {MAX_BODY_BYTES} bytes")
    try:
        document = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise _invalid("body", "is not JSON") from None
    document = _object(document, "body")
    items = document.get("value")
    if not isinstance(items, list):
        raise _invalid("value", "must be a JSON array")
    if len(items) > MAX_NOTIFICATIONS:
        raise _invalid("value", f"has more than {MAX_NOTIFICATIONS} notifications")
    organizers = frozenset(oid.lower() for oid in organizer_ids)
    events = []
    for i, raw in enumerate(items):
        path = f"value[{i}]"
        item = _object(raw, path)
        if "lifecycleEvent" in item:
            continue
        subscription_id = _text(item.get("subscriptionId"), f"{path}.subscriptionId")
        client_state = _text(item.get("clientState"), f"{path}.clientState", required=False)
        tenant_id = _text(item.get("tenantId"), f"{path}.tenantId", required=False)
        event, where = _call_event(item, path, decryption_keys)
        kind_name = event.get("eventType", event.get("callEventType"))
        kind = _KINDS.get(kind_name) if isinstance(kind_name, str) else None
        if kind is None:
            raise _invalid(f"{where}.eventType", "must be callStarted, callEnded or rosterUpdated")
        at = _moment(event.get("eventDateTime"), f"{where}.eventDateTime")
        roster = _roster(event, where, tenant_id, organizers) if kind is CallEventKind.roster_updated else ()
        events.append(CallEvent(subscription_id=subscription_id or "", client_state=client_state, kind=kind, at=at,
                                roster=roster))
    return events
