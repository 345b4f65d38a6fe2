"""Teams meetings through Microsoft Graph (msgraph-sdk 1.65), app-only: the ``Meetings`` port.

    meetings = graph_meetings_from_settings(settings)
    meeting = meetings.create_or_get(request)          # OnlineMeeting(meeting_id, join_web_url, created)
    sub = meetings.subscribe_call_events(tid, meeting, notification_url=..., client_state=..., expires_at=...)
    meetings.renew_subscription(tid, sub.subscription_id, new_expiry)

**createOrGet** (``POST /users/{organizer}/onlineMeetings/createOrGet``, v1.0,
https://learn.microsoft.com/graph/api/onlinemeeting-createorget?view=graph-rest-1.0): ``externalId``,
``subject``, ``startDateTime``/``endDateTime``, ``participants.organizer`` (the organizer's
object id, or UPN), and in ``additional_data`` (the SDK's ``CreateOrGetPostRequestBody`` has no
such fields) ``lobbyBypassSettings`` ``{"scope": "organization", "isDialInBypassEnabled": false}``
(everyone outside the organisation waits in the lobby), ``allowedPresenters`` "organizer" and
``allowMeetingChat`` "limited". The documented request body lists none of those three, so the
answer's values are checked and, when they differ, set with ``PATCH
/users/{organizer}/onlineMeetings/{id}`` (which documents all three). Graph answers 201 when it
made the meeting and 200 when (tenant, organizer, externalId) already had one; the SDK's
``post`` returns only the model, so the call is sent with kiota's ``NativeResponseHandler``
(a documented ``ResponseHandlerOption``): the raw response gives the status, and the body is
then read into the SDK's ``OnlineMeeting`` model with kiota's JSON parse node. Comparing
``creationDateTime`` with the clock instead would be guesswork.

**Call-event subscriptions** (https://learn.microsoft.com/graph/changenotifications-for-onlinemeeting):
resource ``communications/onlineMeetings(joinWebUrl='{joinWebUrl URL-encoded}')/meetingCallEvents``,
``changeType`` "updated", at most three days, renewed with ``PATCH /subscriptions/{id}``. The
page lists **beta** as the only supported version for this resource (the older
``communications/onlineMeetings/?$filter=JoinWebUrl eq '...'`` form was beta-only too), and
msgraph-sdk is the v1.0 SDK. The subscription endpoints are the same in both versions and the
``Subscription`` model serializes identically, so the v1.0 SDK's ``subscriptions`` request
builder is pointed at ``{graph_base_url with /v1.0 replaced by /beta}/subscriptions`` with
``with_url``: the same request adapter, credential, middleware and error model, no second SDK
(msgraph-beta-sdk would be another large import for two calls). Graph runs the validation
handshake against ``notification_url`` before it answers; a failed handshake is a 400.
Notifications are basic unless a :class:`NotificationCertificate` is given: then
``includeResourceData`` with the certificate (rich notifications, encrypted; the page
recommends them because basic ones carry no call details).

Errors (:mod:`.errors`): 403 on a meeting call -> ``MeetingAccessDenied``; 429 ->
``UpstreamUnavailable`` with Graph's Retry-After; 5xx and no answer -> ``UpstreamUnavailable``;
other 4xx -> ``UpstreamError``. The SDK's own retry handler is switched off per request: a
Function must not sleep through Graph's Retry-After; the caller (the queue, or the clinician's
retry) decides.

The port is synchronous and msgraph-sdk is async: each adapter runs one event loop in a daemon
thread and submits coroutines to it, so one ``httpx.AsyncClient`` (and its connection pool) and
one ``GraphServiceClient`` per tenant live for the process. ``GraphServiceClient`` is built on a
``GraphRequestAdapter`` with our own ``httpx.AsyncClient`` (the CA bundle of
``outbound_ca_file``) wrapped in msgraph-core's default middleware; with a custom client the
adapter's base URL would come from httpx, which appends a slash (``/v1.0//users/...``), so it is
set explicitly. Tokens: kiota's ``AzureIdentityAuthenticationProvider`` with the explicit scope
``https://graph.microsoft.com/.default`` (it would otherwise derive one from the host, wrong for
the sandbox) and the Graph host as the only allowed host; it accepts http only for localhost,
127.0.0.1 and ::1, which is how the sandbox is reached. msgraph is imported lazily (cold start).
"""

from __future__ import annotations

import asyncio
import logging
import re
import ssl
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import quote, urlsplit

from connector import telemetry
from connector.domain.meeting import CallSubscription, MeetingRequest, OnlineMeeting
from connector.errors import (
    ConfigurationError,
    ConnectorError,
    InvalidInput,
    InvalidUpstreamData,
    UpstreamError,
    UpstreamUnavailable,
)

