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
# Operation ids are ours (random hex); anything else in a URL is simply not found.
OPERATION_ID = r"^[A-Za-z0-9-]{8,64}$"


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
    operation_id: str = Field(pattern=OPERATION_ID)
    country_code: str = Field(pattern=r"^[A-Z]{2}$")
    status: ProvisioningStatus = ProvisioningStatus.running
    step: ProvisioningStep = ProvisioningStep.searching
    # The ACS search that holds the number (an id, no secret); ACS buys one search at most once.
    search_id: str | None = None
    phone_number: str | None = None
    # Set (and saved) just before the purchase is asked for: from then on ACS may own the
    # number even if this worker never hears back, so a retry looks before it buys.
    purchase_started_at: datetime | None = None
    error: str | None = None
    created_at: datetime
    updated_at: datetime

    @property
    def finished(self) -> bool:
        return self.status is not ProvisioningStatus.running
