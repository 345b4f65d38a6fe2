"""Toll-free numbers through azure-communication-phonenumbers.

Search and purchase are long-running operations; this adapter waits on the SDK's pollers,
so it runs in the queue-triggered provisioning worker, never in an HTTP request.
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from azure.core.exceptions import AzureError, ClientAuthenticationError, HttpResponseError
from azure.core.polling.base_polling import OperationFailed

from connector import telemetry
from connector.errors import UpstreamError, UpstreamUnavailable
from connector.settings import Settings


@dataclass(frozen=True)
class SearchedNumbers:
    search_id: str
    phone_numbers: tuple[str, ...]


class NumberNotAvailable(UpstreamError):
    """ACS gave a definite no: the operation ended failed, or it refused the request (400, 404,
    409 ...). Final for this provisioning."""


class PurchaseAlreadyStarted(UpstreamUnavailable):
    """ACS answered 409 to a purchase: this search is already being (or has been) bought.

    Not a failure: the number may be ours already, or will be once that purchase finishes.
    The caller checks ownership and otherwise retries later; it never searches again."""


# Answers that mean "not now" rather than "no": throttling, timeouts, outages, and auth
# (a managed identity that is briefly unavailable, a token endpoint that hiccups).
_TRANSIENT_STATUS = frozenset({401, 403, 408, 429})


def _translate(exc: AzureError, what: str, *, conflict_is_started_purchase: bool = False) -> Exception:
    """Only a definite answer from ACS is final; anything else is retried by the queue."""
    if isinstance(exc, ClientAuthenticationError):  # before HttpResponseError: it is one
        return UpstreamUnavailable(f"Azure Communication Services could not be signed in to for the {what}")
    if isinstance(exc, HttpResponseError):
        status = exc.status_code or 0
        if isinstance(exc.__cause__, OperationFailed):  # the long-running operation ended failed
            return NumberNotAvailable(f"Azure Communication Services refused the {what}")
        if status == 409 and conflict_is_started_purchase:
            return PurchaseAlreadyStarted("Azure Communication Services is already buying this number")
        if 400 <= status < 500 and status not in _TRANSIENT_STATUS:
            return NumberNotAvailable(f"Azure Communication Services refused the {what}")
        if status:
            return UpstreamUnavailable(f"Azure Communication Services is busy; the {what} will be retried")
    # No connection, no answer, or an answer we could not read: not a "no".
    return UpstreamUnavailable(f"Azure Communication Services did not answer the {what}")


class AcsPhoneNumbers:
    def __init__(self, client, *, polling_interval: float = 2.0, host: str | None = None):
        self._client = client
        self._polling_interval = polling_interval
        self._host = host  # the ACS resource's, for telemetry

    def _traced(self, operation: str):
        """One span per call (a long-running operation's polls included): the operation, never a number."""
        return telemetry.span(f"acs {operation}", service="Azure Communication Services", host=self._host,
                              operation=operation)

    def search_toll_free(self, country_code: str) -> SearchedNumbers:
        from azure.communication.phonenumbers import (
            PhoneNumberAssignmentType, PhoneNumberCapabilities, PhoneNumberCapabilityType, PhoneNumberType,
        )

        # Outbound for confirmations and reminders; inbound so patients can reply STOP.
        capabilities = PhoneNumberCapabilities(
            calling=PhoneNumberCapabilityType.NONE, sms=PhoneNumberCapabilityType.INBOUND_OUTBOUND
        )
        try:
            with self._traced("number search"):
                result = self._client.begin_search_available_phone_numbers(
                    country_code, PhoneNumberType.TOLL_FREE, PhoneNumberAssignmentType.APPLICATION, capabilities,
                    quantity=1, polling_interval=self._polling_interval,
                ).result()
        except AzureError as exc:
            raise _translate(exc, "number search") from exc
        return SearchedNumbers(result.search_id, tuple(result.phone_numbers))

    def purchase(self, search_id: str) -> None:
        """Buy what the search holds and wait for it. A search is bought at most once: asked
        again, ACS answers 409 (:class:`PurchaseAlreadyStarted`)."""
        try:
            with self._traced("number purchase"):
                self._client.begin_purchase_phone_numbers(search_id, polling_interval=self._polling_interval).result()
        except AzureError as exc:
            raise _translate(exc, "number purchase", conflict_is_started_purchase=True) from exc

    def owned_numbers(self) -> set[str]:
        try:
            with self._traced("number listing"):
                return {n.phone_number for n in self._client.list_purchased_phone_numbers()}
        except AzureError as exc:
            raise _translate(exc, "number listing") from exc


def phone_numbers_from_settings(settings: Settings) -> AcsPhoneNumbers:
    from azure.communication.phonenumbers import PhoneNumbersClient

    host = urlsplit(settings.acs_endpoint).hostname
    if settings.acs_emulator_key is not None:
        from azure.core.credentials import AzureKeyCredential

        credential = AzureKeyCredential(settings.acs_emulator_key.get_secret_value())
        # The simulator answers at once; the SDK's default 2 s polls would only slow demos.
        return AcsPhoneNumbers(PhoneNumbersClient(settings.acs_endpoint, credential), polling_interval=0.2, host=host)
    from azure.identity import DefaultAzureCredential

    return AcsPhoneNumbers(PhoneNumbersClient(settings.acs_endpoint, DefaultAzureCredential()), host=host)
