"""The ACS simulator's Event Grid side, over real sockets: subscriptions with the validation
handshake, delivery reports and inbound SMS pushed to a webhook, retries, the carriers' STOP.

The webhook here answers with the connector's own parser (``parse_event_grid``), so these
tests also prove that what the sandbox sends is what the connector reads.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from azure.communication.sms import SmsClient
from azure.core.credentials import AzureKeyCredential
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from connector.adapters.acs.events import DeliveryReport, DeliveryStatus, InboundSms, Keyword, parse_event_grid
from dev.sandbox.acs import RecipientFailure, create_app, generate_access_key
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

KEY = generate_access_key()
SENDER = "+18445550199"
OTHER_SENDER = "+18335550142"
PATIENT_A = "+13125550123"
PATIENT_B = "+12065550147"
SMS_RECEIVED = "Microsoft.Communication.SMSReceived"
DELIVERY_REPORT = "Microsoft.Communication.SMSDeliveryReportReceived"
DELIVERY_TIMEOUT = 0.5
RETRY_DELAYS = (0.05, 0.1)
SECRET = "s3cret-" + uuid.uuid4().hex


@dataclass
class Webhook:
    """``POST /api/events/acs``: answers handshakes as ``mode`` says, deliveries with ``statuses``."""

    url: str = ""
    mode: str = "echo"  # echo | wrong | manual | error | accepted | slow
    statuses: list[int | str] = field(default_factory=list)  # next delivery answers ("slow"), then 200
    handshakes: list[tuple[dict[str, str], list]] = field(default_factory=list)
    deliveries: list[tuple[dict[str, str], bytes, int | str]] = field(default_factory=list)
    events: list[DeliveryReport | InboundSms] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def reset(self) -> None:
        with self.lock:
            self.mode = "echo"
            self.statuses.clear()
            self.handshakes.clear()
            self.deliveries.clear()
            self.events.clear()

    def wait_for_events(self, count: int, timeout: float = 10.0) -> list[DeliveryReport | InboundSms]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self.lock:
                if len(self.events) >= count:
                    return list(self.events)
            time.sleep(0.02)
        raise AssertionError(f"expected {count} events, got {len(self.events)}")

    def app(self) -> Starlette:
        async def hook(request: Request) -> Response:
            body = await request.body()
            headers = {k.lower(): v for k, v in request.headers.items()}
            if headers.get("aeg-event-type") == "SubscriptionValidation":
                with self.lock:
                    self.handshakes.append((headers, json.loads(body)))
                    mode = self.mode
                if mode == "slow":
                    await asyncio.sleep(2)
                if mode == "error":
                    return Response(status_code=500)
                if mode == "manual":
                    return JSONResponse({})
                if mode == "wrong":
                    return JSONResponse({"validationResponse": "not-the-code"})
                answer = parse_event_grid(body, request.headers).validation_response()
                return JSONResponse(answer, 202 if mode == "accepted" else 200)
            with self.lock:
                status = self.statuses.pop(0) if self.statuses else 200
                self.deliveries.append((headers, body, status))
            if status == "slow":  # answers after the sandbox gave up: nothing counts as received
                await asyncio.sleep(DELIVERY_TIMEOUT * 3)
                return Response(status_code=200)
            if 200 <= status <= 204:
                parsed = parse_event_grid(body, request.headers)
                with self.lock:
                    self.events.extend(parsed.events)
            return Response(status_code=status)

        return Starlette(routes=[Route("/api/events/acs", hook, methods=["POST"])])


@pytest.fixture(scope="module")
def webhook() -> Iterator[Webhook]:
    hook = Webhook()
    with LoopbackServer(hook.app(), name="acs-webhook") as server:
        hook.url = f"{server.url}/api/events/acs"
        yield hook


@pytest.fixture(scope="module")
def acs() -> Iterator[tuple[LoopbackServer, Starlette]]:
    port = free_port()
    app = create_app(public_url=f"http://127.0.0.1:{port}", access_key=KEY, purchased_numbers=[SENDER, OTHER_SENDER],
                     report_delay=0.05, event_validation_timeout=1.0, event_delivery_timeout=DELIVERY_TIMEOUT,
                     event_retry_delays=RETRY_DELAYS, rate_limit_window=timedelta(minutes=1))
    with LoopbackServer(app, port, name="acs") as server:
        yield server, app
    app.state.events.close()


@pytest.fixture(autouse=True)
def fresh_state(acs, webhook: Webhook) -> None:
    app = acs[1]
    events = app.state.events
    for subscription in events.subscriptions():
        events.unsubscribe(subscription["name"])
    assert events.wait_idle(10)
    events.clear_deliveries()
    app.state.sms.clear_outbox()
    app.state.sms.clear_inbound()
    app.state.sms.take_delivery_reports()
    app.state.sms.opt_outs.clear()
    app.state.sms.rate_limiter.reset()
    app.state.sms.set_recipient_failures([RecipientFailure("0000")])
    webhook.reset()


@pytest.fixture
def control(acs) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=acs[0].url, timeout=10) as client:
        yield client


@pytest.fixture
def sms(acs) -> SmsClient:
    return SmsClient(acs[0].url, AzureKeyCredential(KEY))


def subscribe(control: httpx.Client, webhook: Webhook, **extra) -> httpx.Response:
    return control.post("/_sandbox/event-subscriptions", json={"endpoint": webhook.url, **extra})


def settle(acs) -> list[dict]:
    """Wait until every queued delivery is done; the delivery log."""
    assert acs[1].state.events.wait_idle(10)
    return acs[1].state.events.deliveries()


# --- subscriptions and the handshake ----------------------------------------------------


def test_subscribing_runs_the_handshake_and_lists_the_subscription(control: httpx.Client, webhook: Webhook) -> None:
    created = subscribe(control, webhook, name="connector-sms", deliveryHeaders={"X-Connector-Key": SECRET})

    assert created.status_code == 201
    assert created.json() | {"createdAt": None} == {
        "name": "connector-sms", "endpoint": webhook.url, "eventTypes": [SMS_RECEIVED, DELIVERY_REPORT],
        "eventDeliverySchema": "EventGridSchema", "maxEventsPerBatch": 1, "deliveryHeaders": ["X-Connector-Key"],
        "provisioningState": "Succeeded", "createdAt": None}
    [(headers, events)] = webhook.handshakes
    assert (headers["aeg-event-type"], headers["aeg-subscription-name"], headers["aeg-delivery-count"]) == (
        "SubscriptionValidation", "CONNECTOR-SMS", "0")
    assert headers["x-connector-key"] == SECRET and headers["content-type"].startswith("application/json")
    [event] = events
    assert event["eventType"] == "Microsoft.EventGrid.SubscriptionValidationEvent"
    assert (event["subject"], event["dataVersion"], event["metadataVersion"]) == ("", "1", "1")
    assert event["topic"].endswith("/providers/microsoft.communication/communicationservices/acs-sandbox")
    assert str(uuid.UUID(event["data"]["validationCode"])) == event["data"]["validationCode"]
    assert "/_sandbox/event-subscriptions/connector-sms/validate?" in event["data"]["validationUrl"]

    listed = control.get("/_sandbox/event-subscriptions").json()
    assert [s["name"] for s in listed] == ["connector-sms"] and SECRET not in str(listed)
    assert control.get("/_sandbox/event-subscriptions/connector-sms").json()["provisioningState"] == "Succeeded"


@pytest.mark.parametrize("mode, fragment", [
    ("error", "response code 500"),
    ("accepted", "response code 202"),
    ("wrong", "invalid content"),
    ("slow", "did not answer within 1 seconds"),
])
def test_a_failed_handshake_refuses_the_subscription(control: httpx.Client, webhook: Webhook, mode: str,
                                                     fragment: str) -> None:
    webhook.mode = mode

    refused = subscribe(control, webhook)

    assert refused.status_code == 400
    error = refused.json()["error"]
    assert error["code"] == "WebhookValidationFailed" and fragment in error["message"]
    assert len(webhook.handshakes) == 1
    assert control.get("/_sandbox/event-subscriptions").json() == []


@pytest.mark.parametrize("body, fragment", [
    ({"endpoint": f"http://127.0.0.1:{free_port()}/api/events/acs"}, "could not be reached"),
    ({"endpoint": "https://example.org/api/events/acs"}, "loopback only"),
    ({"endpoint": "ftp://127.0.0.1/api"}, "loopback only"),
    ({"eventTypes": ["Microsoft.Communication.ChatMessageReceived"]}, "eventTypes must list"),
    ({"eventTypes": []}, "eventTypes must list"),
    ({"eventDeliverySchema": "CloudEventSchemaV1_0"}, "EventGridSchema only"),
    ({"maxEventsPerBatch": 0}, "maxEventsPerBatch"),
    ({"name": "no spaces allowed"}, "name must be"),
    ({"deliveryHeaders": {"aeg-event-type": "x"}}, "reserved"),
])
def test_subscription_refusals(control: httpx.Client, webhook: Webhook, body: dict, fragment: str) -> None:
    refused = control.post("/_sandbox/event-subscriptions", json={"endpoint": webhook.url, **body})

    assert refused.status_code == 400 and fragment in refused.json()["error"]["message"]
    assert control.get("/_sandbox/event-subscriptions").json() == []


def test_the_manual_handshake_waits_for_the_validation_url(control: httpx.Client, webhook: Webhook, acs,
                                                           sms: SmsClient) -> None:
    webhook.mode = "manual"
    waiting = subscribe(control, webhook, name="manual-one")
    assert waiting.status_code == 202 and waiting.json()["provisioningState"] == "AwaitingManualAction"
    url = urlsplit(waiting.json()["validationUrl"])
    query = {k: v[0] for k, v in parse_qs(url.query).items()}

    sms.send(from_=SENDER, to=PATIENT_A, message="Not yet", enable_delivery_report=True)
    assert settle(acs) == [] and webhook.deliveries == []

    forged = control.get(url.path, params={**query, "token": "guess"})
    assert forged.status_code == 400
    assert control.get(url.path, params=query).status_code == 200
    assert control.get("/_sandbox/event-subscriptions/manual-one").json()["provisioningState"] == "Succeeded"
    assert control.get(url.path, params=query).status_code == 400  # used up

    [sent] = sms.send(from_=SENDER, to=PATIENT_A, message="Now", enable_delivery_report=True)
    [report] = webhook.wait_for_events(1)
    assert report.message_id == sent.message_id


def test_deleting_a_subscription_stops_its_deliveries(control: httpx.Client, webhook: Webhook, acs,
                                                      sms: SmsClient) -> None:
    assert subscribe(control, webhook, name="short-lived").status_code == 201
    assert control.delete("/_sandbox/event-subscriptions/short-lived").status_code == 204
    assert control.get("/_sandbox/event-subscriptions/short-lived").status_code == 404

    sms.send(from_=SENDER, to=PATIENT_A, message="Hi", enable_delivery_report=True)

    assert settle(acs) == [] and webhook.deliveries == []
    assert len(acs[1].state.sms.delivery_reports()) == 1  # the in-memory list is kept regardless


# --- deliveries -------------------------------------------------------------------------


def test_a_delivery_report_is_pushed_shortly_after_the_send(control: httpx.Client, webhook: Webhook, acs,
                                                            sms: SmsClient) -> None:
    subscribe(control, webhook, name="reports", deliveryHeaders={"X-Connector-Key": SECRET})
    started = time.monotonic()

    [sent] = sms.send(from_=SENDER, to=PATIENT_A, message="Your video visit starts at 10:00.",
                      enable_delivery_report=True, tag="visit-42")

    [report] = webhook.wait_for_events(1)
    assert time.monotonic() - started >= 0.05  # report_delay
    assert report == DeliveryReport(event_id=sent.message_id, message_id=sent.message_id,
                                    status=DeliveryStatus.delivered, received_at=report.received_at, tag="visit-42",
                                    opted_out=False)
    [(headers, body, status)] = webhook.deliveries
    assert (headers["aeg-event-type"], headers["aeg-subscription-name"], headers["aeg-delivery-count"]) == (
        "Notification", "REPORTS", "0")
    assert (headers["aeg-data-version"], headers["aeg-metadata-version"], headers["x-connector-key"]) == (
        "1.0", "1", SECRET)
    assert status == 200 and body.startswith(b"[{")
    [entry] = settle(acs)
    assert entry | {"at": None} == {"subscription": "reports", "eventIds": [sent.message_id],
                                    "eventTypes": [DELIVERY_REPORT], "attempt": 1, "status": 200, "error": None,
                                    "outcome": "delivered", "at": None}
    assert [r["id"] for r in control.get("/_sandbox/delivery-reports").json()] == [sent.message_id]
    assert "Your video visit" not in str(control.get("/_sandbox/event-deliveries").json())


def test_deliveries_are_retried_on_5xx_and_timeouts(control: httpx.Client, webhook: Webhook, acs,
                                                    sms: SmsClient) -> None:
    subscribe(control, webhook)
    webhook.statuses[:] = [503, "slow", 500]

    [sent] = sms.send(from_=SENDER, to=PATIENT_A, message="Hi", enable_delivery_report=True)

    log = settle(acs)
    assert [(e["attempt"], e["status"], e["error"], e["outcome"]) for e in log] == [
        (1, 503, None, "retrying"), (2, None, "timeout", "retrying"), (3, 500, None, "failed")]
    assert [h["aeg-delivery-count"] for h, _, _ in webhook.deliveries] == ["0", "1", "2"]
    assert all(e["eventIds"] == [sent.message_id] for e in log)


def test_a_retried_delivery_arrives(control: httpx.Client, webhook: Webhook, acs, sms: SmsClient) -> None:
    subscribe(control, webhook)
    webhook.statuses[:] = [429, 204]

    [sent] = sms.send(from_=SENDER, to=PATIENT_A, message="Hi", enable_delivery_report=True)

    [report] = webhook.wait_for_events(1)
    assert report.message_id == sent.message_id
    assert [(e["status"], e["outcome"]) for e in settle(acs)] == [(429, "retrying"), (204, "delivered")]


@pytest.mark.parametrize("status", [400, 404, 413])
def test_client_errors_are_final(control: httpx.Client, webhook: Webhook, acs, sms: SmsClient, status: int) -> None:
    subscribe(control, webhook)
    webhook.statuses[:] = [status]

    sms.send(from_=SENDER, to=PATIENT_A, message="Hi", enable_delivery_report=True)

    assert [(e["attempt"], e["status"], e["outcome"]) for e in settle(acs)] == [(1, status, "refused")]
    assert webhook.events == []


def test_event_types_and_batches(control: httpx.Client, webhook: Webhook, acs, sms: SmsClient) -> None:
    subscribe(control, webhook, name="inbound-only", eventTypes=[SMS_RECEIVED])
    sms.send(from_=SENDER, to=[PATIENT_A, PATIENT_B], message="Hi", enable_delivery_report=True)
    assert settle(acs) == []

    control.delete("/_sandbox/event-subscriptions/inbound-only")
    subscribe(control, webhook, name="batched", eventTypes=[DELIVERY_REPORT], maxEventsPerBatch=10)
    sent = sms.send(from_=SENDER, to=[PATIENT_A, PATIENT_B], message="Hi", enable_delivery_report=True)

    reports = webhook.wait_for_events(2)
    assert [r.message_id for r in reports] == [s.message_id for s in sent]
    [entry] = settle(acs)
    assert entry["eventIds"] == [s.message_id for s in sent] and len(webhook.deliveries) == 1


def test_no_delivery_report_without_asking(control: httpx.Client, webhook: Webhook, acs, sms: SmsClient) -> None:
    subscribe(control, webhook)

    sms.send(from_=SENDER, to=PATIENT_A, message="Hi")

    assert settle(acs) == [] and control.get("/_sandbox/delivery-reports").json() == []


# --- inbound SMS and STOP ----------------------------------------------------------------


def reply(control: httpx.Client, message: str, from_: str = PATIENT_A, to: str = SENDER) -> httpx.Response:
    return control.post("/_sandbox/inbound", json={"from": from_, "to": to, "message": message})


def test_stop_is_relayed_and_blocks_further_messages_from_that_number(control: httpx.Client, webhook: Webhook, acs,
                                                                     sms: SmsClient) -> None:
    subscribe(control, webhook)

    stopped = reply(control, "Stop")

    assert stopped.status_code == 202
    assert stopped.json() | {"messageId": None} == {"messageId": None, "carrierKeyword": "stop", "optedOut": True}
    assert stopped.json()["messageId"].startswith("Incoming_")
    [inbound] = webhook.wait_for_events(1)
    assert inbound == InboundSms(event_id=stopped.json()["messageId"], message_id=stopped.json()["messageId"],
                                 from_number=PATIENT_A, to_number=SENDER, keyword=Keyword.stop,
                                 received_at=inbound.received_at)
    assert [(o["sender"], o["recipient"]) for o in control.get("/_sandbox/opt-outs").json()] == [(SENDER, PATIENT_A)]

    blocked, other_patient = sms.send(from_=SENDER, to=[PATIENT_A, PATIENT_B], message="Reminder",
                                      enable_delivery_report=True, tag="reminder")
    [from_other_number] = sms.send(from_=OTHER_SENDER, to=PATIENT_A, message="Other clinic",
                                   enable_delivery_report=True)

    assert (blocked.successful, blocked.http_status_code) == (True, 202)  # ACS accepts it ...
    assert [m.message_id for m in acs[1].state.sms.outbox()] == [other_patient.message_id,
                                                                from_other_number.message_id]
    assert [m["messageId"] for m in control.get("/_sandbox/sms/blocked").json()] == [blocked.message_id]
    reports = {e.message_id: e for e in webhook.wait_for_events(4)[1:]}
    assert reports[blocked.message_id] == DeliveryReport(  # ... and reports it failed
        event_id=blocked.message_id, message_id=blocked.message_id, status=DeliveryStatus.failed,
        received_at=reports[blocked.message_id].received_at, tag="reminder", opted_out=True)
    assert (reports[other_patient.message_id].status, reports[from_other_number.message_id].status) == (
        DeliveryStatus.delivered, DeliveryStatus.delivered)
    raw = next(r for r in control.get("/_sandbox/delivery-reports").json() if r["id"] == blocked.message_id)
    assert (raw["data"]["deliveryStatus"], raw["data"]["deliveryStatusDetails"]) == (
        "Failed", "Sender blocked for given recipient.")
    assert raw["data"]["deliveryAttempts"][0] | {"timestamp": None} == {
        "timestamp": None, "segmentsSucceeded": 0, "segmentsFailed": 1}


def test_start_lifts_the_block(control: httpx.Client, webhook: Webhook, acs, sms: SmsClient) -> None:
    subscribe(control, webhook)
    reply(control, "UNSUBSCRIBE")

    started = reply(control, " unstop ")
    [sent] = sms.send(from_=SENDER, to=PATIENT_A, message="Welcome back", enable_delivery_report=True)

    assert started.json()["carrierKeyword"] == "start" and started.json()["optedOut"] is False
    assert control.get("/_sandbox/opt-outs").json() == []
    assert [m.message_id for m in acs[1].state.sms.outbox()] == [sent.message_id]
    events = webhook.wait_for_events(3)
    assert [getattr(e, "keyword", None) for e in events[:2]] == [Keyword.stop, Keyword.start]
    assert (events[2].message_id, events[2].status) == (sent.message_id, DeliveryStatus.delivered)


@pytest.mark.parametrize("message, keyword, opted_out", [
    ("STOPALL", "stop", True), ("cancel", "stop", True), ("End", "stop", True), ("QUIT", "stop", True),
    ("START", "start", False), ("Please stop texting me", None, False), ("HELP", None, False),
])
def test_carrier_keywords(control: httpx.Client, message: str, keyword, opted_out: bool) -> None:
    answered = reply(control, message)

    assert (answered.json()["carrierKeyword"], answered.json()["optedOut"]) == (keyword, opted_out)
    assert [m["message"] for m in control.get("/_sandbox/inbound").json()] == [message]


def test_inbound_refusals(control: httpx.Client) -> None:
    bad_from = reply(control, "STOP", from_="3125550123")
    not_ours = reply(control, "STOP", to="+18885550111")
    empty = reply(control, "")

    assert (bad_from.status_code, bad_from.json()["error"]["code"]) == (400, "BadRequest")
    assert (not_ours.status_code, not_ours.json()["error"]["code"]) == (404, "NotFound")
    assert empty.status_code == 400
    assert control.get("/_sandbox/inbound").json() == [] and control.get("/_sandbox/opt-outs").json() == []
