"""The portal's first screen, served by the local host, in a real browser: the stamp's health and
the sign-in (or, when the stamp has no admin sign-in configured, a plain explanation)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest
from playwright.sync_api import expect

from connector.composition import container
from connector.settings import get_settings
from dev.host import LocalFunctionsHost
from dev.sandbox import entra

pytestmark = [pytest.mark.e2e, pytest.mark.integration]
ROOT = Path(__file__).resolve().parents[2]
BUNDLE = ROOT / "portal" / "dist" / "portal.js"


@pytest.fixture(scope="module", autouse=True)
def built_portal():
    """`make test` builds the portal first; a bare pytest run builds it when it is missing."""
    if not BUNDLE.exists():
        subprocess.run(["npm", "run", "--silent", "build:portal"], cwd=ROOT, check=True)


def _host(monkeypatch, settings: dict[str, str]):
    for key, value in settings.items():
        monkeypatch.setenv(key, value)
    get_settings.cache_clear()
    container.cache_clear()
    return LocalFunctionsHost(ROOT, port=0)


@pytest.fixture
def host(storage_env, monkeypatch):
    """A stamp whose portal can sign admins in (the issuer is never reached before "Sign in")."""
    with _host(monkeypatch, {
        "CONNECTOR_ADMIN_AUTHORITY_HOST": "https://127.0.0.1:8443",
        "CONNECTOR_ADMIN_API_SCOPE": f"{entra.API_APP_ID_URI}/{entra.API_SCOPE}",
        "CONNECTOR_PORTAL_CLIENT_ID": entra.PORTAL_CLIENT_ID,
        "CONNECTOR_PORTAL_STAMPS": json.dumps([{"region": "us", "label": "United States", "api_base_url": "http://127.0.0.1:7071"}]),
    }) as host:
        yield host
    get_settings.cache_clear()
    container.cache_clear()


@pytest.fixture
def unconfigured_host(storage_env, monkeypatch):
    with _host(monkeypatch, {"CONNECTOR_PORTAL_STAMPS": "[]"}) as host:
        yield host
    get_settings.cache_clear()
    container.cache_clear()


def test_landing_page_reports_a_healthy_stamp_and_offers_sign_in(host, page, screenshot):
    page.goto(f"{host.url}/")
    page.get_by_role("status").filter(has_text="healthy").wait_for(timeout=10_000)
    assert page.locator("#stamp-region").inner_text() == "us"
    assert page.locator("#check-tables").inner_text() == "reachable"
    assert page.locator("#check-queues").inner_text() == "reachable"
    expect(page.get_by_role("heading", name="Set up the connector")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible()
    expect(page.get_by_role("button", name="Sign out")).to_be_hidden()
    screenshot("landing")


def test_landing_page_explains_when_admin_sign_in_is_not_configured(unconfigured_host, page, screenshot):
    page.goto(f"{unconfigured_host.url}/")
    expect(page.get_by_role("heading", name="Admin sign-in is not available")).to_be_visible(timeout=10_000)
    expect(page.get_by_role("button", name="Sign in")).to_have_count(0)
    page.get_by_role("status").filter(has_text="healthy").wait_for(timeout=10_000)
    screenshot("landing-unconfigured")


def test_landing_page_is_usable_at_360px(host, page, screenshot):
    page.set_viewport_size({"width": 360, "height": 740})
    page.goto(f"{host.url}/")
    page.get_by_role("status").filter(has_text="healthy").wait_for(timeout=10_000)
    expect(page.get_by_role("button", name="Sign in")).to_be_visible(timeout=10_000)
    scroll_width = page.evaluate("document.documentElement.scrollWidth")
    assert scroll_width <= 360  # no horizontal scrolling on a phone
    screenshot("landing-360")
