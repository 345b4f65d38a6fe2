"""Online meetings, their calls and rosters, and who may make them (application access policies).

A meeting is what ``createOrGet`` makes: unique per (tenant, organizer, externalId), as Graph
documents ("The combination of tenantId, userId, and externalId serves as the identifier for
a meeting with an external ID"). Its ids look like Teams': the chat thread
``19:meeting_<base64 of a GUID>@thread.v2``, the meeting id ``base64("1*<organizer oid>*0**<thread>")``
(that is how real onlineMeeting ids decode), and the ``joinWebUrl``
``{public_url}/l/meetup-join/19%3ameeting_<...>%40thread.v2/0?context=%7b%22Tid%22%3a%22<tid>%22%2c%22Oid%22%3a%22<oid>%22%7d``,
pointing at the simulator's own meeting page.

The call: it starts when the first person joins (a guest waiting in the lobby is already in
the call's roster, with ``isInLobby`` true), and ends when the organizer ends it. Every change
is a *call event* in the shape Graph's meetingCallEvents notifications decrypt to
(https://learn.microsoft.com/graph/changenotifications-for-onlinemeeting, "Decrypted payload
examples")::

    {"@odata.type": "#microsoft.graph.callevent", "@odata.id": <resource>, "id": <event id>,
     "eventType": "callStarted" | "callEnded" | "rosterUpdated", "eventDateTime": <UTC>,
     "participants@delta": [{"info": {"identity": {"user" | "guest": {...}}}, "isInLobby": bool,
                             "id": <participant id>, "removedState": {"reason": ...}?}]}

The store hands each event to a listener (the notifier), in order, and keeps no names in logs.

Application access policies (``New-CsApplicationAccessPolicy`` / ``Grant-CsApplicationAccessPolicy``)
are modelled per tenant as the set of users the connector's app may make meetings for.
"""

from __future__ import annotations

import base64
import re
import threading
import uuid
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any
from urllib.parse import quote

from .errors import BAD_REQUEST, NOT_FOUND, GraphError
from .wire import graph_time, utc_now

ORGANIZER = "organizer"
GUEST = "guest"
LOBBY = "lobby"
IN_MEETING = "inMeeting"
LEFT = "left"
ENDED = "ended"  # the call ended while the participant was in it (or waiting)

LEFT_REASON = "Participant has left the meeting call."
# Tenant defaults a new meeting gets (Teams meeting policy defaults): createOrGet's request body
# has no place for these settings, so a connector that wants others must PATCH the meeting.
DEFAULT_LOBBY_BYPASS = {"scope": "organization", "isDialInBypassEnabled": False}
DEFAULT_ALLOWED_PRESENTERS = "everyone"
DEFAULT_MEETING_CHAT = "enabled"
UPDATABLE = ("subject", "lobbyBypassSettings", "allowedPresenters", "allowMeetingChat", "isEntryExitAnnounced",
             "allowAttendeeToEnableCamera", "allowAttendeeToEnableMic", "recordAutomatically")
LOBBY_SCOPES = {"organizer", "organization", "organizationAndFederated", "everyone", "invited",
                "organizationExcludingGuests"}
PRESENTERS = {"everyone", "organization", "roleIsPresenter", "organizer"}
CHAT_MODES = {"enabled", "disabled", "limited"}


@dataclass(frozen=True)
class Organizer:
    oid: str
    upn: str
    display_name: str
    tid: str


@dataclass
class Participant:
    id: str
    role: str  # ORGANIZER or GUEST
    display_name: str  # shown on pages and sent in notifications as Graph does; never logged
    state: str
    user_oid: str | None = None

    def identity(self, tid: str) -> dict[str, Any]:
        if self.role == ORGANIZER:
            return {"user": {"id": self.user_oid, "displayName": self.display_name, "tenantId": tid}}
        # Anonymous web joiners are guests in communicationsIdentitySet.
        return {"guest": {"id": self.id, "displayName": self.display_name}}


