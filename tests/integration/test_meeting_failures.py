"""When Teams will not make the meeting, the clinician gets a page that says what to do, and
nothing half-made is left behind (no visit row, so the next launch tries again)."""

from __future__ import annotations

import httpx
import pytest

from tests.integration.browser_like import BrowserLike

from dev.sandbox.entra import CONTOSO_ORGANIZER_OID, CONTOSO_TID

pytestmark = pytest.mark.integration
APPOINTMENT = "4826008"  # a booked video visit today


def launch(client: httpx.Client, url: str) -> httpx.Response:
    """Follow the launch's redirects to the callback's answer (the page, or the 303 to it)."""
    return BrowserLike(client).follow(url, stop_at=(303,))


def no_visit(visit_stack) -> bool:
    return visit_stack.deps.visit_rows.get_visit(CONTOSO_TID, "demo-clinic", APPOINTMENT) is None


def test_no_access_policy_tells_the_admin_what_to_grant(visit_stack):
    policies = f"{visit_stack.graph_url}/_sandbox/access-policies"
    httpx.post(f"{policies}/revoke", json={"tenant": CONTOSO_TID, "user": CONTOSO_ORGANIZER_OID}).raise_for_status()
    try:
        with httpx.Client(timeout=15) as client:
            page = launch(client, visit_stack.launch_url(APPOINTMENT))
    finally:
        httpx.post(f"{policies}/grant", json={"tenant": CONTOSO_TID, "user": CONTOSO_ORGANIZER_OID}).raise_for_status()
    assert page.status_code == 502
    assert page.headers["content-type"].startswith("text/html")
    assert "Grant-CsApplicationAccessPolicy" in page.text and "Traceback" not in page.text
    assert no_visit(visit_stack)

    with httpx.Client(timeout=15) as client:  # granted again: the next launch works
        assert launch(client, visit_stack.launch_url(APPOINTMENT)).status_code == 303
    assert not no_visit(visit_stack)


@pytest.mark.parametrize("status, retry_after", [(429, 7), (503, None)])
def test_graph_throttling_and_outages_ask_to_try_again(visit_stack, status, retry_after):
    fault = {"status": status, "count": 1, "path_prefix": "/v1.0/users/",
             **({"retry_after": retry_after} if retry_after else {})}
    httpx.post(f"{visit_stack.graph_url}/_sandbox/faults", json=fault).raise_for_status()
    try:
        with httpx.Client(timeout=15) as client:
            page = launch(client, visit_stack.launch_url(APPOINTMENT))
    finally:
        httpx.delete(f"{visit_stack.graph_url}/_sandbox/faults")
    assert page.status_code == 503
    assert "try again" in page.text.lower()
    assert page.headers.get("retry-after") == (str(retry_after) if retry_after else None)
    assert no_visit(visit_stack)
