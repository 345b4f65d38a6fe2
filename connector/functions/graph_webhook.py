"""``POST /api/notifications/graph``: Microsoft Graph change notifications for meeting call
events, and the timer that keeps their subscriptions alive.

Graph first proves the URL with a validation handshake (``?validationToken=...`` and no body: answer 200,
``text/plain``, the token, within 10 seconds). Then each notification names its subscription
and carries the ``clientState`` we chose for it; one that does not match is refused (403) and
changes nothing. Accepted notifications are answered 202.
"""

import logging

import azure.functions as func

from connector import telemetry
from connector.composition import container
from connector.errors import InvalidInput, Problem
from connector.functions.http import handles_errors, json_response

bp = func.Blueprint()
log = logging.getLogger("connector.graph")
# What the handshake's validationToken may be (the document says the same; "printable" is
# str.isprintable, which no regular expression of all three engines spells alike).
VALIDATION_TOKEN_SCHEMA = {"type": "string", "minLength": 1, "maxLength": 1024,
                           "description": "printable text (Graph's opaque token)"}



@bp.route(route="notifications/graph", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def graph_notifications(req: func.HttpRequest) -> func.HttpResponse:
    # Imported here, not at app import: cold start is paid by every function of the app.
    from connector.adapters.graph.notifications import MAX_BODY_BYTES, MAX_VALIDATION_TOKEN_CHARS, parse_call_events

    token = req.params.get("validationToken")
    if token is not None:
        if not token or len(token) > MAX_VALIDATION_TOKEN_CHARS or not token.isprintable():
            raise InvalidInput("validationToken is not a token Graph would send",
                               problems=[Problem("validationToken", "is empty, too long or not printable")])
        if req.get_body():
            raise InvalidInput("Graph's validation handshake has no body",
                               problems=[Problem("body", "must be empty with validationToken")])
        return func.HttpResponse(token, status_code=200, mimetype="text/plain", charset="utf-8",
                                 headers={"X-Content-Type-Options": "nosniff"})
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        return json_response({"error": "payload_too_large",
                              "message": f"the notification is larger than {MAX_BODY_BYTES} bytes"}, 413)
    media_type = (req.headers.get("Content-Type") or "").split(";")[0].strip().lower()
    if media_type != "application/json":
        return json_response({"error": "unsupported_media_type",
                              "message": "change notifications must be application/json"}, 415)
    deps = container()
    events = parse_call_events(body, decryption_keys=deps.notification_decryption_keys)
    applied = deps.visits.apply_call_events(events)
    log.info("graph notifications applied: %d", applied)
    return func.HttpResponse(status_code=202)


@bp.timer_trigger(arg_name="timer", schedule="%CONNECTOR_SUBSCRIPTION_RENEWAL_SCHEDULE%", run_on_startup=False)
@telemetry.traced("timer")
def renew_graph_subscriptions(timer: func.TimerRequest) -> None:
    renewed, dropped = container().visits.renew_subscriptions()
    log.info("graph subscriptions renewed: %d, let go: %d", renewed, dropped)
