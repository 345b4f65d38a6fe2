"""The clinical core end to end, in headless Chromium, as a clinic would live it.

Sandbox PowerChart -> Teams button (SMART EHR launch) -> the provider page shows the visit and
a join link -> Send link -> the ACS outbox holds one SMS with a /api/j/ link -> the patient opens
it on a phone-sized browser and reaches the meeting page -> waits in the lobby, and the provider
page says so within 5 seconds -> the organizer admits them -> the provider page says so.

Then, with the whole flow behind us: every table entity and every log line captured during it
holds no patient name, phone number, access token or id_token. Screenshots of each step are
written under test-artifacts/<test name>/.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest
from playwright.sync_api import expect

from dev.sandbox.cerner.seed import _PATIENTS, _PRACTITIONERS

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
TIMEOUT = 15_000  # ms
LIVE_STATUS_DEADLINE = 5_000  # ms: the promise for the lobby showing on the provider page
APPOINTMENT = "4826005"  # a booked video visit today with an Encounter (PATEL, ASHA)
JWT = re.compile(r"eyJ[A-Za-z0-9_-]{8,}\.eyJ[A-Za-z0-9_-]{8,}\.[A-Za-z0-9_-]+")


def shot(page, test_name: str, name: str) -> None:
    folder = ARTIFACTS / test_name
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def test_powerchart_to_admitted_patient(visit_stack, browser, captured_logs, request):
    name = request.node.name
    outbox_before = len(visit_stack.outbox())
    clinician = browser.new_context(viewport={"width": 1024, "height": 768})  # PowerChart's window
    provider = clinician.new_page()

    # PowerChart: the clinic's day, with a Teams button on the booked video visits.
    provider.goto(visit_stack.powerchart_url)
    teams = provider.locator(f'button.teams-launch[data-appointment="{APPOINTMENT}"]')
    expect(teams).to_be_visible(timeout=TIMEOUT)
    shot(provider, name, "01-powerchart")
    teams.click()

    # The SMART launch ran in the same window and ended on the provider's visit page.
    expect(provider.get_by_role("heading", name="Video visit")).to_be_visible(timeout=TIMEOUT)
    assert provider.url.startswith(f"{visit_stack.host_url}/api/visit/")
    expect(provider.locator("dl")).to_contain_text("PATEL, ASHA")
    join = provider.locator("#join")
    join_url = join.get_attribute("href")
    assert join_url.startswith(f"{visit_stack.graph_url}/l/meetup-join/")
    expect(provider.locator("#patient-status")).to_have_attribute("data-state", "invited")
    shot(provider, name, "02-provider-page")

    # Send link: exactly one SMS, from the clinic's number to the patient's mobile, with a /api/j/ link.
    provider.get_by_role("button", name="Send link by SMS").click()
    expect(provider.locator("#link-status")).to_contain_text("ending 0105", timeout=TIMEOUT)
    sent = visit_stack.outbox()[outbox_before:]
    assert len(sent) == 1, sent
    assert sent[0]["from"] == "+18335550142" and sent[0]["to"] == "+13125550105"
    link = re.search(rf"{re.escape(visit_stack.host_url)}/api/j/[A-Za-z0-9_-]+\S*", sent[0]["message"]).group(0)
    assert len(link) < 255
    shot(provider, name, "03-link-sent")

    # The patient, on a phone: the join page, then the meeting page, then the lobby.
    patient = browser.new_context(viewport={"width": 390, "height": 844}).new_page()
    patient.goto(link)
    expect(patient.get_by_role("heading", name="Your video visit")).to_be_visible(timeout=TIMEOUT)
    expect(patient.get_by_text("No app or account needed", exact=False)).to_be_visible()
    shot(patient, name, "04-patient-join-page")
    patient.get_by_role("link", name="Join the video visit").click()
    expect(patient.get_by_role("button", name="Join now")).to_be_visible(timeout=TIMEOUT)
    assert patient.url == join_url
    patient.get_by_label("Enter your name").fill("Asha")
    shot(patient, name, "05-meeting-page")
    patient.get_by_role("button", name="Join now").click()
    expect(patient.get_by_text("Someone in the meeting will let you in soon")).to_be_visible(timeout=TIMEOUT)
    waiting_since = time.monotonic()
    shot(patient, name, "06-patient-in-lobby")

    # The provider page shows the patient waiting, without a reload, within 5 seconds.
    expect(provider.locator("#patient-status")).to_have_attribute("data-state", "lobby",
                                                                 timeout=LIVE_STATUS_DEADLINE)
    lobby_seconds = time.monotonic() - waiting_since
    expect(provider.locator("#patient-status")).to_contain_text("Waiting in the lobby")
    shot(provider, name, "07-provider-sees-lobby")

    # The clinician joins (the organizer's view of the sandbox meeting) and admits the patient.
    with clinician.expect_page() as opened:
        join.click()
    meeting = opened.value
    meeting.get_by_role("link", name="Organizer view").click()
    meeting.get_by_role("button", name="Join as organizer").click()
    meeting.get_by_role("button", name="Admit Asha").click()
    shot(meeting, name, "08-organizer-admits")
    expect(patient.get_by_text("You're in the meeting", exact=False)).to_be_visible(timeout=TIMEOUT)
    expect(provider.locator("#patient-status")).to_have_attribute("data-state", "in_visit",
                                                                 timeout=LIVE_STATUS_DEADLINE)
    expect(provider.locator("#patient-status")).to_have_text("In the visit")
    shot(provider, name, "09-provider-sees-admitted")
    print(f"lobby shown on the provider page {lobby_seconds:.2f} s after the patient entered it")

    # What the reports will read: launch, lobby, admitted (with the wait), started; no PHI.
    month = visit_stack.deps.clock.now()
    events = visit_stack.deps.usage_events.month("e5076923-6a11-40df-b594-eb890ad6bea0", month.year, month.month)
    kinds = sorted(event.kind.value for event in events)
    assert kinds == ["launch", "lobby", "lobby_wait", "sms_sent", "visit_started"], kinds

    assert_no_phi_at_rest_or_in_logs(visit_stack, captured_logs.lines)


def assert_no_phi_at_rest_or_in_logs(visit_stack, log_lines: list[str]) -> None:
    """Every entity of every table of the stamp, and every captured log line."""
    tables = visit_stack.deps.tables
    rows = []
    for table in tables.all():
        rows += [json.dumps(entity, default=str) for entity in table._client.list_entities()]
    assert any('"meeting_id"' in row for row in rows), "the flow should have stored a visit"
    assert any(line.startswith("connector.visits") for line in log_lines), "the connector's logs were captured"
    haystacks = {"table rows": rows, "log lines": log_lines}
    names = [word for p in _PATIENTS for word in (p[1], p[2])] + [p[1] for p in _PRACTITIONERS]
    phones = [digits for p in _PATIENTS for digits in (p[5], p[6]) if digits]
    tokens = [grant.value for grant in visit_stack.sandbox.cerner.grants._tokens.values()]
    assert tokens, "the flow should have issued access tokens"
    for where, texts in haystacks.items():
        blob = "\n".join(texts)
        for name_part in names:
            assert not re.search(rf"\b{name_part}\b", blob, re.IGNORECASE), f"a name in {where}"
        for digits in phones:
            assert digits not in blob and f"+1{digits}" not in blob, f"a phone number in {where}"
        for token in tokens:
            assert token not in blob, f"an access token in {where}"
        assert not JWT.search(blob), f"a JWT (id_token or access token) in {where}"