@dataclass
class Meeting:
    key: str  # the thread's token: what sandbox URLs name a meeting by
    id: str
    tid: str
    organizer: Organizer
    external_id: str
    subject: str
    start: datetime
    end: datetime
    created_at: datetime
    join_web_url: str
    attendees: list[dict[str, Any]] = field(default_factory=list)
    settings: dict[str, Any] = field(default_factory=dict)
    call_active: bool = False
    participants: dict[str, Participant] = field(default_factory=dict)
    join_meeting_id: str = ""
    passcode: str = ""

    @property
    def thread_id(self) -> str:
        return f"19:meeting_{self.key}@thread.v2"

    def resource(self) -> str:
        """The meetingCallEvents resource naming this meeting (the joinWebUrl URL-encoded once)."""
        return f"communications/onlineMeetings(joinWebUrl='{quote(self.join_web_url, safe='')}')/meetingCallEvents"

    def to_graph(self, api_base: str) -> dict[str, Any]:
        """The onlineMeeting JSON (v1.0), as createOrGet and GET answer."""
        org = self.organizer
        return {
            "@odata.context": f"{api_base}/$metadata#users('{org.oid}')/onlineMeetings/$entity",
            "id": self.id,
            "creationDateTime": graph_time(self.created_at),
            "startDateTime": graph_time(self.start),
            "endDateTime": graph_time(self.end),
            "joinUrl": self.join_web_url,
            "joinWebUrl": self.join_web_url,
            "meetingCode": self.join_meeting_id,
            "subject": self.subject,
            "isBroadcast": False,
            "autoAdmittedUsers": "EveryoneInCompany",
            "outerMeetingAutoAdmittedUsers": None,
            "isEntryExitAnnounced": self.settings.get("isEntryExitAnnounced", True),
            "allowedPresenters": self.settings["allowedPresenters"],
            "allowMeetingChat": self.settings["allowMeetingChat"],
            "allowTeamworkReactions": True,
            "allowAttendeeToEnableMic": self.settings.get("allowAttendeeToEnableMic", True),
            "allowAttendeeToEnableCamera": self.settings.get("allowAttendeeToEnableCamera", True),
            "recordAutomatically": self.settings.get("recordAutomatically", False),
            "externalId": self.external_id,
            "videoTeleconferenceId": None,
            "lobbyBypassSettings": dict(self.settings["lobbyBypassSettings"]),
            "joinMeetingIdSettings": {
                "isPasscodeRequired": False,
                "joinMeetingId": self.join_meeting_id,
                "passcode": None,
            },
            "audioConferencing": None,
            "chatInfo": {"threadId": self.thread_id, "messageId": "0", "replyChainMessageId": None},
            "participants": {
                "organizer": {
                    "upn": org.upn,
                    "role": "presenter",
                    "identity": {"user": {"id": org.oid, "displayName": None, "tenantId": org.tid,
                                          "identityProvider": "AAD"}},
                },
                "attendees": list(self.attendees),
                "producers": [],
                "contributors": [],
            },
        }

    def snapshot(self) -> dict[str, Any]:
        """What the sandbox control API shows (display names included: it is the sandbox's own view)."""
        return {
            "key": self.key,
            "id": self.id,
            "tenantId": self.tid,
            "organizerId": self.organizer.oid,
            "externalId": self.external_id,
            "subject": self.subject,
            "joinWebUrl": self.join_web_url,
            "callActive": self.call_active,
            "settings": {k: (dict(v) if isinstance(v, dict) else v) for k, v in self.settings.items()},
            "participants": [
                {"id": p.id, "role": p.role, "state": p.state, "displayName": p.display_name}
                for p in self.participants.values()
            ],
        }


CallListener = Callable[[Meeting, dict[str, Any]], None]


def _teams_quote(text: str) -> str:
    """Percent-encode everything but letters and digits, with lowercase escapes, as Teams writes join URLs."""
    return re.sub(r"%[0-9A-F]{2}", lambda m: m.group().lower(), quote(text, safe=""))


def _thread_token() -> str:
    """Like Teams': base64 of a GUID's text (no padding, only letters and digits)."""
    return base64.b64encode(str(uuid.uuid4()).encode()).decode().rstrip("=")


