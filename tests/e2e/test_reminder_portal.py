"""The portal's confirmations and reminders step, in headless Chromium, against one local stamp.

The same stamp as tests/e2e/test_admin_portal.py (its fixtures and journey steps are reused): the
admin signs in, adds the Cerner simulator's FHIR base URL, then opens the reminders step, switches
messages on, changes the reminder times, saves (PUT with If-Match), finds the saved state after a
reload, previews every message in every language, sees a bad reminder time refused next to its
field, is told when someone else changed the settings meanwhile (409), and can do it all at 360 px.
Screenshots under test-artifacts/<test name>/.
"""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from connector.composition import container
from connector.domain.reminders import ReminderPolicy
from dev.sandbox.entra import CONTOSO_TID
from tests.e2e.test_admin_portal import (  # noqa: F401 - fixtures, used by name
    CLINIC, TIMEOUT, add_simulator_endpoint, built_portal, go_to_step, portal_sandbox, sign_in_and_pick_region, stack,
)

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
STEP = "Confirmations and reminders"


def reminders_form(page: Page):
    return page.get_by_role("form", name=f"Reminders for {CLINIC}")


def reminder(form, number: int):
    return form.get_by_role("group", name=f"Reminder {number}", exact=True)


def set_reminder(form, number: int, hours: int, minutes: int) -> None:
    row = reminder(form, number)
    row.get_by_label("Hours").fill(str(hours))
    row.get_by_label("Minutes").fill(str(minutes))


def no_horizontal_scroll(page: Page, width: int, label: str) -> None:
    scroll = page.evaluate("document.documentElement.scrollWidth")
    assert scroll <= width, f"{label}: the page is {scroll}px wide"


