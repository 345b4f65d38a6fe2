"""Fixtures shared by every tier.

Integration tests run against one real Azurite per test session (in-memory, on free ports),
and each test run uses unique table and queue names, so runs never see each other's data.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import pytest

from dev.azurite import Azurite, AzuriteEndpoints
from dev.sandbox.server import free_port

DATA = Path(__file__).parent / "data"

# The sandbox (issuer, Cerner, ACS on loopback) and admin settings, for any tier that needs them.
pytest_plugins = ["tests.integration.admin_fixtures"]


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch):
    """Tests build their settings themselves: a developer's CONNECTOR_* variables or storage
    connection must not leak in."""
    import os

    for key in list(os.environ):
        if key.startswith("CONNECTOR_") or key.startswith("AzureWebJobsStorage"):
            monkeypatch.delenv(key)


@pytest.fixture(scope="session")
def azurite() -> AzuriteEndpoints:
    endpoints = AzuriteEndpoints(free_port(), free_port(), free_port())
    with Azurite(endpoints):
        yield endpoints


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
        "AzureWebJobsStorage": azurite.connection_string,
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env