from .errors import graph_failure

if TYPE_CHECKING:
    import httpx

    from connector.settings import Settings

log = logging.getLogger(__name__)

T = TypeVar("T")
GRAPH_SCOPE = "https://graph.microsoft.com/.default"
CALL_TIMEOUT_SECONDS = 60.0
LOBBY_BYPASS = {"scope": "organization", "isDialInBypassEnabled": False}
ALLOWED_PRESENTERS = "organizer"
MEETING_CHAT = "limited"
_GUID = re.compile(r"^[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}$")
_SUBSCRIPTION_ID = re.compile(r"^[A-Za-z0-9-]{1,128}$")
# What kiota's AzureIdentityAccessTokenProvider lets through over http (its LOCALHOST_STRINGS).
_LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "::1"}


@dataclass(frozen=True)
class NotificationCertificate:
    """The public certificate Graph encrypts rich notifications with (base64 DER) and our id for it."""

    certificate_b64: str
    certificate_id: str


def call_events_resource(join_web_url: str) -> str:
    """The meetingCallEvents subscription resource: the joinWebUrl URL-encoded once more."""
    return f"communications/onlineMeetings(joinWebUrl='{quote(join_web_url, safe='')}')/meetingCallEvents"


def beta_base_url(base_url: str) -> str:
    base = base_url.rstrip("/")
    if base.endswith("/beta"):
        return base
    if base.endswith("/v1.0"):
        return f"{base[:-len('/v1.0')]}/beta"
    raise ConfigurationError("CONNECTOR_GRAPH_BASE_URL must end in /v1.0 (e.g. https://graph.microsoft.com/v1.0)")


