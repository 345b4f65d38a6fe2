"""``parse_call_events``: Graph's meetingCallEvents notifications reduced to CallEvents.

The bodies follow the examples of "Get change notifications for Microsoft Teams meeting call
event updates" (learn.microsoft.com/graph/changenotifications-for-onlinemeeting): the event
in ``resourceData``, or encrypted in ``encryptedContent`` (rich notifications).
"""

from __future__ import annotations

import base64
import datetime as dt
import json

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connector.adapters.graph.notifications import parse_call_events, validation_token
from connector.domain.meeting import CallEventKind, ParticipantRole
from connector.errors import InvalidInput
from dev.sandbox.graph.encryption import encrypt_content

TENANT = "f69f5191-20ae-4093-8dae-3ec09edeb253"
OTHER_TENANT = "85045508-f5bd-405e-a553-52700f86e29c"
RESOURCE = "communications/onlineMeetings(joinWebUrl='https%3A%2F%2Fteams.microsoft.com%2Fl%2Fmeetup-join')/meetingCallEvents"
SECRET_LOOKING = "Sensitive Patient Name 0xDEADBEEF"


def body(*events: dict, tenant: str | None = TENANT, client_state: str | None = "state-1", **extra) -> bytes:
    items = []
    for n, event in enumerate(events):
        item = {
            "subscriptionId": f"sub-{n}",
            "clientState": client_state,
            "changeType": "updated",
            "tenantId": tenant,
            "resource": RESOURCE,
            "subscriptionExpirationDateTime": "2022-02-28T00:00:00.0000000Z",
            "resourceData": {"@odata.type": "#microsoft.graph.callevent", "@odata.id": RESOURCE, "id": f"n{n}",
                             **event},
            **extra,
        }
        items.append(item)
    return json.dumps({"value": items}).encode()


def roster(*participants: dict, at: str = "2022-02-28T00:00:01.1234567Z") -> dict:
    return {"eventType": "rosterUpdated", "eventDateTime": at, "participants@delta": list(participants)}


USER_IN_CALL = {"info": {"identity": {"user": {"id": "f3ce5e01-0724-43c7-ae4d-80ca18703a96",
                                               "displayName": "A user roster update in the call",
                                               "tenantId": TENANT}}},
                "isInLobby": False, "id": "e1018298-976a-4956-93e8-f58e43b0016c"}
GUEST_IN_LOBBY = {"info": {"identity": {"guest": {"id": "g-1", "displayName": SECRET_LOOKING}}},
                  "isInLobby": True, "id": "a7cc3ddb-a469-410d-8057-44dba3b0c073"}
GUEST_LEFT = {"info": {"identity": {"guest": {"id": "g-1", "displayName": SECRET_LOOKING}}}, "isInLobby": False,
              "removedState": {"reason": "Participant has left the meeting call."},
              "id": "a7cc3ddb-a469-410d-8057-44dba3b0c073"}


def test_call_started_and_ended() -> None:
    events = parse_call_events(body({"eventType": "callStarted", "eventDateTime": "2022-02-28T00:00:00.0000000Z"},
                                    {"eventType": "callEnded", "eventDateTime": "2022-02-28T01:02:03Z"}))
    assert [(e.subscription_id, e.client_state, e.kind, e.roster) for e in events] == [
        ("sub-0", "state-1", CallEventKind.call_started, ()), ("sub-1", "state-1", CallEventKind.call_ended, ())]
    assert events[0].at == dt.datetime(2022, 2, 28, tzinfo=dt.timezone.utc)
    assert events[1].at == dt.datetime(2022, 2, 28, 1, 2, 3, tzinfo=dt.timezone.utc)


