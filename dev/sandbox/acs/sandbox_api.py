"""``/_sandbox/...``: the controls real ACS does not have (unsigned, loopback only).

- ``GET|DELETE /_sandbox/outbox``: the sent messages, oldest first, as
  ``{"from", "to", "message", "messageId", "sent_at", "tag"}``; DELETE empties it.
- ``GET|DELETE /_sandbox/delivery-reports``: pending ``SMSDeliveryReportReceived`` events
  (Event Grid schema); DELETE drops them.
- ``GET|POST|DELETE /_sandbox/sms/recipient-failures``: per-recipient failure rules;
  POST ``{"suffix": "0000", "httpStatusCode": 400, "errorMessage": "..."}`` adds one,
  DELETE removes all (every valid recipient then succeeds).
- ``GET|POST|DELETE /_sandbox/phone-numbers/failures``: make the next operations fail;
  POST ``{"operationType": "search" | "purchase" | "releasePhoneNumber", "code": "...",
  "message": "...", "count": 1}``.
- ``GET /_sandbox/phone-numbers``: purchased numbers, searches and operations.
- ``/_sandbox/faults``: the shared fault switches (:mod:`dev.sandbox.faults`).
"""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Route

from .errors import AcsError
from .inventory import DEFAULT_FAILURES, PhoneNumberInventory
from .messaging import DEFAULT_RECIPIENT_ERROR, RecipientFailure, SmsGateway
from .wire import json_object


def _rule_json(rule: RecipientFailure) -> dict:
    return {"suffix": rule.suffix, "httpStatusCode": rule.http_status_code, "errorMessage": rule.error_message}


def sandbox_routes(inventory: PhoneNumberInventory, gateway: SmsGateway) -> list[Route]:
    async def outbox(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            gateway.clear_outbox()
        return JSONResponse([sent.to_json() for sent in gateway.outbox()])

    async def delivery_reports(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            gateway.take_delivery_reports()
        return JSONResponse(gateway.delivery_reports())

    async def recipient_failures(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await json_object(request)
                rule = RecipientFailure(
                    str(body["suffix"]), int(body.get("httpStatusCode", 400)),
                    str(body.get("errorMessage", DEFAULT_RECIPIENT_ERROR)))
            except (AcsError, KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": "invalid_rule", "detail": str(exc)}, 400)
            gateway.set_recipient_failures([*gateway.recipient_failures(), rule])
        elif request.method == "DELETE":
            gateway.set_recipient_failures([])
        return JSONResponse([_rule_json(rule) for rule in gateway.recipient_failures()])

    async def operation_failures(request: Request) -> JSONResponse:
        if request.method == "POST":
            try:
                body = await json_object(request)
                kind = body["operationType"]
                if kind not in DEFAULT_FAILURES:
                    raise ValueError(f"operationType must be one of {', '.join(DEFAULT_FAILURES)}")
                inventory.fail_next(kind, body.get("code"), body.get("message"), int(body.get("count", 1)))
            except (AcsError, KeyError, TypeError, ValueError) as exc:
                return JSONResponse({"error": "invalid_failure", "detail": str(exc)}, 400)
        elif request.method == "DELETE":
            inventory.clear_failures()
        return JSONResponse(inventory.armed_failures())

    async def phone_numbers(request: Request) -> JSONResponse:
        return JSONResponse(inventory.snapshot())

    return [
        Route("/_sandbox/outbox", outbox, methods=["GET", "DELETE"]),
        Route("/_sandbox/delivery-reports", delivery_reports, methods=["GET", "DELETE"]),
        Route("/_sandbox/sms/recipient-failures", recipient_failures, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/phone-numbers/failures", operation_failures, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/phone-numbers", phone_numbers, methods=["GET"]),
    ]

