"""The sandbox "PowerChart": a clinician's day, with a Teams button on each booked video visit.

``GET /_sandbox/powerchart[?user=<Practitioner id>][&client_id=<client>][&tenant=<Cerner tenant>]`` lists today's
appointments in the clinic's time zone (time, patient, type, status, department,
practitioner). Each booked video visit has a Teams button,
``button.teams-launch[data-appointment="<Appointment id>"]``, inside a small form that posts
to ``POST /_sandbox/powerchart/launch``. That route does what PowerChart does for a SMART
EHR launch: it mints a launch for the appointment (patient, encounter and user filled in from
it) and answers ``303 See Other`` to ``{launch_url}?iss={FHIR base}&launch={launch}``, so the
*same window* goes to the app (PowerChart's embedded browser shares no cookies with pop-ups).

The app is the registered client with a ``launch_url`` (Cerner's "SMART launch URI"); with
several, the first registered, or the one named by ``?client_id=``. With none, the page says
so and shows no buttons. ``?user=`` plays the clinician signed in: only their appointments
are listed and the launch's user is theirs. ``?tenant=`` opens another tenant's PowerChart (the
app's primary tenant by default); its launches name that tenant's FHIR base as ``iss``.

Plain server-rendered HTML: no script, no external resources, everything escaped. Readable at
1024x768 and, as stacked rows, in PowerChart's small embedded windows. No frame or CORS
headers are added: PowerChart embeds the apps it launches, not this page.
"""

from __future__ import annotations

from datetime import datetime
from html import escape
from urllib.parse import urlencode, urlsplit

from starlette.requests import Request
from starlette.responses import HTMLResponse, RedirectResponse, Response

from .clients import RegisteredClient
from .errors import OAuthError, with_query
from .forms import read_form
from .patch import has_video_links
from .schedule import ScheduledVisit
from .shapes import PROVIDER_ROOM
from .state import CernerSimulator, chosen_tenant

LAUNCH_PATH = "/_sandbox/powerchart/launch"
NO_STORE = {"Cache-Control": "no-store"}


def launchable_clients(sim: CernerSimulator) -> list[RegisteredClient]:
    """Registered clients with a SMART launch URL, in registration order."""
    return [c for c in sim.clients.all() if c.launch_url]


def can_launch(visit: ScheduledVisit) -> bool:
    """PowerChart shows the Teams button on booked video visits only."""
    return visit.is_video and visit.status == "booked"


def _not_primary(request: Request, sim: CernerSimulator) -> dict[str, str]:
    """The ``tenant`` field that keeps a non-primary tenant's PowerChart on that tenant."""
    return {} if sim is request.app.state.cerner_tenants.primary else {"tenant": sim.urls.tenant_id}


async def page(request: Request) -> Response:
    sim = chosen_tenant(request, request.query_params.get("tenant"))
    if sim is None:
        return _message_page("Unknown tenant", "This sandbox does not serve that Cerner tenant.", 404)
    user = request.query_params.get("user") or None
    practitioners = sorted(sim.store.all("Practitioner"), key=lambda p: p["id"])
    if user is not None and user not in {p["id"] for p in practitioners}:
        return _message_page("Unknown clinician", f"There is no practitioner with the id {user}.", 400)
    clients = launchable_clients(sim)
    wanted = request.query_params.get("client_id") or None
    client = next((c for c in clients if c.client_id == wanted), None) if wanted else (clients[0] if clients else None)
    problem = None
    if wanted and client is None:
        problem = f"The client {wanted} has no SMART launch URL (or is not registered), so no app can be launched."
    elif client is None:
        problem = ("No registered app has a SMART launch URL, so no app can be launched. Register a client with "
                   "a launch_url (POST /_sandbox/clients) and reload this page.")
    visits = [v for v in sim.schedule() if user is None or v.practitioner_id == user]
    body = _render(sim, visits, practitioners, user, clients, client, problem, _not_primary(request, sim))
    return HTMLResponse(body, 400 if wanted and client is None else 200, headers=NO_STORE)


async def launch(request: Request) -> Response:
    try:
        fields = await read_form(request)
    except OAuthError as error:
        return _message_page("Bad request", error.description, 400)
    sim = chosen_tenant(request, fields.get("tenant"))
    if sim is None:
        return _message_page("Unknown tenant", "This sandbox does not serve that Cerner tenant.", 404)
    client = sim.clients.get(fields.get("client_id"))
    if client is None or not client.launch_url:
        return _message_page("No app to launch", "That client is not registered or has no SMART launch URL.", 400)
    appointment_id = fields.get("appointment", "")
    visit = next((v for v in sim.schedule() if v.appointment_id == appointment_id), None)
    if visit is None or not can_launch(visit):
        return _message_page("Cannot launch", "That appointment is not a booked video visit on today's schedule.",
                             400)
    try:
        code = sim.mint_launch(appointment=appointment_id, user=fields.get("user") or None)
    except ValueError as error:
        return _message_page("Cannot launch", str(error), 400)
    sim.record("powerchart", appointment=appointment_id, client_id=client.client_id)
    target = with_query(client.launch_url, {"iss": sim.urls.fhir_base, "launch": code})
    return RedirectResponse(target, 303, headers=NO_STORE)


