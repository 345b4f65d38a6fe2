"""The ACS simulator over a real socket, driven by the real SDKs, unchanged.

How the clients reach a plain-http loopback simulator (the production adapter needs the same
when it runs locally):

- Construct both clients from the endpoint and ``AzureKeyCredential(key)``:
  ``SmsClient(url, AzureKeyCredential(key))``, ``PhoneNumbersClient(url, AzureKeyCredential(key))``.
  ``SmsClient.from_connection_string`` always rewrites the endpoint to https, so it cannot
  reach ``http://127.0.0.1``.
- No transport or ``connection_verify`` trick is needed: with a key credential the SDKs use
  their ``HMACCredentialsPolicy``, which signs http and https alike (it signs the endpoint's
  host including the port). A *token* credential (managed identity) would not work: azure-core's
  ``BearerTokenCredentialPolicy`` refuses non-https URLs. So locally the adapter must use the
  key, as it does for Azurite; in Azure it uses managed identity against https.
- The endpoint must have no trailing slash: the SDK signs ``host`` from it verbatim.
- ``SmsClient.send`` makes a fresh ``repeatabilityRequestId`` per call, so only the SDK's own
  retries repeat it. To resend with the SAME id (a queue retry after a crash), the adapter has to
  call the generated operation, ``client._sms_service_client.sms.send(SendMessageRequest(...))``,
  as :func:`send_repeatable` does here.
- Pollers default to 2 s between polls; tests pass ``polling_interval`` to stay fast.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import re
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone

import httpx
import pytest
from azure.communication.phonenumbers import (
    PhoneNumberAssignmentType,
    PhoneNumberCapabilities,
    PhoneNumberCapabilityType,
    PhoneNumbersClient,
    PhoneNumberType,
)
from azure.communication.sms import SmsClient
from azure.communication.sms._generated.models import SendMessageRequest, SmsRecipient, SmsSendOptions
from azure.core.credentials import AzureKeyCredential
from azure.core.exceptions import (
    ClientAuthenticationError,
    HttpResponseError,
    ResourceExistsError,
    ResourceNotFoundError,
)
from starlette.applications import Starlette

from dev.sandbox.acs import LroPace, PhoneNumberInventory, RecipientFailure, create_app, generate_access_key
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

KEY = generate_access_key()
SENDER = "+18445550199"  # owned from the start, like a number linked during setup
PATIENT_A = "+14255550123"
PATIENT_B = "+12065550147"
FAST = 0.05  # seconds between LRO polls
TOLL_FREE = re.compile(r"^\+1(800|833|844|855|866|877|888)55501\d\d$")
SMS_BOTH_WAYS = PhoneNumberCapabilities(
    calling=PhoneNumberCapabilityType.NONE, sms=PhoneNumberCapabilityType.INBOUND_OUTBOUND)


@pytest.fixture(scope="module")
def acs() -> Iterator[tuple[LoopbackServer, Starlette]]:
    port = free_port()
    app = create_app(public_url=f"http://127.0.0.1:{port}", access_key=KEY, purchased_numbers=[SENDER],
                     lro_pace=LroPace(polls=2))
    with LoopbackServer(app, port, name="acs") as server:
        yield server, app


@pytest.fixture(autouse=True)
def fresh_state(acs) -> None:
    """Each test starts with an empty outbox, no armed failures and the default recipient rule."""
    app = acs[1]
    app.state.sms.clear_outbox()
    app.state.sms.take_delivery_reports()
    app.state.sms.set_recipient_failures([RecipientFailure("0000")])
    app.state.phone_numbers.clear_failures()
    app.state.faults.clear()


@pytest.fixture
def numbers(acs) -> PhoneNumbersClient:
    return PhoneNumbersClient(acs[0].url, AzureKeyCredential(KEY))


@pytest.fixture
def sms(acs) -> SmsClient:
    return SmsClient(acs[0].url, AzureKeyCredential(KEY))


@pytest.fixture
def control(acs) -> Iterator[httpx.Client]:
    """Plain http to the unsigned ``/_sandbox`` routes."""
    with httpx.Client(base_url=acs[0].url) as client:
        yield client


def search(numbers: PhoneNumbersClient, quantity: int = 1, polling_interval: float = FAST, **kwargs):
    return numbers.begin_search_available_phone_numbers(
        "US", PhoneNumberType.TOLL_FREE, PhoneNumberAssignmentType.APPLICATION, SMS_BOTH_WAYS,
        quantity=quantity, polling_interval=polling_interval, **kwargs)


def buy(numbers: PhoneNumbersClient, quantity: int = 1) -> list[str]:
    result = search(numbers, quantity).result()
    numbers.begin_purchase_phone_numbers(result.search_id, polling_interval=FAST).result()
    return list(result.phone_numbers)


def send_repeatable(sms: SmsClient, from_: str, to: str, message: str, request_id: str, first_sent: str):
    """One recipient with a caller-chosen repeatability id, through the SDK's generated operation."""
    request = SendMessageRequest(
        from_property=from_, message=message,
        sms_recipients=[SmsRecipient(to=to, repeatability_request_id=request_id,
                                     repeatability_first_sent=first_sent)],
        sms_send_options=SmsSendOptions(enable_delivery_report=False))
    return sms._sms_service_client.sms.send(request).value[0]


