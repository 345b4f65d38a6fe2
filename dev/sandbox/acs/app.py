"""The ACS simulator as one Starlette application."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse

from ..faults import FaultInjectionMiddleware, FaultSwitches, control_routes
from .delivery_reports import topic
from .errors import NOT_FOUND, error_body
from .event_grid import DELIVERY_TIMEOUT_SECONDS, RETRY_DELAYS, VALIDATION_TIMEOUT_SECONDS, EventGrid
from .hmac_auth import HmacAuthMiddleware, decode_access_key
from .inventory import PhoneNumberInventory
from .messaging import RecipientFailure, SmsGateway
from .operations import LroPace
from .phone_numbers_api import phone_numbers_routes
from .rate_limit import TOLL_FREE_UNITS_PER_MINUTE, SlidingWindowLimiter
from .sandbox_api import sandbox_routes
from .sms_api import sms_routes


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown paths and methods answer in ACS's error shape, not Starlette's plain text."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    detail = exc.detail if isinstance(exc, HTTPException) else "Internal error."
    return JSONResponse(error_body(NOT_FOUND if status == 404 else "MethodNotAllowed", detail), status)


def create_app(
    *,
    public_url: str,
    access_key: str,
    purchased_numbers: Iterable[str] = (),
    lro_pace: LroPace = LroPace(),
    search_ttl: timedelta = timedelta(minutes=15),
    repeatability_window: timedelta = timedelta(minutes=5),
    recipient_failures: Iterable[RecipientFailure] = (RecipientFailure("0000"),),
    resource_name: str = "acs-sandbox",
    rate_limit_per_minute: int | None = TOLL_FREE_UNITS_PER_MINUTE,
    rate_limit_window: timedelta = timedelta(minutes=1),
    report_delay: float = 0.5,
    event_validation_timeout: float = VALIDATION_TIMEOUT_SECONDS,
    event_delivery_timeout: float = DELIVERY_TIMEOUT_SECONDS,
    event_retry_delays: Iterable[float] = RETRY_DELAYS,
    outbound_ca_file: str | Path | None = None,
) -> Starlette:
    """An ACS resource at ``public_url`` whose requests must be signed with ``access_key`` (base64).

    ``purchased_numbers`` are owned from the start (SMS inbound+outbound); ``lro_pace`` sets how
    fast search, purchase and release operations finish. ``rate_limit_per_minute`` message units
    per number per ``rate_limit_window`` (ACS: 200 a minute for toll-free; None turns it off;
    tests shorten the window) are allowed on ``POST /sms``, beyond that 429 with Retry-After.
    Event Grid: ``report_delay`` seconds after a send its delivery report goes to subscribed
    webhooks; ``event_validation_timeout`` bounds the handshake (Event Grid: 30 s),
    ``event_delivery_timeout`` and ``event_retry_delays`` pace deliveries, ``outbound_ca_file``
    verifies https webhooks (the local CA). State for tests and the stack:
    ``app.state.phone_numbers`` (:class:`PhoneNumberInventory`), ``app.state.sms``
    (:class:`SmsGateway`: outbox, delivery reports, failure rules, opt-outs, inbound),
    ``app.state.events`` (:class:`EventGrid`: subscriptions, deliveries), ``app.state.faults``.
    """
    decode_access_key(access_key)  # fail here, not on the first request
    public_url = public_url.rstrip("/")
    inventory = PhoneNumberInventory(lro_pace, search_ttl)
    inventory.seed(purchased_numbers)
    events = EventGrid(topic=topic(resource_name), public_url=public_url, validation_timeout=event_validation_timeout,
                       delivery_timeout=event_delivery_timeout, retry_delays=tuple(event_retry_delays),
                       verify=str(outbound_ca_file) if outbound_ca_file else True)
    limiter = (SlidingWindowLimiter(rate_limit_per_minute, rate_limit_window.total_seconds())
               if rate_limit_per_minute is not None else None)
    gateway = SmsGateway(
        inventory, resource_name=resource_name, repeatability_window=repeatability_window,
        recipient_failures=tuple(recipient_failures), rate_limiter=limiter, events=events,
        report_delay=report_delay)
    switches = FaultSwitches()
    routes = [
        *control_routes(switches),
        *sandbox_routes(inventory, gateway, events),
        *phone_numbers_routes(inventory, public_url),
        *sms_routes(gateway),
    ]
    middleware = [
        Middleware(FaultInjectionMiddleware, switches=switches),
        Middleware(HmacAuthMiddleware, access_key=access_key),
    ]
    app = Starlette(
        routes=routes, middleware=middleware, exception_handlers={404: _http_error, 405: _http_error})
    app.state.public_url = public_url
    app.state.phone_numbers = inventory
    app.state.sms = gateway
    app.state.events = events
    app.state.faults = switches
    return app
