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

from datetime import datetime, timezone

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError

from connector.errors import UpstreamError, UpstreamUnavailable
from connector.settings import Settings


class AcsSmsSender:
    def __init__(self, client) -> None:
        self._client = client  # azure.communication.sms.SmsClient

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
        try:
            response = self._client._sms_service_client.sms.send(request)
        except ClientAuthenticationError as exc:
            raise UpstreamUnavailable("Azure Communication Services could not be signed in to") from exc
        except HttpResponseError as exc:
            status = exc.status_code or 0
            if status == 429 or status >= 500:
                raise UpstreamUnavailable(f"Azure Communication Services is busy (HTTP {status})") from exc
            raise UpstreamError(f"Azure Communication Services refused the SMS (HTTP {status})") from exc
        except AzureError as exc:
            raise UpstreamUnavailable("Azure Communication Services did not answer") from exc
        result = response.value[0]
        if not result.successful:
            status = result.http_status_code or 0
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
    return AcsSmsSender(SmsClient(settings.acs_endpoint, credential))