def imf_fixdate(moment: datetime) -> str:
    return moment.strftime("%a, %d %b %Y %H:%M:%S GMT")


def error_of(exc: HttpResponseError) -> dict:
    return json.loads(exc.response.text())


# --- phone numbers ------------------------------------------------------------------


def operation_statuses(acs) -> tuple[PhoneNumbersClient, list[str]]:
    """A client whose every operation poll is recorded as the status the wire carried.

    Read off the responses the SDK received (not sampled from the poller's thread), so a busy
    machine cannot make the test miss a short-lived status."""
    served: list[str] = []

    def record(pipeline_response) -> None:
        response = pipeline_response.http_response
        if "/phoneNumbers/operations/" in response.request.url:
            served.append(response.json()["status"])

    return PhoneNumbersClient(acs[0].url, AzureKeyCredential(KEY), raw_response_hook=record), served


def test_search_and_purchase_progress_through_the_sdk_pollers(acs) -> None:
    numbers, served = operation_statuses(acs)
    before = datetime.now(timezone.utc)
    poller = search(numbers, quantity=2, polling_interval=0.15)
    result = poller.result()

    assert served == ["notStarted", "running", "succeeded"]
    assert poller.status() == "succeeded"
    assert len(result.phone_numbers) == 2 and all(TOLL_FREE.match(n) for n in result.phone_numbers)
    assert (result.phone_number_type, result.assignment_type) == ("tollFree", "application")
    cost = result.cost
    assert (cost.amount, cost.currency_code, cost.billing_frequency) == (2.0, "USD", "monthly")
    assert timedelta(minutes=14) < result.search_expires_by - before < timedelta(minutes=16)

    served.clear()
    purchase = numbers.begin_purchase_phone_numbers(result.search_id, polling_interval=0.15)
    assert purchase.result() is None
    assert served == ["notStarted", "running", "succeeded"]

    owned = {n.phone_number: n for n in numbers.list_purchased_phone_numbers()}
    assert set(result.phone_numbers) <= set(owned)
    bought = numbers.get_purchased_phone_number(result.phone_numbers[0])
    assert bought.id == result.phone_numbers[0].lstrip("+")
    assert (bought.country_code, bought.phone_number_type) == ("US", "tollFree")
    assert bought.assignment_type == "application"
    assert (bought.capabilities.sms, bought.capabilities.calling) == ("inbound+outbound", "none")


def test_search_honours_the_area_code_and_never_offers_a_number_twice(numbers: PhoneNumbersClient) -> None:
    first = search(numbers, quantity=3, area_code="833").result()
    second = search(numbers, quantity=3, area_code="833").result()

    assert all(n.startswith("+1833555") for n in first.phone_numbers + second.phone_numbers)
    assert not set(first.phone_numbers) & set(second.phone_numbers)


def test_release_removes_the_number(numbers: PhoneNumbersClient) -> None:
    kept, released = buy(numbers, quantity=2)

    numbers.begin_release_phone_number(released, polling_interval=FAST).result()

    listed = [n.phone_number for n in numbers.list_purchased_phone_numbers()]
    assert kept in listed and released not in listed
    with pytest.raises(ResourceNotFoundError) as missing:
        numbers.get_purchased_phone_number(released)
    assert missing.value.status_code == 404 and missing.value.error.code == "NotFound"


