"""The ACS SMS adapter: the per-number pacer (a fake clock and sleep), and AcsSmsSender through the
real azure-communication-sms client over a fake azure-core transport (no network): the wire
request it builds (repeatability id, first sent, delivery report, tag) and how ACS's answers map
to the connector's errors (429 -> UpstreamUnavailable with Retry-After)."""

from __future__ import annotations

import bisect
import json
import math
from datetime import datetime, timedelta, timezone

import pytest
from azure.communication.sms import SmsClient
from azure.core.credentials import AzureKeyCredential
from azure.core.pipeline.transport import HttpResponse, HttpTransport

from connector.adapters.acs.sms import AcsSmsSender, NumberPacer
from connector.errors import UpstreamError, UpstreamUnavailable

FROM, TO, OTHER_FROM = "+18335550142", "+13125550103", "+18335550143"
RID = "3f2504e0-4f89-41d3-9a0c-0305e82c3301"
FIRST_SENT = datetime(2025, 3, 3, 15, 30, 5, tzinfo=timezone.utc)
TEXT = "Family Medicine Clinic: reminder, your video visit is today at 10:30 AM."


# == NumberPacer ============================================================================================


class FakeTime:
    """A monotonic clock that only moves when slept on."""

    def __init__(self, start: float = 5000.0):
        self.now = start
        self.sleeps: list[float] = []

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def most_in_a_minute(times: list[float]) -> int:
    """The most sends in any window [t, t + 60 s) (a microsecond's slack for float sums)."""
    return max(bisect.bisect_left(times, t + 60 - 1e-6) - i for i, t in enumerate(times))


def send_times(pacer: NumberPacer, fake: FakeTime, number: str, count: int) -> list[float]:
    times = []
    for _ in range(count):
        pacer.wait(number)
        times.append(fake.now)
    return times


@pytest.mark.parametrize("per_minute", [200, 100, 20, 6000])
def test_the_pacer_never_sends_more_than_95_percent_of_the_limit_in_any_minute(per_minute):
    fake = FakeTime()
    pacer = NumberPacer(per_minute, clock=fake.clock, sleep=fake.sleep)
    times = send_times(pacer, fake, FROM, per_minute * 3)
    assert most_in_a_minute(times) == int(per_minute * NumberPacer.MARGIN)
    gaps = {round(b - a, 9) for a, b in zip(times, times[1:])}
    assert gaps == {round(60 / (per_minute * 0.95), 9)}  # evenly spaced, no bursts
    assert times[0] == 5000.0  # the first send does not wait


@pytest.mark.parametrize("per_minute", [1, 3, 7, 50])
def test_the_pacer_stays_under_the_limit_when_95_percent_is_not_a_whole_number(per_minute):
    fake = FakeTime()
    pacer = NumberPacer(per_minute, clock=fake.clock, sleep=fake.sleep)
    most = most_in_a_minute(send_times(pacer, fake, FROM, per_minute * 3 + 2))
    # one message more than 95 % (rounded up), never more than ACS's limit
    assert most == math.ceil(per_minute * NumberPacer.MARGIN) <= per_minute


def test_the_pacer_lets_a_number_that_was_idle_send_at_once():
    fake = FakeTime()
    pacer = NumberPacer(200, clock=fake.clock, sleep=fake.sleep)
    pacer.wait(FROM)
    fake.now += 10  # ten quiet seconds
    pacer.wait(FROM)
    assert fake.sleeps == []


def test_numbers_are_paced_independently():
    fake = FakeTime()
    pacer = NumberPacer(20, clock=fake.clock, sleep=fake.sleep)
    interval = 60 / 19
    pacer.wait(FROM)
    pacer.wait(OTHER_FROM)  # another number's first message does not wait behind FROM
    assert fake.sleeps == []
    pacer.wait(FROM)
    assert fake.sleeps == [pytest.approx(interval)]
    pacer.wait(OTHER_FROM)  # its slot passed while FROM waited
    assert len(fake.sleeps) == 1
    pacer.wait(OTHER_FROM)
    assert fake.sleeps[1] == pytest.approx(interval)


def test_interleaved_numbers_each_keep_their_own_rate():
    fake = FakeTime()
    pacer = NumberPacer(200, clock=fake.clock, sleep=fake.sleep)
    by_number: dict[str, list[float]] = {FROM: [], OTHER_FROM: []}
    for n in range(600):
        number = FROM if n % 2 else OTHER_FROM
        pacer.wait(number)
        by_number[number].append(fake.now)
    assert most_in_a_minute(by_number[FROM]) == 190 and most_in_a_minute(by_number[OTHER_FROM]) == 190
    assert by_number[FROM][-1] - by_number[FROM][0] == pytest.approx(299 * 60 / 190)


def test_a_limit_of_zero_means_no_pacing():
    fake = FakeTime()
    pacer = NumberPacer(0, clock=fake.clock, sleep=fake.sleep)
    send_times(pacer, fake, FROM, 50)
    assert fake.sleeps == []


# == AcsSmsSender over the real SDK client ===================================================================


class Answer(HttpResponse):
    def __init__(self, request, status: int, body: dict | None = None, headers: dict[str, str] | None = None):
        super().__init__(request, None)
        self.status_code = status
        self.headers = {"Content-Type": "application/json", **(headers or {})}
        self.reason = {202: "Accepted", 400: "Bad Request", 401: "Unauthorized", 429: "Too Many Requests",
                       503: "Service Unavailable"}.get(status, "")
        self.content_type = "application/json"
        self._body = json.dumps(body or {}).encode()

    def body(self) -> bytes:
        return self._body


