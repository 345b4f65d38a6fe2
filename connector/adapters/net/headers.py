"""Reading HTTP response headers that outside services control: never trust their shape.

``str.isdigit`` accepts digits of every script ("²", "٣"), which ``int``/``float`` then refuse:
these helpers take ASCII digits only and answer None for anything they cannot read.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone
from email.utils import parsedate_to_datetime

MAX_RETRY_AFTER_SECONDS = 3600.0  # an hour at most, whatever a server asks


def ascii_int(value: str | None) -> int | None:
    text = (value or "").strip()
    return int(text) if text and text.isascii() and text.isdigit() else None


def retry_after_seconds(headers: Mapping[str, str] | None) -> float | None:
    """Retry-After as seconds (delta-seconds or an HTTP date), bounded; None when absent or unreadable."""
    if not headers:
        return None
    value = next((v for k, v in headers.items() if k.lower() == "retry-after"), None)
    if not value:
        return None
    value = value.strip()
    seconds: float
    whole = ascii_int(value)
    if whole is not None:
        seconds = float(whole)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=timezone.utc)
        seconds = (moment - datetime.now(timezone.utc)).total_seconds()
    return min(max(seconds, 0.0), MAX_RETRY_AFTER_SECONDS)
