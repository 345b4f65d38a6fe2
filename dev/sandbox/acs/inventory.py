"""The phone numbers the sandbox sells: a pool, searches that hold numbers, purchases, releases.

Numbers are NANP fictional ones (555-0100 to 555-0199): toll-free under the 800, 833, 844,
855, 866, 877 and 888 prefixes, geographic under any other area code. A search holds its
numbers until it expires unbought; a purchase makes them owned; a release gives one back.

Thread-safe: the server thread runs the routes, tests read and arm it from theirs.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from typing import Any

from .errors import (
    BAD_REQUEST, CONFLICT, NOT_FOUND, OUT_OF_STOCK, PURCHASE_FAILED, SEARCH_EXPIRED,
    UNKNOWN_SEARCH_ERROR, AcsError,
)
from .numbers import TOLL_FREE_PREFIXES, PurchasedNumber, Search, SearchRequest
from .operations import FAILED, PURCHASE, RELEASE, SEARCH, LroPace, Operation, PlannedFailure
from .wire import iso, utc_now

DEFAULT_FAILURES = {
    SEARCH: (UNKNOWN_SEARCH_ERROR, "The sandbox was told to fail this search."),
    PURCHASE: (PURCHASE_FAILED, "The sandbox was told to fail this purchase."),
    RELEASE: (BAD_REQUEST, "The sandbox was told to fail this release."),
}


def _candidates(request: SearchRequest) -> Iterator[str]:
    for prefix in request.prefixes():
        for line in range(100, 200):
            yield f"+1{prefix}5550{line}"


class PhoneNumberInventory:
    """What one ACS resource owns and is buying. ``pace`` sets how fast operations finish."""

    def __init__(self, pace: LroPace = LroPace(), search_ttl: timedelta = timedelta(minutes=15)) -> None:
        self.pace = pace
        self.search_ttl = search_ttl
        self._lock = threading.Lock()
        self._operations: dict[str, Operation] = {}
        self._searches: dict[str, Search] = {}
        self._purchased: dict[str, PurchasedNumber] = {}
        self._held: set[str] = set()  # numbers offered by searches that may still be bought
        self._failures: dict[str, deque[PlannedFailure]] = {kind: deque() for kind in DEFAULT_FAILURES}

    # --- the API's verbs ------------------------------------------------------------

    def start_search(self, country_code: str, body: dict[str, Any], api_version: str) -> Operation:
        request = SearchRequest.parse(country_code, body)
        now = utc_now()
        with self._lock:
            self._settle(now)
            taken = self._held | set(self._purchased)
            numbers = [n for n in _candidates(request) if n not in taken][:request.quantity]
            failure = self._next_failure(SEARCH)
            if failure is None and len(numbers) < request.quantity:
                failure = PlannedFailure(
                    OUT_OF_STOCK, f"Only {len(numbers)} of {request.quantity} numbers are available.")
            search = Search.for_request(request, numbers if failure is None else [], now + self.search_ttl)
            self._held.update(search.phone_numbers)
            op = self._add(SEARCH, now, failure, search.mark_ready)
            search.search_id = op.resource_id
            op.resource_location = (
                f"/availablePhoneNumbers/searchResults/{search.search_id}?api-version={api_version}")
            self._searches[search.search_id] = search
            return op

    def search_result(self, search_id: str) -> dict[str, Any]:
        with self._lock:
            self._settle(utc_now())
            return self._ready_search(search_id).to_json()

    def start_purchase(self, search_id: Any) -> Operation:
        if not isinstance(search_id, str) or not search_id:
            raise AcsError(400, BAD_REQUEST, "searchId is required.")
        now = utc_now()
        with self._lock:
            self._settle(now)
            search = self._ready_search(search_id)
            if search.purchase is not None and search.purchase.status != FAILED:
                raise AcsError(409, CONFLICT, f"Search '{search_id}' has already been purchased.")
            if search.expires <= now:
                raise AcsError(400, SEARCH_EXPIRED, f"Search '{search_id}' expired at {iso(search.expires)}.")
            search.purchase = self._add(
                PURCHASE, now, self._next_failure(PURCHASE),
                lambda when: self._complete_purchase(search, when))
            return search.purchase

    def purchased(self, skip: int = 0, top: int = 100) -> tuple[list[dict[str, Any]], bool]:
        """One page of purchased numbers, and whether more follow."""
        with self._lock:
            self._settle(utc_now())
            numbers = sorted(self._purchased.values(), key=lambda n: n.phone_number)
            return [n.to_json() for n in numbers[skip:skip + top]], len(numbers) > skip + top

    def get_purchased(self, phone_number: str) -> dict[str, Any]:
        with self._lock:
            self._settle(utc_now())
            return self._owned(phone_number).to_json()

    def start_release(self, phone_number: str) -> Operation:
        now = utc_now()
        with self._lock:
            self._settle(now)
            self._owned(phone_number)
            return self._add(
                RELEASE, now, self._next_failure(RELEASE),
                lambda _: self._purchased.pop(phone_number, None))

    def poll(self, operation_id: str) -> Operation:
        with self._lock:
            op = self._operations.get(operation_id)
            if op is None:
                raise AcsError(404, NOT_FOUND, f"Operation '{operation_id}' was not found.")
            op.poll(utc_now(), self.pace)
            return op

    def can_send_sms(self, phone_number: str) -> bool:
        with self._lock:
            self._settle(utc_now())
            number = self._purchased.get(phone_number)
            return number is not None and number.can_send_sms

    def can_receive_sms(self, phone_number: str) -> bool:
        with self._lock:
            self._settle(utc_now())
            number = self._purchased.get(phone_number)
            return number is not None and number.capabilities.get("sms") in ("inbound", "inbound+outbound")

    # --- sandbox controls -----------------------------------------------------------

    def seed(self, phone_numbers: Iterable[str], sms: str = "inbound+outbound") -> None:
        """Own ``phone_numbers`` already (application numbers), as a stack would after setup."""
        now = utc_now()
        with self._lock:
            for number in phone_numbers:
                kind = "tollFree" if number[2:5] in TOLL_FREE_PREFIXES else "geographic"
                capabilities = {"calling": "none", "sms": sms}
                self._purchased[number] = PurchasedNumber(number, kind, "application", capabilities, now)

    def fail_next(
        self, operation_type: str, code: str | None = None, message: str | None = None, count: int = 1
    ) -> None:
        """Make the next ``count`` operations of this type end ``failed`` with this error."""
        default_code, default_message = DEFAULT_FAILURES[operation_type]
        failure = PlannedFailure(code or default_code, message or default_message)
        with self._lock:
            self._failures[operation_type].extend([failure] * count)

    def clear_failures(self) -> None:
        with self._lock:
            for queue in self._failures.values():
                queue.clear()

    def armed_failures(self) -> dict[str, list[dict[str, str]]]:
        with self._lock:
            return {kind: [vars(f) for f in queue] for kind, queue in self._failures.items()}

    def expire_search(self, search_id: str) -> None:
        """Let a search's time run out now instead of after ``search_ttl``."""
        with self._lock:
            self._searches[search_id].expires = utc_now() - timedelta(seconds=1)
            self._settle(utc_now())

    def snapshot(self) -> dict[str, Any]:
        """Everything, for ``GET /_sandbox/phone-numbers`` and debugging."""
        with self._lock:
            self._settle(utc_now())
            return {
                "purchased": [n.to_json() for n in self._purchased.values()],
                "searches": [s.to_json() | {"ready": s.ready} for s in self._searches.values()],
                "operations": [op.to_json() for op in self._operations.values()],
            }

    # --- internals (call with the lock held) ----------------------------------------

    def _add(
        self, kind: str, now: datetime, failure: PlannedFailure | None, on_success: Callable[[datetime], None]
    ) -> Operation:
        op = Operation(kind, now, None, on_success, failure)
        self._operations[op.id] = op
        op.settle(now, self.pace)  # a zero pace finishes at once
        return op

    def _next_failure(self, kind: str) -> PlannedFailure | None:
        queue = self._failures[kind]
        return queue.popleft() if queue else None

    def _ready_search(self, search_id: str) -> Search:
        search = self._searches.get(search_id)
        if search is None or not search.ready:
            raise AcsError(404, NOT_FOUND, f"Search '{search_id}' was not found.")
        return search

    def _owned(self, phone_number: str) -> PurchasedNumber:
        number = self._purchased.get(phone_number)
        if number is None:
            raise AcsError(404, NOT_FOUND, f"Phone number '{phone_number}' was not found.")
        return number

    def _settle(self, now: datetime) -> None:
        """Finish what the pace allows; free the numbers of searches that expired unbought."""
        for op in self._operations.values():
            op.settle(now, self.pace)
        for search in self._searches.values():
            unbought = search.purchase is None or search.purchase.status == FAILED
            if search.expires <= now and unbought:
                self._held.difference_update(search.phone_numbers)

    def _complete_purchase(self, search: Search, when: datetime) -> None:
        for number in search.phone_numbers:
            self._purchased[number] = PurchasedNumber(
                number, search.phone_number_type, search.assignment_type, search.capabilities, when)
        self._held.difference_update(search.phone_numbers)
