"""Toll-free numbers through azure-communication-phonenumbers.

Search and purchase are long-running operations; this adapter waits on the SDK's pollers,
so it runs in the queue-triggered provisioning worker, never in an HTTP request.
"""

from __future__ import annotations

from dataclasses import dataclass

from azure.core.exceptions import AzureError, HttpResponseError, ServiceRequestError, ServiceResponseError

from connector.errors import UpstreamError, UpstreamUnavailable
from connector.settings import Settings


@dataclass(frozen=True)
class SearchedNumbers:
    search_id: str
    phone_numbers: tuple[str, ...]


class NumberNotAvailable(UpstreamError):
    """ACS finished the operation and said no (no numbers, search expired, refused)."""


def _translate(exc: AzureError, what: str) -> Exception:
    if isinstance(exc, (ServiceRequestError, ServiceResponseError)):
        return UpstreamUnavailable(f"Azure Communication Services did not answer the {what}")
    status = getattr(exc, "status_code", None) or 0
    if isinstance(exc, HttpResponseError) and (status in (408, 429) or status >= 500):
        return UpstreamUnavailable(f"Azure Communication Services is busy; the {what} will be retried")
    return NumberNotAvailable(f"Azure Communication Services refused the {what}")


class AcsPhoneNumbers:
    def __init__(self, client, *, polling_interval: float = 2.0):
        self._client = client
        self._polling_interval = polling_interval

    def search_toll_free(self, country_code: str) -> SearchedNumbers:
        from azure.communication.phonenumbers import (
            PhoneNumberAssignmentType, PhoneNumberCapabilities, PhoneNumberCapabilityType, PhoneNumberType,
        )

        # Outbound for confirmations and reminders; inbound so patients can reply STOP.
        capabilities = PhoneNumberCapabilities(
            calling=PhoneNumberCapabilityType.NONE, sms=PhoneNumberCapabilityType.INBOUND_OUTBOUND
        )
        try:
            result = self._client.begin_search_available_phone_numbers(
                country_code, PhoneNumberType.TOLL_FREE, PhoneNumberAssignmentType.APPLICATION, capabilities,
                quantity=1, polling_interval=self._polling_interval,
            ).result()
        except AzureError as exc:
            raise _translate(exc, "number search") from exc
        return SearchedNumbers(result.search_id, tuple(result.phone_numbers))

    def purchase(self, search_id: str) -> None:
        try:
            self._client.begin_purchase_phone_numbers(search_id, polling_interval=self._polling_interval).result()
        except AzureError as exc:
            raise _translate(exc, "number purchase") from exc

    def owned_numbers(self) -> set[str]:
        try:
            return {n.phone_number for n in self._client.list_purchased_phone_numbers()}
        except AzureError as exc:
            raise _translate(exc, "number listing") from exc


def phone_numbers_from_settings(settings: Settings) -> AcsPhoneNumbers:
    from azure.communication.phonenumbers import PhoneNumbersClient

    if settings.acs_emulator_key is not None:
        from azure.core.credentials import AzureKeyCredential

        credential = AzureKeyCredential(settings.acs_emulator_key.get_secret_value())
        # The simulator answers at once; the SDK's default 2 s polls would only slow demos.
        return AcsPhoneNumbers(PhoneNumbersClient(settings.acs_endpoint, credential), polling_interval=0.2)
    from azure.identity import DefaultAzureCredential

    return AcsPhoneNumbers(PhoneNumbersClient(settings.acs_endpoint, DefaultAzureCredential()))
