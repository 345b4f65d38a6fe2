"""Every port the use cases need, as ``typing.Protocol``s; adapters implement them.

Services import from here, never from ``connector.adapters``: a use case is tested with the
in-memory fakes of ``tests/fakes.py`` (``FakeEndpointRepository``, ``FakeClock``, ...) and run
with the real adapters the composition root builds. Stored items come back as
:class:`Versioned` (the item and the ETag it was read with), the ticket for a conditional
write, so no service ever sees a storage SDK type.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

if TYPE_CHECKING:  # annotations only: importing the app must not build every domain model
    from pydantic import BaseModel

    from connector.domain.endpoint import FhirEndpoint
    from connector.domain.launch import LaunchState
    from connector.domain.meeting import CallSubscription, MeetingRequest, OnlineMeeting
    from connector.domain.notification import NotificationClaim, NotificationRef, NotificationStatus
    from connector.domain.phone_number import NumberProvisioning, PhoneNumber
    from connector.domain.smart import SmartConfiguration, TokenResponse
    from connector.domain.tenant import Tenant
    from connector.domain.usage import UsageEvent
    from connector.domain.visit import JoinLink, SubscriptionLink, Visit

T = TypeVar("T")


@dataclass(frozen=True)
class Versioned(Generic[T]):
    """A stored item and the ETag it was read with (the ticket for a conditional write)."""

    item: T
    etag: str


# -- time and randomness -------------------------------------------------------------------


class Clock(Protocol):
    def now(self) -> datetime:
        """The current instant, timezone-aware (UTC)."""
        ...


class SystemClock:
    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class IdSource(Protocol):
    def token(self, nbytes: int = 32) -> str:
        """A URL-safe random string carrying ``nbytes`` bytes of entropy."""
        ...

    def hex(self, nbytes: int = 4) -> str: ...


class SecretsIdSource:
    def token(self, nbytes: int = 32) -> str:
        return secrets.token_urlsafe(nbytes)

    def hex(self, nbytes: int = 4) -> str:
        return secrets.token_hex(nbytes)


# -- storage -------------------------------------------------------------------------------


class TenantRepository(Protocol):
    def get_tenant(self, tenant_id: str) -> Versioned[Tenant] | None: ...
    def onboard_tenant(self, tenant: Tenant) -> bool: ...
    def save_tenant(self, tenant: Tenant, etag: str) -> str: ...


class EndpointRepository(Protocol):
    def get_endpoint(self, tenant_id: str, endpoint_id: str) -> Versioned[FhirEndpoint] | None: ...
    def list_endpoints(self, tenant_id: str) -> list[Versioned[FhirEndpoint]]: ...
    def find_by_base_url(self, base_url: str) -> Versioned[FhirEndpoint] | None: ...
    def all_endpoints(self) -> list[FhirEndpoint]: ...
    def add_endpoint(self, endpoint: FhirEndpoint) -> str: ...
    def save_endpoint(self, endpoint: FhirEndpoint, etag: str, *, previous_base_url: str | None = None) -> str: ...
    def remove_endpoint(self, endpoint: FhirEndpoint, etag: str) -> None: ...


class PhoneNumberRepository(Protocol):
    def list_numbers(self, tenant_id: str) -> list[PhoneNumber]: ...
    def get_number(self, tenant_id: str, phone_number: str) -> PhoneNumber | None: ...
    def record_number(self, number: PhoneNumber) -> None: ...
    def start_provisioning(self, operation: NumberProvisioning) -> str: ...
    def get_provisioning(self, tenant_id: str, operation_id: str) -> Versioned[NumberProvisioning] | None: ...
    def list_provisioning(self, tenant_id: str) -> list[NumberProvisioning]: ...
    def save_provisioning(self, operation: NumberProvisioning, etag: str) -> str: ...
    def owner_of(self, phone_number: str) -> str | None:
        """The tenant that owns this number in this stamp, if any."""
        ...


class NotificationRepository(Protocol):
    def claim_notification(self, claim: NotificationClaim) -> str | None:
        """A conditional insert: the new row's ETag if this caller claimed the message, else None."""
        ...

    def recent(self, tenant_id: str, endpoint_id: str, *, since: datetime) -> list[NotificationClaim]: ...

    def get_notification(self, ref: NotificationClaim | NotificationRef) -> Versioned[NotificationClaim] | None: ...
    def record_outcome(self, claim: NotificationClaim, etag: str) -> str: ...
    def for_appointment(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> list[NotificationClaim]: ...
    def for_endpoint(self, tenant_id: str, endpoint_id: str,
                     status: NotificationStatus | None = None) -> list[Versioned[NotificationClaim]]: ...
    def for_tenant(self, tenant_id: str, status: NotificationStatus) -> list[Versioned[NotificationClaim]]: ...
    def by_tag(self, tag: str) -> Versioned[NotificationClaim] | None:
        """The row a delivery report's tag names (see ``notification_tag``), if it exists."""
        ...


class OptOutRepository(Protocol):
    """Who replied STOP, per tenant, as a keyed hash of the number (never the number)."""

    def is_opted_out(self, tenant_id: str, number_hash: str) -> bool: ...

    def record_choice(self, tenant_id: str, number_hash: str, *, opted_out: bool, at: datetime) -> bool:
        """STOP (``opted_out``) or START, said at ``at``; an older word than the one kept is ignored."""
        ...


class UsageEventLog(Protocol):
    def append(self, events: Iterable[UsageEvent]) -> int: ...


class LaunchStateRepository(Protocol):
    def save_state(self, state: LaunchState) -> None: ...

    def take_state(self, state: str) -> LaunchState | None:
        """The state's row, removed in the same breath: a second take (a replay) gets None."""
        ...


class VisitRepository(Protocol):
    def get_visit(self, tenant_id: str, endpoint_id: str, appointment_id: str) -> Versioned[Visit] | None: ...

    def add_visit(self, visit: Visit) -> bool:
        """Insert if absent: True if this call created it (two launches racing: one wins)."""
        ...

    def save_visit(self, visit: Visit, etag: str) -> str: ...


class JoinLinkRepository(Protocol):
    def add_link(self, link: JoinLink) -> None: ...
    def find_link(self, token: str) -> JoinLink | None: ...


class SubscriptionRepository(Protocol):
    def add_subscription(self, link: SubscriptionLink) -> None: ...
    def get_subscription(self, subscription_id: str) -> Versioned[SubscriptionLink] | None: ...
    def save_subscription(self, link: SubscriptionLink, etag: str) -> str: ...
    def remove_subscription(self, subscription_id: str) -> None: ...
    def expiring_before(self, moment: datetime) -> list[Versioned[SubscriptionLink]]: ...


@dataclass(frozen=True)
class Purged:
    """What a retention pass did to one table: counts only (logs never name a row)."""

    deleted: int = 0  # deleted now, or already gone (a concurrent run took it)
    kept: int = 0  # changed since it was read: someone still uses it, a later run decides

    def __add__(self, other: "Purged") -> "Purged":
        return Purged(self.deleted + other.deleted, self.kept + other.kept)


class ExpiringRows(Protocol[T]):
    """One table's rows that may be past their retention (``services/retention.py``)."""

    def before(self, cutoff: datetime) -> Iterable[list[Versioned[T]]]:
        """Pages of rows whose stored instant is before ``cutoff``: a narrowing by the store (it may
        return more); the service applies the rule itself."""
        ...

    def delete_unchanged(self, rows: Sequence[Versioned[T]]) -> Purged:
        """Delete each row only if its ETag still matches (a row updated since it was read stays)."""
        ...


class Queue(Protocol):
    def send(self, message: BaseModel, *, delay: timedelta = ...) -> str: ...


# -- outbound HTTP to admin-supplied URLs -----------------------------------------------------


class HttpResponse(Protocol):
    @property
    def status_code(self) -> int: ...
    @property
    def content_type(self) -> str: ...
    @property
    def headers(self) -> Mapping[str, str]: ...
    def json(self) -> Any: ...


class CheckedDestination(Protocol):
    @property
    def addresses(self) -> tuple[str, ...]: ...
    @property
    def is_loopback(self) -> bool: ...


class SafeHttp(Protocol):
    """Outbound HTTP that refuses non-public addresses (``connector.adapters.net.SafeHttpClient``).

    Raises ``UnprocessableInput`` for a refused URL or address, ``UpstreamError`` (and
    subclasses) for timeouts and failures; messages are sentences fit for the admin."""

    def check_destination(self, url: str, *, allow_loopback: bool = True) -> CheckedDestination: ...

    def get(self, url: str, *, accept: str = ..., headers: Mapping[str, str] | None = None,
            allow_loopback: bool = True) -> HttpResponse: ...

    def post(self, url: str, *, form: Mapping[str, str] | None = None, body: bytes | None = None,
             content_type: str | None = None, accept: str = ..., headers: Mapping[str, str] | None = None,
             allow_loopback: bool = True) -> HttpResponse: ...

    def patch(self, url: str, *, body: bytes, content_type: str, accept: str = ...,
              headers: Mapping[str, str] | None = None, allow_loopback: bool = True) -> HttpResponse: ...


# -- SMART on FHIR ---------------------------------------------------------------------------


class SmartDiscovery(Protocol):
    def discover(self, base_url: str, *, allow_loopback: bool) -> SmartConfiguration:
        """The FHIR server's SMART endpoints (``.well-known/smart-configuration``, else the
        CapabilityStatement's ``oauth-uris``). Raises ``UpstreamError`` when neither names them."""
        ...


class SmartTokenClient(Protocol):
    def exchange_code(self, endpoint: FhirEndpoint, config: SmartConfiguration, *, client_id: str, code: str,
                      redirect_uri: str, code_verifier: str) -> TokenResponse:
        """POST the code to the token endpoint with the endpoint's client authentication."""
        ...


class IdTokenVerifier(Protocol):
    def verify(self, id_token: str, config: SmartConfiguration, *, client_id: str, nonce: str | None) -> dict:
        """The id_token's verified claims; ``NotAuthenticated`` for a bad signature, audience,
        expiry or nonce."""
        ...


class FhirReader(Protocol):
    """Reads with the launch's own access token (never stored)."""

    def read(self, base_url: str, access_token: str, resource_type: str, resource_id: str) -> Any: ...
    def search(self, base_url: str, access_token: str, resource_type: str,
               params: list[tuple[str, str]]) -> list[Any]: ...
    def patch(self, base_url: str, access_token: str, resource_type: str, resource_id: str,
              operations: list[dict], *, if_match: str) -> str: ...
    def read_versioned(self, base_url: str, access_token: str, resource_type: str,
                       resource_id: str) -> tuple[Any, str | None]: ...


class SearchPage(Protocol):
    number: int
    resources: list[Any]
    skipped: list[str]
    total_entries: int


class ScanFhir(FhirReader, Protocol):
    """FHIR for scans: reads and searches retried (429 Retry-After, 5xx backoff), pages streamed."""

    def search_pages(self, base_url: str, access_token: str | Callable[[], str], resource_type: str,
                     params: list[tuple[str, str]], *,
                     select: Callable[[dict], bool] | None = None,
                     model: type | None = None) -> Iterable[SearchPage]: ...


# -- Microsoft Graph and ACS ------------------------------------------------------------------


class Meetings(Protocol):
    """Teams online meetings through Microsoft Graph (app-only)."""

    def create_or_get(self, request: MeetingRequest) -> OnlineMeeting:
        """``users/{organizer}/onlineMeetings/createOrGet`` with the request's externalId: the
        same externalId always gives the same meeting. Lobby for everyone outside the
        organisation, the organizer the only presenter, meeting chat limited to the meeting.

        Raises ``MeetingAccessDenied`` (403: no application access policy for the organizer),
        ``UpstreamUnavailable`` (429 with retry_after, 5xx), ``UpstreamError`` otherwise."""
        ...

    def subscribe_call_events(self, tenant_id: str, meeting: OnlineMeeting, *, notification_url: str,
                              client_state: str, expires_at: datetime) -> CallSubscription:
        """A change-notification subscription to the meeting's call events (Graph runs the
        validation handshake against ``notification_url`` before it answers)."""
        ...

    def renew_subscription(self, tenant_id: str, subscription_id: str, expires_at: datetime) -> datetime:
        """Move the subscription's expiry; returns the expiry Graph granted."""
        ...

    def delete_subscription(self, tenant_id: str, subscription_id: str) -> None:
        """Stop the subscription (one that is already gone is not an error)."""
        ...


class BackendTokens(Protocol):
    def token(self, endpoint: FhirEndpoint, token_url: str, scopes: tuple[str, ...]) -> str:
        """A SMART Backend Services access token (client_credentials + private_key_jwt), cached."""
        ...


class SmsSender(Protocol):
    def send(self, *, from_number: str, to_number: str, message: str, repeatability_id: str,
             first_sent: datetime, tag: str | None = None) -> str:
        """Send one SMS; returns ACS's message id. ``repeatability_id`` (a GUID) with the same
        ``first_sent`` makes a retried send of the same message a no-op at ACS. Raises
        ``UpstreamUnavailable`` (throttled, down) or ``UpstreamError`` (refused)."""
        ...
