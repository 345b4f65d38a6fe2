"""``/users/{userId}/onlineMeetings``: createOrGet, get and update, app-only.

``POST /v1.0/users/{userId}/onlineMeetings/createOrGet`` as documented
(https://learn.microsoft.com/graph/api/onlinemeeting-createorget?view=graph-rest-1.0):
body ``externalId`` (required), ``startDateTime``, ``endDateTime``, ``subject``,
``participants`` (``chatInfo`` is accepted and ignored); 201 with the onlineMeeting when it
is made, 200 with the same meeting when (tenant, user, externalId) already has one. The
defaults: start now, end an hour after start; end without start, or before start, is 400.

The request body has no place for the meeting options, so the sandbox ignores any it is sent
(``lobbyBypassSettings``, ``allowedPresenters``, ``allowMeetingChat``) and gives a new meeting
the tenant defaults; ``PATCH /users/{userId}/onlineMeetings/{meetingId}`` changes them
(https://learn.microsoft.com/graph/api/onlinemeeting-update?view=graph-rest-1.0).

``userId`` is the organizer's object id (or UPN) in the token's tenant. App-only calls need
the ``OnlineMeetings.ReadWrite.All`` role and an application access policy granted to that
user, else 403 ``Forbidden`` "No application access policy found for this app."
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from ..entra import TokenIssuer
from .auth import ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE, AppCaller, GraphAuth
from .errors import BAD_REQUEST, FORBIDDEN, NO_ACCESS_POLICY, NOT_FOUND, GraphError
from .meetings import AccessPolicies, Meeting, MeetingStore, Organizer, default_times
from .wire import json_object, parse_graph_time


def resolve_organizer(issuer: TokenIssuer, policies: AccessPolicies, caller: AppCaller, user_ref: str) -> Organizer:
    tenant = issuer.directory.tenant(caller.tid)
    ref = user_ref.lower()
    user = next((u for u in tenant.users if ref in (u.oid, u.user_principal_name.lower())), None) if tenant else None
    if user is None:
        raise GraphError(404, NOT_FOUND, f"The user {user_ref} was not found in this tenant.")
    if not policies.allows(caller.tid, user.oid):
        raise GraphError(403, FORBIDDEN, NO_ACCESS_POLICY)
    return Organizer(user.oid, user.user_principal_name, user.display_name, caller.tid)


def _attendees(participants: Any) -> list[dict[str, Any]]:
    if participants is None:
        return []
    if not isinstance(participants, dict):
        raise GraphError(400, BAD_REQUEST, "participants must be a meetingParticipants object.")
    attendees = participants.get("attendees") or []
    if not isinstance(attendees, list) or not all(isinstance(a, dict) for a in attendees):
        raise GraphError(400, BAD_REQUEST, "participants.attendees must be a list of meetingParticipantInfo.")
    return [{"upn": a.get("upn"), "role": a.get("role"), "identity": a.get("identity")} for a in attendees]


def online_meeting_routes(issuer: TokenIssuer, meetings: MeetingStore, policies: AccessPolicies,
                          public_url: str) -> list[Route]:
    auth = GraphAuth(issuer)

    def meeting_of(caller: AppCaller, organizer: Organizer, meeting_id: str) -> Meeting:
        meeting = meetings.find(meeting_id)
        if meeting is None or meeting.tid != caller.tid or meeting.organizer.oid != organizer.oid:
            raise GraphError(404, NOT_FOUND, "The online meeting was not found.")
        return meeting

    async def create_or_get(request: Request) -> Response:
        version = request.url.path.strip("/").split("/")[0]
        try:
            caller = auth.authenticate(request, ONLINE_MEETINGS_READ_WRITE)
            organizer = resolve_organizer(issuer, policies, caller, request.path_params["user"])
            body = await json_object(request)
            external_id = body.get("externalId")
            if not isinstance(external_id, str) or not external_id.strip():
                raise GraphError(400, BAD_REQUEST, "externalId is required.")
            if len(external_id) > 255:
                raise GraphError(400, BAD_REQUEST, "externalId can be at most 255 characters.")
            start = parse_graph_time(body["startDateTime"], "startDateTime") if body.get("startDateTime") else None
            end = parse_graph_time(body["endDateTime"], "endDateTime") if body.get("endDateTime") else None
            start, end = default_times(start, end)
            subject = body.get("subject") or ""
            if not isinstance(subject, str):
                raise GraphError(400, BAD_REQUEST, "subject must be a string.")
            meeting, created = meetings.create_or_get(
                organizer, external_id, subject=subject, start=start, end=end,
                attendees=_attendees(body.get("participants")))
        except GraphError as exc:
            return exc.response(request)
        return JSONResponse(meeting.to_graph(f"{public_url}/{version}"), 201 if created else 200)

    async def item(request: Request) -> Response:
        version = request.url.path.strip("/").split("/")[0]
        try:
            needed = (ONLINE_MEETINGS_READ_WRITE,) if request.method == "PATCH" else (
                ONLINE_MEETINGS_READ, ONLINE_MEETINGS_READ_WRITE)
            caller = auth.authenticate(request, *needed)
            organizer = resolve_organizer(issuer, policies, caller, request.path_params["user"])
            meeting = meeting_of(caller, organizer, request.path_params["meeting_id"])
            if request.method == "PATCH":
                meetings.update(meeting, await json_object(request))
        except GraphError as exc:
            return exc.response(request)
        return JSONResponse(meeting.to_graph(f"{public_url}/{version}"))

    routes = []
    for version in ("v1.0", "beta"):
        routes.append(Route(f"/{version}/users/{{user}}/onlineMeetings/createOrGet", create_or_get, methods=["POST"]))
        routes.append(Route(f"/{version}/users/{{user}}/onlineMeetings/{{meeting_id:path}}", item, methods=["GET", "PATCH"]))
    return routes
