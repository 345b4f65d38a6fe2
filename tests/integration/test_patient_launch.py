"""The patient portal's SMART launch lands on the same visit page as the SMS link, in the same meeting."""

from __future__ import annotations

import httpx
import pytest

pytestmark = pytest.mark.integration
APPOINTMENT = "4826007"  # a booked video visit today (KOWALSKI, ANNA)


def follow(client: httpx.Client, url: str) -> httpx.Response:
    """GET, following redirects like a browser. httpx keeps no Secure cookie over http, which
    browsers do for loopback (a secure context): the session cookie is carried by hand."""
    response = client.get(url)
    for _ in range(8):
        cookie = response.headers.get("set-cookie")
        if cookie:
            pair, _, attributes = cookie.partition(";")
            name, _, value = pair.partition("=")
            path = next(a.split("=", 1)[1] for a in attributes.split(";") if a.strip().startswith("Path="))
            client.cookies.set(name, value, domain="127.0.0.1", path=path)
        if response.status_code not in (302, 303):
            return response
        response = client.get(response.url.join(response.headers["location"]))
    raise AssertionError("too many redirects")


def test_patient_launch_lands_on_the_join_page_of_the_visit(visit_stack):
    sim = visit_stack.sandbox.cerner
    launch = sim.mint_launch(appointment=APPOINTMENT)
    with httpx.Client(follow_redirects=False, timeout=15) as client:
        page = follow(client, f"{visit_stack.host_url}/api/launch/patient?iss={sim.urls.fhir_base}&launch={launch}")
        assert page.status_code == 200, page.text
        assert str(page.url).startswith(f"{visit_stack.host_url}/api/j/")
        assert "Your video visit" in page.text and "Join the video visit" in page.text
        visit = visit_stack.deps.visit_rows.get_visit(
            "e5076923-6a11-40df-b594-eb890ad6bea0", "demo-clinic", APPOINTMENT).item
        assert f'href="{visit.join_web_url.replace("&", "&amp;")}"' in page.text

        # The clinician launching the same appointment afterwards lands in the same meeting.
        provider = follow(client, visit_stack.launch_url(APPOINTMENT))
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
        page = follow(client, f"{visit_stack.host_url}/api/launch/patient?iss={sim.urls.fhir_base}&launch={launch}")
    assert page.status_code == 400
    assert "not yours" in page.text
    assert visit_stack.deps.visit_rows.get_visit("e5076923-6a11-40df-b594-eb890ad6bea0", "demo-clinic",
                                                 "4826005") is None
