"""What the safe HTTP client raises: members of the connector's one hierarchy (connector.errors).

Messages are whole sentences meant for the admin who supplied the URL. They name the host
(which the admin typed, or a redirect pointed at) and the category of a refused address, never
a resolved IP (that would turn the client into a probe of internal DNS), a response body or an
exception text from below (either may hold anything).
"""

from __future__ import annotations

from connector.errors import InvalidUpstreamData, UnprocessableInput, UpstreamError, UpstreamUnavailable


class OutboundRequestRefused(UnprocessableInput):
    """The URL, or an address or redirect it leads to, is not one the connector may reach."""

    code = "outbound_request_refused"


class OutboundTimeout(UpstreamUnavailable):
    """Resolving, connecting or reading took longer than the bounded time."""

    code = "upstream_timeout"


class OutboundConnectionFailed(UpstreamError):
    """The host did not resolve, refused the connection, or failed TLS."""

    code = "upstream_unreachable"


class ResponseTooLarge(InvalidUpstreamData):
    code = "upstream_response_too_large"


class TooManyRedirects(InvalidUpstreamData):
    code = "too_many_redirects"
