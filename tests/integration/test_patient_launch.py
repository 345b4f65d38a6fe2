"""The patient portal's SMART launch lands on the same visit page as the SMS link, in the same meeting."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.browser_like import BrowserLike

pytestmark = pytest.mark.integration
APPOINTMENT = "4826007"  # a booked video visit today (KOWALSKI, ANNA)


def test_patient_launch_lands_on_the_join_page_of_the_visit(visit_stack):
    sim = visit_stack.sandbox.cerner
    launch = sim.mint_launch(appointment=APPOINTMENT)
    with httpx.Client(follow_redirects=False, timeout=15) as client:
        browser = BrowserLike(client)
        page = browser.follow(f"{visit_stack.host_url}/api/launch/patient?iss={sim.urls.fhir_base}&launch={launch}")
        assert page.status_code == 200, page.text
        assert str(page.url).startswith(f"{visit_stack.host_url}/api/j/")
        assert "Your video visit" in page.text and "Join the video visit" in page.text
        visit = visit_stack.deps.visit_rows.get_visit(
            "e5076923-6a11-40df-b594-eb890ad6bea0", "demo-clinic", APPOINTMENT).item
        assert f'href="{visit.join_web_url.replace("&", "&amp;")}"' in page.text

        # The clinician launching the same appointment afterwards lands in the same meeting.
        provider = browser.follow(visit_stack.launch_url(APPOINTMENT))
        assert provider.status_code == 200 and "Video visit" in provider.text
        assert visit.join_web_url.replace("&", "&amp;") in provider.text
    same = [m for m in visit_stack.meetings() if m.get("joinWebUrl") == visit.join_web_url]
    assert len(same) == 1


def test_a_patient_launch_for_another_patients_encounter_is_refused(visit_stack):
    sim = visit_stack.sandbox.cerner
    # A launch whose context names one patient but an encounter booked for another.
    encounter = sim.encounter_for("4826005")
    launch = sim.mint_launch(patient="12744001", encounter=encounter)
    with httpx.Client(follow_redirects=False, timeout=15) as client:
        browser = BrowserLike(client)
        page = browser.follow(f"{visit_stack.host_url}/api/launch/patient?iss={sim.urls.fhir_base}&launch={launch}")
    assert page.status_code == 400
    assert "not yours" in page.text
    assert visit_stack.deps.visit_rows.get_visit("e5076923-6a11-40df-b594-eb890ad6bea0", "demo-clinic",
                                                 "4826005") is None