# -- rendering -----------------------------------------------------------------------------------

def _clock(moment: datetime) -> str:
    hour = moment.hour % 12 or 12
    return f"{hour}:{moment.minute:02d} {'AM' if moment.hour < 12 else 'PM'}"


def _status(status: str) -> str:
    return status.replace("-", " ").capitalize()


def _provider_link(sim: CernerSimulator, appointment_id: str) -> str | None:
    """The provider's Video Visit link, when written back and an http(s) URL."""
    appointment = sim.store.get("Appointment", appointment_id)
    if appointment is None or not has_video_links(appointment):
        return None
    room = next(c for c in appointment["contained"] if any(t.get("text") == PROVIDER_ROOM for t in c["type"]))
    link = (room.get("telecom") or [{}])[0].get("value", "")
    return link if urlsplit(link).scheme in ("http", "https") else None


def _row(sim: CernerSimulator, visit: ScheduledVisit, client: RegisteredClient | None, user: str | None,
         keep: dict[str, str]) -> str:
    e = escape
    when = f"{_clock(visit.start)} – {_clock(visit.end)}"
    cells = [("Time", f'<time datetime="{e(visit.start.isoformat())}">{e(when)}</time>'),
             ("Patient", e(visit.patient_display)),
             ("Type", e(visit.description or ("Video Visit" if visit.is_video else "Visit"))),
             ("Status", f'<span class="status status-{e(visit.status)}">{e(_status(visit.status))}</span>'),
             ("Department", e(visit.location_display or "")),
             ("Practitioner", e(visit.practitioner_display or ""))]
    action = ""
    if can_launch(visit) and client is not None:
        hidden = {"appointment": visit.appointment_id, "client_id": client.client_id, **({"user": user} if user else {}),
                  **keep}
        inputs = "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in hidden.items())
        label = f"Start the Teams video visit with {visit.patient_display} at {_clock(visit.start)}"
        action = (f'<form method="post" action="{LAUNCH_PATH}" class="launch">{inputs}'
                  f'<button type="submit" class="teams-launch" data-appointment="{e(visit.appointment_id)}" '
                  f'aria-label="{e(label)}">Teams</button></form>')
    link = _provider_link(sim, visit.appointment_id) if visit.is_video else None
    if link:
        action += f' <a class="provider-link" href="{e(link)}" rel="noopener noreferrer">Provider link</a>'
    cells.append(("Video visit", action or ('<span class="muted">—</span>')))
    tds = "".join(f'<td data-label="{e(label)}">{html}</td>' for label, html in cells)
    video = " video" if visit.is_video else ""
    return f'<tr class="visit{video}" data-appointment-row="{e(visit.appointment_id)}">{tds}</tr>'


def _render(sim: CernerSimulator, visits: list[ScheduledVisit], practitioners: list[dict], user: str | None,
            clients: list[RegisteredClient], client: RegisteredClient | None, problem: str | None,
            keep: dict[str, str]) -> str:
    """``keep``: the fields that keep a non-primary tenant's page on its tenant."""
    e = escape
    day = sim.seed.today
    options = ['<option value="">All clinicians</option>'] + [
        f'<option value="{e(p["id"])}"{" selected" if p["id"] == user else ""}>{e(p["name"][0]["text"])}</option>'
        for p in practitioners]
    keep_client = (f'<input type="hidden" name="client_id" value="{e(client.client_id)}">'
                   if client is not None and len(clients) > 1 else "")
    keep_client += "".join(f'<input type="hidden" name="{e(k)}" value="{e(v)}">' for k, v in keep.items())
    switcher = (f'<form method="get" class="switcher"><label for="user">Clinician</label> '
                f'<select id="user" name="user">{"".join(options)}</select>{keep_client} '
                f'<button type="submit">Show</button></form>')
    notices = []
    if problem:
        notices.append(f'<p class="notice" role="alert" id="no-launch">{e(problem)}</p>')
    if client is not None:
        app = f"{client.name or client.client_id}"
        chooser = ""
        current = ' aria-current="true"'
        if len(clients) > 1:
            links = " · ".join(
                f'<a href="?{e(urlencode({"client_id": c.client_id, **({"user": user} if user else {}), **keep}))}"'
                f'{current if c is client else ""}>{e(c.name or c.client_id)}</a>' for c in clients)
            chooser = f" Other apps: {links}."
        notices.append(f'<p class="app">Teams launches <strong id="launch-app">{e(app)}</strong> '
                       f'(<code>{e(client.launch_url or "")}</code>).{chooser}</p>')
    rows = "".join(_row(sim, v, client, user, keep) for v in visits) or (
        '<tr><td colspan="7" class="muted">No appointments today.</td></tr>')
    heads = "".join(f'<th scope="col">{h}</th>' for h in
                    ("Time", "Patient", "Type", "Status", "Department", "Practitioner", "Video visit"))
    return f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>PowerChart – Ambulatory Organizer (sandbox)</title>
