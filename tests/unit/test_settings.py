"""Settings: every setting is documented in the sample with a safe local value, and rules hold."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from pydantic import ValidationError

from connector.settings import Settings

ROOT = Path(__file__).resolve().parents[2]


def sample_values() -> dict[str, str]:
    return json.loads((ROOT / "local.settings.sample.json").read_text())["Values"]


def test_sample_lists_every_setting():
    documented = {k.removeprefix("CONNECTOR_").lower() for k in sample_values() if k.startswith("CONNECTOR_")}
    derived = {"version"}  # from the package, not configurable
    assert documented == set(Settings.model_fields) - derived


def test_sample_values_build_valid_settings(monkeypatch):
    for key, value in sample_values().items():
        monkeypatch.setenv(key, value)
    settings = Settings()
    assert settings.local_mode and settings.stamp_region == "us"
    assert settings.table_endpoint == "http://127.0.0.1:10002/devstoreaccount1"


def test_names_get_the_prefix_in_each_service_form(monkeypatch):
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "eu")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampeu01")
    monkeypatch.setenv("CONNECTOR_STORAGE_NAME_PREFIX", "t1a2")
    settings = Settings()
    assert settings.table_name("usageevents") == "t1a2usageevents"
    assert settings.queue_name("notifications") == "t1a2-notifications"
    assert settings.queue_endpoint == "https://stampeu01.queue.core.windows.net"
    assert settings.storage_emulator_key is None  # managed identity in Azure


@pytest.mark.parametrize("region", ["", "US", "us-east!", "a"])
def test_bad_region_is_refused(monkeypatch, region):
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", region)
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampeu01")
    with pytest.raises(ValidationError, match="stamp_region"):
        Settings()


@pytest.mark.parametrize("stamps", ['not json', '[{"region": "us"}]', '[{"region": "us", "label": "US", "api_base_url": "ftp://x"}]'])
def test_portal_stamps_are_checked_once_at_start(monkeypatch, stamps):
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "us")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampus01")
    monkeypatch.setenv("CONNECTOR_PORTAL_STAMPS", stamps)
    with pytest.raises((ValidationError, ValueError), match="portal_stamps"):
        Settings()


def test_an_unresolved_key_vault_reference_is_an_unset_secret_named_in_the_log(monkeypatch, caplog):
    # infra wires the operator's optional secrets as references to fixed names; App Service leaves a
    # reference to a secret not yet in the vault as its own text, which must not be taken as a key.
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "us")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampus01")
    reference = "@Microsoft.KeyVault(VaultName=kv-us-abc;SecretName=client-assertion-key)"
    monkeypatch.setenv("CONNECTOR_CLIENT_ASSERTION_KEY", reference)
    monkeypatch.setenv("CONNECTOR_GRAPH_NOTIFICATION_CERTIFICATE", reference.replace("client-assertion-key", "cert"))
    monkeypatch.setenv("CONNECTOR_OPTOUT_KEY", "a-resolved-value-of-32-characters!!")
    with caplog.at_level("WARNING", logger="connector.settings"):
        settings = Settings()
    assert settings.client_assertion_key is None and settings.graph_notification_certificate is None
    assert settings.optout_key.get_secret_value() == "a-resolved-value-of-32-characters!!"
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "client_assertion_key" in logged and "graph_notification_certificate" in logged
    assert "kv-us-abc" not in logged
