"""The Microsoft Graph simulator as one Starlette application."""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..entra import TokenIssuer
from ..faults import FaultInjectionMiddleware, FaultSwitches, control_routes
from .errors import METHOD_NOT_ALLOWED, NOT_FOUND, error_body
from .meetings import AccessPolicies, MeetingStore
from .notifier import DELIVERY_TIMEOUT_SECONDS, RETRY_DELAYS, Notifier
from .online_meetings import online_meeting_routes
from .pages import guest_page, join_page, not_found_page
from .sandbox_api import participant_cookie, sandbox_routes
from .subscriptions import (
    MAX_EXPIRATION_MINUTES,
    VALIDATION_TIMEOUT_SECONDS,
    SubscriptionOptions,
    SubscriptionService,
    subscription_routes,
)
from .wire import is_loopback_url

# The account in each demo tenant that the connector's app may make meetings for by default.
ORGANIZER_ALIAS = "organizer"


async def _http_error(request: Request, exc: Exception) -> JSONResponse:
    """Unknown paths and methods answer in Graph's error shape."""
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    code = NOT_FOUND if status == 404 else METHOD_NOT_ALLOWED if status == 405 else "InternalServerError"
    message = "Resource not found for the segment." if status == 404 else "The request is not supported."
    return JSONResponse(error_body(code, message, request.headers.get("client-request-id")), status)


class GraphSandbox:
    """What tests and the stack reach in-process: ``app.state.graph``."""

    def __init__(self, *, public_url: str, issuer: TokenIssuer, meetings: MeetingStore, policies: AccessPolicies,
                 subscriptions: SubscriptionService, notifier: Notifier, faults: FaultSwitches) -> None:
        self.public_url = public_url
        self.issuer = issuer
        self.meetings = meetings
        self.policies = policies
        self.subscriptions = subscriptions
        self.notifier = notifier
        self.faults = faults

    @property
    def v1_url(self) -> str:
        """What the connector's ``CONNECTOR_GRAPH_BASE_URL`` is set to."""
        return f"{self.public_url}/v1.0"

    @property
    def options(self) -> SubscriptionOptions:
        return self.subscriptions.options


def default_access_policies(issuer: TokenIssuer) -> dict[str, list[str]]:
    return {t.tid: [u.oid for u in t.users if u.alias == ORGANIZER_ALIAS] for t in issuer.directory.tenants}


def create_app(
    *,
    public_url: str,
    issuer: TokenIssuer,
    access_policies: Mapping[str, Iterable[str]] | None = None,
    validation_timeout: float = VALIDATION_TIMEOUT_SECONDS,
    max_expiration_minutes: int = MAX_EXPIRATION_MINUTES,
    delivery_timeout: float = DELIVERY_TIMEOUT_SECONDS,
    retry_delays: tuple[float, ...] = RETRY_DELAYS,
    basic_notifications_carry_event: bool = True,
    outbound_ca_file: str | Path | None = None,
) -> Starlette:
    """Graph at ``public_url`` (e.g. http://127.0.0.1:8090), trusting tokens from ``issuer``.

    ``issuer`` is the Entra sandbox's :class:`TokenIssuer` (``entra_app.state.issuer``): its keys
    verify tokens, its directory names tenants and users. ``access_policies`` maps a tenant id to
    the users the connector's app may make meetings for (default: each tenant's "Virtual Visits
    Organizer"). ``validation_timeout`` bounds the subscription handshake (Graph: 10 s);
    ``delivery_timeout`` and ``retry_delays`` pace notification deliveries; ``outbound_ca_file``
    verifies https notification URLs (the local CA). State: ``app.state.graph`` (:class:`GraphSandbox`).
    """
    public_url = public_url.rstrip("/")
    if not is_loopback_url(public_url):
        raise ValueError("the Graph simulator serves loopback only")
    verify: object = str(outbound_ca_file) if outbound_ca_file else True
    policies = AccessPolicies(dict(access_policies) if access_policies is not None else default_access_policies(issuer))
    notifier = Notifier(timeout=delivery_timeout, retry_delays=retry_delays, verify=verify)
    meetings = MeetingStore(public_url)
    options = SubscriptionOptions(validation_timeout=validation_timeout, max_expiration_minutes=max_expiration_minutes,
                                  basic_notifications_carry_event=basic_notifications_carry_event,
                                  outbound_verify=verify)
    subscriptions = SubscriptionService(issuer, meetings, notifier, options, public_url)
    meetings.set_listener(subscriptions.publish)
    switches = FaultSwitches()

    async def meeting_page(request: Request) -> Response:
        meeting = meetings.by_thread(request.path_params["thread"])
        if meeting is None:
            return not_found_page()
        participant_id = request.cookies.get(participant_cookie(meeting))
        participant = meeting.participants.get(participant_id) if participant_id else None
        return guest_page(meeting, participant) if participant is not None else join_page(meeting)

    routes = [
        *control_routes(switches),
        *sandbox_routes(issuer, meetings, policies, subscriptions, notifier),
        *online_meeting_routes(issuer, meetings, policies, public_url),
        *subscription_routes(subscriptions),
        Route("/l/meetup-join/{thread}/{message}", meeting_page, methods=["GET"]),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(FaultInjectionMiddleware, switches=switches)],
        exception_handlers={404: _http_error, 405: _http_error},
    )
    app.state.graph = GraphSandbox(public_url=public_url, issuer=issuer, meetings=meetings, policies=policies,
                                   subscriptions=subscriptions, notifier=notifier, faults=switches)
    app.state.faults = switches
    return app