class _LoopThread:
    """One asyncio event loop in a daemon thread, for the process's Graph calls."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._lock = threading.Lock()

    def _ensure(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._loop.is_closed():
                loop = asyncio.new_event_loop()
                ready = threading.Event()

                def run() -> None:
                    asyncio.set_event_loop(loop)
                    loop.call_soon(ready.set)
                    loop.run_forever()

                threading.Thread(target=run, name="graph-meetings-loop", daemon=True).start()
                ready.wait(5)
                self._loop = loop
            return self._loop

    def run(self, coro: Coroutine[Any, Any, T], timeout: float) -> T:
        future = asyncio.run_coroutine_threadsafe(coro, self._ensure())
        try:
            return future.result(timeout)
        except TimeoutError:
            future.cancel()
            raise UpstreamUnavailable("Microsoft Graph did not answer in time; try again shortly") from None

    def close(self) -> None:
        with self._lock:
            loop, self._loop = self._loop, None
        if loop is not None:
            loop.call_soon_threadsafe(loop.stop)


def _ssl_context(ca_file: str | None) -> ssl.SSLContext:
    import certifi

    context = ssl.create_default_context(cafile=certifi.where())
    if ca_file:
        context.load_verify_locations(cafile=ca_file)
    return context


class GraphMeetings:
    """The ``Meetings`` port over msgraph-sdk. ``credential_for(tenant_id, http)`` gives the async
    token credential for a tenant (see :mod:`.credentials`)."""

    def __init__(
        self,
        *,
        base_url: str,
        credential_for: Callable[[str, "httpx.AsyncClient"], Any],
        ca_file: str | None = None,
        notification_certificate: NotificationCertificate | None = None,
        call_timeout: float = CALL_TIMEOUT_SECONDS,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._beta_url = beta_base_url(self._base_url)
        parts = urlsplit(self._base_url)
        loopback = parts.hostname in _LOOPBACK_HOSTS
        if not parts.hostname or not (parts.scheme == "https" or (parts.scheme == "http" and loopback)):
            # kiota's Azure authentication provider refuses anything else anyway, less clearly.
            raise ConfigurationError("CONNECTOR_GRAPH_BASE_URL must be an https URL (http only on localhost)")
        self._host = parts.hostname
        self._credential_for = credential_for
        self._ca_file = ca_file
        self._certificate = notification_certificate
        self._call_timeout = call_timeout
        self._loop = _LoopThread()
        self._lock = threading.Lock()
        self._clients: dict[str, Any] = {}
        self._graph_http: httpx.AsyncClient | None = None
        self._token_http: httpx.AsyncClient | None = None

    # --- plumbing ------------------------------------------------------------------
    def _http_clients(self) -> tuple["httpx.AsyncClient", "httpx.AsyncClient"]:
        import httpx
        from msgraph.graph_request_adapter import options as graph_options
        from msgraph_core import GraphClientFactory

        if self._graph_http is None or self._token_http is None:
            context = _ssl_context(self._ca_file)
            # Graph's validation handshake happens inside the subscription POST: allow for its 10 s.
            timeout = httpx.Timeout(30.0, connect=5.0)
            limits = httpx.Limits(max_connections=20, max_keepalive_connections=10)
            graph_http = httpx.AsyncClient(verify=context, timeout=timeout, limits=limits, follow_redirects=False)
            self._graph_http = GraphClientFactory.create_with_default_middleware(client=graph_http, options=graph_options)
            self._token_http = httpx.AsyncClient(verify=context, timeout=timeout, follow_redirects=False)
        return self._graph_http, self._token_http

    def _client(self, tenant_id: str):
        """The tenant's GraphServiceClient (made once; only ever used on the loop thread)."""
        if not _GUID.match(tenant_id or ""):
            raise InvalidInput("The tenant id must be a GUID")
        with self._lock:
            client = self._clients.get(tenant_id)
            if client is None:
                from kiota_authentication_azure.azure_identity_authentication_provider import (
                    AzureIdentityAuthenticationProvider,
                )
                from kiota_http.observability_options import ObservabilityOptions
                from msgraph import GraphServiceClient
                from msgraph.graph_request_adapter import GraphRequestAdapter

                graph_http, token_http = self._http_clients()
                auth = AzureIdentityAuthenticationProvider(
                    self._credential_for(tenant_id, token_http), scopes=[GRAPH_SCOPE], allowed_hosts=[self._host])
                adapter = GraphRequestAdapter(auth, client=graph_http)
                # kiota's spans would carry request URLs (organizers' UPNs); ours record the call.
                adapter.observability_options = ObservabilityOptions(include_euii_attributes=False)
                adapter.base_url = self._base_url  # not httpx's "…/v1.0/" (see the module docstring)
                client = GraphServiceClient(request_adapter=adapter)
                self._clients[tenant_id] = client
            return client

    @staticmethod
    def _config(*, native: bool = False):
        from kiota_abstractions.base_request_configuration import RequestConfiguration
        from kiota_abstractions.native_response_handler import NativeResponseHandler
        from kiota_http.middleware.options import ResponseHandlerOption, RetryHandlerOption

        options: list[Any] = [RetryHandlerOption(delay=0, max_retries=0, should_retry=False)]
        if native:
            options.append(ResponseHandlerOption(NativeResponseHandler()))
        return RequestConfiguration(options=options)

    def _run(self, what: str, coro_factory: Callable[[], Coroutine[Any, Any, T]], *, meeting_call: bool,
             operation: str) -> T:
        async def guarded() -> T:
            import httpx
            from kiota_abstractions.api_error import APIError

            try:
                return await coro_factory()
            except ConnectorError:
                raise
            except APIError as exc:
                status = exc.response_status_code or 0
                call.set(status=status)
                log.warning("Microsoft Graph answered %s when %s", status, what)
                # Graph's message is read to pick our sentence, never repeated.
                graph_message = str(getattr(getattr(exc, "error", None), "message", None) or "")
                if status == 400 and "validation" in graph_message.lower():
                    raise UpstreamError(
                        "Microsoft Graph could not validate the notification URL: it must answer Graph's "
                        "validationToken request with 200 and the token as text/plain within 10 seconds") from None
                raise graph_failure(status, exc.response_headers, what, meeting_call=meeting_call) from None
            except httpx.TimeoutException:
                raise UpstreamUnavailable(f"Microsoft Graph did not answer in time when {what}; "
                                          "try again shortly") from None
            except httpx.HTTPError:
                raise UpstreamUnavailable(f"Microsoft Graph could not be reached when {what}; "
                                          "try again shortly") from None

        # The span is the calling thread's (the invocation's), around the whole port call; kiota's
        # own spans (made on the loop thread) never leave the process (telemetry.otel).
        with telemetry.span(f"graph {operation}", service="Microsoft Graph", host=self._host,
                            operation=operation) as call:
            return self._loop.run(guarded(), self._call_timeout)

    def close(self) -> None:
        async def aclose() -> None:
            for http in (self._graph_http, self._token_http):
                if http is not None:
                    await http.aclose()

        if self._graph_http is not None:
            try:
                self._loop.run(aclose(), 5.0)
            except ConnectorError:
                pass
        self._loop.close()

    # --- Meetings ------------------------------------------------------------------
    def create_or_get(self, request: MeetingRequest) -> OnlineMeeting:
        client = self._client(request.tenant_id)
        return self._run("making the Teams meeting", lambda: self._create_or_get(client, request), meeting_call=True,
                         operation="createOrGet")

    async def _create_or_get(self, client, request: MeetingRequest) -> OnlineMeeting:
        from kiota_serialization_json.json_parse_node_factory import JsonParseNodeFactory
        from msgraph.generated.models.identity import Identity
        from msgraph.generated.models.identity_set import IdentitySet
        from msgraph.generated.models.meeting_participant_info import MeetingParticipantInfo
        from msgraph.generated.models.meeting_participants import MeetingParticipants
        from msgraph.generated.models.online_meeting import OnlineMeeting as GraphOnlineMeeting
        from msgraph.generated.users.item.online_meetings.create_or_get.create_or_get_post_request_body import (
            CreateOrGetPostRequestBody,
        )

        organizer_ref = request.organizer_user_id
        if _GUID.match(organizer_ref):
            organizer = MeetingParticipantInfo(identity=IdentitySet(user=Identity(id=organizer_ref)))
        else:
            organizer = MeetingParticipantInfo(upn=organizer_ref)
        body = CreateOrGetPostRequestBody(
            external_id=request.external_id,
            subject=request.subject,
            start_date_time=request.start.astimezone(timezone.utc),
            end_date_time=request.end.astimezone(timezone.utc),
            participants=MeetingParticipants(organizer=organizer),
            additional_data={
                "lobbyBypassSettings": dict(LOBBY_BYPASS),
                "allowedPresenters": ALLOWED_PRESENTERS,
                "allowMeetingChat": MEETING_CHAT,
            },
        )
        meetings = client.users.by_user_id(organizer_ref).online_meetings
        response = await meetings.create_or_get.post(body, self._config(native=True))
        status = response.status_code
        if status not in (200, 201):
            log.warning("Microsoft Graph answered %s to createOrGet", status)
            raise graph_failure(status, response.headers, "making the Teams meeting", meeting_call=True)
        try:
            node = JsonParseNodeFactory().get_root_parse_node("application/json", response.content)
            meeting = node.get_object_value(GraphOnlineMeeting)
        except Exception:  # noqa: BLE001 - any unreadable body is the same problem
            raise InvalidUpstreamData("Microsoft Graph's createOrGet answer is not an onlineMeeting") from None
        if not meeting or not meeting.id or not meeting.join_web_url:
            raise InvalidUpstreamData("Microsoft Graph's createOrGet answer has no id or joinWebUrl")
        if not _settings_ok(meeting):
            await self._apply_settings(meetings, meeting.id)
        return OnlineMeeting(meeting_id=meeting.id, join_web_url=meeting.join_web_url, created=status == 201)

    async def _apply_settings(self, meetings, meeting_id: str) -> None:
        from msgraph.generated.models.lobby_bypass_scope import LobbyBypassScope
        from msgraph.generated.models.lobby_bypass_settings import LobbyBypassSettings
        from msgraph.generated.models.meeting_chat_mode import MeetingChatMode
        from msgraph.generated.models.online_meeting import OnlineMeeting as GraphOnlineMeeting
        from msgraph.generated.models.online_meeting_presenters import OnlineMeetingPresenters

        patch = GraphOnlineMeeting(
            lobby_bypass_settings=LobbyBypassSettings(scope=LobbyBypassScope.Organization,
                                                      is_dial_in_bypass_enabled=False),
            allowed_presenters=OnlineMeetingPresenters.Organizer,
            allow_meeting_chat=MeetingChatMode.Limited,
        )
        await meetings.by_online_meeting_id(meeting_id).patch(patch, self._config())

    def subscribe_call_events(self, tenant_id: str, meeting: OnlineMeeting, *, notification_url: str,
                              client_state: str, expires_at: datetime) -> CallSubscription:
        client = self._client(tenant_id)
        return self._run("subscribing to the meeting's call events",
                         lambda: self._subscribe(client, meeting, notification_url, client_state, expires_at),
                         meeting_call=False, operation="subscribe")

    async def _subscribe(self, client, meeting: OnlineMeeting, notification_url: str, client_state: str,
                         expires_at: datetime) -> CallSubscription:
        from msgraph.generated.models.subscription import Subscription

        resource = call_events_resource(meeting.join_web_url)
        subscription = Subscription(
            change_type="updated",
            notification_url=notification_url,
            resource=resource,
            expiration_date_time=expires_at.astimezone(timezone.utc),
            client_state=client_state,
            latest_supported_tls_version="v1_2",
        )
        if self._certificate is not None:
            subscription.include_resource_data = True
            subscription.encryption_certificate = self._certificate.certificate_b64
            subscription.encryption_certificate_id = self._certificate.certificate_id
        created = await client.subscriptions.with_url(f"{self._beta_url}/subscriptions").post(
            subscription, self._config())
        if created is None or not created.id or created.expiration_date_time is None:
            raise InvalidUpstreamData("Microsoft Graph's subscription answer has no id or expirationDateTime")
        return CallSubscription(subscription_id=created.id, resource=created.resource or resource,
                                expires_at=_aware(created.expiration_date_time))

    def renew_subscription(self, tenant_id: str, subscription_id: str, expires_at: datetime) -> datetime:
        if not _SUBSCRIPTION_ID.match(subscription_id or ""):
            raise InvalidInput("The subscription id is not one Graph gives")
        client = self._client(tenant_id)
        return self._run("renewing the call-event subscription",
                         lambda: self._renew(client, subscription_id, expires_at), meeting_call=False,
                         operation="renew subscription")

    async def _renew(self, client, subscription_id: str, expires_at: datetime) -> datetime:
        from msgraph.generated.models.subscription import Subscription

        url = f"{self._beta_url}/subscriptions/{quote(subscription_id, safe='')}"
        renewed = await client.subscriptions.by_subscription_id(subscription_id).with_url(url).patch(
            Subscription(expiration_date_time=expires_at.astimezone(timezone.utc)), self._config())
        if renewed is None or renewed.expiration_date_time is None:
            raise InvalidUpstreamData("Microsoft Graph's renewal answer has no expirationDateTime")
        return _aware(renewed.expiration_date_time)


    def delete_subscription(self, tenant_id: str, subscription_id: str) -> None:
        if not _SUBSCRIPTION_ID.match(subscription_id or ""):
            raise InvalidInput("The subscription id is not one Graph gives")
        client = self._client(tenant_id)
        self._run("deleting a call-event subscription",
                  lambda: self._delete(client, subscription_id), meeting_call=False, operation="delete subscription")

    async def _delete(self, client, subscription_id: str) -> None:
        from kiota_abstractions.api_error import APIError

        url = f"{self._beta_url}/subscriptions/{quote(subscription_id, safe='')}"
        try:
            await client.subscriptions.by_subscription_id(subscription_id).with_url(url).delete(self._config())
        except APIError as exc:
            if exc.response_status_code != 404:  # already gone: what we wanted
                raise