<style>{_CSS}</style>
</head>
<body>
<header class="bar"><span class="product">PowerChart</span><span class="tag">sandbox</span>
<span class="tenant">{e(sim.urls.tenant_id)}</span></header>
<main>
<h1>Ambulatory Organizer</h1>
<p class="day" id="schedule-day"><time datetime="{day.isoformat()}">{e(day.strftime("%A, %B %d, %Y"))}</time>
· {e(str(sim.tz))}</p>
{switcher}
{"".join(notices)}
<table class="schedule" id="schedule">
<caption>Today's appointments ({len(visits)})</caption>
<thead><tr>{heads}</tr></thead>
<tbody>{rows}</tbody>
</table>
</main>
</body>
</html>
"""


def _message_page(title: str, message: str, status: int) -> HTMLResponse:
    e = escape
    body = (f'<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="viewport" '
            f'content="width=device-width, initial-scale=1"><title>{e(title)} – PowerChart (sandbox)</title>'
            f'<style>{_CSS}</style></head><body><main><h1>{e(title)}</h1><p class="notice" role="alert">{e(message)}'
            f'</p><p><a href="/_sandbox/powerchart">Back to the schedule</a></p></main></body></html>')
    return HTMLResponse(body, status, headers=NO_STORE)


_CSS = """
*{box-sizing:border-box}
body{margin:0;font:14px/1.4 "Segoe UI",Arial,Helvetica,sans-serif;color:#1f2933;background:#f4f6f8}
.bar{display:flex;gap:.75rem;align-items:center;padding:.4rem 1rem;background:#1d3557;color:#fff}
.product{font-weight:600}.tag{font-size:11px;text-transform:uppercase;background:#e9c46a;color:#1f2933;
padding:0 .4rem;border-radius:3px}.tenant{margin-left:auto;font-size:11px;opacity:.75;overflow:hidden;
text-overflow:ellipsis;white-space:nowrap}
main{padding:.75rem 1rem;max-width:1200px}
h1{font-size:18px;margin:.25rem 0}.day{margin:0 0 .5rem;color:#52606d}
.switcher{margin:.5rem 0}.switcher select,.switcher button{font:inherit;padding:.15rem .3rem}
.notice{background:#fff4e5;border:1px solid #e9a23b;padding:.5rem .75rem;border-radius:4px}
.app{color:#52606d;font-size:12px}.app code{word-break:break-all}
table{border-collapse:collapse;width:100%;background:#fff;border:1px solid #d9e2ec}
caption{text-align:left;font-weight:600;padding:.4rem 0}
th,td{padding:.4rem .5rem;border-bottom:1px solid #e4e7eb;text-align:left;vertical-align:middle}
th{background:#eef2f6;font-size:12px;color:#334e68}
tr.video td:first-child{box-shadow:inset 3px 0 0 #5b5fc7}
.status{font-size:12px;padding:0 .35rem;border-radius:3px;background:#e4e7eb}
.status-booked{background:#d9f2e6}.status-cancelled{background:#fde2e1;text-decoration:line-through}
.status-fulfilled{background:#e4e7eb}
.launch{display:inline;margin:0}
.teams-launch{font:inherit;font-weight:600;color:#fff;background:#5b5fc7;border:0;border-radius:4px;
padding:.3rem .9rem;cursor:pointer;min-height:32px}
.teams-launch:hover{background:#4f52b2}.teams-launch:focus-visible{outline:3px solid #1d3557;outline-offset:2px}
.provider-link{font-size:12px}.muted{color:#9aa5b1}
@media (max-width:720px){
 main{padding:.5rem}
 table,thead,tbody,tr,td,caption{display:block;width:100%}
 thead tr{position:absolute;left:-9999px}
 tr{border-bottom:1px solid #d9e2ec;padding:.35rem 0}
 td{border:0;padding:.1rem .5rem;display:flex;gap:.5rem}
 caption{padding:.4rem .5rem}
 td::before{content:attr(data-label);flex:0 0 6.5rem;font-size:12px;color:#52606d}
 tr.video td:first-child{box-shadow:none}
 tr.video{box-shadow:inset 3px 0 0 #5b5fc7}
}
"""
