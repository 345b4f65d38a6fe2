"""The patient's page behind ``/api/j/{token}``: readable on a phone, in their language."""

from __future__ import annotations

from datetime import datetime
from html import escape
from zoneinfo import ZoneInfo

from connector.domain import patient_messages
from typing import TYPE_CHECKING

from connector.pages.layout import Page, message_page, render

if TYPE_CHECKING:
    from connector.services.patient_links import Landing


def join_page(landing: Landing, language: str, now: datetime) -> Page:
    words = patient_messages.PAGE[language]
    visit = landing.visit
    assert visit is not None
    zone = ZoneInfo(landing.timezone)
    start = visit.appointment_start.astimezone(zone)
    time = patient_messages.clock_time(start, language)
    when = (words["when"].format(time=time) if start.date() == now.astimezone(zone).date()
            else words["on"].format(date=patient_messages.day_text(start.date(), language), time=time))
    body = f"""
<section class="card">
  <h1>{escape(words["title"])}</h1>
  <p>{escape(words["with"].format(clinic=landing.clinic))}</p>
  <p class="status">{escape(when)}</p>
  <div class="actions"><a class="button big" id="join" href="{escape(visit.join_web_url)}" rel="noopener noreferrer">{escape(words["join"])}</a></div>
  <p class="note">{escape(words["hint"])}</p>
</section>"""
    return render(words["title"], body, lang=language)


def unknown_page(language: str) -> Page:
    words = patient_messages.PAGE[language]
    return message_page(words["unknown_title"], words["unknown"], lang=language)


def expired_page(landing: Landing, language: str) -> Page:
    words = patient_messages.PAGE[language]
    return message_page(words["expired_title"], words["expired"].format(clinic=landing.clinic), lang=language)
