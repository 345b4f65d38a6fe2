"""The per-number SMS send limit: what ``POST /sms`` answers with 429 and ``Retry-After``.

What ACS documents ("Service limits for Azure Communication Services", section SMS,
https://learn.microsoft.com/azure/communication-services/concepts/service-limits#sms):

    Send Message | Toll-Free | Per Number | 60 s | 200 requests | 200 message units per minute

and "when you hit service limitations, you receive an HTTP status code 429 (Too many
requests)". A *message unit* is one message to one recipient (Microsoft Q&A 1402980: "a
'message unit' refers to each individual message sent to a phone number", so one request to
100 recipients is 100 units). Every request carries at least one recipient, so the units limit
is the one that binds.

What the sandbox does with it (its own choices where ACS publishes nothing):

- a **sliding window**: a request from number N is refused when the units N sent in the last
  ``window`` (60 s), plus this request's recipients, would exceed ``limit`` (200). Refused
  requests do not count. The window slides, so there is no burst at a minute boundary.
- the refusal is the **whole request**: 429 with ``{"error": {"code": "TooManyRequests", ...}}``
  and ``Retry-After`` in whole seconds until enough earlier units leave the window. ACS does
  not document the header for SMS (it does for Email and Graph); azure-core's ``RetryPolicy``
  honours it, so ``SmsClient`` waits and retries a throttled send by itself (up to its
  ``retry_total``, 10 by default) before any 429 reaches the caller.
- the limit applies to every number the resource owns (toll-free or not), keyed by ``from``;
  a request with more recipients than ``limit`` can never pass and is refused with the time
  the whole window needs.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

TOLL_FREE_UNITS_PER_MINUTE = 200
WINDOW_SECONDS = 60.0


@dataclass(frozen=True)
class Throttled:
    retry_after: int  # whole seconds, at least 1
    limit: int
    window_seconds: float


class SlidingWindowLimiter:
    """``limit`` units per ``window_seconds`` per key. Thread-safe; ``clock`` is monotonic seconds."""

    def __init__(self, limit: int = TOLL_FREE_UNITS_PER_MINUTE, window_seconds: float = WINDOW_SECONDS,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if limit < 1 or window_seconds <= 0:
            raise ValueError("the SMS rate limit needs limit >= 1 and a positive window")
        self.limit = limit
        self.window_seconds = window_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._sent: dict[str, deque[tuple[float, int]]] = {}

    def take(self, key: str, units: int) -> Throttled | None:
        """Count ``units`` for ``key`` now, or (counting nothing) say how long to wait."""
        now = self._clock()
        with self._lock:
            sent = self._sent.setdefault(key, deque())
            while sent and sent[0][0] <= now - self.window_seconds:
                sent.popleft()
            used = sum(n for _, n in sent)
            if used + units <= self.limit:
                sent.append((now, units))
                return None
            # The earliest moment enough units have left the window (all of it if units > limit).
            free_at = now + self.window_seconds
            if units <= self.limit:
                excess = used + units - self.limit
                for at, n in sent:
                    excess -= n
                    if excess <= 0:
                        free_at = at + self.window_seconds
                        break
            return Throttled(max(1, math.ceil(free_at - now)), self.limit, self.window_seconds)

    def used(self, key: str) -> int:
        now = self._clock()
        with self._lock:
            return sum(n for at, n in self._sent.get(key, ()) if at > now - self.window_seconds)

    def reset(self) -> None:
        with self._lock:
            self._sent.clear()
