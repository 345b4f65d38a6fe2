"""The stamp's settings: one pydantic-settings object, read from ``CONNECTOR_*`` app settings once.

In Azure the Function App's application settings hold these (Bicep writes them); locally
``local.settings.json`` does (copy ``local.settings.sample.json``). Secrets are never settings:
storage is reached with the managed identity, and an account key is accepted only for the
emulator on loopback.
"""

from __future__ import annotations

import logging
import re
from functools import lru_cache
from typing import Literal

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from connector import __version__
from connector.domain.endpoint import is_loopback_url

# How an app setting reads when App Service could not resolve its Key Vault reference.
UNRESOLVED_KEY_VAULT_REFERENCE = "@Microsoft.KeyVault("


class PortalStamp(BaseModel):
    """One stamp the portal offers the admin (docs/architecture.md, section 3)."""

    region: str = Field(pattern=r"^[a-z]{2,12}$")
    label: str = Field(min_length=1, max_length=60)
    api_base_url: str = Field(pattern=r"^https?://[^\s/]+$")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CONNECTOR_", extra="ignore", frozen=True)

    # The geography this stamp serves (docs/architecture.md, section 3); every record here lives here.
    stamp_region: str = Field(pattern=r"^[a-z]{2,12}$")
    version: str = __version__
    # Local mode relaxes what only makes sense on loopback (http FHIR URLs, emulator keys).
    local_mode: bool = False
    # The stamp's own public base URL: launch URLs and patient links are built on it.
    public_base_url: str = "http://127.0.0.1:7071"

    storage_account_name: str = Field(pattern=r"^[a-z0-9]{3,24}$")
    # Default to the public Azure endpoints of the account; Azurite overrides both.
    storage_table_endpoint: str | None = None
    storage_queue_endpoint: str | None = None
    # Azurite's well-known key. Refused for anything but a loopback endpoint.
    storage_emulator_key: SecretStr | None = None
    # Prefixes every table and queue name: lets tests and side-by-side stamps share an account.
    storage_name_prefix: str = Field(default="", pattern=r"^([a-z][a-z0-9]{0,15})?$")
    storage_timeout_seconds: float = Field(default=5.0, gt=0, le=60)

    # Admin sign-in (Entra ID). Tokens are v2.0 access tokens for the admin API's app
    # registration: `aud` is its client id, `iss` is {authority_host}/{tid}/v2.0.
    admin_authority_host: str = "https://login.microsoftonline.com"
    admin_api_client_id: str = Field(default="", pattern=r"^([0-9a-fA-F-]{36})?$")
    admin_api_scope: str = ""
    # An app role that grants admin rights besides the Global Administrator directory role.
    admin_app_role: str = "Connector.Admin"
    admin_clock_skew_seconds: int = Field(default=120, ge=0, le=600)
    # The portal's SPA app registration (public client id, not a secret).
    portal_client_id: str = Field(default="", pattern=r"^([0-9a-fA-F-]{36})?$")
    # Every stamp the portal offers, as JSON: [{"region": "us", "label": "...", "api_base_url": "..."}].
    portal_stamps: list[PortalStamp] = Field(default_factory=list)
    # Azure Communication Services (SMS and phone numbers): managed identity in Azure; an
    # access key only for the local simulator on loopback.
    acs_endpoint: str = ""
    acs_emulator_key: SecretStr | None = None
    # The queue the phone-number provisioning worker reads (a trigger's %SETTING% too).
    provisioning_queue: str = Field(default="provision-number", pattern=r"^[a-z0-9](-?[a-z0-9]){2,62}$")
    # An extra CA bundle for outbound TLS (the local stack's own CA); never needed in Azure.
    outbound_ca_file: str | None = None

    # Microsoft Graph (Teams meetings, change notifications), app-only. In Azure the Function
    # App's managed identity holds the Graph application permissions (no secret); a client id
    # and secret are for a multi-tenant app registration, or the sandbox issuer locally.
    graph_base_url: str = "https://graph.microsoft.com/v1.0"
    graph_authority_host: str = "https://login.microsoftonline.com"
    graph_client_id: str = Field(default="", pattern=r"^([0-9a-fA-F-]{36})?$")
    graph_client_secret: SecretStr | None = None
    # Rich change notifications: Graph encrypts call events with this certificate (PEM) and the
    # webhook decrypts them with its private key (PEM; a Key Vault reference in Azure). Without
    # them, subscriptions ask for basic notifications, which today's Graph sends without details.
    graph_notification_certificate: str | None = None
    graph_notification_key: SecretStr | None = None

    # NCRONTAB of the timer that renews Graph subscriptions before they expire (a trigger's %SETTING%).
    subscription_renewal_schedule: str = "0 */30 * * * *"
    # Reminders: the timer that fans out one scan job per endpoint, and the two queues (triggers'
    # %SETTING%s too): scan jobs, and due messages (hidden until they are due).
    reminder_scan_schedule: str = "0 */5 * * * *"
    scan_queue: str = Field(default="reminder-scan", pattern=r"^[a-z0-9](-?[a-z0-9]){2,62}$")
    send_queue: str = Field(default="reminder-send", pattern=r"^[a-z0-9](-?[a-z0-9]){2,56}$")
    # Housekeeping (services/retention.py): the daily timer that deletes expired rows (a trigger's
    # %SETTING% too), and how many days after the appointment a visit's rows are kept.
    retention_schedule: str = "0 17 3 * * *"
    retention_days: int = Field(default=30, ge=1, le=3650)
    # Keys the opt-out list's hashes of phone numbers (HMAC): base64 of 32+ random bytes, set once
    # and kept (a Key Vault reference in Azure): a new key forgets every STOP.
    optout_key: SecretStr | None = None
    # The secret delivery header (X-Connector-Events-Key) the Event Grid subscription for ACS SMS
    # events sends: the events webhook trusts nothing else.
    acs_events_key: SecretStr | None = None
    # ACS's per-number SMS limit (toll-free: 200 message units a minute); each process paces under it.
    sms_rate_per_minute: int = Field(default=200, ge=1, le=6000)

    # Spans and logs to Application Insights (docs/architecture.md, section 9): "auto" sends them when
    # APPLICATIONINSIGHTS_CONNECTION_STRING is set outside local mode; "on" in local mode too; "off" never.
    telemetry: Literal["auto", "on", "off"] = "auto"

    # Seals (AES-GCM) the provider's launch session into a cookie: base64 of 32 or more random
    # bytes (the AES key is derived from them with HKDF).
    # A Key Vault reference in Azure; the local stack makes one at first start.
    session_key: SecretStr | None = None
    # The stamp's private key (PEM, RSA >= 2048 or EC P-384) for private_key_jwt client
    # assertions; its public half is served at /api/.well-known/jwks.json. Key Vault in Azure.
    client_assertion_key: SecretStr | None = None
    # Key rotation (client_assertions.py): the previous key stays published until its assertions
    # expire; the next key is published before it signs. Private or public PEM; Key Vault in Azure.
    client_assertion_previous_key: SecretStr | None = None
    client_assertion_next_key: SecretStr | None = None

    @field_validator("graph_client_secret", "graph_notification_certificate", "graph_notification_key",
                     "session_key", "client_assertion_key", "client_assertion_previous_key",
                     "client_assertion_next_key", "optout_key", "acs_events_key", mode="before")
    @classmethod
    def _empty_is_unset(cls, value, info):
        # An app setting that exists but is empty means "not configured", not "an empty secret".
        if value == "":
            return None
        # App Service leaves a Key Vault reference it cannot resolve as its own text. infra wires the
        # operator's optional secrets as references to fixed secret names (so a provision never
        # wipes them): until the operator puts the secret in the vault, the setting is unset.
        if isinstance(value, str) and value.startswith(UNRESOLVED_KEY_VAULT_REFERENCE):
            logging.getLogger("connector.settings").warning(
                "%s: its Key Vault reference is not resolved (no such secret, or no access): unset", info.field_name)
            return None
        return value

    @field_validator("storage_table_endpoint", "storage_queue_endpoint", "public_base_url", "admin_authority_host",
                     "acs_endpoint", "graph_base_url", "graph_authority_host")
    @classmethod
    def _no_trailing_slash(cls, value: str | None) -> str | None:
        return value.rstrip("/") if value else value

    @model_validator(mode="after")
    def _emulator_key_only_on_loopback(self) -> "Settings":
        if self.storage_emulator_key is not None:
            for url in (self.table_endpoint, self.queue_endpoint):
                if not is_loopback_url(url):
                    raise ValueError(
                        "CONNECTOR_STORAGE_EMULATOR_KEY is accepted only for an emulator on "
                        "loopback; in Azure the managed identity reaches storage"
                    )
        if self.acs_emulator_key is not None and not is_loopback_url(self.acs_endpoint):
            raise ValueError("CONNECTOR_ACS_EMULATOR_KEY is accepted only for the simulator on loopback")
        return self

    @property
    def graph_notification_url(self) -> str:
        """Where Graph posts change notifications for this stamp's meetings."""
        return f"{self.public_base_url}/api/notifications/graph"

    @property
    def table_endpoint(self) -> str:
        return self.storage_table_endpoint or f"https://{self.storage_account_name}.table.core.windows.net"

    @property
    def queue_endpoint(self) -> str:
        return self.storage_queue_endpoint or f"https://{self.storage_account_name}.queue.core.windows.net"

    def table_name(self, base: str) -> str:
        """Table names allow letters and digits only."""
        return re.sub(r"[^A-Za-z0-9]", "", f"{self.storage_name_prefix}{base}")

    def queue_name(self, base: str) -> str:
        """Queue names allow lowercase letters, digits and single hyphens."""
        return f"{self.storage_name_prefix}-{base}" if self.storage_name_prefix else base


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process's settings, read once (tests call ``get_settings.cache_clear()``)."""
    return Settings()