class MeetingStore:
    """Every meeting of the simulator. Thread-safe: pages, the API and tests act at once."""

    def __init__(self, public_url: str, listener: CallListener | None = None) -> None:
        self.public_url = public_url.rstrip("/")
        self._lock = threading.RLock()
        self._by_key: dict[str, Meeting] = {}
        self._by_external: dict[tuple[str, str, str], str] = {}
        self._listener = listener

    def set_listener(self, listener: CallListener) -> None:
        self._listener = listener

    # --- createOrGet ------------------------------------------------------------
    def create_or_get(
        self, organizer: Organizer, external_id: str, *, subject: str, start: datetime, end: datetime,
        attendees: list[dict[str, Any]],
    ) -> tuple[Meeting, bool]:
        ident = (organizer.tid, organizer.oid, external_id)
        with self._lock:
            existing = self._by_external.get(ident)
            if existing is not None:
                return self._by_key[existing], False
            key = _thread_token()
            thread = f"19:meeting_{key}@thread.v2"
            meeting_id = base64.b64encode(f"1*{organizer.oid}*0**{thread}".encode()).decode()
            context = f'{{"Tid":"{organizer.tid}","Oid":"{organizer.oid}"}}'
            join_url = (f"{self.public_url}/l/meetup-join/{_teams_quote(thread)}/0"
                        f"?context={_teams_quote(context)}")
            meeting = Meeting(
                key=key, id=meeting_id, tid=organizer.tid, organizer=organizer, external_id=external_id,
                subject=subject, start=start, end=end, created_at=utc_now(), join_web_url=join_url,
                attendees=attendees,
                settings={
                    "lobbyBypassSettings": dict(DEFAULT_LOBBY_BYPASS),
                    "allowedPresenters": DEFAULT_ALLOWED_PRESENTERS,
                    "allowMeetingChat": DEFAULT_MEETING_CHAT,
                },
                join_meeting_id=str(uuid.uuid4().int)[:12],
            )
            self._by_key[key] = meeting
            self._by_external[ident] = key
            return meeting, True

    def update(self, meeting: Meeting, changes: dict[str, Any]) -> Meeting:
        """PATCH /users/{id}/onlineMeetings/{meetingId}: the updatable settings only."""
        with self._lock:
            for name, value in changes.items():
                if name not in UPDATABLE:
                    continue
                if name == "subject":
                    if not isinstance(value, str):
                        raise GraphError(400, BAD_REQUEST, "subject must be a string.")
                    meeting.subject = value
                elif name == "lobbyBypassSettings":
                    if not isinstance(value, dict):
                        raise GraphError(400, BAD_REQUEST, "lobbyBypassSettings must be an object.")
                    merged = {**meeting.settings["lobbyBypassSettings"], **value}
                    if merged.get("scope") not in LOBBY_SCOPES:
                        raise GraphError(400, BAD_REQUEST, "lobbyBypassSettings.scope is not a lobbyBypassScope.")
                    meeting.settings["lobbyBypassSettings"] = {
                        "scope": merged["scope"], "isDialInBypassEnabled": bool(merged.get("isDialInBypassEnabled"))}
                elif name == "allowedPresenters":
                    if value not in PRESENTERS:
                        raise GraphError(400, BAD_REQUEST, "allowedPresenters is not an onlineMeetingPresenters value.")
                    meeting.settings[name] = value
                elif name == "allowMeetingChat":
                    if value not in CHAT_MODES:
                        raise GraphError(400, BAD_REQUEST, "allowMeetingChat is not a meetingChatMode value.")
                    meeting.settings[name] = value
                else:
                    meeting.settings[name] = bool(value)
            return meeting

    # --- lookups ----------------------------------------------------------------
    def find(self, ref: str) -> Meeting | None:
        """A meeting by its sandbox key, its Graph id or its joinWebUrl."""
        with self._lock:
            found = self._by_key.get(ref)
            if found is not None:
                return found
            return next((m for m in self._by_key.values() if ref in (m.id, m.join_web_url)), None)

    def by_thread(self, thread_id: str) -> Meeting | None:
        prefix, suffix = "19:meeting_", "@thread.v2"
        if not (thread_id.startswith(prefix) and thread_id.endswith(suffix)):
            return None
        with self._lock:
            return self._by_key.get(thread_id[len(prefix):-len(suffix)])

    def get(self, key: str) -> Meeting:
        meeting = self.find(key)
        if meeting is None:
            raise GraphError(404, NOT_FOUND, "There is no such meeting in the sandbox.")
        return meeting

    def all(self) -> list[Meeting]:
        with self._lock:
            return list(self._by_key.values())

    def participant(self, meeting: Meeting, participant_id: str) -> Participant:
        with self._lock:
            found = meeting.participants.get(participant_id)
        if found is None:
            raise GraphError(404, NOT_FOUND, "There is no such participant in this meeting.")
        return found

    # --- the call ---------------------------------------------------------------
    def _event(self, meeting: Meeting, event_type: str, delta: Iterable[Participant] = (),
               removed: bool = False) -> None:
        event: dict[str, Any] = {
            "@odata.type": "#microsoft.graph.callevent",
            "@odata.id": meeting.resource(),
            "id": str(uuid.uuid4()),
            "eventType": event_type,
            "eventDateTime": graph_time(utc_now()),
        }
        if event_type == "rosterUpdated":
            changes = []
            for p in delta:
                change: dict[str, Any] = {"info": {"identity": p.identity(meeting.tid)},
                                          "isInLobby": p.state == LOBBY, "id": p.id}
                if removed:
                    change["removedState"] = {"reason": LEFT_REASON}
                changes.append(change)
            event["participants@delta"] = changes
        if self._listener is not None:
            self._listener(meeting, event)

    def _ensure_call(self, meeting: Meeting) -> None:
        if not meeting.call_active:
            meeting.call_active = True
            self._event(meeting, "callStarted")

    def join_guest(self, meeting: Meeting, display_name: str) -> Participant:
        """An anonymous guest joins from the meeting page: they wait in the lobby."""
        name = " ".join(display_name.split())[:100]
        if not name:
            raise GraphError(400, BAD_REQUEST, "Enter your name to join.")
        with self._lock:
            self._ensure_call(meeting)
            guest = Participant(str(uuid.uuid4()), GUEST, name, LOBBY)
            meeting.participants[guest.id] = guest
            self._event(meeting, "rosterUpdated", [guest])
            return guest

    def join_organizer(self, meeting: Meeting) -> Participant:
        """The organizer joins (and so starts the call); joining twice changes nothing."""
        with self._lock:
            present = next((p for p in meeting.participants.values()
                            if p.role == ORGANIZER and p.state == IN_MEETING), None)
            if present is not None and meeting.call_active:
                return present
            self._ensure_call(meeting)
            org = meeting.organizer
            participant = Participant(str(uuid.uuid4()), ORGANIZER, org.display_name, IN_MEETING, user_oid=org.oid)
            meeting.participants[participant.id] = participant
            self._event(meeting, "rosterUpdated", [participant])
            return participant

    def admit(self, meeting: Meeting, participant_id: str) -> Participant:
        with self._lock:
            participant = self.participant(meeting, participant_id)
            if participant.state != LOBBY or not meeting.call_active:
                raise GraphError(409, "Conflict", "Only someone waiting in the lobby can be admitted.")
            participant.state = IN_MEETING
            self._event(meeting, "rosterUpdated", [participant])
            return participant

    def leave(self, meeting: Meeting, participant_id: str) -> Participant:
        with self._lock:
            participant = self.participant(meeting, participant_id)
            if participant.state not in (LOBBY, IN_MEETING):
                return participant  # already gone: leaving twice changes nothing
            participant.state = LEFT
            self._event(meeting, "rosterUpdated", [participant], removed=True)
            return participant

    def end(self, meeting: Meeting) -> None:
        """The organizer ends the meeting for everyone."""
        with self._lock:
            if not meeting.call_active:
                return
            for participant in meeting.participants.values():
                if participant.state in (LOBBY, IN_MEETING):
                    participant.state = ENDED
            meeting.call_active = False
            self._event(meeting, "callEnded")


