"""``POST /sms?api-version=2021-03-07``, what ``SmsClient.send`` (1.1.0) calls.

202 with ``{"value": [SmsSendResponseItem, ...]}`` in recipient order; request-level problems
are 400 (malformed body) or 401 (``from`` not owned by the resource), in ACS's error shape.
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from .errors import AcsError
from .messaging import SmsGateway
from .wire import api_version, json_object

# azure-communication-sms 1.1.0 pins this version; newer SDKs must be added here knowingly.
API_VERSIONS = frozenset({"2021-03-07"})


def sms_routes(gateway: SmsGateway) -> list[Route]:
    async def send(request: Request) -> Response:
        try:
            api_version(request, API_VERSIONS)
            answers = gateway.send(await json_object(request))
        except AcsError as exc:
            return exc.response()
        return JSONResponse({"value": answers}, 202)

    return [Route("/sms", send, methods=["POST"])]