class FakeAcs(HttpTransport):
    """ACS's /sms endpoint: answers the queued (status, body, headers) in order; keeps every request."""

    def __init__(self, *answers: tuple[int, dict | None, dict[str, str] | None]):
        self.answers = list(answers)
        self.requests = []

    def __enter__(self):
        return self

    def __exit__(self, *args):
        return None

    def open(self):
        return None

    def close(self):
        return None

    def send(self, request, **kwargs):
        self.requests.append(request)
        status, body, headers = self.answers.pop(0)
        return Answer(request, status, body, headers)

    def body(self, n: int = 0) -> dict:
        return json.loads(self.requests[n].data)


def accepted(message_id: str = "Outgoing_20250303153005abc_noam", *, successful: bool = True,
             status: int = 202) -> tuple[int, dict, None]:
    return 202, {"value": [{"to": TO, "messageId": message_id if successful else None, "httpStatusCode": status,
                            "repeatabilityResult": "accepted", "successful": successful,
                            "errorMessage": None if successful else "refused"}]}, None


def sender(transport: FakeAcs, pacer: NumberPacer | None = None) -> AcsSmsSender:
    client = SmsClient("https://acs-vv.communication.azure.com", AzureKeyCredential("c2VjcmV0LWtleQ=="),
                       transport=transport, retry_total=0)
    return AcsSmsSender(client, pacer)


def send(adapter: AcsSmsSender, **changes) -> str:
    arguments = dict(from_number=FROM, to_number=TO, message=TEXT, repeatability_id=RID, first_sent=FIRST_SENT,
                     tag="tenant_main|4826003_reminder60_20250303T163000Z")
    return adapter.send(**{**arguments, **changes})


def test_a_send_carries_our_repeatability_id_first_sent_time_delivery_report_and_tag():
    acs = FakeAcs(accepted())
    assert send(sender(acs)) == "Outgoing_20250303153005abc_noam"
    [request] = acs.requests
    assert request.method == "POST"
    assert request.url == "https://acs-vv.communication.azure.com/sms?api-version=2021-03-07"
    assert request.headers["Authorization"].startswith("HMAC-SHA256 ")
    assert acs.body() == {
        "from": FROM, "message": TEXT,
        "smsRecipients": [{"to": TO, "repeatabilityRequestId": RID,
                           "repeatabilityFirstSent": "Mon, 03 Mar 2025 15:30:05 GMT"}],
        "smsSendOptions": {"enableDeliveryReport": True, "tag": "tenant_main|4826003_reminder60_20250303T163000Z"},
    }


def test_first_sent_is_written_in_gmt_whatever_the_zone_given():
    acs = FakeAcs(accepted(), accepted())
    adapter = sender(acs)
    send(adapter)
    send(adapter, first_sent=FIRST_SENT.astimezone(timezone(timedelta(hours=-6))))
    assert acs.body(0)["smsRecipients"] == acs.body(1)["smsRecipients"]


def test_acs_429_is_upstream_unavailable_with_retry_after():
    acs = FakeAcs((429, {"error": {"code": "TooManyRequests", "message": "Rate limit exceeded"}},
                   {"Retry-After": "17"}))
    with pytest.raises(UpstreamUnavailable) as caught:
        send(sender(acs))
    assert caught.value.retry_after == 17.0
    assert "429" in caught.value.message
    assert TO not in caught.value.message and TEXT not in caught.value.message
    assert len(acs.requests) == 1


def test_acs_429_without_retry_after_is_still_unavailable():
    acs = FakeAcs((429, {"error": {"code": "TooManyRequests", "message": "slow down"}}, None))
    with pytest.raises(UpstreamUnavailable) as caught:
        send(sender(acs))
    assert caught.value.retry_after is None and "HTTP 429" in caught.value.message


def test_acs_503_is_unavailable_and_400_is_a_refusal():
    with pytest.raises(UpstreamUnavailable) as busy:
        send(sender(FakeAcs((503, {"error": {"code": "ServiceUnavailable", "message": "x"}}, {"Retry-After": "3"}))))
    assert busy.value.retry_after == 3.0
    with pytest.raises(UpstreamError) as refused:
        send(sender(FakeAcs((400, {"error": {"code": "BadRequest", "message": "Invalid to"}}, None))))
    assert type(refused.value) is UpstreamError and "HTTP 400" in refused.value.message
    assert TO not in refused.value.message


def test_acs_401_is_unavailable_sign_in():
    with pytest.raises(UpstreamUnavailable, match="signed in"):
        send(sender(FakeAcs((401, {"error": {"code": "Denied", "message": "x"}}, None))))


def test_a_recipient_throttled_inside_a_202_is_unavailable():
    with pytest.raises(UpstreamUnavailable, match="HTTP 429"):
        send(sender(FakeAcs(accepted(successful=False, status=429))))


def test_a_recipient_refused_inside_a_202_is_a_refusal_without_the_number():
    with pytest.raises(UpstreamError) as caught:
        send(sender(FakeAcs(accepted(successful=False, status=400))))
    assert type(caught.value) is UpstreamError and "HTTP 400" in caught.value.message
    assert TO not in caught.value.message


def test_the_pacer_is_asked_for_the_sending_number_before_each_send():
    fake = FakeTime()
    pacer = NumberPacer(20, clock=fake.clock, sleep=fake.sleep)
    acs = FakeAcs(accepted("m1"), accepted("m2"), accepted("m3"))
    adapter = sender(acs, pacer)
    assert [send(adapter), send(adapter), send(adapter, from_number=OTHER_FROM)] == ["m1", "m2", "m3"]
    assert fake.sleeps == [pytest.approx(60 / 19)]  # the second message from FROM waited; OTHER_FROM did not
