"""Outbound HTTP to URLs an admin typed: public addresses only, pinned, bounded (SSRF-safe)."""

from connector.adapters.net.errors import (
    OutboundConnectionFailed,
    OutboundRequestRefused,
    OutboundTimeout,
    ResponseTooLarge,
    TooManyRedirects,
)
from connector.adapters.net.resolver import Resolver, SystemResolver
from connector.adapters.net.safe_http import (
    Destination,
    FetchLimits,
    SafeHttpClient,
    SafeResponse,
    default_transport,
)

__all__ = [
    "Destination",
    "FetchLimits",
    "OutboundConnectionFailed",
    "OutboundRequestRefused",
    "OutboundTimeout",
    "Resolver",
    "ResponseTooLarge",
    "SafeHttpClient",
    "SafeResponse",
    "SystemResolver",
    "TooManyRedirects",
    "default_transport",
]
