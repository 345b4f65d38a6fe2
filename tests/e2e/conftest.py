"""Browser tier: pages and screenshots (the shared ``browser`` fixture lives in tests/conftest.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.fixture
def page(browser, request):
    context = browser.new_context(ignore_https_errors=True, viewport={"width": 1024, "height": 768})
    page = context.new_page()
    yield page
    context.close()


@pytest.fixture
def screenshot(page, request):
    """Save a named screenshot of the page under test-artifacts/<test name>/."""

    def take(name: str) -> Path:
        folder = ARTIFACTS / request.node.name
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / f"{name}.png"
        page.screenshot(path=str(path), full_page=True)
        return path

    return take
