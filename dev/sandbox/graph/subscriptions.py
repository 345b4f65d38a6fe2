"""``/beta/subscriptions``: change-notification subscriptions to Teams meeting call events.

The resource, from "Get change notifications for Microsoft Teams meeting call event updates"
(https://learn.microsoft.com/graph/changenotifications-for-onlinemeeting)::

    communications/onlineMeetings(joinWebUrl='{joinWebUrl, URL-encoded}')/meetingCallEvents

Supported versions: **beta** only (application permissions OnlineMeetings.Read.All or
OnlineMeetings.ReadWrite.All), so the sandbox answers it on ``/beta/subscriptions`` and refuses
it on ``/v1.0/subscriptions``. A subscription lives at most three days (4320 minutes) and is
renewed with ``PATCH /subscriptions/{id}`` (``expirationDateTime``); ``DELETE`` removes it.

Creating one runs the validation handshake first, synchronously, as Graph does
(https://learn.microsoft.com/graph/change-notifications-delivery-webhooks#notificationurl-validation):
``POST {notificationUrl}?validationToken={token}`` (``Content-Type: text/plain``, empty body);
the endpoint must answer within 10 seconds with 200, ``text/plain`` and exactly the URL-decoded
token, else the subscription is refused with 400 ``InvalidRequest``. The token reads like the
ones Graph sends ("Validation: Testing client application reachability for subscription
Request-Id: <guid>", spaces and a colon: an endpoint that does not URL-decode fails). A
``lifecycleNotificationUrl`` is validated the same way.

``notificationUrl`` must be https in Graph; the sandbox also takes http, and takes either only
on loopback: it never calls out of this machine.

Notifications (the ``changeNotification`` items, one per POST, see :mod:`.notifier`)::

    {"value": [{"subscriptionId", "subscriptionExpirationDateTime", "changeType": "updated",
                "resource", "clientState", "tenantId", "organizationId",
                "resourceData": {"@odata.type": "#microsoft.graph.callevent", "@odata.id", "id", ...},
                "encryptedContent": {...}}],     # rich notifications only
     "validationTokens": ["<JWT>"]}              # rich notifications only

- Rich (``includeResourceData: true`` with ``encryptionCertificate`` and
  ``encryptionCertificateId``): the call event is in ``encryptedContent`` (see :mod:`.encryption`),
  and ``validationTokens`` holds a JWT from the Entra sandbox (``aud`` the subscribing app,
  ``appid`` Graph's change-notification publisher ``0bf30f3b-4a52-48df-9a82-234910c4a086``).
- Basic: today's page says these carry nothing but the ids; the earlier version of the same
  page said that without encryption "the properties that would have been part of the
  encrypted payload" go to ``resourceData``. The sandbox does the latter by default
  (``basic_notifications_carry_event=True``) so the local stack runs without a certificate;
  ``False`` gives today's documented ids-only shape.
"""

from __future__ import annotations

import asyncio
import json
import re
import threading
import time
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote, unquote

import httpx
from cryptography import x509
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..entra import TokenIssuer
from .auth import ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE, GraphAuth
from .encryption import encrypt_content, load_certificate
from .errors import (
    BAD_REQUEST,
    INVALID_REQUEST,
    NOT_FOUND,
    RESOURCE_NOT_FOUND,
    VALIDATION_FAILED,
    VALIDATION_TIMED_OUT,
    GraphError,
)
from .meetings import Meeting, MeetingStore
from .notifier import Delivery, Notifier
from .wire import graph_time, is_loopback_url, json_object, parse_graph_time, utc_now

MAX_EXPIRATION_MINUTES = 4320  # three days
VALIDATION_TIMEOUT_SECONDS = 10.0
MAX_CLIENT_STATE = 128
# The app id Graph's change-notification publisher signs validation tokens as.
NOTIFICATION_PUBLISHER_APP_ID = "0bf30f3b-4a52-48df-9a82-234910c4a086"
_RESOURCE = re.compile(r"^/?communications/onlineMeetings\(joinWebUrl='(?P<url>[^']+)'\)/meetingCallEvents$")
_ENDPOINT_FAILED = ("Subscription validation request failed. Notification endpoint must respond with 200 OK to "
                    "validation request.")


