"""The provider's visit page and its API, all under ``/api/visit/{session_id}`` (the sealed
session cookie is scoped to that path; see ``visit_session``)."""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlsplit

import azure.functions as func
from pydantic import BaseModel

from connector import telemetry
from connector.composition import container
from connector.domain.launch import SESSION_TTL
from connector.errors import NotAuthorized
from connector.functions.http import handles_errors, handles_errors_as_pages, html_response, json_response, redirect
from connector.functions.visit_session import launch_session, session_cookie
from connector.pages.provider import picker_page, visit_page

if TYPE_CHECKING:
    from connector.services.provider_visit import VisitStatus

bp = func.Blueprint()
ANONYMOUS = func.AuthLevel.ANONYMOUS
NO_STORE = {"Cache-Control": "no-store"}


class StatusView(BaseModel):
    patient: str
    provider_in_meeting: bool
    live_status: bool
    link_sent_at: str | None
    lobby_since: str | None
    admitted_at: str | None
    started_at: str | None
    ended_at: str | None

    @classmethod
    def of(cls, status: VisitStatus) -> "StatusView":
        def iso(moment):
            return moment.isoformat() if moment else None

        return cls(patient=status.patient.value, provider_in_meeting=status.provider_in_meeting,
                   live_status=status.live_status, link_sent_at=iso(status.link_sent_at),
                   lobby_since=iso(status.lobby_since), admitted_at=iso(status.admitted_at),
                   started_at=iso(status.started_at), ended_at=iso(status.ended_at))


class LinkSentView(BaseModel):
    sent_at: str
    to_last_digits: str
    language: str


def _session(req: func.HttpRequest):
    deps = container()
    session = launch_session(req, deps.session_sealer, deps.clock)
    telemetry.tag(tenant=session.tenant_id, endpoint_id=session.endpoint_id)
    return session


def _same_origin(req: func.HttpRequest) -> None:
    """A state-changing call must come from our own page (SameSite=Lax already keeps other
    sites' POSTs cookie-less; this also refuses a cross-origin request that has none)."""
    origin = req.headers.get("Origin")
    expected = urlsplit(container().settings.public_base_url)
    if origin is not None and origin != f"{expected.scheme}://{expected.netloc}":
        raise NotAuthorized("this request did not come from the visit page")


@bp.route(route="visit/{session_id}", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def provider_page(req: func.HttpRequest) -> func.HttpResponse:
    session = _session(req)
    view = container().provider_visit.page(session)
    base = f"/api/visit/{session.session_id}"
    page = visit_page(view, base_path=base) if session.appointment_id else picker_page(view, base_path=base)
    return html_response(page)


@bp.route(route="visit/{session_id}/pick", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors_as_pages
def pick_appointment(req: func.HttpRequest) -> func.HttpResponse:
    session = _session(req)
    _same_origin(req)
    form = parse_qs((req.get_body() or b"").decode("utf-8", "replace"))
    chosen = (form.get("appointment") or [""])[0]
    deps = container()
    session = deps.provider_visit.choose(session, chosen)
    path = f"/api/visit/{session.session_id}"
    cookie = session_cookie(deps.session_sealer.seal(session), path, max_age=int(SESSION_TTL.total_seconds()))
    return redirect(path, 303, headers={"Set-Cookie": cookie})


@bp.route(route="visit/{session_id}/status", methods=["GET"], auth_level=ANONYMOUS)
@handles_errors
def visit_status(req: func.HttpRequest) -> func.HttpResponse:
    status = container().provider_visit.status(_session(req))
    return json_response(StatusView.of(status), headers=NO_STORE)


@bp.route(route="visit/{session_id}/send-link", methods=["POST"], auth_level=ANONYMOUS)
@handles_errors
def send_link(req: func.HttpRequest) -> func.HttpResponse:
    session = _session(req)
    _same_origin(req)
    if req.headers.get("X-Requested-With") != "fetch":
        raise NotAuthorized("send the link from the visit page")
    sent = container().provider_visit.send_link(session)
    return json_response(LinkSentView(sent_at=sent.sent_at.isoformat(), to_last_digits=sent.to_last_digits,
                                      language=sent.language), headers=NO_STORE)
