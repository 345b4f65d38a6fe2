"""``/_sandbox/...``: the controls real ACS does not have (unsigned, loopback only).

- ``GET|DELETE /_sandbox/outbox``: the sent messages, oldest first, as
  ``{"from", "to", "message", "messageId", "sent_at", "tag"}``; DELETE empties it (and the
  blocked list).
- ``GET|DELETE /_sandbox/sms/blocked``: messages accepted for opted-out recipients and never
  delivered, in the outbox's shape.
- ``GET|DELETE /_sandbox/delivery-reports``: pending ``SMSDeliveryReportReceived`` events
  (Event Grid schema); DELETE drops them. (Subscribed webhooks get them pushed regardless.)
- ``GET|DELETE /_sandbox/sms/rate-limit``: ``{"limit", "windowSeconds", "used": {from: units}}``
  of the per-number send limit (``limit`` null when off); DELETE forgets what was sent.

Inbound SMS and opt-outs (see :mod:`.inbound`):

- ``POST /_sandbox/inbound`` ``{"from": "+1312...", "to": "<our number>", "message": "STOP"}``:
  a patient replies. 202 ``{"messageId", "carrierKeyword": "stop"|"start"|null, "optedOut"}``;
  the carrier applies STOP/START and an ``SMSReceived`` event goes to the subscriptions. 400 for
  a ``from`` that is not E.164, 404 for a ``to`` the resource does not own for inbound SMS.
- ``GET|DELETE /_sandbox/inbound``: the messages received, oldest first.
- ``GET|DELETE /_sandbox/opt-outs``: ``[{"sender", "recipient", "since"}]``; DELETE forgets all.

Event Grid (see :mod:`.event_grid`):

- ``POST /_sandbox/event-subscriptions`` ``{"endpoint": "http://127.0.0.1:7071/api/events/acs",
  "eventTypes": ["Microsoft.Communication.SMSReceived", "Microsoft.Communication.SMSDeliveryReportReceived"],
  "name": "...", "maxEventsPerBatch": 1, "deliveryHeaders": {"X-...": "..."}}`` (all but
  ``endpoint`` optional): runs the validation handshake against the endpoint, then 201 with the
  subscription (``provisioningState`` ``Succeeded``), or 202 when the endpoint chose the manual
  handshake (``AwaitingManualAction``, with ``validationUrl``), or 400
  ``{"error": {"code": "WebhookValidationFailed" | "InvalidRequest", "message"}}``. An existing
  ``name`` is replaced (re-validated). ``"eventDeliverySchema"`` other than ``EventGridSchema``
  is refused.
- ``GET /_sandbox/event-subscriptions``; ``GET|DELETE /_sandbox/event-subscriptions/{name}``.
- ``GET /_sandbox/event-subscriptions/{name}/validate?id=&token=...``: the ``validationUrl``.
- ``GET|DELETE /_sandbox/event-deliveries``: the delivery log, per attempt ``{"subscription",
  "eventIds", "eventTypes", "attempt", "status", "error" ("timeout" | "connection"), "outcome"
  (delivered | retrying | failed | refused | dropped), "at"}``.
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

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import Route

from .errors import NOT_FOUND, AcsError, error_body
from .event_grid import AWAITING_MANUAL_ACTION, EVENT_GRID_SCHEMA, EventGrid, SubscriptionRefused
from .inventory import DEFAULT_FAILURES, PhoneNumberInventory
from .messaging import DEFAULT_RECIPIENT_ERROR, RecipientFailure, SmsGateway
from .wire import json_object, utc_now


def _rule_json(rule: RecipientFailure) -> dict:
    return {"suffix": rule.suffix, "httpStatusCode": rule.http_status_code, "errorMessage": rule.error_message}


def sandbox_routes(inventory: PhoneNumberInventory, gateway: SmsGateway, events: EventGrid) -> list[Route]:
    async def outbox(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            gateway.clear_outbox()
        return JSONResponse([sent.to_json() for sent in gateway.outbox()])

    async def blocked(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            gateway.clear_outbox()
        return JSONResponse([sent.to_json() for sent in gateway.blocked()])

    async def rate_limit(request: Request) -> JSONResponse:
        limiter = gateway.rate_limiter
        if limiter is None:
            return JSONResponse({"limit": None, "windowSeconds": None, "used": {}})
        if request.method == "DELETE":
            limiter.reset()
        numbers = [n["phoneNumber"] for n in inventory.snapshot()["purchased"]]
        return JSONResponse({"limit": limiter.limit, "windowSeconds": limiter.window_seconds,
                             "used": {n: limiter.used(n) for n in numbers if limiter.used(n)}})

    async def inbound(request: Request) -> Response:
        if request.method == "POST":
            try:
                body = await json_object(request)
                received = gateway.receive(body.get("from"), body.get("to"), body.get("message"))
            except AcsError as exc:
                return exc.response()
            return JSONResponse({"messageId": received.message_id, "carrierKeyword": received.keyword,
                                 "optedOut": gateway.opt_outs.blocks(received.to, received.from_)}, 202)
        if request.method == "DELETE":
            gateway.clear_inbound()
        return JSONResponse([message.to_json() for message in gateway.inbound()])

    async def opt_outs(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            gateway.opt_outs.clear()
        return JSONResponse([entry.to_json() for entry in gateway.opt_outs.entries()])

    async def event_subscriptions(request: Request) -> Response:
        if request.method == "GET":
            return JSONResponse(events.subscriptions())
        try:
            body = await json_object(request)
        except AcsError as exc:
            return exc.response()
        try:
            subscription = await run_in_threadpool(
                events.subscribe, body.get("endpoint"), body.get("eventTypes"), name=body.get("name"),
                max_events_per_batch=body.get("maxEventsPerBatch", 1), headers=body.get("deliveryHeaders"),
                schema=body.get("eventDeliverySchema", EVENT_GRID_SCHEMA))
        except SubscriptionRefused as exc:
            return JSONResponse(error_body(exc.code, exc.message), exc.status)
        status = 202 if subscription.state == AWAITING_MANUAL_ACTION else 201
        return JSONResponse(subscription.to_json(utc_now()), status)

    async def one_subscription(request: Request) -> Response:
        name = request.path_params["name"]
        subscription = events.get(name)
        if subscription is None:
            return JSONResponse(error_body(NOT_FOUND, f"Event subscription '{name}' was not found."), 404)
        if request.method == "DELETE":
            events.unsubscribe(name)
            return Response(status_code=204)
        return JSONResponse(subscription.to_json(utc_now()))

    async def validate(request: Request) -> Response:
        name = request.path_params["name"]
        if not events.validate_manually(name, request.query_params.get("id", ""),
                                        request.query_params.get("token", "")):
            return JSONResponse(error_body("ValidationFailed", "This validation URL is not valid (any more)."), 400)
        return PlainTextResponse("Webhook successfully validated as a part of the subscription validation handshake.")

    async def event_deliveries(request: Request) -> JSONResponse:
        if request.method == "DELETE":
            events.clear_deliveries()
        return JSONResponse(events.deliveries())

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
        Route("/_sandbox/sms/blocked", blocked, methods=["GET", "DELETE"]),
        Route("/_sandbox/sms/rate-limit", rate_limit, methods=["GET", "DELETE"]),
        Route("/_sandbox/inbound", inbound, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/opt-outs", opt_outs, methods=["GET", "DELETE"]),
        Route("/_sandbox/event-subscriptions", event_subscriptions, methods=["GET", "POST"]),
        Route("/_sandbox/event-subscriptions/{name}", one_subscription, methods=["GET", "DELETE"]),
        Route("/_sandbox/event-subscriptions/{name}/validate", validate, methods=["GET"]),
        Route("/_sandbox/event-deliveries", event_deliveries, methods=["GET", "DELETE"]),
        Route("/_sandbox/sms/recipient-failures", recipient_failures, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/phone-numbers/failures", operation_failures, methods=["GET", "POST", "DELETE"]),
        Route("/_sandbox/phone-numbers", phone_numbers, methods=["GET"]),
    ]

