"""Small wire helpers shared by both APIs: clock, timestamps, api-version, JSON bodies, loopback."""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime, timezone
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from .errors import BAD_REQUEST, MISSING_API_VERSION, UNSUPPORTED_API_VERSION, AcsError


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def iso(moment: datetime) -> str:
    """ISO 8601 in UTC with a ``Z``, as ACS writes ``receivedTimestamp`` and friends."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def event_time(moment: datetime) -> str:
    """Event Grid's ``eventTime`` as ACS's SMS events carry it: whole seconds, ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def is_loopback_url(url: str) -> bool:
    """An http(s) URL whose host is loopback: the only place the sandbox ever calls."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https"):
        return False
    host = parts.hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False


def api_version(request: Request, supported: Collection[str]) -> str:
    """The request's ``api-version``; every ACS data-plane call must name a supported one."""
    version = request.query_params.get("api-version")
    if not version:
        raise AcsError(400, MISSING_API_VERSION, "The api-version query parameter is required.")
    if version not in supported:
        raise AcsError(
            400, UNSUPPORTED_API_VERSION,
            f"The api-version '{version}' is not supported. Supported: {', '.join(sorted(supported))}.")
    return version


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise AcsError(400, BAD_REQUEST, "The request body must be a JSON object.")
    return body
