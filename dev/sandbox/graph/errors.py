"""Microsoft Graph's error shape and the codes the sandbox answers with.

Every Graph error is ``{"error": {"code", "message", "innerError": {"date", "request-id",
"client-request-id"}}}`` (https://learn.microsoft.com/graph/errors); msgraph-sdk reads it as
``ODataError`` (``error.code``, ``error.message``) and raises it as ``APIError`` with
``response_status_code`` and ``response_headers``.

Wording taken from Graph where it is published or seen on the wire:

- 401 ``InvalidAuthenticationToken``: "Access token is empty." / "Access token validation
  failure. Invalid audience." / "Lifetime validation failed, the token is expired.";
- 403 ``Forbidden`` "No application access policy found for this app." (the application
  access policy article, https://learn.microsoft.com/graph/cloud-communication-online-meeting-application-access-policy#errors);
- 400 ``InvalidRequest`` "Subscription validation request failed. Response must exactly match
  validationToken query parameter." and "Subscription validation request timed out."
  (both as Graph answered in microsoftgraph/java-spring-webhooks-sample#82 and
  microsoftgraph/nodejs-webhooks-sample#350).

Other messages are the sandbox's own, written plainly.
"""

from __future__ import annotations

import uuid
from datetime import datetime, timezone
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse

BAD_REQUEST = "BadRequest"
INVALID_REQUEST = "InvalidRequest"
INVALID_TOKEN = "InvalidAuthenticationToken"
FORBIDDEN = "Forbidden"
NOT_FOUND = "NotFound"
RESOURCE_NOT_FOUND = "ResourceNotFound"
METHOD_NOT_ALLOWED = "MethodNotAllowed"

NO_ACCESS_POLICY = "No application access policy found for this app."
VALIDATION_FAILED = ("Subscription validation request failed. Response must exactly match validationToken "
                     "query parameter.")
VALIDATION_TIMED_OUT = "Subscription validation request timed out."


def error_body(code: str, message: str, client_request_id: str | None = None) -> dict[str, Any]:
    request_id = str(uuid.uuid4())
    return {
        "error": {
            "code": code,
            "message": message,
            "innerError": {
                "date": datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S"),
                "request-id": request_id,
                "client-request-id": client_request_id or request_id,
            },
        }
    }


class GraphError(Exception):
    """A request Graph would refuse: raised anywhere, answered by the route as Graph's JSON."""

    def __init__(self, status: int, code: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = headers or {}

    def response(self, request: Request | None = None) -> JSONResponse:
        client_request_id = request.headers.get("client-request-id") if request is not None else None
        return JSONResponse(error_body(self.code, self.message, client_request_id), self.status, headers=self.headers)
