"""``POST /api/events/acs``: Azure Communication Services SMS events through Event Grid
(delivery reports and patients' STOP / START replies).

Event Grid proves the webhook with a validation event first (``aeg-event-type:
SubscriptionValidation``), answered 200 with its code whether or not it carries the key: Event
Grid does not promise delivery headers on the handshake, and echoing a code reveals and changes
nothing. Every other POST must carry the secret delivery header the subscription was made with
(``X-Connector-Events-Key``, from ``CONNECTOR_ACS_EVENTS_KEY``): without it, 401 and nothing is
read. Events are applied idempotently (Event Grid delivers at least once, in no order).
"""

import hmac
import logging

import azure.functions as func

from connector.composition import container
from connector.errors import ConfigurationError, NotAuthenticated
from connector.functions.http import handles_errors, json_response

bp = func.Blueprint()
log = logging.getLogger("connector.sms")
KEY_HEADER = "X-Connector-Events-Key"


@bp.route(route="events/acs", methods=["POST"], auth_level=func.AuthLevel.ANONYMOUS)
@handles_errors
def acs_events(req: func.HttpRequest) -> func.HttpResponse:
    from connector.adapters.acs.events import MAX_BODY_BYTES, parse_event_grid

    deps = container()
    body = req.get_body() or b""
    if len(body) > MAX_BODY_BYTES:
        return json_response({"error": "payload_too_large", "message": "the events are larger than 1 MiB"}, 413)
    handshake = req.headers.get("aeg-event-type") == "SubscriptionValidation"
    if not handshake:
        _check_key(req, deps.settings.acs_events_key)
    parsed = parse_event_grid(body, dict(req.headers))  # a handshake holds one validation event, or 400
    if parsed.is_validation:
        log.info("Event Grid subscription validated")
        return json_response(parsed.validation_response())
    applied = deps.sms_events.apply(parsed.events)
    log.info("SMS events: %d applied, %d ignored", applied, parsed.ignored)
    return func.HttpResponse(status_code=200)


def _check_key(req: func.HttpRequest, expected) -> None:
    if expected is None:
        raise ConfigurationError("CONNECTOR_ACS_EVENTS_KEY is not set: SMS events cannot be trusted")
    given = req.headers.get(KEY_HEADER) or ""
    if not hmac.compare_digest(given.encode(), expected.get_secret_value().encode()):
        raise NotAuthenticated("the event delivery does not carry this stamp's events key")
