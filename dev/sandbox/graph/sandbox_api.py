"""``/_sandbox/...``: the controls real Graph does not have (no token needed; loopback only).

Meetings (``{key}`` is the meeting's sandbox ``key``, the token in its chat thread id
``19:meeting_{key}@thread.v2``, as the listings show it):

- ``GET  /_sandbox/meetings[?joinWebUrl=...|?externalId=...]``  meetings, with participants and settings
- ``GET  /_sandbox/meetings/{key}``                    one meeting
- ``GET  /_sandbox/meetings/{key}/participants``       its participants (``id``, ``role``, ``state``, ``displayName``)
- ``GET  /_sandbox/meetings/{key}/participants/{id}``  one participant's ``state``: lobby | inMeeting | left | ended
- ``POST /_sandbox/meetings/{key}/guests``             ``{"displayName": "..."}``: a guest joins (the lobby) -> 201
- ``POST /_sandbox/meetings/{key}/participants/{id}/admit``  admit from the lobby (409 if not waiting)
- ``POST /_sandbox/meetings/{key}/participants/{id}/leave``  leave (lobby or meeting)
- ``POST /_sandbox/meetings/{key}/organizer/join``     the organizer joins (starts the call)
- ``POST /_sandbox/meetings/{key}/end``                end the meeting for everyone (callEnded)
- ``GET  /_sandbox/meetings/{key}/organizer``          the organizer's HTML view

The same POST routes take the pages' HTML forms (``application/x-www-form-urlencoded``) and
then answer with a 303 back to the page (setting the guest's cookie on join).

Access policies, subscriptions and notifications:

- ``GET  /_sandbox/access-policies``                   ``{tid: [user oid, ...]}``
- ``POST /_sandbox/access-policies/grant`` and ``.../revoke``  ``{"tenant": tid|domain, "user": oid|upn|alias}``
- ``GET  /_sandbox/subscriptions``                     live subscriptions (no certificates)
- ``GET|DELETE /_sandbox/notifications``               the delivery log: per attempt, the status the webhook
  answered (``status``, ``error`` "timeout"/"connection", ``outcome`` delivered | retrying | failed | refused)
- ``/_sandbox/faults``                                 the shared fault switches
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from ..entra import TokenIssuer
from .errors import BAD_REQUEST, NOT_FOUND, GraphError
from .meetings import AccessPolicies, Meeting, MeetingStore, Participant
from .notifier import Notifier
from .pages import join_page, organizer_page
from .subscriptions import SubscriptionService
from .wire import graph_time

PARTICIPANT_COOKIE = "sbx_graph_participant_"


def participant_cookie(meeting: Meeting) -> str:
    return f"{PARTICIPANT_COOKIE}{meeting.key}"


def _participant_json(participant: Participant) -> dict[str, Any]:
    return {"id": participant.id, "role": participant.role, "state": participant.state}


async def _body(request: Request) -> tuple[dict[str, Any], bool]:
    """The request's fields and whether they came from an HTML form."""
    content_type = request.headers.get("content-type", "")
    if content_type.startswith("application/x-www-form-urlencoded"):
        raw = (await request.body()).decode("utf-8", "replace")
        return dict(parse_qsl(raw, keep_blank_values=True)), True
    raw_bytes = await request.body()
    if not raw_bytes:
        return {}, False
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError(400, BAD_REQUEST, "The request body must be a JSON object.")
    return body, False