@dataclass
class Subscription:
    id: str
    app_id: str
    creator_id: str
    tid: str
    resource: str
    meeting_key: str
    change_type: str
    notification_url: str
    lifecycle_notification_url: str | None
    client_state: str | None
    expiration: datetime
    include_resource_data: bool
    certificate: x509.Certificate | None
    certificate_b64: str | None
    certificate_id: str | None
    api_version: str

    def to_graph(self, api_base: str) -> dict[str, Any]:
        return {
            "@odata.context": f"{api_base}/$metadata#subscriptions/$entity",
            "id": self.id,
            "resource": self.resource,
            "applicationId": self.app_id,
            "changeType": self.change_type,
            "clientState": self.client_state,
            "notificationUrl": self.notification_url,
            "notificationQueryOptions": None,
            "lifecycleNotificationUrl": self.lifecycle_notification_url,
            "expirationDateTime": graph_time(self.expiration),
            "creatorId": self.creator_id,
            "includeResourceData": self.include_resource_data,
            "latestSupportedTlsVersion": "v1_2",
            "encryptionCertificate": self.certificate_b64,
            "encryptionCertificateId": self.certificate_id,
            "notificationUrlAppId": None,
        }


class SubscriptionStore:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_id: dict[str, Subscription] = {}

    def add(self, subscription: Subscription) -> None:
        with self._lock:
            self._by_id[subscription.id] = subscription

    def get(self, subscription_id: str, app_id: str) -> Subscription:
        """The app's own, unexpired subscription (Graph removes expired ones)."""
        with self._lock:
            found = self._by_id.get(subscription_id)
            if found is not None and found.expiration <= utc_now():
                del self._by_id[subscription_id]
                found = None
        if found is None or found.app_id != app_id:
            raise GraphError(404, RESOURCE_NOT_FOUND, f"The object was not found. subscriptionId {subscription_id}")
        return found

    def remove(self, subscription_id: str) -> None:
        with self._lock:
            self._by_id.pop(subscription_id, None)

    def for_meeting(self, meeting_key: str) -> list[Subscription]:
        now = utc_now()
        with self._lock:
            return [s for s in self._by_id.values() if s.meeting_key == meeting_key and s.expiration > now]

    def all(self) -> list[Subscription]:
        with self._lock:
            return list(self._by_id.values())


@dataclass
class SubscriptionOptions:
    validation_timeout: float = VALIDATION_TIMEOUT_SECONDS
    max_expiration_minutes: int = MAX_EXPIRATION_MINUTES
    basic_notifications_carry_event: bool = True
    outbound_verify: Any = True  # what https notification URLs are verified with (a CA bundle path)


async def validate_endpoint(url: str, options: SubscriptionOptions) -> None:
    """The validation handshake against ``url``; :class:`GraphError` 400 when it fails."""
    token = f"Validation: Testing client application reachability for subscription Request-Id: {uuid.uuid4()}"
    target = f"{url}{'&' if '?' in url else '?'}validationToken={quote(token, safe='')}"
    try:
        async with httpx.AsyncClient(timeout=options.validation_timeout, verify=options.outbound_verify,
                                     follow_redirects=False) as client:
            response = await asyncio.wait_for(
                client.post(target, content=b"", headers={"Content-Type": "text/plain; charset=utf-8"}),
                options.validation_timeout)
    except (httpx.TimeoutException, asyncio.TimeoutError):
        raise GraphError(400, INVALID_REQUEST, VALIDATION_TIMED_OUT) from None
    except httpx.HTTPError:
        raise GraphError(400, INVALID_REQUEST, _ENDPOINT_FAILED) from None
    if response.status_code != 200:
        raise GraphError(400, INVALID_REQUEST, _ENDPOINT_FAILED)
    if not response.headers.get("content-type", "").lower().startswith("text/plain") or response.text != token:
        raise GraphError(400, INVALID_REQUEST, VALIDATION_FAILED)


def _notification_url(value: Any, name: str) -> str:
    if not isinstance(value, str) or not value:
        raise GraphError(400, BAD_REQUEST, f"{name} is required.")
    scheme = value.split(":", 1)[0].lower()
    if scheme not in ("https", "http"):
        raise GraphError(400, BAD_REQUEST, f"{name} must be an https URL.")
    if not is_loopback_url(value):
        raise GraphError(400, BAD_REQUEST, f"The sandbox delivers notifications on loopback only; {name} is not.")
    return value


