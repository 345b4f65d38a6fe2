"""ACS's error shape, ``{"error": {"code": ..., "message": ...}}``, and the codes the sandbox uses.

The SDKs deserialize it as ``CommunicationErrorResponse`` and raise ``HttpResponseError``
(``ClientAuthenticationError`` for 401, ``ResourceNotFoundError`` for 404,
``ResourceExistsError`` for 409), so ``exc.error.code`` carries ``code`` below.

Codes seen on the wire are marked *ACS*; the others are the sandbox's own, named plainly,
where the service's exact wording is not published.
"""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

DENIED = "Denied"  # ACS: any HMAC failure, 401
UNAUTHORIZED = "Unauthorized"  # sending from a number the resource does not own, 401
BAD_REQUEST = "BadRequest"
NOT_FOUND = "NotFound"
CONFLICT = "Conflict"
MISSING_API_VERSION = "MissingApiVersionParameter"
UNSUPPORTED_API_VERSION = "UnsupportedApiVersion"
SEARCH_EXPIRED = "SearchExpired"
OUT_OF_STOCK = "OutOfStock"  # ACS: PhoneNumberSearchResultError
UNKNOWN_SEARCH_ERROR = "UnknownSearchError"  # ACS: PhoneNumberSearchResultError
PURCHASE_FAILED = "PurchaseFailed"  # ACS: PhoneNumberSearchResultError
TOO_MANY_REQUESTS = "TooManyRequests"  # 429 from the per-number SMS rate limit (see .rate_limit)


def error_body(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message}}


class AcsError(Exception):
    """A request ACS would refuse: raised anywhere, answered by the route as JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers

    def response(self) -> JSONResponse:
        return JSONResponse(error_body(self.code, self.message), self.status, headers=self.headers)
