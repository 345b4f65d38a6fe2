"""The phone numbers API's resources as the SDK's models spell them on the wire.

``PhoneNumberSearchRequest`` in, ``PhoneNumberSearchResult`` and ``PurchasedPhoneNumber`` out
(camelCase keys as in azure-communication-phonenumbers' ``_attribute_map``).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from .errors import BAD_REQUEST, AcsError
from .operations import Operation
from .wire import iso

TOLL_FREE_PREFIXES = ("800", "833", "844", "855", "866", "877", "888")
DEFAULT_GEOGRAPHIC_AREA_CODE = "425"
MONTHLY_COST_USD = {"tollFree": 2.0, "geographic": 1.0}
CAPABILITY_VALUES = ("none", "inbound", "outbound", "inbound+outbound")
ASSIGNMENT_TYPES = ("person", "application")
MAX_QUANTITY = 10


def cost(phone_number_type: str) -> dict[str, Any]:
    amount = MONTHLY_COST_USD[phone_number_type]
    return {"amount": amount, "currencyCode": "USD", "billingFrequency": "monthly"}


def _area_code_fits(area_code: Any, phone_number_type: str) -> bool:
    if not (isinstance(area_code, str) and area_code.isdigit() and len(area_code) == 3):
        return False
    toll_free = area_code in TOLL_FREE_PREFIXES
    return area_code[0] not in "01" and toll_free == (phone_number_type == "tollFree")


@dataclass(frozen=True)
class SearchRequest:
    """A validated ``PhoneNumberSearchRequest``."""

    phone_number_type: str
    assignment_type: str
    capabilities: dict[str, str]
    area_code: str | None
    quantity: int

    @classmethod
    def parse(cls, country_code: str, body: dict[str, Any]) -> SearchRequest:
        if country_code != "US":
            raise AcsError(400, BAD_REQUEST, f"The sandbox sells US numbers only, not '{country_code}'.")
        kind, assignment = body.get("phoneNumberType"), body.get("assignmentType")
        capabilities, area_code = body.get("capabilities"), body.get("areaCode")
        quantity = body.get("quantity") or 1  # the SDK sends no quantity unless asked
        if kind not in MONTHLY_COST_USD:
            raise AcsError(400, BAD_REQUEST, f"phoneNumberType must be tollFree or geographic, not {kind!r}.")
        if assignment not in ASSIGNMENT_TYPES:
            raise AcsError(400, BAD_REQUEST, f"assignmentType must be person or application, not {assignment!r}.")
        if not isinstance(capabilities, dict) or any(
                capabilities.get(name) not in CAPABILITY_VALUES for name in ("calling", "sms")):
            allowed = ", ".join(CAPABILITY_VALUES)
            raise AcsError(400, BAD_REQUEST, f"capabilities needs calling and sms, each one of {allowed}.")
        if area_code is not None and not _area_code_fits(area_code, kind):
            raise AcsError(400, BAD_REQUEST, f"The area code '{area_code}' is not valid for {kind} numbers.")
        if not isinstance(quantity, int) or not 1 <= quantity <= MAX_QUANTITY:
            raise AcsError(400, BAD_REQUEST, f"quantity must be between 1 and {MAX_QUANTITY}.")
        wanted = {"calling": capabilities["calling"], "sms": capabilities["sms"]}
        return cls(kind, assignment, wanted, area_code, quantity)

    def prefixes(self) -> list[str]:
        """The area codes to draw numbers from, in order."""
        if self.area_code:
            return [self.area_code]
        if self.phone_number_type == "tollFree":
            return list(TOLL_FREE_PREFIXES)
        return [DEFAULT_GEOGRAPHIC_AREA_CODE]


@dataclass
class Search:
    search_id: str
    phone_numbers: list[str]
    phone_number_type: str
    assignment_type: str
    capabilities: dict[str, str]
    expires: datetime
    ready: bool = False  # set when the search operation succeeds
    purchase: Operation | None = None

    @classmethod
    def for_request(cls, request: SearchRequest, numbers: list[str], expires: datetime) -> Search:
        return cls("", numbers, request.phone_number_type, request.assignment_type,
                   dict(request.capabilities), expires)

    def mark_ready(self, _: datetime) -> None:
        self.ready = True

    def to_json(self) -> dict[str, Any]:
        return {
            "searchId": self.search_id,
            "phoneNumbers": list(self.phone_numbers),
            "phoneNumberType": self.phone_number_type,
            "assignmentType": self.assignment_type,
            "capabilities": dict(self.capabilities),
            "cost": cost(self.phone_number_type),
            "searchExpiresBy": iso(self.expires),
            "isAgreementToNotResellRequired": False,
        }


@dataclass
class PurchasedNumber:
    phone_number: str
    phone_number_type: str
    assignment_type: str
    capabilities: dict[str, str]
    purchase_date: datetime

    @property
    def can_send_sms(self) -> bool:
        return self.capabilities.get("sms") in ("outbound", "inbound+outbound")

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.phone_number.lstrip("+"),  # ACS: the number's digits
            "phoneNumber": self.phone_number,
            "countryCode": "US",
            "phoneNumberType": self.phone_number_type,
            "capabilities": dict(self.capabilities),
            "assignmentType": self.assignment_type,
            "purchaseDate": iso(self.purchase_date),
            "cost": cost(self.phone_number_type),
        }
