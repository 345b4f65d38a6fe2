"""The clinician's visit page (inside PowerChart's window) and the appointment picker."""

from __future__ import annotations

import json
from html import escape

from typing import TYPE_CHECKING

from connector.pages.layout import Page, render

if TYPE_CHECKING:
    from connector.services.provider_visit import ProviderPage

PRESENCE = {
    "invited": "Not in the meeting yet",
    "lobby": "Waiting in the lobby",
    "in_visit": "In the visit",
    "left": "Left the visit",
}

_SCRIPT = """
(function () {
  var base = %(base)s, labels = %(labels)s;
  var status = document.getElementById("patient-status"), sent = document.getElementById("link-status");
  var send = document.getElementById("send-link");
  function time(iso) { return iso ? new Date(iso).toLocaleTimeString([], {hour: "numeric", minute: "2-digit"}) : ""; }
  function show(s) {
    var text = labels[s.patient] || s.patient;
    if (s.patient === "lobby" && s.lobby_since) { text += " since " + time(s.lobby_since); }
    if (s.ended_at) { text += " \\u2014 the visit has ended"; }
    status.textContent = text;
    status.setAttribute("data-state", s.patient);
    if (s.link_sent_at && !sent.dataset.fresh) { sent.textContent = "Link sent at " + time(s.link_sent_at) + "."; }
  }
  function poll() {
    fetch(base + "/status", {credentials: "same-origin", headers: {"Accept": "application/json"}})
      .then(function (r) { return r.ok ? r.json() : Promise.reject(r.status); })
      .then(show)
      .catch(function (code) {
        if (code === 401) { status.textContent = "This page's session has ended. Launch the visit again."; clearInterval(timer); }
      });
  }
  var timer = setInterval(poll, 2000);
  poll();
  if (send) {
    send.addEventListener("click", function () {
      send.disabled = true;
      sent.textContent = "Sending\\u2026";
      fetch(base + "/send-link", {method: "POST", credentials: "same-origin",
                                  headers: {"Accept": "application/json", "X-Requested-With": "fetch"}})
        .then(function (r) { return r.json().then(function (body) { return {ok: r.ok, body: body}; }); })
        .then(function (answer) {
          sent.dataset.fresh = "1";
          sent.textContent = answer.ok
            ? "Link sent to the mobile number ending " + answer.body.to_last_digits + " at " + time(answer.body.sent_at) + "."
            : (answer.body.message || "The link could not be sent.");
          sent.className = answer.ok ? "note" : "note error";
        })
        .catch(function () { sent.textContent = "The link could not be sent. Try again."; sent.className = "note error"; })
        .then(function () { send.disabled = false; });
    });
  }
})();
"""


def visit_page(view: ProviderPage, *, base_path: str) -> Page:
    when = ""
    if view.start and view.end:
        when = f"{view.start:%H:%M}–{view.end:%H:%M} ({escape(view.timezone)})"
    details = "".join(
        f"<dt>{label}</dt><dd>{escape(value)}</dd>" for label, value in (
            ("Patient", view.patient_name), ("Born", view.birth_date), ("Time", when),
            ("Reason", view.description), ("Status", view.status)) if value)
    if view.sms_ready:
        sms = ('<button type="button" class="secondary" id="send-link">Send link by SMS</button>')
        sms_note = '<p class="note" id="link-status" aria-live="polite"></p>'
    else:
        sms = ""
        sms_note = f'<p class="note" id="link-status" aria-live="polite">{escape(view.sms_unavailable_reason)}</p>'
    if view.details_need_relaunch:
        details = f"<dt>Time</dt><dd>{escape(when)}</dd>"
    live = "" if view.live_status else (
        '<p class="note">Live status is not available for this visit yet; it starts with the next launch.</p>')
    body = f"""
<section class="card">
  <h1>Video visit</h1>
  <p class="note">{escape(view.clinic)}</p>
  <dl>{details}</dl>
  <div class="actions">
    <a class="button" id="join" href="{escape(view.join_url)}" target="_blank" rel="noopener noreferrer">Join the visit</a>
    {sms}
  </div>
  {sms_note}
</section>
<section class="card" aria-labelledby="live-title">
  <h2 id="live-title">Patient</h2>
  <p class="status" id="patient-status" data-state="invited" aria-live="polite">{PRESENCE["invited"]}</p>
  {live}
</section>"""
    script = _SCRIPT % {"base": json.dumps(base_path), "labels": json.dumps(PRESENCE)}
    return render("Video visit", body, script=script)


def picker_page(view: ProviderPage, *, base_path: str) -> Page:
    rows = "".join(
        f'<li><span>{c.start:%H:%M} {escape(c.description or "Appointment")}'
        f'{" · video visit" if c.is_video else ""}</span>'
        f'<form method="post" action="{escape(base_path)}/pick">'
        f'<input type="hidden" name="appointment" value="{escape(c.appointment_id)}">'
        f'<button type="submit" data-appointment="{escape(c.appointment_id)}">Start this visit</button></form></li>'
        for c in view.candidates)
    body = (f'<section class="card"><h1>Which appointment?</h1>'
            f'<p>This patient has several appointments today ({escape(view.timezone)}). Pick the one to hold '
            f'the video visit for.</p><ul class="picks">{rows}</ul></section>')
    return render("Pick the appointment", body)