def test_admin_edits_reminders_and_previews_every_message(stack, page, screenshot):
    sign_in_and_pick_region(page, stack)
    add_simulator_endpoint(page, stack)
    go_to_step(page, STEP)
    nav = page.get_by_role("navigation", name="Setup steps")
    expect(nav.get_by_role("button", name=STEP)).to_have_attribute("aria-current", "step")

    form = reminders_form(page)
    expect(form).to_be_visible(timeout=TIMEOUT)
    switch = form.get_by_role("switch", name="Send SMS confirmations and reminders for this URL")
    expect(switch).not_to_be_checked()  # a new endpoint's messages are off
    # What is still missing before messages go out is listed (no consents, no number yet).
    readiness = form.get_by_role("region", name="Before messages go out")
    expect(readiness).to_contain_text("Give both SMS consents")
    expect(readiness).to_contain_text("Link a phone number")
    # The defaults: a day and an hour before the visit.
    expect(reminder(form, 1).get_by_label("Hours")).to_have_value("24")
    expect(reminder(form, 2).get_by_label("Hours")).to_have_value("1")
    screenshot("01-reminders-step")

    # Switch on by keyboard; change the times; add a third; pick Spanish and a virtual code.
    switch.focus()
    page.keyboard.press("Space")
    expect(switch).to_be_checked()
    set_reminder(form, 1, 48, 0)
    set_reminder(form, 2, 2, 30)
    form.get_by_role("button", name="Add a reminder time").click()
    expect(reminder(form, 3).get_by_label("Hours")).to_be_focused()
    set_reminder(form, 3, 0, 15)
    form.get_by_label("Default language").select_option("es")
    form.get_by_label("Appointment type codes").fill("VIDEO, TELE")
    form.get_by_role("group", name="Quiet hours").get_by_label("From").fill("22:00")
    form.get_by_role("button", name="Save", exact=True).click()
    status = page.get_by_role("status").filter(has_text="Saved.")
    expect(status).to_contain_text(f"Messages are on for {CLINIC}", timeout=TIMEOUT)
    expect(status).to_contain_text("48 hours and 2 hours 30 minutes and 15 minutes before the visit")
    screenshot("02-saved")

    # What the API keeps is what was saved.
    stored = container().endpoints.list_endpoints(CONTOSO_TID)[0].item.reminder_policy
    assert stored.enabled and stored.reminder_offsets_minutes == (2880, 150, 15)
    assert stored.default_language == "es" and stored.virtual_visit.appointment_type_codes == ("VIDEO", "TELE")
    assert stored.quiet_hours_start.hour == 22

    # After a reload the portal comes back to this step with the saved state.
    page.reload()
    form = reminders_form(page)
    expect(form).to_be_visible(timeout=TIMEOUT)
    expect(form.get_by_role("switch")).to_be_checked()
    expect(reminder(form, 1).get_by_label("Hours")).to_have_value("48")
    expect(reminder(form, 2).get_by_label("Hours")).to_have_value("2")
    expect(reminder(form, 2).get_by_label("Minutes")).to_have_value("30")
    expect(reminder(form, 3).get_by_label("Minutes")).to_have_value("15")
    expect(form.get_by_label("Default language")).to_have_value("es")
    expect(form.get_by_label("Appointment type codes")).to_have_value("VIDEO, TELE")
    expect(form.get_by_role("group", name="Quiet hours").get_by_label("From")).to_have_value("22:00")
    screenshot("03-after-reload")

    # The preview: every message (4 kinds) in every language (4), each with its segment count.
    form.get_by_role("button", name="Preview messages").click()
    preview = form.get_by_role("region", name="Preview", exact=True)
    expect(preview).to_be_visible(timeout=TIMEOUT)
    messages = preview.locator("li.preview-message")
    expect(messages).to_have_count(16)
    expect(page.get_by_role("status").filter(has_text="Preview: 16 messages")).to_be_visible()
    for kind in ("Confirmation", "Update (new time)", "Cancellation", "Reminder"):
        expect(preview.get_by_role("list", name=f"{kind} in every language").get_by_role("listitem")).to_have_count(4)
    assert all(re.search(r"[12] SMS segments?", text) for text in messages.locator(".preview-meta").all_inner_texts())
    expect(preview.locator('p.sms[lang="es"]').first).to_contain_text(CLINIC)
    expect(preview.locator('p.sms[lang="de"]')).to_have_count(4)
    screenshot("04-preview")

    # A reminder time the API refuses: the error is next to the reminder times, focus on them.
    set_reminder(form, 3, 0, 2)
    form.get_by_role("button", name="Save", exact=True).click()
    offsets = form.get_by_role("group", name="Reminder times")
    error = offsets.locator(".field-error")
    expect(error).to_be_visible(timeout=TIMEOUT)
    expect(error).to_contain_text("between 5 minutes and 14 days")
    hours = reminder(form, 1).get_by_label("Hours")
    expect(hours).to_have_attribute("aria-invalid", "true")
    expect(hours).to_be_focused()
    assert error.get_attribute("id") in (offsets.get_attribute("aria-describedby") or "").split()
    expect(page.get_by_role("status").filter(has_text="Not saved")).to_be_visible()
    page.wait_for_timeout(300)
    screenshot("05-bad-offset")
    # The bad reminder time is removed again (focus goes to the one before it).
    form.get_by_role("button", name="Remove reminder 3").click()
    expect(reminder(form, 3)).to_have_count(0)
    expect(reminder(form, 2).get_by_label("Hours")).to_be_focused()

    # Someone else changes the policy meanwhile: saving says so (409) and offers to reload.
    deps = container()
    endpoint = deps.endpoints.list_endpoints(CONTOSO_TID)[0]
    changed = ReminderPolicy(**{**endpoint.item.reminder_policy.model_dump(), "look_ahead_days": 3})
    deps.reminder_admin.set_policy(CONTOSO_TID, endpoint.item.endpoint_id, changed, endpoint.etag)
    form.get_by_role("button", name="Save", exact=True).click()
    expect(page.get_by_role("status").filter(has_text="Someone changed this URL's settings meanwhile")).to_be_visible(
        timeout=TIMEOUT)
    reload_button = form.get_by_role("button", name="Reload the saved settings")
    expect(reload_button).to_be_focused()
    screenshot("06-changed-meanwhile")
    reload_button.click()
    form = reminders_form(page)
    expect(form.get_by_label("Look ahead (days)")).to_have_value("3", timeout=TIMEOUT)
    expect(form.get_by_role("heading", name=f"Reminders for {CLINIC}")).to_be_focused()
    expect(page.get_by_role("status").filter(has_text="Showing the saved settings")).to_be_visible()
    expect(reminder(form, 3).get_by_label("Minutes")).to_have_value("15")  # the saved state, not the edit

    # At 360 px: nothing scrolls sideways, with the preview open too.
    page.set_viewport_size({"width": 360, "height": 740})
    no_horizontal_scroll(page, 360, "reminders step")
    form.get_by_role("button", name="Preview messages").click()
    expect(form.get_by_role("region", name="Preview", exact=True).locator("li.preview-message")).to_have_count(
        16, timeout=TIMEOUT)
    page.wait_for_timeout(300)
    no_horizontal_scroll(page, 360, "reminders preview")
    screenshot("07-360px")
    # And what a phone shows around the reminder times (the viewport, not the whole page).
    reminder(form, 1).scroll_into_view_if_needed()
    page.screenshot(path=str(screenshot("07-360px").with_name("08-360px-reminder-times.png")))