def test_listing_follows_next_links(numbers: PhoneNumbersClient) -> None:
    buy(numbers, quantity=2)
    everything = [n.phone_number for n in numbers.list_purchased_phone_numbers()]

    paged = [n.phone_number for n in numbers.list_purchased_phone_numbers(top=1)]

    assert len(everything) >= 3 and paged == everything


def test_a_failed_search_surfaces_as_an_sdk_error(numbers: PhoneNumbersClient, acs) -> None:
    acs[1].state.phone_numbers.fail_next("search", code="OutOfStock", message="No toll-free numbers left.")

    with pytest.raises(HttpResponseError) as failed:
        search(numbers).result()

    operation = error_of(failed.value)
    assert (operation["operationType"], operation["status"]) == ("search", "failed")
    assert operation["error"] == {"code": "OutOfStock", "message": "No toll-free numbers left."}
    assert search(numbers).result().phone_numbers  # only the next search was armed to fail


def test_a_failed_purchase_keeps_the_search_purchasable(
        numbers: PhoneNumbersClient, control: httpx.Client) -> None:
    armed = control.post("/_sandbox/phone-numbers/failures",
                         json={"operationType": "purchase", "message": "Billing is unavailable."})
    assert armed.json()["purchase"] == [{"code": "PurchaseFailed", "message": "Billing is unavailable."}]
    result = search(numbers).result()

    with pytest.raises(HttpResponseError) as failed:
        numbers.begin_purchase_phone_numbers(result.search_id, polling_interval=FAST).result()
    assert error_of(failed.value)["error"]["code"] == "PurchaseFailed"
    assert result.phone_numbers[0] not in {n.phone_number for n in numbers.list_purchased_phone_numbers()}

    numbers.begin_purchase_phone_numbers(result.search_id, polling_interval=FAST).result()
    assert numbers.get_purchased_phone_number(result.phone_numbers[0]).phone_number == result.phone_numbers[0]


def test_purchase_refuses_unknown_twice_bought_and_expired_searches(numbers: PhoneNumbersClient, acs) -> None:
    with pytest.raises(ResourceNotFoundError) as unknown:
        numbers.begin_purchase_phone_numbers("7f1e1a4c-0000-4000-8000-000000000000", polling_interval=FAST)
    assert (unknown.value.status_code, unknown.value.error.code) == (404, "NotFound")

    bought = search(numbers).result()
    numbers.begin_purchase_phone_numbers(bought.search_id, polling_interval=FAST).result()
    with pytest.raises(ResourceExistsError) as twice:
        numbers.begin_purchase_phone_numbers(bought.search_id, polling_interval=FAST)
    assert (twice.value.status_code, twice.value.error.code) == (409, "Conflict")

    stale = search(numbers).result()
    acs[1].state.phone_numbers.expire_search(stale.search_id)
    with pytest.raises(HttpResponseError) as expired:
        numbers.begin_purchase_phone_numbers(stale.search_id, polling_interval=FAST)
    assert (expired.value.status_code, expired.value.error.code) == (400, "SearchExpired")


def test_a_time_paced_operation_finishes_without_being_polled() -> None:
    inventory = PhoneNumberInventory(LroPace(polls=0, seconds=0.3))
    body = {"phoneNumberType": "tollFree", "assignmentType": "application",
            "capabilities": {"calling": "none", "sms": "outbound"}}
    op = inventory.start_search("US", body, "2025-06-01")

    assert inventory.poll(op.id).status == "notStarted"
    time.sleep(0.35)
    assert inventory.search_result(op.resource_id)["phoneNumbers"]  # ready without another poll
    assert inventory.poll(op.id).status == "succeeded"


# --- SMS ----------------------------------------------------------------------------


