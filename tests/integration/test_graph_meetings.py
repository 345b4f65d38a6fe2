"""The production Graph adapter (msgraph-sdk) against the Graph simulator, over real sockets.

Only settings differ from Azure: the base URL, the authority (the Entra sandbox over https
with the local CA), the client id and secret. Tokens come from the sandbox's client
credentials grant; meetings, subscriptions and notifications from the simulator.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import uuid
from collections.abc import Iterator

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID

from connector.adapters.graph.errors import MeetingAccessDenied
from connector.adapters.graph.meetings import GraphMeetings, NotificationCertificate, graph_meetings_from_settings
from connector.adapters.graph.notifications import parse_call_events
from connector.domain.meeting import CallEventKind, MeetingRequest, OnlineMeeting, ParticipantRole
from connector.errors import ConfigurationError, UpstreamError, UpstreamUnavailable
from dev.sandbox import entra
from dev.sandbox.faults import Fault
from tests.integration.graph_fixtures import GraphStack, Webhook

pytestmark = [
    pytest.mark.integration,
    # msgraph-sdk's generated request builders warn about their own deprecated classes on import.
    pytest.mark.filterwarnings("ignore:This class is deprecated:DeprecationWarning"),
    pytest.mark.filterwarnings("ignore:GetQueryParameters is deprecated:DeprecationWarning"),
]

CLIENT_STATE = "client-state-" + "x" * 40


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.timezone.utc)


def visit(external_id: str | None = None, *, tenant: str = entra.CONTOSO_TID,
          organizer: str = entra.CONTOSO_ORGANIZER_OID) -> MeetingRequest:
    start = utc_now().replace(microsecond=0) + dt.timedelta(hours=1)
    return MeetingRequest(tenant_id=tenant, organizer_user_id=organizer,
                          external_id=external_id or f"vv1-{uuid.uuid4().hex}", subject="Video visit",
                          start=start, end=start + dt.timedelta(minutes=30))


@pytest.fixture(scope="module")
def meetings(graph_sandbox: GraphStack) -> Iterator[GraphMeetings]:
    adapter = graph_meetings_from_settings(graph_sandbox.settings())
    yield adapter
    adapter.close()


@pytest.fixture(autouse=True)
def no_faults(graph_sandbox: GraphStack) -> Iterator[None]:
    graph_sandbox.graph.faults.clear()
    yield
    graph_sandbox.graph.faults.clear()


def test_create_or_get_is_idempotent_per_external_id(meetings: GraphMeetings, graph_sandbox: GraphStack) -> None:
    request = visit()
    first = meetings.create_or_get(request)
    again = meetings.create_or_get(request)

    assert first.created is True and again.created is False
    assert again.meeting_id == first.meeting_id and again.join_web_url == first.join_web_url
    assert first.join_web_url.startswith(f"{graph_sandbox.graph_url}/l/meetup-join/19%3ameeting_")
    stored = graph_sandbox.graph.meetings.find(first.meeting_id)
    assert stored is not None and stored.external_id == request.external_id
    assert stored.organizer.oid == entra.CONTOSO_ORGANIZER_OID and stored.subject == "Video visit"
    assert stored.start == request.start and stored.end == request.end
    # createOrGet's body has no room for these: the adapter set them with PATCH.
    assert stored.settings["lobbyBypassSettings"] == {"scope": "organization", "isDialInBypassEnabled": False}
    assert stored.settings["allowedPresenters"] == "organizer"
    assert stored.settings["allowMeetingChat"] == "limited"


def test_another_external_id_or_tenant_is_another_meeting(meetings: GraphMeetings) -> None:
    one = meetings.create_or_get(visit())
    two = meetings.create_or_get(visit())
    fabrikam = meetings.create_or_get(visit(tenant=entra.FABRIKAM_TID, organizer=entra.FABRIKAM_ORGANIZER_OID))

    assert len({one.meeting_id, two.meeting_id, fabrikam.meeting_id}) == 3
    assert len({one.join_web_url, two.join_web_url, fabrikam.join_web_url}) == 3
    assert entra.FABRIKAM_TID in fabrikam.join_web_url and entra.FABRIKAM_TID not in one.join_web_url


def test_organizer_by_upn(meetings: GraphMeetings, graph_sandbox: GraphStack) -> None:
    made = meetings.create_or_get(visit(organizer="virtual-visits@contoso-clinic.example"))
    assert made.created
    assert graph_sandbox.graph.meetings.find(made.meeting_id).organizer.oid == entra.CONTOSO_ORGANIZER_OID


def test_organizer_without_access_policy_is_meeting_access_denied(meetings: GraphMeetings) -> None:
    jordan = "80b79bca-a426-4316-920a-c761b7ab6f47"  # a Contoso user nobody granted the policy to
    with pytest.raises(MeetingAccessDenied) as caught:
        meetings.create_or_get(visit(organizer=jordan))

    error = caught.value
    assert error.http_status == 502 and error.code == "meeting_access_denied"
    assert "New-CsApplicationAccessPolicy" in error.message and "Grant-CsApplicationAccessPolicy" in error.message
    assert jordan not in error.message and "Jordan" not in error.message


def test_access_policy_granted_later_lets_the_meeting_be_made(meetings: GraphMeetings,
                                                              graph_sandbox: GraphStack) -> None:
    riley = "c88713b1-cca6-4110-99a0-b172e7abd757"
    request = visit(organizer=riley)
    with pytest.raises(MeetingAccessDenied):
        meetings.create_or_get(request)
    graph_sandbox.graph.policies.grant(entra.CONTOSO_TID, riley)
    try:
        assert meetings.create_or_get(request).created
    finally:
        graph_sandbox.graph.policies.revoke(entra.CONTOSO_TID, riley)


def test_throttling_is_upstream_unavailable_with_retry_after(meetings: GraphMeetings,
                                                             graph_sandbox: GraphStack) -> None:
    graph_sandbox.graph.faults.arm(Fault(status=429, retry_after=7, count=1, path_prefix="/v1.0/users/"))
    with pytest.raises(UpstreamUnavailable) as caught:
        meetings.create_or_get(visit())
    assert caught.value.retry_after == 7
    assert caught.value.http_status == 503
    # The SDK did not retry on its own (the one-shot fault would then have been invisible)...
    assert graph_sandbox.graph.faults.armed() == []
    # ...and the next call goes through.
    assert meetings.create_or_get(visit()).created


def test_server_error_is_upstream_unavailable(meetings: GraphMeetings, graph_sandbox: GraphStack) -> None:
    graph_sandbox.graph.faults.arm(Fault(status=503, count=1, path_prefix="/v1.0/users/"))
    with pytest.raises(UpstreamUnavailable) as caught:
        meetings.create_or_get(visit())
    assert caught.value.retry_after is None and "503" in caught.value.message


def test_other_client_errors_are_upstream_errors(meetings: GraphMeetings) -> None:
    nobody = str(uuid.uuid4())
    with pytest.raises(UpstreamError) as caught:
        meetings.create_or_get(visit(organizer=nobody))
    assert type(caught.value) is UpstreamError and "404" in caught.value.message
    assert nobody not in caught.value.message


def test_wrong_client_secret_is_a_configuration_error(graph_sandbox: GraphStack) -> None:
    adapter = graph_meetings_from_settings(graph_sandbox.settings(graph_client_secret="not-the-secret"))
    try:
        with pytest.raises(ConfigurationError) as caught:
            adapter.create_or_get(visit())
    finally:
        adapter.close()
    assert "AADSTS7000215" in caught.value.message and "CONNECTOR_GRAPH_CLIENT_SECRET" in caught.value.message
    assert "not-the-secret" not in caught.value.message


def test_unreachable_issuer_is_upstream_unavailable(graph_sandbox: GraphStack) -> None:
    from dev.sandbox.server import free_port

    adapter = graph_meetings_from_settings(graph_sandbox.settings(graph_authority_host=f"https://127.0.0.1:{free_port()}"))
    try:
        with pytest.raises(UpstreamUnavailable):
            adapter.create_or_get(visit())
    finally:
        adapter.close()


def test_non_https_graph_url_is_refused_up_front(graph_sandbox: GraphStack) -> None:
    with pytest.raises(ConfigurationError):
        graph_meetings_from_settings(graph_sandbox.settings(graph_base_url="http://graph.example/v1.0"))


# --- subscriptions ---------------------------------------------------------------------------


def subscribe(meetings: GraphMeetings, meeting: OnlineMeeting, hook: Webhook, minutes: int = 60):
    expires = utc_now().replace(microsecond=0) + dt.timedelta(minutes=minutes)
    return meetings.subscribe_call_events(entra.CONTOSO_TID, meeting, notification_url=hook.url,
                                          client_state=CLIENT_STATE, expires_at=expires), expires


def test_subscription_runs_the_handshake_and_targets_beta(meetings: GraphMeetings, graph_sandbox: GraphStack,
                                                          webhook: Webhook) -> None:
    meeting = meetings.create_or_get(visit())
    subscription, expires = subscribe(meetings, meeting, webhook)

    assert subscription.expires_at == expires
    assert subscription.resource.startswith("communications/onlineMeetings(joinWebUrl='http%3A%2F%2F127.0.0.1")
    assert "19%253ameeting_" in subscription.resource  # the joinWebUrl URL-encoded once more
    assert subscription.resource.endswith("')/meetingCallEvents")
    assert len(webhook.validations) == 1
    assert webhook.validations[0]["token"].startswith("Validation: Testing client application reachability")
    assert webhook.validations[0]["content_type"].startswith("text/plain")
    stored = next(s for s in graph_sandbox.graph.subscriptions.store.all() if s.id == subscription.subscription_id)
    assert stored.api_version == "beta" and stored.client_state == CLIENT_STATE
    assert stored.notification_url == webhook.url and stored.meeting_key in meeting.join_web_url


@pytest.mark.parametrize("mode", ["wrong", "html", "error"])
def test_subscription_fails_when_the_webhook_does_not_echo(meetings: GraphMeetings, graph_sandbox: GraphStack,
                                                           webhook: Webhook, mode: str) -> None:
    meeting = meetings.create_or_get(visit())
    before = len(graph_sandbox.graph.subscriptions.store.all())
    webhook.mode = mode
    with pytest.raises(UpstreamError) as caught:
        subscribe(meetings, meeting, webhook)
    assert type(caught.value) is UpstreamError and "validate the notification URL" in caught.value.message
    assert len(webhook.validations) == 1
    assert len(graph_sandbox.graph.subscriptions.store.all()) == before


def test_renewal_moves_the_expiry(meetings: GraphMeetings, graph_sandbox: GraphStack, webhook: Webhook) -> None:
    subscription, expires = subscribe(meetings, meetings.create_or_get(visit()), webhook)
    later = expires + dt.timedelta(days=2)

    granted = meetings.renew_subscription(entra.CONTOSO_TID, subscription.subscription_id, later)

    assert granted == later
    stored = next(s for s in graph_sandbox.graph.subscriptions.store.all() if s.id == subscription.subscription_id)
    assert stored.expiration == later
    with pytest.raises(UpstreamError):  # beyond Graph's three days
        meetings.renew_subscription(entra.CONTOSO_TID, subscription.subscription_id, utc_now() + dt.timedelta(days=4))
    with pytest.raises(UpstreamError):
        meetings.renew_subscription(entra.CONTOSO_TID, str(uuid.uuid4()), later)


def test_delete_stops_a_subscription_and_a_second_delete_is_fine(meetings: GraphMeetings, graph_sandbox: GraphStack,
                                                                 webhook: Webhook) -> None:
    subscription, _ = subscribe(meetings, meetings.create_or_get(visit()), webhook)
    ids = lambda: {s.id for s in graph_sandbox.graph.subscriptions.store.all()}  # noqa: E731
    assert subscription.subscription_id in ids()

    meetings.delete_subscription(entra.CONTOSO_TID, subscription.subscription_id)

    assert subscription.subscription_id not in ids()
    meetings.delete_subscription(entra.CONTOSO_TID, subscription.subscription_id)  # already gone: no error


# --- notifications end to end ------------------------------------------------------------------


def _walk_a_visit(graph_sandbox: GraphStack, meeting: OnlineMeeting) -> tuple[str, str]:
    sim = graph_sandbox.graph
    stored = sim.meetings.find(meeting.meeting_id)
    guest = sim.meetings.join_guest(stored, "Pat Example")
    organizer = sim.meetings.join_organizer(stored)
    sim.meetings.admit(stored, guest.id)
    sim.meetings.leave(stored, guest.id)
    sim.meetings.end(stored)
    return guest.id, organizer.id


def _assert_visit_events(events, subscription_id: str, guest_id: str, organizer_id: str) -> None:
    assert [e.kind for e in events] == [
        CallEventKind.call_started, CallEventKind.roster_updated, CallEventKind.roster_updated,
        CallEventKind.roster_updated, CallEventKind.roster_updated, CallEventKind.call_ended,
    ]
    assert {e.subscription_id for e in events} == {subscription_id}
    assert {e.client_state for e in events} == {CLIENT_STATE}
    lobby, organizer_in, admitted, left = (e.roster for e in events[1:5])
    assert [(r.participant_id, r.role, r.in_lobby, r.left) for r in lobby] == [
        (guest_id, ParticipantRole.guest, True, False)]
    assert [(r.participant_id, r.role, r.in_lobby, r.left) for r in organizer_in] == [
        (organizer_id, ParticipantRole.organizer, False, False)]
    assert [(r.participant_id, r.role, r.in_lobby, r.left) for r in admitted] == [
        (guest_id, ParticipantRole.guest, False, False)]
    assert [(r.participant_id, r.role, r.in_lobby, r.left) for r in left] == [
        (guest_id, ParticipantRole.guest, False, True)]
    assert all(earlier.at <= later.at for earlier, later in zip(events, events[1:]))
    assert all(e.at.tzinfo is not None and abs((utc_now() - e.at).total_seconds()) < 60 for e in events)


def test_call_events_reach_the_webhook_and_parse(meetings: GraphMeetings, graph_sandbox: GraphStack,
                                                 webhook: Webhook) -> None:
    meeting = meetings.create_or_get(visit())
    subscription, _ = subscribe(meetings, meeting, webhook)

    guest_id, organizer_id = _walk_a_visit(graph_sandbox, meeting)
    bodies = webhook.wait_for(6)

    first = json.loads(bodies[0])["value"][0]
    assert first["subscriptionId"] == subscription.subscription_id and first["clientState"] == CLIENT_STATE
    assert first["changeType"] == "updated" and first["tenantId"] == entra.CONTOSO_TID
    assert first["resource"] == subscription.resource
    assert first["resourceData"]["@odata.type"] == "#microsoft.graph.callevent"
    events = [event for body in bodies for event in parse_call_events(body)]
    _assert_visit_events(events, subscription.subscription_id, guest_id, organizer_id)
    # The organizer is known by tenant; by object id too, when the tenant is not said.
    delta = json.loads(bodies[2])["value"][0]
    delta["tenantId"] = None
    anonymous_tenant = json.dumps({"value": [delta]}).encode()
    assert parse_call_events(anonymous_tenant)[0].roster[0].role is ParticipantRole.guest
    assert parse_call_events(anonymous_tenant, organizer_ids=[entra.CONTOSO_ORGANIZER_OID])[0].roster[0].role \
        is ParticipantRole.organizer
    log = [entry for entry in graph_sandbox.graph.notifier.deliveries()
           if entry["subscriptionId"] == subscription.subscription_id]
    assert [entry["status"] for entry in log] == [202] * 6
    assert all(entry["outcome"] == "delivered" for entry in log)


def _certificate() -> tuple[NotificationCertificate, rsa.RSAPrivateKey]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "connector notifications (test)")])
    now = utc_now()
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=5))
            .not_valid_after(now + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    der = cert.public_bytes(serialization.Encoding.DER)
    return NotificationCertificate(base64.b64encode(der).decode(), "test-cert-1"), key


def test_rich_notifications_are_encrypted_and_decrypt(graph_sandbox: GraphStack, webhook: Webhook) -> None:
    certificate, private_key = _certificate()
    settings = graph_sandbox.settings()
    adapter = graph_meetings_from_settings(settings, notification_certificate=certificate)
    try:
        meeting = adapter.create_or_get(visit())
        subscription, _ = subscribe(adapter, meeting, webhook)
    finally:
        adapter.close()
    guest_id, organizer_id = _walk_a_visit(graph_sandbox, meeting)
    bodies = webhook.wait_for(6)

    item = json.loads(bodies[1])["value"][0]
    assert set(item["resourceData"]) == {"@odata.type", "@odata.id", "id"}  # ids only in the clear
    assert item["encryptedContent"]["encryptionCertificateId"] == "test-cert-1"
    assert "Pat Example" not in bodies[1].decode()
    assert len(json.loads(bodies[1])["validationTokens"]) == 1
    events = [e for body in bodies for e in parse_call_events(body, decryption_keys={"test-cert-1": private_key})]
    _assert_visit_events(events, subscription.subscription_id, guest_id, organizer_id)
