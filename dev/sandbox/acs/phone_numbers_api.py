"""The phone numbers REST API, the part ``PhoneNumbersClient`` (1.4.0) calls.

- ``POST   /availablePhoneNumbers/countries/{countryCode}/:search``  202, search LRO
- ``GET    /availablePhoneNumbers/searchResults/{searchId}``        PhoneNumberSearchResult
- ``POST   /availablePhoneNumbers/:purchase``                       202, purchase LRO
- ``GET    /phoneNumbers/operations/{operationId}``                 PhoneNumberOperation
- ``GET    /phoneNumbers?skip=&top=``                               PurchasedPhoneNumbers
- ``GET    /phoneNumbers/{phoneNumber}``                            PurchasedPhoneNumber
- ``DELETE /phoneNumbers/{phoneNumber}``                            202, release LRO

LRO headers are relative, as ACS sends them (``Operation-Location:
/phoneNumbers/operations/search_<id>?api-version=...``); azure-core joins them to the
client's endpoint. The 202s have an empty body, so the poller's first status comes from
the first GET of the operation.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from urllib.parse import urlencode

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import BAD_REQUEST, AcsError
from .inventory import PhoneNumberInventory
from .operations import PURCHASE, RELEASE, SEARCH, Operation
from .wire import api_version, json_object

# What azure-communication-phonenumbers' ApiVersion enum lists (1.4.0 defaults to the last).
API_VERSIONS = frozenset({
    "2022-01-11-preview2", "2022-12-01", "2023-05-01-preview", "2024-03-01-preview",
    "2025-02-11", "2025-04-01", "2025-06-01",
})
Endpoint = Callable[[Request, str], Awaitable[Response]]  # (request, api-version) -> response
# The resource id header each kind of operation adds next to operation-id.
_ID_HEADER = {SEARCH: "search-id", PURCHASE: "purchase-id", RELEASE: "release-id"}


def _accepted(op: Operation, version: str) -> Response:
    headers = {
        "Operation-Location": f"/phoneNumbers/operations/{op.id}?api-version={version}",
        "operation-id": op.id,
        _ID_HEADER[op.operation_type]: op.resource_id,
    }
    if op.operation_type == SEARCH and op.resource_location:
        # The search's final state is read from Location (final-state-via: location).
        headers["Location"] = op.resource_location
    headers["Access-Control-Expose-Headers"] = ",".join(headers)
    return Response(status_code=202, headers=headers)


def _int_param(request: Request, name: str, default: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit():
        raise AcsError(400, BAD_REQUEST, f"The query parameter {name} must be a non-negative integer.")
    return int(raw)


def phone_numbers_routes(inventory: PhoneNumberInventory, public_url: str) -> list[Route]:
    def handles_errors(endpoint: Endpoint) -> Callable[[Request], Awaitable[Response]]:
        """Check api-version first, and answer any AcsError in ACS's error shape."""
        async def run(request: Request) -> Response:
            try:
                return await endpoint(request, api_version(request, API_VERSIONS))
            except AcsError as exc:
                return exc.response()
        return run

    @handles_errors
    async def search(request: Request, version: str) -> Response:
        body = await json_object(request)
        op = inventory.start_search(request.path_params["countryCode"], body, version)
        return _accepted(op, version)

    @handles_errors
    async def search_result(request: Request, version: str) -> Response:
        return JSONResponse(inventory.search_result(request.path_params["searchId"]))

    @handles_errors
    async def purchase(request: Request, version: str) -> Response:
        body = await json_object(request)
        return _accepted(inventory.start_purchase(body.get("searchId")), version)

    @handles_errors
    async def operation(request: Request, version: str) -> Response:
        op = inventory.poll(request.path_params["operationId"])
        headers = {"Location": op.resource_location} if op.resource_location else None
        return JSONResponse(op.to_json(), headers=headers)

    @handles_errors
    async def list_numbers(request: Request, version: str) -> Response:
        skip, top = _int_param(request, "skip", 0), _int_param(request, "top", 100)
        page, more = inventory.purchased(skip, max(top, 1))
        body: dict[str, object] = {"phoneNumbers": page}
        if more:
            query = urlencode({"skip": skip + top, "top": top, "api-version": version})
            body["nextLink"] = f"{public_url}/phoneNumbers?{query}"
        return JSONResponse(body)

    @handles_errors
    async def one_number(request: Request, version: str) -> Response:
        phone_number = request.path_params["phoneNumber"]
        if request.method == "DELETE":
            return _accepted(inventory.start_release(phone_number), version)
        return JSONResponse(inventory.get_purchased(phone_number))

    return [
        Route("/availablePhoneNumbers/countries/{countryCode}/:search", search, methods=["POST"]),
        Route("/availablePhoneNumbers/searchResults/{searchId}", search_result, methods=["GET"]),
        Route("/availablePhoneNumbers/:purchase", purchase, methods=["POST"]),
        Route("/phoneNumbers/operations/{operationId}", operation, methods=["GET"]),
        Route("/phoneNumbers", list_numbers, methods=["GET"]),
        Route("/phoneNumbers/{phoneNumber}", one_number, methods=["GET", "DELETE"]),
    ]