def _enum_value(value: Any) -> Any:
    return getattr(value, "value", value)


def _settings_ok(meeting: Any) -> bool:
    lobby = meeting.lobby_bypass_settings
    return (
        lobby is not None
        and _enum_value(lobby.scope) == LOBBY_BYPASS["scope"]
        and not lobby.is_dial_in_bypass_enabled
        and _enum_value(meeting.allowed_presenters) == ALLOWED_PRESENTERS
        and _enum_value(meeting.allow_meeting_chat) == MEETING_CHAT
    )


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=timezone.utc)


def graph_meetings_from_settings(settings: "Settings", *,
                                 notification_certificate: NotificationCertificate | None = None) -> GraphMeetings:
    """The adapter for this stamp: a client secret (``CONNECTOR_GRAPH_CLIENT_ID`` +
    ``CONNECTOR_GRAPH_CLIENT_SECRET``) asks for tokens in each customer's tenant at
    ``CONNECTOR_GRAPH_AUTHORITY_HOST``; without a secret, the Function App's managed identity
    (a user-assigned one when ``CONNECTOR_GRAPH_CLIENT_ID`` names it). ``outbound_ca_file``
    is trusted besides the public CAs, for the issuer and Graph alike."""
    from .credentials import ClientSecretCredential, HomeTenantOnly, ManagedIdentityCredential

    secret = settings.graph_client_secret.get_secret_value() if settings.graph_client_secret else ""
    if secret:
        if not settings.graph_client_id:
            raise ConfigurationError("CONNECTOR_GRAPH_CLIENT_SECRET is set without CONNECTOR_GRAPH_CLIENT_ID")
        authority, client_id = settings.graph_authority_host, settings.graph_client_id

        def credential_for(tenant_id: str, http) -> Any:
            return ClientSecretCredential(authority, tenant_id, client_id, secret, http=http)
    else:
        managed: list[ManagedIdentityCredential] = []

        def credential_for(tenant_id: str, http) -> Any:
            if not managed:
                managed.append(ManagedIdentityCredential(settings.graph_client_id or None))
            return HomeTenantOnly(managed[0], tenant_id)

    return GraphMeetings(base_url=settings.graph_base_url, credential_for=credential_for,
                         ca_file=settings.outbound_ca_file, notification_certificate=notification_certificate)