def test_send_to_two_recipients_fills_the_outbox_and_delivery_reports(
        sms: SmsClient, control: httpx.Client) -> None:
    results = sms.send(from_=SENDER, to=[PATIENT_A, PATIENT_B], message="Your video visit starts at 10:00.",
                       enable_delivery_report=True, tag="visit-42")

    assert [(r.to, r.successful, r.http_status_code, r.error_message) for r in results] == [
        (PATIENT_A, True, 202, None), (PATIENT_B, True, 202, None)]
    ids = [r.message_id for r in results]
    assert len(set(ids)) == 2 and all(i.startswith("Outgoing_") for i in ids)

    outbox = control.get("/_sandbox/outbox").json()
    assert [{k: m[k] for k in ("from", "to", "message", "messageId", "tag")} for m in outbox] == [
        {"from": SENDER, "to": PATIENT_A, "message": "Your video visit starts at 10:00.", "messageId": ids[0],
         "tag": "visit-42"},
        {"from": SENDER, "to": PATIENT_B, "message": "Your video visit starts at 10:00.", "messageId": ids[1],
         "tag": "visit-42"},
    ]
    assert datetime.fromisoformat(outbox[0]["sent_at"]) <= datetime.now(timezone.utc)

    reports = control.get("/_sandbox/delivery-reports").json()
    assert [r["eventType"] for r in reports] == ["Microsoft.Communication.SMSDeliveryReportReceived"] * 2
    data = reports[0]["data"]
    assert (reports[0]["id"], reports[0]["subject"]) == (ids[0], "/phonenumber/18445550199")
    assert (data["messageId"], data["from"], data["to"], data["tag"]) == (ids[0], SENDER, PATIENT_A, "visit-42")
    assert data["deliveryStatus"] == "Delivered" and data["deliveryAttempts"][0]["segmentsSucceeded"] == 1

    assert control.delete("/_sandbox/outbox").json() == []
    assert control.delete("/_sandbox/delivery-reports").json() == []


def test_a_repeated_request_id_is_answered_from_memory_and_sent_once(sms: SmsClient, acs) -> None:
    request_id, first_sent = "0f8fad5b-d9cb-469f-a165-70867728950e", imf_fixdate(datetime.now(timezone.utc))

    first = send_repeatable(sms, SENDER, PATIENT_A, "Reminder: visit at 10:00.", request_id, first_sent)
    again = send_repeatable(sms, SENDER, PATIENT_A, "Reminder: visit at 10:00.", request_id, first_sent)

    assert (first.successful, first.repeatability_result) == (True, "accepted")
    assert (again.successful, again.repeatability_result, again.message_id) == (True, "accepted", first.message_id)
    assert [m.message_id for m in acs[1].state.sms.outbox()] == [first.message_id]

    reused = send_repeatable(sms, SENDER, PATIENT_A, "Another text.", request_id, first_sent)
    assert (reused.successful, reused.http_status_code, reused.repeatability_result) == (False, 400, "rejected")

    stale = imf_fixdate(datetime.now(timezone.utc) - timedelta(minutes=10))
    late = send_repeatable(sms, SENDER, PATIENT_A, "Late.", "6a2f41a3-c54c-fce8-32d2-0324e1c32e22", stale)
    assert (late.successful, late.http_status_code, late.repeatability_result) == (False, 412, "rejected")
    assert len(acs[1].state.sms.outbox()) == 1


def test_sending_from_a_number_not_owned_is_refused(sms: SmsClient, acs) -> None:
    with pytest.raises(HttpResponseError) as refused:
        sms.send(from_="+18885550142", to=PATIENT_A, message="Hello")

    assert (refused.value.status_code, refused.value.error.code) == (401, "Unauthorized")
    assert acs[1].state.sms.outbox() == []


def test_a_failing_recipient_is_an_answer_not_an_exception(sms: SmsClient, control: httpx.Client, acs) -> None:
    control.post("/_sandbox/sms/recipient-failures",
                 json={"suffix": "0147", "httpStatusCode": 503, "errorMessage": "ServiceUnavailable"})

    results = sms.send(from_=SENDER, to=["+14255550000", PATIENT_A, "+15550000000", PATIENT_B], message="Hi")

    assert [(r.successful, r.http_status_code, r.message_id is None) for r in results] == [
        (False, 400, True), (True, 202, False), (False, 400, True), (False, 503, True)]
    assert results[2].error_message == "Invalid To phone number format."
    assert results[3].error_message == "ServiceUnavailable"
    assert [m.to for m in acs[1].state.sms.outbox()] == [PATIENT_A]


def test_a_recipient_that_is_no_number_fails_the_whole_request(sms: SmsClient) -> None:
    with pytest.raises(HttpResponseError) as refused:
        sms.send(from_=SENDER, to=["Ad155500000000000"], message="Hi")

    assert (refused.value.status_code, refused.value.error.code) == (400, "BadRequest")


# --- authentication and faults -------------------------------------------------------


