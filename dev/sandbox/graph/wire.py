"""Small wire helpers: Graph's timestamps, JSON bodies, loopback checks."""

from __future__ import annotations

import re
from datetime import datetime, timezone
from ipaddress import ip_address
from typing import Any
from urllib.parse import urlsplit

from starlette.requests import Request

from .errors import BAD_REQUEST, GraphError

_FRACTION = re.compile(r"(\.\d{1,6})\d*")


def utc_now() -> datetime:
    return datetime.now(timezone.utc)


def graph_time(moment: datetime) -> str:
    """Graph's DateTimeOffset as it writes it: UTC, seven fractional digits, ``Z``."""
    return moment.astimezone(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"


def parse_graph_time(value: Any, field_name: str) -> datetime:
    """An ISO 8601 date-time from a request body (any offset, up to seven fractional digits)."""
    if not isinstance(value, str) or not value:
        raise GraphError(400, BAD_REQUEST, f"{field_name} must be an ISO 8601 date and time.")
    text = _FRACTION.sub(r"\1", value.strip()).replace("Z", "+00:00").replace("z", "+00:00")
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise GraphError(400, BAD_REQUEST, f"{field_name} must be an ISO 8601 date and time.") from None
    if moment.tzinfo is None:  # Graph reads a date-time without an offset as UTC
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.astimezone(timezone.utc)


async def json_object(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        body = None
    if not isinstance(body, dict):
        raise GraphError(400, BAD_REQUEST, "The request body must be a JSON object.")
    return body


def is_loopback_url(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    if host == "localhost":
        return True
    try:
        return ip_address(host).is_loopback
    except ValueError:
        return False
