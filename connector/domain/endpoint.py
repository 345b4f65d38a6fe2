"""A FHIR base URL a tenant registered (one Cerner domain and department set)."""

from __future__ import annotations

from datetime import datetime
from enum import Enum
from urllib.parse import urlsplit, urlunsplit

from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

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
    if ":" in host:  # an IPv6 literal keeps its brackets
        host = f"[{host}]"
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


def _valid_timezone(value: str) -> str:
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    try:
        ZoneInfo(value)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError("must be an IANA time zone such as America/Chicago") from None
    return value


ClientId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")]
LocationId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9.-]+$")]


class EndpointDraft(BaseModel):
    """What an admin submits to register a FHIR base URL (the tenant comes from the token)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    base_url: str = Field(min_length=8, max_length=2048)
    environment: Environment
    display_name: str = Field(default="", max_length=100)
    location_ids: list[LocationId] = Field(default_factory=list, max_length=50)
    timezone: str = "UTC"
    provider_client_id: ClientId | None = None
    patient_client_id: ClientId | None = None
    backend_client_id: ClientId | None = None

    _timezone = field_validator("timezone")(_valid_timezone)


class EndpointChange(BaseModel):
    """A partial change to a registered endpoint: only the fields given are changed."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    base_url: str | None = Field(default=None, min_length=8, max_length=2048)
    environment: Environment | None = None
    display_name: str | None = Field(default=None, max_length=100)
    location_ids: list[LocationId] | None = Field(default=None, max_length=50)
    timezone: str | None = None
    provider_client_id: ClientId | None = None
    patient_client_id: ClientId | None = None
    backend_client_id: ClientId | None = None

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str | None) -> str | None:
        return value if value is None else _valid_timezone(value)

    @field_validator("base_url", "environment", "display_name", "location_ids", "timezone")
    @classmethod
    def _not_null(cls, value):
        # Left out means "unchanged"; null would mean "erase", which these fields cannot be.
        if value is None:
            raise ValueError("cannot be null; leave the field out to keep it")
        return value

    def given(self) -> dict:
        return self.model_dump(exclude_unset=True)

    @property
    def needs_validation(self) -> bool:
        """A new URL or environment must pass validation again before it is saved."""
        return "base_url" in self.model_fields_set or "environment" in self.model_fields_set
