"""The provider page's session cookie: sealed, scoped to its own launch's path.

``Path=/api/visit/{session id}`` means a browser sends each launch's cookie only to that
launch's page and API, so two visits open side by side never see each other's session; the
sealed session also names its id, and a cookie presented under another launch's path is
refused. HttpOnly (no script reads it), Secure, SameSite=Lax: sent on the top-level
navigation that opens the page inside PowerChart's window and on its same-origin calls, never
on another site's POST.
"""

from __future__ import annotations

import re

import azure.functions as func

from connector.domain.launch import SESSION_ID_PATTERN, LaunchSession
from connector.errors import NotAuthenticated

COOKIE = "vv_session"
_SESSION_ID = re.compile(SESSION_ID_PATTERN)


def session_cookie(value: str, path: str, *, max_age: int) -> str:
    return f"{COOKIE}={value}; Path={path}; Max-Age={max_age}; HttpOnly; Secure; SameSite=Lax"


def launch_session(req: func.HttpRequest, sealer, clock) -> LaunchSession:
    """The session this request's path belongs to; NotAuthenticated (401) otherwise."""
    session_id = req.route_params.get("session_id", "")
    refused = NotAuthenticated("this visit page's session is missing or has ended; launch the visit again")
    if not _SESSION_ID.fullmatch(session_id):
        raise refused
    values = request_cookies(req).get(COOKIE, [])
    for value in values:
        try:
            session = sealer.open(value)
        except NotAuthenticated:
            continue
        if session.session_id == session_id and not session.expired(clock.now()):
            return session
    raise refused


def request_cookies(req: func.HttpRequest) -> dict[str, list[str]]:
    """The request's cookies by name (a name may come more than once, from different paths)."""
    found: dict[str, list[str]] = {}
    for part in req.headers.get("Cookie", "").split(";"):
        name, _, value = part.strip().partition("=")
        if name:
            found.setdefault(name, []).append(value)
    return found