class SubscriptionService:
    """What the routes and the meeting store's listener share."""

    def __init__(self, issuer: TokenIssuer, meetings: MeetingStore, notifier: Notifier,
                 options: SubscriptionOptions, public_url: str) -> None:
        self.issuer = issuer
        self.meetings = meetings
        self.notifier = notifier
        self.options = options
        self.public_url = public_url
        self.store = SubscriptionStore()

    def _expiration(self, value: Any) -> datetime:
        moment = parse_graph_time(value, "expirationDateTime")
        now = utc_now()
        if moment <= now:
            raise GraphError(400, INVALID_REQUEST, "Subscription expiration must be in the future.")
        if moment > now + timedelta(minutes=self.options.max_expiration_minutes):
            raise GraphError(400, INVALID_REQUEST,
                             f"Subscription expiration can only be {self.options.max_expiration_minutes} minutes in "
                             "the future.")
        return moment

    def _meeting(self, resource: Any, tid: str, version: str) -> tuple[str, Meeting]:
        if not isinstance(resource, str) or not resource:
            raise GraphError(400, BAD_REQUEST, "resource is required.")
        match = _RESOURCE.match(resource)
        if match is None:
            raise GraphError(400, INVALID_REQUEST,
                             "The sandbox supports subscriptions to "
                             "communications/onlineMeetings(joinWebUrl='{joinWebUrl}')/meetingCallEvents only.")
        if version != "beta":
            raise GraphError(400, INVALID_REQUEST,
                             "Subscriptions to meetingCallEvents are supported on the beta endpoint only.")
        meeting = self.meetings.find(unquote(match["url"]))
        if meeting is None or meeting.tid != tid:
            raise GraphError(404, NOT_FOUND, "The online meeting named in the resource was not found.")
        return resource.lstrip("/"), meeting

    async def create(self, request: Request, version: str) -> Subscription:
        caller = GraphAuth(self.issuer).authenticate(request, ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE)
        body = await json_object(request)
        resource, meeting = self._meeting(body.get("resource"), caller.tid, version)
        change_type = body.get("changeType")
        if change_type != "updated":
            raise GraphError(400, BAD_REQUEST, "changeType must be 'updated' for meetingCallEvents.")
        notification_url = _notification_url(body.get("notificationUrl"), "notificationUrl")
        lifecycle_url = body.get("lifecycleNotificationUrl")
        if lifecycle_url is not None:
            lifecycle_url = _notification_url(lifecycle_url, "lifecycleNotificationUrl")
        expiration = self._expiration(body.get("expirationDateTime"))
        client_state = body.get("clientState")
        if client_state is not None and (not isinstance(client_state, str) or len(client_state) > MAX_CLIENT_STATE):
            raise GraphError(400, BAD_REQUEST, f"clientState must be a string of at most {MAX_CLIENT_STATE} characters.")
        include = body.get("includeResourceData") is True
        cert_b64, cert_id, cert = body.get("encryptionCertificate"), body.get("encryptionCertificateId"), None
        if include:
            if not isinstance(cert_b64, str) or not isinstance(cert_id, str) or not cert_id or len(cert_id) > 128:
                raise GraphError(400, BAD_REQUEST, "includeResourceData needs encryptionCertificate and "
                                                   "encryptionCertificateId (at most 128 characters).")
            cert = load_certificate(cert_b64)
        await validate_endpoint(notification_url, self.options)
        if lifecycle_url:
            await validate_endpoint(lifecycle_url, self.options)
        subscription = Subscription(
            id=str(uuid.uuid4()), app_id=caller.app_id, creator_id=caller.service_principal_id, tid=caller.tid,
            resource=resource, meeting_key=meeting.key, change_type=change_type, notification_url=notification_url,
            lifecycle_notification_url=lifecycle_url, client_state=client_state, expiration=expiration,
            include_resource_data=include, certificate=cert, certificate_b64=cert_b64 if include else None,
            certificate_id=cert_id if include else None, api_version=version,
        )
        self.store.add(subscription)
        return subscription

    async def update(self, request: Request, subscription_id: str) -> Subscription:
        caller = GraphAuth(self.issuer).authenticate(request, ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE)
        body = await json_object(request)
        subscription = self.store.get(subscription_id, caller.app_id)
        if "expirationDateTime" in body:
            subscription.expiration = self._expiration(body["expirationDateTime"])
        if "encryptionCertificate" in body or "encryptionCertificateId" in body:
            cert_b64, cert_id = body.get("encryptionCertificate"), body.get("encryptionCertificateId")
            if not isinstance(cert_b64, str) or not isinstance(cert_id, str) or not cert_id:
                raise GraphError(400, BAD_REQUEST, "Give both encryptionCertificate and encryptionCertificateId.")
            subscription.certificate = load_certificate(cert_b64)
            subscription.certificate_b64, subscription.certificate_id = cert_b64, cert_id
        return subscription

    # --- notifications ------------------------------------------------------------
    def _validation_token(self, subscription: Subscription) -> str:
        now = int(time.time())
        issuer = self.issuer.issuer_v1(subscription.tid)
        return self.issuer.sign({
            "aud": subscription.app_id, "iss": issuer, "iat": now, "nbf": now, "exp": now + 6 * 3600,
            "appid": NOTIFICATION_PUBLISHER_APP_ID, "appidacr": "2", "idp": issuer, "tid": subscription.tid,
            "uti": uuid.uuid4().hex, "ver": "1.0",
        })

    def notification(self, subscription: Subscription, meeting: Meeting, event: dict[str, Any]) -> dict[str, Any]:
        """The changeNotificationCollection POSTed for one call event to one subscription."""
        call_event = {**event, "@odata.id": subscription.resource}
        resource_data: dict[str, Any] = {"@odata.type": "#microsoft.graph.callevent",
                                         "@odata.id": subscription.resource, "id": event["id"]}
        item: dict[str, Any] = {
            "subscriptionId": subscription.id,
            "subscriptionExpirationDateTime": graph_time(subscription.expiration),
            "changeType": "updated",
            "resource": subscription.resource,
            "clientState": subscription.client_state,
            "tenantId": meeting.tid,
            "organizationId": meeting.tid,
            "resourceData": resource_data,
        }
        body: dict[str, Any] = {"value": [item]}
        if subscription.include_resource_data and subscription.certificate is not None:
            content = json.dumps(call_event, separators=(",", ":")).encode()
            item["encryptedContent"] = encrypt_content(content, subscription.certificate,
                                                       subscription.certificate_id or "")
            body["validationTokens"] = [self._validation_token(subscription)]
        elif self.options.basic_notifications_carry_event:
            resource_data.update({k: v for k, v in call_event.items() if k not in resource_data})
        return body

    def publish(self, meeting: Meeting, event: dict[str, Any]) -> None:
        """The meeting store's listener: one notification per subscription of the meeting."""
        for subscription in self.store.for_meeting(meeting.key):
            body = json.dumps(self.notification(subscription, meeting, event)).encode()
            self.notifier.enqueue(Delivery(subscription.notification_url, body, subscription.id, meeting.key,
                                           event["eventType"], event["id"]))


