"""What a browser sees: the meeting page behind ``joinWebUrl`` and the organizer's view.

Plain, accessible HTML that reads at 360 px: landmarks, one heading per page, labelled inputs,
real buttons in forms (so it works without JavaScript, and Playwright's ``get_by_role`` finds
everything), a ``role="status"`` live region for what changes. A small script polls the
sandbox's JSON status routes so the page follows the call without reloads; without script,
the lobby page refreshes itself.

- The meeting page (GET ``joinWebUrl``): the subject, "Enter your name" and "Join now". Joining
  puts the guest in the lobby ("Someone in the meeting will let you in soon"); when admitted,
  "You're in the meeting"; when the organizer ends the call, "The meeting has ended". The
  participant id is kept in an http-only cookie per meeting and in the page.
- The organizer view (``/_sandbox/meetings/{key}/organizer``): "Join as organizer", the people
  waiting in the lobby each with an "Admit" button, the people in the meeting, "End meeting".
"""

from __future__ import annotations

import json
from html import escape

from starlette.responses import HTMLResponse

from .meetings import IN_MEETING, LOBBY, ORGANIZER, Meeting, Participant

STATUS_TEXT = {
    LOBBY: "Someone in the meeting will let you in soon",
    IN_MEETING: "You're in the meeting",
    "left": "You left the meeting",
    "ended": "The meeting has ended",
}

_STYLE = """
*{box-sizing:border-box}
body{font-family:system-ui,sans-serif;margin:0;background:#f5f5f5;color:#242424;line-height:1.4}
main{max-width:32rem;margin:0 auto;padding:1.25rem;background:#fff;min-height:100vh}
@media (min-width:40rem){main{margin:2rem auto;min-height:0;border-radius:6px;box-shadow:0 2px 6px rgba(0,0,0,.2)}}
h1{font-size:1.4rem;margin:0 0 1rem;overflow-wrap:anywhere}h2{font-size:1.1rem;margin:1.5rem 0 .5rem}
label{display:block;font-weight:600;margin-bottom:.25rem}
input[type=text]{width:100%;padding:.6rem;font:inherit;border:1px solid #616161;border-radius:4px}
button{font:inherit;padding:.6rem 1.1rem;border-radius:4px;border:1px solid #5b5fc7;background:#5b5fc7;color:#fff;
cursor:pointer;margin-top:.75rem}
button.secondary{background:#fff;color:#242424;border-color:#616161}
button:focus-visible,input:focus-visible{outline:3px solid #242424;outline-offset:2px}
ul{list-style:none;padding:0;margin:0}li{display:flex;flex-wrap:wrap;align-items:center;justify-content:space-between;
gap:.5rem;padding:.5rem 0;border-bottom:1px solid #e0e0e0}li button{margin-top:0}
.status{font-size:1.15rem;font-weight:600;padding:1rem;background:#ebebf5;border-radius:4px}
.note{font-size:.875rem;color:#616161}.empty{color:#616161}
"""


def _page(title: str, body: str, *, status: int = 200, refresh: bool = False) -> HTMLResponse:
    fallback = '<noscript><meta http-equiv="refresh" content="3"></noscript>' if refresh else ""
    html = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{escape(title)}</title>{fallback}<style>{_STYLE}</style></head>"
        f"<body><main>{body}</main></body></html>"
    )
    return HTMLResponse(html, status, headers={"Cache-Control": "no-store"})


def _subject(meeting: Meeting) -> str:
    return meeting.subject or "Microsoft Teams meeting"


def not_found_page() -> HTMLResponse:
    return _page("Meeting not found", "<h1>We couldn't find this meeting</h1>"
                 "<p>Check the link you were sent, or ask the person who invited you for a new one.</p>", status=404)


def join_page(meeting: Meeting, *, error: str | None = None) -> HTMLResponse:
    alert = f'<p role="alert" class="status">{escape(error)}</p>' if error else ""
    body = (
        f"<h1>{escape(_subject(meeting))}</h1>{alert}"
        f'<form method="post" action="/_sandbox/meetings/{escape(meeting.key)}/guests">'
        '<label for="name">Enter your name</label>'
        '<input id="name" name="displayName" type="text" autocomplete="name" required maxlength="100">'
        '<button type="submit">Join now</button></form>'
        '<p class="note">Sandbox Teams meeting for local development. '
        f'<a href="/_sandbox/meetings/{escape(meeting.key)}/organizer">Organizer view</a></p>'
    )
    return _page(_subject(meeting), body, status=400 if error else 200)