def test_roster_update_from_the_documented_example() -> None:
    [event] = parse_call_events(body(roster(USER_IN_CALL, GUEST_IN_LOBBY)))
    assert event.kind is CallEventKind.roster_updated
    assert event.at == dt.datetime(2022, 2, 28, 0, 0, 1, 123456, tzinfo=dt.timezone.utc)  # seven digits, truncated
    assert [(r.participant_id, r.role, r.in_lobby, r.left) for r in event.roster] == [
        ("e1018298-976a-4956-93e8-f58e43b0016c", ParticipantRole.organizer, False, False),
        ("a7cc3ddb-a469-410d-8057-44dba3b0c073", ParticipantRole.guest, True, False),
    ]


def test_removed_state_means_left_and_not_in_lobby() -> None:
    [event] = parse_call_events(body(roster(GUEST_LEFT)))
    [change] = event.roster
    assert change.left is True and change.in_lobby is False and change.role is ParticipantRole.guest


@pytest.mark.parametrize(("identity", "organizer_ids", "role"), [
    ({"user": {"id": "u1", "tenantId": TENANT}}, (), ParticipantRole.organizer),
    ({"user": {"id": "u1", "tenantId": TENANT.upper()}}, (), ParticipantRole.organizer),
    ({"user": {"id": "u1", "tenantId": OTHER_TENANT}}, (), ParticipantRole.guest),  # a federated outsider
    ({"user": {"id": "U1"}}, ("u1",), ParticipantRole.organizer),  # the organizer's own id, no tenant said
    ({"user": {"id": "u2"}}, ("u1",), ParticipantRole.guest),
    ({"guest": {"id": "g", "displayName": "x"}}, (), ParticipantRole.guest),
    ({"azureCommunicationServicesUser": {"id": "8:acs:r_u", "azureCommunicationServicesResourceId": "r"}}, (),
     ParticipantRole.guest),
    ({"phone": {"id": "+15555550100"}}, (), ParticipantRole.guest),
    (None, (), ParticipantRole.guest),
])
def test_roles(identity, organizer_ids, role) -> None:
    participant = {"id": "p1", "isInLobby": False}
    if identity is not None:
        participant["info"] = {"identity": identity}
    [event] = parse_call_events(body(roster(participant)), organizer_ids=organizer_ids)
    assert event.roster[0].role is role


def test_tenant_missing_leaves_users_guests_unless_named() -> None:
    [event] = parse_call_events(body(roster(USER_IN_CALL), tenant=None))
    assert event.roster[0].role is ParticipantRole.guest


@pytest.mark.parametrize(("name", "kind"), [
    ("callEventType", CallEventKind.call_started),  # the callEvent resource's spelling
])
def test_call_event_type_spelling(name, kind) -> None:
    [event] = parse_call_events(body({name: "callStarted", "eventDateTime": "2022-02-28T00:00:00Z"}))
    assert event.kind is kind


def test_older_event_type_names() -> None:
    events = parse_call_events(body(
        {"eventType": "Microsoft.Communication.CallStarted", "eventDateTime": "2022-02-28T00:00:00Z"},
        {"eventType": "Microsoft.Communication.CallRosterUpdate", "eventDateTime": "2022-02-28T00:00:00Z"},
        {"eventType": "Microsoft.Communication.CallEnded", "eventDateTime": "2022-02-28T00:00:00+02:00"}))
    assert [e.kind for e in events] == [CallEventKind.call_started, CallEventKind.roster_updated,
                                        CallEventKind.call_ended]
    assert events[2].at == dt.datetime(2022, 2, 27, 22, tzinfo=dt.timezone.utc)


def test_null_client_state_and_lifecycle_items() -> None:
    document = json.loads(body({"eventType": "callEnded", "eventDateTime": "2022-02-28T00:00:00Z"}, client_state=None))
    document["value"].insert(0, {"subscriptionId": "sub-x", "lifecycleEvent": "reauthorizationRequired",
                                 "clientState": "state-1"})
    [event] = parse_call_events(json.dumps(document).encode())
    assert event.client_state is None and event.subscription_id == "sub-0"


def test_empty_collection() -> None:
    assert parse_call_events(b'{"value": []}') == []


