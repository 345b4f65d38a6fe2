"""A FHIR base URL a tenant registered (one Cerner domain and department set)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from urllib.parse import urlsplit, urlunsplit

from pydantic import BaseModel, Field, field_validator

from connector.domain.tenant import GUID


class Environment(str, Enum):
    test = "test"
    production = "production"


def normalize_base_url(url: str) -> str:
    """The form a base URL is compared and stored in: lower-case scheme and host, no trailing slash.

    The FHIR base URL identifies the tenant at launch time (``iss``), so two spellings of the
    same URL must be one URL.
    """
    parts = urlsplit(url.strip())
    host = (parts.hostname or "").lower()
    netloc = f"{host}:{parts.port}" if parts.port else host
    return urlunsplit((parts.scheme.lower(), netloc, parts.path.rstrip("/"), "", ""))


class FhirEndpoint(BaseModel):
    tenant_id: str = Field(pattern=GUID)
    endpoint_id: str = Field(pattern=r"^[a-z0-9][a-z0-9-]{0,62}$")
    base_url: str
    environment: Environment
    display_name: str = ""
    cerner_tenant_id: str | None = None
    authorize_url: str | None = None
    token_url: str | None = None
    # Client ids from Cerner's code console (public identifiers, not secrets).
    provider_client_id: str | None = None
    patient_client_id: str | None = None
    backend_client_id: str | None = None
    # Cerner only searches Appointment by patient, practitioner or location: these are the
    # locations (departments) the reminder scan walks.
    location_ids: list[str] = Field(default_factory=list)
    timezone: str = "UTC"
    linked_number: str | None = None
    created_at: datetime

    @field_validator("base_url")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_base_url(value)
