"""A FHIR base URL a tenant registered (one Cerner domain and department set), and the URL
rules every part of the connector shares: how a base URL is normalised (a launch's ``iss``
must find its endpoint whatever its spelling), what makes a URL unusable, what is loopback.
"""

from __future__ import annotations

import re
from datetime import datetime
from enum import Enum
from functools import lru_cache
from ipaddress import ip_address
from typing import Annotated
from urllib.parse import urlsplit, urlunsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, field_validator, model_validator

from connector.domain.reminders import ReminderPolicy
from connector.domain.tenant import GUID

MAX_URL_LENGTH = 2048
LOOPBACK_HOSTS = frozenset({"localhost"})
_HOST_SHAPE = re.compile(r"[a-z0-9.:\-\[\]]{1,253}")
_UNSAFE_CHARACTER = re.compile(r"[\s\x00-\x1f\x7f]")


class Environment(str, Enum):
    test = "test"
    production = "production"


def normalize_base_url(url: str) -> str:
    """The form a base URL is compared and stored in: lower-case scheme and host, no default
    port, no trailing slash, no query or fragment; an IPv6 literal keeps its brackets.

    The FHIR base URL identifies the tenant at launch time (``iss``), so two spellings of the
    same URL must be one URL. Raises ValueError for a URL whose port is not a number in range.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:
        host = f"[{host}]"
    default_port = {"https": 443, "http": 80}.get(scheme)
    netloc = f"{host}:{parts.port}" if parts.port and parts.port != default_port else host
    return urlunsplit((scheme, netloc, parts.path.rstrip("/"), "", ""))


def is_loopback_url(url: str) -> bool:
    """Does ``url`` name a loopback host (``localhost`` or a loopback IP literal)?"""
    try:
        host = urlsplit(url).hostname or ""
    except ValueError:
        return False
    if host in LOOPBACK_HOSTS:
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def url_problem(url: str) -> str | None:
    """What makes ``url`` unusable as an absolute http(s) URL, as a phrase, or None."""
    if len(url) > MAX_URL_LENGTH:
        return f"is longer than {MAX_URL_LENGTH} characters"
    if _UNSAFE_CHARACTER.search(url):
        return "contains spaces or control characters"
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number in range
    except ValueError:
        return "is not a valid URL"
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        return "is not an absolute URL starting with https://"
    if parts.username is not None or parts.password is not None:
        return "contains a user name or password"
    if not _HOST_SHAPE.fullmatch(parts.hostname.lower()):
        return "has an invalid host name"
    return None


class ClientAuth(str, Enum):
    """How the connector authenticates to the token endpoint (SMART "client types")."""

    public = "public"  # no secret; PKCE protects the code
    client_secret_basic = "client_secret_basic"  # HTTP Basic with a secret from Key Vault / settings
    private_key_jwt = "private_key_jwt"  # a signed assertion; Cerner holds our JWKS URL


# An Entra object id or a user principal name: the Teams account that owns the meetings.
ORGANIZER = r"^([0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}|[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,190})$"
# The app setting CONNECTOR_CLIENT_SECRET_<TENANT>_<NAME> holds a confidential client's secret (in
# Azure a Key Vault reference; <TENANT> is the tenant id without dashes). Only the name is an
# admin's to choose: no admin can point at another setting, or at another tenant's secret.
SECRET_NAME = r"^[A-Z0-9_]{1,40}$"
ENDPOINT_ID = r"^[a-z0-9][a-z0-9-]{0,62}$"


class FhirEndpoint(BaseModel):
    tenant_id: str = Field(pattern=GUID)
    endpoint_id: str = Field(pattern=ENDPOINT_ID)
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
    # Teams: the account that owns this endpoint's meetings, and per-department overrides.
    meeting_organizer: str | None = Field(default=None, pattern=ORGANIZER)
    department_organizers: dict[str, str] = Field(default_factory=dict)
    # Token endpoint authentication of the provider and patient apps.
    client_auth: ClientAuth = ClientAuth.public
    client_secret_name: str | None = Field(default=None, pattern=SECRET_NAME)
    # Write the visit links into Cerner's video-visit Appointment (needs user/Appointment.write).
    write_back_links: bool = False
    # SMS confirmations and reminders (off until an admin switches them on).
    reminder_policy: ReminderPolicy = ReminderPolicy()
    created_at: datetime

    _secret_named = model_validator(mode="after")(lambda self: _secret_named_when_needed(self))

    def organizer_for(self, location_id: str | None) -> str | None:
        """The meeting organizer of a department, else the endpoint's."""
        return self.department_organizers.get(location_id or "") or self.meeting_organizer

    @field_validator("base_url")
    @classmethod
    def _normalized(cls, value: str) -> str:
        return normalize_base_url(value)