class AccessPolicies:
    """Per tenant, the users the connector's app may make meetings for (thread-safe)."""

    def __init__(self, grants: dict[str, Iterable[str]] | None = None) -> None:
        self._lock = threading.Lock()
        self._granted: dict[str, set[str]] = {tid: set(oids) for tid, oids in (grants or {}).items()}

    def grant(self, tid: str, oid: str) -> None:
        with self._lock:
            self._granted.setdefault(tid, set()).add(oid)

    def revoke(self, tid: str, oid: str) -> None:
        with self._lock:
            self._granted.get(tid, set()).discard(oid)

    def allows(self, tid: str, oid: str) -> bool:
        with self._lock:
            return oid in self._granted.get(tid, set())

    def snapshot(self) -> dict[str, list[str]]:
        with self._lock:
            return {tid: sorted(oids) for tid, oids in self._granted.items()}


def default_times(start: datetime | None, end: datetime | None) -> tuple[datetime, datetime]:
    """createOrGet's documented defaults: now and an hour later; end = start + 1 h without end."""
    if start is None and end is not None:
        raise GraphError(400, BAD_REQUEST, "endDateTime cannot be given without startDateTime.")
    start = start or utc_now()
    end = end or start + timedelta(hours=1)
    if end < start:
        raise GraphError(400, BAD_REQUEST, "endDateTime cannot be earlier than startDateTime.")
    return start, end