# --- malformed bodies -------------------------------------------------------------------------------


def refused(raw: bytes, **kwargs) -> InvalidInput:
    with pytest.raises(InvalidInput) as caught:
        parse_call_events(raw, **kwargs)
    error = caught.value
    assert error.http_status == 400 and len(error.problems) == 1
    assert SECRET_LOOKING not in error.message and "DEADBEEF" not in error.message
    return error


def doc(item_changes: dict | None = None, event_changes: dict | None = None) -> bytes:
    document = json.loads(body(roster(GUEST_IN_LOBBY)))
    item = document["value"][0]
    for key, value in (item_changes or {}).items():
        if value is ...:
            item.pop(key)
        else:
            item[key] = value
    for key, value in (event_changes or {}).items():
        if value is ...:
            item["resourceData"].pop(key)
        else:
            item["resourceData"][key] = value
    return json.dumps(document).encode()


@pytest.mark.parametrize(("raw", "path"), [
    (b"not json", "body"),
    (b"\xff\xfe", "body"),
    (b"[]", "body"),
    (b'{"values": []}', "value"),
    (b'{"value": {}}', "value"),
    (b'{"value": ["x"]}', "value[0]"),
    (doc({"subscriptionId": ...}), "value[0].subscriptionId"),
    (doc({"subscriptionId": 12}), "value[0].subscriptionId"),
    (doc({"clientState": 5}), "value[0].clientState"),
    (doc({"resourceData": ...}), "value[0].resourceData"),
    (doc({"resourceData": SECRET_LOOKING}), "value[0].resourceData"),
    (doc(event_changes={"eventType": ...}), "value[0].resourceData.eventType"),
    (doc(event_changes={"eventType": SECRET_LOOKING}), "value[0].resourceData.eventType"),
    (doc(event_changes={"eventDateTime": ...}), "value[0].resourceData.eventDateTime"),
    (doc(event_changes={"eventDateTime": "2022-02-28T00:00:00"}), "value[0].resourceData.eventDateTime"),
    (doc(event_changes={"eventDateTime": "2022-13-45T00:00:00Z"}), "value[0].resourceData.eventDateTime"),
    (doc(event_changes={"participants@delta": {}}), "value[0].resourceData.participants@delta"),
    (doc(event_changes={"participants@delta": [SECRET_LOOKING]}), "value[0].resourceData.participants@delta[0]"),
    (doc(event_changes={"participants@delta": [{"isInLobby": True}]}),
     "value[0].resourceData.participants@delta[0].id"),
    (doc(event_changes={"participants@delta": [{"id": "p", "isInLobby": "yes"}]}),
     "value[0].resourceData.participants@delta[0].isInLobby"),
    (doc(event_changes={"participants@delta": [{"id": "p", "info": {"identity": SECRET_LOOKING}}]}),
     "value[0].resourceData.participants@delta[0].info.identity"),
    (doc(event_changes={"participants@delta": [{"id": "p", "info": {"identity": {"user": SECRET_LOOKING}}}]}),
     "value[0].resourceData.participants@delta[0].info.identity.user"),
    (doc(event_changes={"participants@delta": [{"id": "p", "removedState": SECRET_LOOKING}]}),
     "value[0].resourceData.participants@delta[0].removedState"),
])
def test_malformed_bodies_name_the_path(raw: bytes, path: str) -> None:
    error = refused(raw)
    assert error.problems[0].field == path and path in error.message


def test_ids_only_basic_notification_is_refused() -> None:
    raw = json.dumps({"value": [{"subscriptionId": "s", "clientState": "c", "resourceData": {
        "@odata.type": "#microsoft.graph.callevent", "@odata.id": RESOURCE, "id": "n"}}]}).encode()
    assert refused(raw).problems[0].field == "value[0].resourceData.eventType"


def test_oversized_body_is_refused() -> None:
    assert refused(b" " * 1_000_001).problems[0].field == "body"