def _secret_named_when_needed(model):
    if model.client_auth is ClientAuth.client_secret_basic and not model.client_secret_name:
        raise ValueError("client_secret_basic needs client_secret_name (the app setting "
                         "CONNECTOR_CLIENT_SECRET_<TENANT>_<NAME> that holds the secret)")
    return model


@lru_cache(maxsize=1)
def time_zone_names() -> tuple[str, ...]:
    """The IANA time zones this machine knows: what an endpoint's ``timezone`` may be (the
    document lists them as its enum, so both say the same)."""
    from zoneinfo import available_timezones

    return tuple(sorted(available_timezones()))


def _valid_timezone(value: str) -> str:
    if value not in time_zone_names():
        raise ValueError("must be an IANA time zone such as America/Chicago")
    return value


class _TimeZoneEnumSchema:
    """The document's enum of time zones, listed when the schema is made (the OpenAPI route), not
    at import: reading the zone names walks tzdata, and cold start pays for every import."""

    def __get_pydantic_json_schema__(self, core_schema, handler) -> dict:
        return {"type": "string", "description": "an IANA time zone such as America/Chicago",
                "enum": list(time_zone_names())}


TimeZoneName = Annotated[str, AfterValidator(_valid_timezone), _TimeZoneEnumSchema()]
# A FHIR base URL: whether it is usable (https, a public FHIR R4 server with SMART) is what
# validation finds out (422 with the report); the document rules out what no URL is: blanks,
# spaces, control and non-ASCII characters (percent-encode them; one class, read alike by
# Python, Rust and ECMA regular expressions).
URL_CHARACTERS = r"^[!-~]+$"
BaseUrl = Annotated[str, Field(min_length=8, max_length=MAX_URL_LENGTH, pattern=URL_CHARACTERS)]
ClientId = Annotated[str, Field(min_length=1, max_length=128, pattern=r"^[A-Za-z0-9._~-]+$")]
LocationId = Annotated[str, Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9.-]+$")]
Organizer = Annotated[str, Field(pattern=ORGANIZER)]
SecretName = Annotated[str, Field(pattern=SECRET_NAME)]


# client_secret_basic needs client_secret_name: the JSON Schema of the rule _secret_named_when_needed checks.
SECRET_NAMED_SCHEMA = {
    "if": {"required": ["client_auth"], "properties": {"client_auth": {"const": ClientAuth.client_secret_basic.value}}},
    "then": {"required": ["client_secret_name"], "properties": {"client_secret_name": {"type": "string"}}},
}


class EndpointDraft(BaseModel):
    """What an admin submits to register a FHIR base URL (the tenant comes from the token)."""

    # Strings are taken as sent (no stripping: the portal trims), so each pattern means what it says.
    model_config = ConfigDict(extra="forbid", json_schema_extra=SECRET_NAMED_SCHEMA)

    base_url: BaseUrl
    environment: Environment
    display_name: str = Field(default="", max_length=100)
    location_ids: list[LocationId] = Field(default_factory=list, max_length=50)
    timezone: TimeZoneName = "UTC"
    provider_client_id: ClientId | None = None
    patient_client_id: ClientId | None = None
    backend_client_id: ClientId | None = None
    meeting_organizer: Organizer | None = None
    department_organizers: dict[LocationId, Organizer] = Field(default_factory=dict, max_length=50)
    client_auth: ClientAuth = ClientAuth.public
    client_secret_name: SecretName | None = None
    write_back_links: bool = False

    _secret_named = model_validator(mode="after")(lambda self: _secret_named_when_needed(self))


class EndpointChange(BaseModel):
    """A partial change to a registered endpoint: only the fields given are changed. Left out
    means "unchanged"; null means "erase", which only the optional settings (client ids, the
    organizer, the secret name) can be: the others are typed without null, so null is a 400."""

    model_config = ConfigDict(extra="forbid")

    base_url: BaseUrl = None  # type: ignore[assignment]
    environment: Environment = None  # type: ignore[assignment]
    display_name: str = Field(default=None, max_length=100)  # type: ignore[assignment]
    location_ids: list[LocationId] = Field(default=None, max_length=50)  # type: ignore[assignment]
    timezone: TimeZoneName = None  # type: ignore[assignment]
    provider_client_id: ClientId | None = None
    patient_client_id: ClientId | None = None
    backend_client_id: ClientId | None = None
    meeting_organizer: Organizer | None = None
    department_organizers: dict[LocationId, Organizer] = Field(default=None, max_length=50)  # type: ignore[assignment]
    client_auth: ClientAuth = None  # type: ignore[assignment]
    client_secret_name: SecretName | None = None
    write_back_links: bool = None  # type: ignore[assignment]

    @field_validator("base_url", "environment", "display_name", "location_ids", "timezone",
                     "department_organizers", "client_auth", "write_back_links", mode="before")
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