def subscription_routes(service: SubscriptionService) -> list[Route]:
    def api_base(version: str) -> str:
        return f"{service.public_url}/{version}"

    async def create(request: Request) -> Response:
        version = request.url.path.strip("/").split("/")[0]
        try:
            subscription = await service.create(request, version)
        except GraphError as exc:
            return exc.response(request)
        return JSONResponse(subscription.to_graph(api_base(version)), 201)

    async def item(request: Request) -> Response:
        version = request.url.path.strip("/").split("/")[0]
        subscription_id = request.path_params["subscription_id"]
        try:
            if request.method == "PATCH":
                subscription = await service.update(request, subscription_id)
                return JSONResponse(subscription.to_graph(api_base(version)))
            caller = GraphAuth(service.issuer).authenticate(request, ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE)
            subscription = service.store.get(subscription_id, caller.app_id)
            if request.method == "DELETE":
                service.store.remove(subscription.id)
                return Response(status_code=204)
            return JSONResponse(subscription.to_graph(api_base(version)))
        except GraphError as exc:
            return exc.response(request)

    routes = []
    for version in ("v1.0", "beta"):
        routes.append(Route(f"/{version}/subscriptions", create, methods=["POST"]))
        routes.append(Route(f"/{version}/subscriptions/{{subscription_id}}", item, methods=["GET", "PATCH", "DELETE"]))
    return routes
