"""Toll-free numbers a tenant owns for SMS, and the long-running provisioning of a new one.

ACS provisions a number in two long-running operations (search, then purchase) that can
take minutes; a provisioning record remembers where it is so any later request can move
it on. The link from a number to FHIR endpoints lives on the endpoint (``linked_number``).
"""

from __future__ import annotations

from datetime import datetime
from enum import Enum

from pydantic import BaseModel, Field

E164 = r"^\+[1-9][0-9]{6,14}$"


class PhoneNumberState(str, Enum):
    active = "active"
    released = "released"


class PhoneNumber(BaseModel):
    tenant_id: str
    phone_number: str = Field(pattern=E164)
    state: PhoneNumberState = PhoneNumberState.active
    acquired_at: datetime
    operation_id: str | None = None


class ProvisioningStatus(str, Enum):
    running = "running"
    succeeded = "succeeded"
    failed = "failed"


class ProvisioningStep(str, Enum):
    searching = "searching"
    purchasing = "purchasing"
    done = "done"


class NumberProvisioning(BaseModel):
    tenant_id: str
    operation_id: str = Field(pattern=r"^[A-Za-z0-9-]{8,64}$")
    country_code: str = Field(pattern=r"^[A-Z]{2}$")
    status: ProvisioningStatus = ProvisioningStatus.running
    step: ProvisioningStep = ProvisioningStep.searching
    # The ACS long-running operation in flight and the search it produced (ids, no secrets).
    acs_operation_id: str | None = None
    search_id: str | None = None
    phone_number: str | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status is not ProvisioningStatus.running
