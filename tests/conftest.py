"""Fixtures shared by every tier.

Integration tests run against one real Azurite per test session (in-memory, on free ports),
and each test run uses unique table and queue names, so runs never see each other's data.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

import pytest

from dev.azurite import Azurite, AzuriteEndpoints
from dev.sandbox.server import free_port

DATA = Path(__file__).parent / "data"

# The sandbox (issuer, Cerner, ACS on loopback) and admin settings, for any tier that needs them.
pytest_plugins = ["tests.integration.admin_fixtures", "tests.integration.graph_fixtures",
                  "tests.integration.visit_fixtures"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests build their settings themselves: a developer's CONNECTOR_* variables or storage
    connection must not leak in."""
    for key in list(os.environ):
        if key.startswith("CONNECTOR_") or key.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(key)


CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]


@pytest.fixture(scope="session")
def browser():
    """Debian's Chromium driven by Playwright (never `playwright install`), one per session:
    Playwright's sync API allows one running instance per process."""
    if not Path(CHROMIUM).exists():
        if os.environ.get("CI"):
            pytest.fail("chromium is missing in CI: `make test` should have installed it")
        pytest.skip("Debian chromium is not installed (make test installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture(scope="session")
def azurite() -> AzuriteEndpoints:
    # A port found free can be taken before Azurite binds it (another process's outgoing
    # connection): try again on other ports rather than fail the whole run.
    for attempt in range(3):
        endpoints = AzuriteEndpoints(free_port(), free_port(), free_port())
        emulator = Azurite(endpoints)
        try:
            emulator.start()
        except RuntimeError:
            if attempt == 2:
                raise
            continue
        try:
            yield endpoints
        finally:
            emulator.stop()
        return


@pytest.fixture
def unique_prefix() -> str:
    """A fresh prefix for table and queue names (tables: letters and digits, must start with a letter)."""
    return "t" + secrets.token_hex(4)


@pytest.fixture
def storage_env(azurite: AzuriteEndpoints, unique_prefix: str, monkeypatch) -> dict[str, str]:
    """Environment for the connector's settings pointing at Azurite, with unique names."""
    from dev.azurite import ACCOUNT_KEY, ACCOUNT_NAME

    env = {
        "CONNECTOR_STAMP_REGION": "us",
        "CONNECTOR_LOCAL_MODE": "true",
        "CONNECTOR_STORAGE_ACCOUNT_NAME": ACCOUNT_NAME,
        "CONNECTOR_STORAGE_TABLE_ENDPOINT": azurite.table_url,
        "CONNECTOR_STORAGE_QUEUE_ENDPOINT": azurite.queue_url,
        "CONNECTOR_STORAGE_EMULATOR_KEY": ACCOUNT_KEY,
        "CONNECTOR_STORAGE_NAME_PREFIX": unique_prefix,
        "CONNECTOR_PROVISIONING_QUEUE": f"{unique_prefix}-provision",
        # Timers must not fire in the middle of a test (midnight on New Year's Day): tests run them.
        "CONNECTOR_SUBSCRIPTION_RENEWAL_SCHEDULE": "0 0 0 1 1 *",
        "CONNECTOR_REMINDER_SCAN_SCHEDULE": "0 0 0 1 1 *",
        "CONNECTOR_RETENTION_SCHEDULE": "0 0 0 1 1 *",
        "CONNECTOR_SCAN_QUEUE": f"{unique_prefix}-scan",
        "CONNECTOR_SEND_QUEUE": f"{unique_prefix}-send",
        "AzureWebJobsStorage": azurite.connection_string,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class CapturedLogs(logging.Handler):
    """Every log line of the process, as text, for the privacy tests to search."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.lines.append(f"{record.name} {record.levelname} {record.getMessage()}")
        except Exception:  # noqa: BLE001 - a record whose arguments do not format
            self.lines.append(f"{record.name} {record.levelname} {record.msg}")


@pytest.fixture
def captured_logs():
    """Every log record of the process (the connector, the hosts, the SDKs, the simulators) at DEBUG."""
    handler = CapturedLogs()
    root = logging.getLogger()
    previous = root.level
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)
    yield handler
    root.removeHandler(handler)
    root.setLevel(previous)
