"""The portal's landing page, served by the local host, shows the stamp's health in a real browser."""

from __future__ import annotations

from pathlib import Path

import pytest

from connector.composition import container
from connector.settings import get_settings
from dev.host import LocalFunctionsHost

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def host(storage_env):
    get_settings.cache_clear()
    container.cache_clear()
    with LocalFunctionsHost(ROOT, port=0) as host:
        yield host
    get_settings.cache_clear()
    container.cache_clear()


def test_landing_page_reports_a_healthy_stamp(host, page, screenshot):
    page.goto(f"{host.url}/")
    status = page.get_by_role("status")
    status.filter(has_text="healthy").wait_for(timeout=10_000)
    assert page.locator("#stamp-region").inner_text() == "us"
    assert page.locator("#check-tables").inner_text() == "reachable"
    assert page.locator("#check-queues").inner_text() == "reachable"
    screenshot("landing")


def test_landing_page_is_usable_at_360px(host, page, screenshot):
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{host.url}/")
    page.get_by_role("status").filter(has_text="healthy").wait_for(timeout=10_000)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 360  # no horizontal scrolling on a phone
    screenshot("landing-360")