def test_a_wrong_access_key_is_401_denied(acs) -> None:
    wrong = AzureKeyCredential(generate_access_key())

    with pytest.raises(ClientAuthenticationError) as sms_denied:
        SmsClient(acs[0].url, wrong).send(from_=SENDER, to=PATIENT_A, message="Hi")
    with pytest.raises(HttpResponseError) as numbers_denied:
        list(PhoneNumbersClient(acs[0].url, wrong).list_purchased_phone_numbers())

    for denied in (sms_denied.value, numbers_denied.value):
        assert (denied.status_code, denied.error.code) == (401, "Denied")
        assert denied.error.message == "Denied by the resource provider."
    assert acs[1].state.sms.outbox() == []


def signed_headers(method: str, url: httpx.URL, body: bytes, key: str, signed_body: bytes | None = None) -> dict:
    """Sign like the SDK's HMACCredentialsPolicy (written here independently of the simulator)."""
    date = imf_fixdate(datetime.now(timezone.utc))
    digest = base64.b64encode(hashlib.sha256(body if signed_body is None else signed_body).digest()).decode()
    path_and_query = url.raw_path.decode()
    to_sign = f"{method}\n{path_and_query}\n{date};{url.netloc.decode()};{digest}"
    signature = base64.b64encode(hmac.new(base64.b64decode(key), to_sign.encode(), hashlib.sha256).digest())
    authorization = f"HMAC-SHA256 SignedHeaders=x-ms-date;host;x-ms-content-sha256&Signature={signature.decode()}"
    return {"x-ms-date": date, "x-ms-content-sha256": digest, "Authorization": authorization}


def test_raw_requests_are_checked_for_signature_body_hash_and_api_version(acs) -> None:
    base = acs[0].url
    with httpx.Client() as http:
        unsigned = http.get(f"{base}/phoneNumbers?api-version=2025-06-01")
        url = httpx.URL(f"{base}/phoneNumbers")
        no_version = http.get(url, headers=signed_headers("GET", url, b"", KEY))
        url = httpx.URL(f"{base}/sms?api-version=2021-03-07")
        body = json.dumps({"from": SENDER, "smsRecipients": [{"to": PATIENT_A}], "message": "Hi"}).encode()
        tampered = http.post(url, content=body.replace(b"Hi", b"Pay now"),
                             headers=signed_headers("POST", url, body, KEY, signed_body=body))
        sent = http.post(url, content=body, headers=signed_headers("POST", url, body, KEY))

    assert (unsigned.status_code, unsigned.json()["error"]["code"]) == (401, "Denied")
    assert (no_version.status_code, no_version.json()["error"]["code"]) == (400, "MissingApiVersionParameter")
    assert tampered.status_code == 401
    assert tampered.json()["error"] == {
        "code": "Denied", "message": "Request 'x-ms-content-sha256' differs from generated content hash."}
    assert sent.status_code == 202 and sent.json()["value"][0]["successful"] is True
    assert [m.message for m in acs[1].state.sms.outbox()] == ["Hi"]


def test_an_injected_429_is_retried_by_the_sdk(sms: SmsClient, numbers: PhoneNumbersClient,
                                               control: httpx.Client, acs) -> None:
    control.post("/_sandbox/faults", json={"status": 429, "retry_after": 1, "count": 1, "path_prefix": "/sms"})
    started = time.monotonic()

    results = sms.send(from_=SENDER, to=PATIENT_A, message="Hi")

    assert time.monotonic() - started >= 1.0  # the SDK waited for Retry-After
    assert results[0].successful and control.get("/_sandbox/faults").json() == {"armed": []}
    assert [m.message_id for m in acs[1].state.sms.outbox()] == [results[0].message_id]

    control.post("/_sandbox/faults", json={"status": 429, "retry_after": 1, "count": 1,
                                           "path_prefix": "/phoneNumbers/operations/"})
    assert search(numbers).result().phone_numbers  # a throttled poll is retried inside the poller
    assert control.get("/_sandbox/faults").json() == {"armed": []}


# --- the per-number rate limit ------------------------------------------------------


OTHER_SENDER = "+18335550142"


@pytest.fixture
def throttled() -> Iterator[tuple[LoopbackServer, Starlette]]:
    """A resource allowing 3 message units per number per 2 seconds (ACS: 200 a minute)."""
    port = free_port()
    app = create_app(public_url=f"http://127.0.0.1:{port}", access_key=KEY, purchased_numbers=[SENDER, OTHER_SENDER],
                     rate_limit_per_minute=3, rate_limit_window=timedelta(seconds=2))
    with LoopbackServer(app, port, name="acs-throttled") as server:
        yield server, app