def sandbox_routes(issuer: TokenIssuer, meetings: MeetingStore, policies: AccessPolicies,
                   subscriptions: SubscriptionService, notifier: Notifier) -> list[Route]:
    def meeting_of(request: Request) -> Meeting:
        return meetings.get(request.path_params["key"])

    def handle(fn):
        async def endpoint(request: Request) -> Response:
            try:
                return await fn(request)
            except GraphError as exc:
                return exc.response(request)
        return endpoint

    @handle
    async def list_meetings(request: Request) -> Response:
        join_url = request.query_params.get("joinWebUrl")
        external_id = request.query_params.get("externalId")
        found = [m for m in meetings.all()
                 if (join_url is None or m.join_web_url == join_url)
                 and (external_id is None or m.external_id == external_id)]
        return JSONResponse([m.snapshot() for m in found])

    @handle
    async def one_meeting(request: Request) -> Response:
        return JSONResponse(meeting_of(request).snapshot())

    @handle
    async def participants(request: Request) -> Response:
        return JSONResponse(meeting_of(request).snapshot()["participants"])

    @handle
    async def one_participant(request: Request) -> Response:
        meeting = meeting_of(request)
        return JSONResponse(_participant_json(meetings.participant(meeting, request.path_params["pid"])))

    @handle
    async def guests(request: Request) -> Response:
        meeting = meeting_of(request)
        fields, is_form = await _body(request)
        name = fields.get("displayName")
        if not isinstance(name, str) or not name.strip():
            if is_form:
                return join_page(meeting, error="Enter your name to join.")
            raise GraphError(400, BAD_REQUEST, "displayName is required.")
        guest = meetings.join_guest(meeting, name)
        if is_form:
            response = RedirectResponse(meeting.join_web_url, 303)
            response.set_cookie(participant_cookie(meeting), guest.id, path="/", httponly=True, samesite="lax")
            return response
        return JSONResponse(_participant_json(guest), 201)

    @handle
    async def admit(request: Request) -> Response:
        meeting = meeting_of(request)
        _, is_form = await _body(request)
        participant = meetings.admit(meeting, request.path_params["pid"])
        if is_form:
            return RedirectResponse(f"/_sandbox/meetings/{meeting.key}/organizer", 303)
        return JSONResponse(_participant_json(participant))

    @handle
    async def leave(request: Request) -> Response:
        meeting = meeting_of(request)
        _, is_form = await _body(request)
        participant = meetings.leave(meeting, request.path_params["pid"])
        if is_form:
            return RedirectResponse(meeting.join_web_url, 303)
        return JSONResponse(_participant_json(participant))

    @handle
    async def organizer_join(request: Request) -> Response:
        meeting = meeting_of(request)
        _, is_form = await _body(request)
        participant = meetings.join_organizer(meeting)
        if is_form:
            return RedirectResponse(f"/_sandbox/meetings/{meeting.key}/organizer", 303)
        return JSONResponse(_participant_json(participant))

    @handle
    async def end(request: Request) -> Response:
        meeting = meeting_of(request)
        _, is_form = await _body(request)
        meetings.end(meeting)
        if is_form:
            return RedirectResponse(f"/_sandbox/meetings/{meeting.key}/organizer", 303)
        return JSONResponse(meeting.snapshot())

    @handle
    async def organizer_view(request: Request) -> Response:
        return organizer_page(meeting_of(request))

    @handle
    async def access_policies(request: Request) -> Response:
        if request.method == "POST":
            fields, _ = await _body(request)
            tenant = issuer.directory.tenant(str(fields.get("tenant", "")))
            user = tenant.user(str(fields.get("user", ""))) if tenant else None
            if tenant is None or user is None:
                raise GraphError(404, NOT_FOUND, "No such tenant or user in the sandbox directory.")
            if request.url.path.endswith("/grant"):
                policies.grant(tenant.tid, user.oid)
            else:
                policies.revoke(tenant.tid, user.oid)
        return JSONResponse(policies.snapshot())

    @handle
    async def list_subscriptions(request: Request) -> Response:
        return JSONResponse([
            {"id": s.id, "resource": s.resource, "meeting": s.meeting_key, "tenantId": s.tid,
             "applicationId": s.app_id, "notificationUrl": s.notification_url,
             "expirationDateTime": graph_time(s.expiration), "includeResourceData": s.include_resource_data,
             "apiVersion": s.api_version}
            for s in subscriptions.store.all()
        ])

    @handle
    async def notifications(request: Request) -> Response:
        if request.method == "DELETE":
            notifier.clear()
        return JSONResponse(notifier.deliveries())

    base = "/_sandbox/meetings/{key}"
    return [
        Route("/_sandbox/meetings", list_meetings, methods=["GET"]),
        Route(base, one_meeting, methods=["GET"]),
        Route(f"{base}/participants", participants, methods=["GET"]),
        Route(f"{base}/participants/{{pid}}", one_participant, methods=["GET"]),
        Route(f"{base}/guests", guests, methods=["POST"]),
        Route(f"{base}/participants/{{pid}}/admit", admit, methods=["POST"]),
        Route(f"{base}/participants/{{pid}}/leave", leave, methods=["POST"]),
        Route(f"{base}/organizer/join", organizer_join, methods=["POST"]),
        Route(f"{base}/organizer", organizer_view, methods=["GET"]),
        Route(f"{base}/end", end, methods=["POST"]),
        Route("/_sandbox/access-policies", access_policies, methods=["GET"]),
        Route("/_sandbox/access-policies/grant", access_policies, methods=["POST"]),
        Route("/_sandbox/access-policies/revoke", access_policies, methods=["POST"]),
        Route("/_sandbox/subscriptions", list_subscriptions, methods=["GET"]),
        Route("/_sandbox/notifications", notifications, methods=["GET", "DELETE"]),
    ]
