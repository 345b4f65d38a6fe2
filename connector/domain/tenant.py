"""A customer tenant (an Entra ID directory) onboarded into this stamp."""

from __future__ import annotations

from datetime import datetime

from pydantic import BaseModel, ConfigDict, Field

GUID = r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$"


class Consent(BaseModel):
    """Who (an Entra object id, never a name) agreed, and when."""

    model_config = ConfigDict(frozen=True)

    by_oid: str = Field(pattern=GUID)
    at: datetime


class Tenant(BaseModel):
    tenant_id: str = Field(pattern=GUID)
    region: str
    created_at: datetime
    # The two SMS consents of the admin wizard; SMS stays off until both are given.
    sms_terms_consent: Consent | None = None
    sms_data_consent: Consent | None = None

    @property
    def sms_allowed(self) -> bool:
        return self.sms_terms_consent is not None and self.sms_data_consent is not None