def raw_send(http: httpx.Client, base: str, from_: str, to: list[str]) -> httpx.Response:
    url = httpx.URL(f"{base}/sms?api-version=2021-03-07")
    body = json.dumps({"from": from_, "smsRecipients": [{"to": n} for n in to], "message": "Hi"}).encode()
    return http.post(url, content=body, headers=signed_headers("POST", url, body, KEY))


def test_the_default_rate_limit_is_acs_toll_free_limit(acs) -> None:
    limiter = acs[1].state.sms.rate_limiter
    assert (limiter.limit, limiter.window_seconds) == (200, 60.0)


def test_the_rate_limit_counts_message_units_per_number(throttled) -> None:
    base, app = throttled[0].url, throttled[1]
    with httpx.Client() as http:
        two = raw_send(http, base, SENDER, [PATIENT_A, PATIENT_B])
        third = raw_send(http, base, SENDER, [PATIENT_A])
        over = raw_send(http, base, SENDER, [PATIENT_A])
        other_number = raw_send(http, base, OTHER_SENDER, [PATIENT_A])
        usage = httpx.get(f"{base}/_sandbox/sms/rate-limit").json()
        time.sleep(int(over.headers["Retry-After"]))
        later = raw_send(http, base, SENDER, [PATIENT_A, PATIENT_B])

    assert [r.status_code for r in (two, third, over, other_number, later)] == [202, 202, 429, 202, 202]
    assert over.headers["Retry-After"] == "2"
    assert over.json()["error"]["code"] == "TooManyRequests"
    assert "3 message units per 2 seconds" in over.json()["error"]["message"]
    assert usage == {"limit": 3, "windowSeconds": 2.0, "used": {SENDER: 3, OTHER_SENDER: 1}}
    assert [m.from_ for m in app.state.sms.outbox()] == [SENDER] * 3 + [OTHER_SENDER] + [SENDER] * 2


def test_a_request_wider_than_what_is_left_is_refused_whole(throttled) -> None:
    base, app = throttled[0].url, throttled[1]
    with httpx.Client() as http:
        raw_send(http, base, SENDER, [PATIENT_A, PATIENT_B])
        wide = raw_send(http, base, SENDER, [PATIENT_A, PATIENT_B])
        impossible = raw_send(http, base, OTHER_SENDER, [PATIENT_A, PATIENT_B, "+14255550111", "+14255550112"])

    assert (wide.status_code, impossible.status_code) == (429, 429)
    assert impossible.headers["Retry-After"] == "2"  # more than the limit: the whole window, and then still no
    assert len(app.state.sms.outbox()) == 2


def test_the_sdk_waits_out_retry_after_unless_told_not_to_retry(throttled) -> None:
    url = throttled[0].url
    patient = SmsClient(url, AzureKeyCredential(KEY))
    impatient = SmsClient(url, AzureKeyCredential(KEY), retry_total=0)
    patient.send(from_=SENDER, to=[PATIENT_A, PATIENT_B, PATIENT_A], message="Hi")

    with pytest.raises(HttpResponseError) as throttled_error:
        impatient.send(from_=SENDER, to=PATIENT_A, message="Hi")
    started = time.monotonic()
    [result] = patient.send(from_=SENDER, to=PATIENT_A, message="Hi")

    assert (throttled_error.value.status_code, throttled_error.value.error.code) == (429, "TooManyRequests")
    assert time.monotonic() - started >= 1.0 and result.successful


def test_the_sliding_window() -> None:
    from dev.sandbox.acs import SlidingWindowLimiter

    now = [0.0]
    limiter = SlidingWindowLimiter(5, 60, clock=lambda: now[0])

    assert limiter.take(SENDER, 3) is None
    now[0] = 30
    assert limiter.take(SENDER, 2) is None
    now[0] = 40
    assert limiter.take(SENDER, 1).retry_after == 20  # the first 3 units leave at 60
    assert limiter.take(OTHER_SENDER, 5) is None  # per number
    now[0] = 59.5
    assert limiter.take(SENDER, 1).retry_after == 1
    now[0] = 60
    assert limiter.take(SENDER, 3) is None and limiter.used(SENDER) == 5
    now[0] = 61
    assert limiter.take(SENDER, 6).retry_after == 60
    now[0] = 89.9
    assert limiter.take(SENDER, 1).retry_after == 1  # the 2 units of t=30 leave at 90
    assert limiter.used(SENDER) == 5