def guest_page(meeting: Meeting, participant: Participant) -> HTMLResponse:
    waiting = participant.state in (LOBBY, IN_MEETING)
    leave = (f'<form id="leave" method="post" action="/_sandbox/meetings/{escape(meeting.key)}/participants/'
             f'{escape(participant.id)}/leave"><button type="submit" class="secondary">Leave</button></form>'
             if waiting else "")
    status_url = f"/_sandbox/meetings/{meeting.key}/participants/{participant.id}"
    script = (
        "<script>(function(){var url=" + json.dumps(status_url) + ";var text=" + json.dumps(STATUS_TEXT) + ";"
        "var el=document.getElementById('status');function poll(){fetch(url,{cache:'no-store'})"
        ".then(function(r){return r.ok?r.json():null}).then(function(p){if(!p)return;"
        "if(text[p.state]&&el.textContent!==text[p.state]){el.textContent=text[p.state]}"
        "if(p.state==='left'||p.state==='ended'){var f=document.getElementById('leave');if(f)f.remove();return}"
        "setTimeout(poll,1000)}).catch(function(){setTimeout(poll,2000)})}setTimeout(poll,1000)})();</script>"
        if waiting else ""
    )
    body = (
        f"<h1>{escape(_subject(meeting))}</h1>"
        f'<p id="status" class="status" role="status" aria-live="polite">{escape(STATUS_TEXT[participant.state])}</p>'
        f"{leave}{script}"
    )
    return _page(_subject(meeting), body, refresh=participant.state == LOBBY)


def _people(meeting: Meeting, state: str) -> list[Participant]:
    return [p for p in meeting.participants.values() if p.state == state]


def organizer_page(meeting: Meeting) -> HTMLResponse:
    key = escape(meeting.key)
    organizer_in = any(p.role == ORGANIZER and p.state == IN_MEETING for p in meeting.participants.values())
    join = ("" if organizer_in and meeting.call_active else
            f'<form method="post" action="/_sandbox/meetings/{key}/organizer/join">'
            '<button type="submit">Join as organizer</button></form>')
    lobby_items = "".join(
        f"<li><span>{escape(p.display_name)}</span>"
        f'<form method="post" action="/_sandbox/meetings/{key}/participants/{escape(p.id)}/admit">'
        f'<button type="submit" aria-label="Admit {escape(p.display_name)}">Admit</button></form></li>'
        for p in _people(meeting, LOBBY)
    ) or '<li class="empty">Nobody is waiting.</li>'
    present_items = "".join(
        f"<li><span>{escape(p.display_name)}{' (organizer)' if p.role == ORGANIZER else ''}</span></li>"
        for p in _people(meeting, IN_MEETING)
    ) or '<li class="empty">Nobody is in the meeting.</li>'
    end = (f'<form method="post" action="/_sandbox/meetings/{key}/end">'
           '<button type="submit" class="secondary">End meeting</button></form>' if meeting.call_active else "")
    state = "The meeting is on" if meeting.call_active else "The meeting has not started or has ended"
    script = (
        "<script>(function(){var url=" + json.dumps(f"/_sandbox/meetings/{meeting.key}") + ";var last=null;"
        "function sig(m){return JSON.stringify([m.callActive,m.participants.map(function(p){return p.id+p.state})])}"
        "function poll(){fetch(url,{cache:'no-store'}).then(function(r){return r.ok?r.json():null}).then(function(m){"
        "if(m){var s=sig(m);if(last!==null&&s!==last){location.reload();return}last=s}setTimeout(poll,1500)})"
        ".catch(function(){setTimeout(poll,3000)})}poll()})();</script>"
    )
    body = (
        f"<h1>{escape(_subject(meeting))}</h1>"
        f'<p class="note">Organizer view (sandbox)</p><p role="status" class="status">{state}</p>{join}'
        f'<section aria-labelledby="lobby-h"><h2 id="lobby-h">Waiting in the lobby</h2><ul>{lobby_items}</ul></section>'
        f'<section aria-labelledby="in-h"><h2 id="in-h">In the meeting</h2><ul>{present_items}</ul></section>'
        f"{end}{script}"
    )
    return _page(f"Organizer: {_subject(meeting)}", body)
