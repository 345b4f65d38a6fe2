"""SMS through azure-communication-sms, with a repeatability id the caller chooses.

    sender = sms_sender_from_settings(settings)
    message_id = sender.send(from_number=..., to_number=..., message=..., repeatability_id=uuid,
                             first_sent=when_first_tried, tag="visit-link")

ACS makes a send repeatable (OASIS Repeatable Requests) when each recipient carries a
``repeatabilityRequestId`` (a GUID) and ``repeatabilityFirstSent``: the same pair again
returns the original answer and sends nothing. The SDK's public ``SmsClient.send`` makes a new
id on every call, so a retried send would go out twice; this adapter builds the same wire
request with the caller's id and first-sent time and sends it through the SDK's own
generated client (``_sms_service_client``, the one ``send`` itself uses), keeping the SDK's
authentication, retries and models. Pinned SDK version: see requirements.txt; a unit test
fails if the private client's shape changes.

A per-recipient failure comes back as ``successful: false`` (not an exception): it is raised
here as ``UpstreamError`` with ACS's status only, never the number or the text.
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from connector import telemetry
from connector.adapters.net.headers import retry_after_seconds
from connector.errors import UpstreamError, UpstreamUnavailable
from connector.settings import Settings


class NumberPacer:
    """Keeps one process's sends from each number under ACS's per-number limit (toll-free: 200
    message units a minute), spacing them evenly with a margin; ACS's 429 covers the rest (the
    sender puts a throttled message back on the queue after Retry-After)."""

    MARGIN = 0.95

    def __init__(self, per_minute: int, *, clock=time.monotonic, sleep=time.sleep):
        self._interval = 60.0 / (per_minute * self.MARGIN) if per_minute > 0 else 0.0
        self._next: dict[str, float] = {}
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def wait(self, number: str) -> None:
        with self._lock:
            now = self._clock()
            slot = max(now, self._next.get(number, now))
            self._next[number] = slot + self._interval
        if slot > now:
            self._sleep(slot - now)


class AcsSmsSender:
    def __init__(self, client, pacer: NumberPacer | None = None, *, host: str | None = None) -> None:
        self._client = client  # azure.communication.sms.SmsClient
        self._pacer = pacer
        self._host = host  # the ACS resource's, for telemetry

    def send(self, *, from_number: str, to_number: str, message: str, repeatability_id: str,
             first_sent: datetime, tag: str | None = None) -> str:
        from azure.communication.sms._generated.models import SendMessageRequest, SmsRecipient, SmsSendOptions

        request = SendMessageRequest(
            from_property=from_number,
            sms_recipients=[SmsRecipient(to=to_number, repeatability_request_id=repeatability_id,
                                         repeatability_first_sent=_rfc1123(first_sent))],
            message=message,
            sms_send_options=SmsSendOptions(enable_delivery_report=True, tag=tag),
        )
        if self._pacer is not None:
            self._pacer.wait(from_number)
        # Never the numbers or the text: the service, the host and ACS's status.
        with telemetry.span("acs sms send", service="Azure Communication Services", host=self._host,
                            operation="sms send") as call:
            try:
                response = self._client._sms_service_client.sms.send(request)
            except ClientAuthenticationError as exc:
                raise UpstreamUnavailable("Azure Communication Services could not be signed in to") from exc
            except HttpResponseError as exc:
                status = exc.status_code or 0
                call.set(status=status)
                if status == 429 or status >= 500:
                    headers = exc.response.headers if exc.response is not None else None
                    raise UpstreamUnavailable(f"Azure Communication Services is busy (HTTP {status})",
                                              retry_after=retry_after_seconds(headers)) from exc
                raise UpstreamError(f"Azure Communication Services refused the SMS (HTTP {status})") from exc
            except AzureError as exc:
                raise UpstreamUnavailable("Azure Communication Services did not answer") from exc
            result = response.value[0]
            if not result.successful:
                status = result.http_status_code or 0
                call.set(status=status)
                if status == 429 or status >= 500:
                    raise UpstreamUnavailable(f"Azure Communication Services is busy (HTTP {status})")
                raise UpstreamError(f"Azure Communication Services refused the SMS (HTTP {status})")
        return result.message_id


def _rfc1123(moment: datetime) -> str:
    return moment.astimezone(timezone.utc).strftime("%a, %d %b %Y %H:%M:%S GMT")


def sms_sender_from_settings(settings: Settings) -> AcsSmsSender:
    from azure.communication.sms import SmsClient

    if settings.acs_emulator_key is not None:
        from azure.core.credentials import AzureKeyCredential

        # from_connection_string would rewrite the loopback simulator's http to https.
        credential = AzureKeyCredential(settings.acs_emulator_key.get_secret_value())
    else:
        from azure.identity import DefaultAzureCredential

        credential = DefaultAzureCredential()
    # No retries in the SDK: a throttled message goes back on the queue (after Retry-After) rather
    # than holding a worker through azure-core's retries; other failures are the queue's to retry.
    client = SmsClient(settings.acs_endpoint, credential, retry_total=0)
    return AcsSmsSender(client, NumberPacer(settings.sms_rate_per_minute),
                        host=urlsplit(settings.acs_endpoint).hostname)