# --- rich notifications ------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def certificate() -> tuple[x509.Certificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "notifications")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(1).not_valid_before(now - dt.timedelta(minutes=1)).not_valid_after(now + dt.timedelta(days=1))
            .sign(key, hashes.SHA256()))
    return cert, key


def encrypted_body(cert: x509.Certificate, event: dict, cert_id: str = "cert-1") -> dict:
    document = json.loads(body({}))
    item = document["value"][0]
    item["resourceData"] = {"@odata.type": "#microsoft.graph.callevent", "@odata.id": RESOURCE, "id": "n0"}
    item["encryptedContent"] = encrypt_content(json.dumps(event).encode(), cert, cert_id)
    document["validationTokens"] = ["eyJ..."]
    return document


def test_encrypted_content_is_decrypted(certificate) -> None:
    cert, key = certificate
    document = encrypted_body(cert, roster(GUEST_IN_LOBBY))
    [event] = parse_call_events(json.dumps(document).encode(), decryption_keys={"cert-1": key})
    assert event.kind is CallEventKind.roster_updated
    assert [(r.participant_id, r.in_lobby) for r in event.roster] == [("a7cc3ddb-a469-410d-8057-44dba3b0c073", True)]


def test_encrypted_content_needs_our_key(certificate) -> None:
    cert, key = certificate
    document = json.dumps(encrypted_body(cert, roster(GUEST_IN_LOBBY), cert_id="someone-elses")).encode()
    assert refused(document, decryption_keys={"cert-1": key}).problems[0].field == \
        "value[0].encryptedContent.encryptionCertificateId"
    assert refused(document).problems[0].field == "value[0].encryptedContent.encryptionCertificateId"


def test_tampered_encrypted_content_is_refused(certificate) -> None:
    cert, key = certificate
    document = encrypted_body(cert, roster(GUEST_IN_LOBBY))
    data = bytearray(base64.b64decode(document["value"][0]["encryptedContent"]["data"]))
    data[0] ^= 1
    document["value"][0]["encryptedContent"]["data"] = base64.b64encode(bytes(data)).decode()
    assert refused(json.dumps(document).encode(), decryption_keys={"cert-1": key}).problems[0].field == \
        "value[0].encryptedContent.dataSignature"


def test_encrypted_content_with_another_key_is_refused(certificate) -> None:
    cert, _ = certificate
    other = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    document = json.dumps(encrypted_body(cert, roster(GUEST_IN_LOBBY))).encode()
    assert refused(document, decryption_keys={"cert-1": other}).problems[0].field == \
        "value[0].encryptedContent.dataKey"


def test_decrypted_event_errors_name_the_encrypted_path(certificate) -> None:
    cert, key = certificate
    document = encrypted_body(cert, {"eventType": "nope", "eventDateTime": "2022-02-28T00:00:00Z"})
    assert refused(json.dumps(document).encode(), decryption_keys={"cert-1": key}).problems[0].field == \
        "value[0].encryptedContent.eventType"


# --- the handshake -------------------------------------------------------------------------------------


def test_validation_token() -> None:
    token = "Validation: Testing client application reachability for subscription Request-Id: 1"
    assert validation_token({"validationToken": token}) == token
    assert validation_token({}) is None and validation_token({"validationToken": ""}) is None
    with pytest.raises(InvalidInput):
        validation_token({"validationToken": "x" * 2000})


def test_a_batch_larger_than_graph_sends_is_refused_before_any_work():
    from connector.adapters.graph.notifications import MAX_NOTIFICATIONS

    item = {"subscriptionId": "s", "clientState": "c", "changeType": "updated", "resourceData": {}}
    body = json.dumps({"value": [item] * (MAX_NOTIFICATIONS + 1)}).encode()
    with pytest.raises(InvalidInput) as caught:
        parse_call_events(body)
    assert caught.value.problems[0].field == "value"
