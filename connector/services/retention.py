"""Housekeeping: a daily pass deletes rows nobody will read again (docs/architecture.md, section 5).

    launch states   an hour after they expire (a callback that late is refused as expired anyway)
    join links      a day after they expire (a late tap that day still gets the page naming the clinic)
    subscriptions   a day after they expire (the renewal timer lets go of them first; this is its backstop)
    visits          ``days`` after the appointment ended and the row last changed (the EHR user id)
    notifications   ``days`` after the appointment's start and the row's last outcome

Usage events are kept: they are the reports and hold no PHI. Each row is deleted only if its ETag
still matches, so a visit relaunched (saved) after it was read stays; a row already gone is
someone else's run. Logs carry counts only, never a key.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any

from connector.errors import ConnectorError
from connector.services.ports import Clock, ExpiringRows, Purged

log = logging.getLogger("connector.retention")

LAUNCH_STATE_GRACE = timedelta(hours=1)
JOIN_LINK_GRACE = timedelta(days=1)
SUBSCRIPTION_GRACE = timedelta(days=1)
MIN_DAYS, MAX_DAYS = 1, 3650


def _latest(*moments: datetime | None) -> datetime:
    return max(m for m in moments if m is not None)


# When each kind of row was last of use; it goes once that is before its cut-off.
LAST_USED: dict[str, Callable[[Any], datetime]] = {
    "launch_states": lambda s: s.expires_at,
    "join_links": lambda link: link.expires_at,
    "subscriptions": lambda sub: sub.expires_at,
    "visits": lambda v: _latest(v.appointment_end, v.ended_at, v.updated_at),
    "notifications": lambda n: _latest(n.appointment_start, n.claimed_at, n.sent_at, n.delivered_at),
}


class Retention:
    def __init__(self, *, launch_states: ExpiringRows, join_links: ExpiringRows, subscriptions: ExpiringRows,
                 visits: ExpiringRows, notifications: ExpiringRows, clock: Clock, days: int):
        if not MIN_DAYS <= days <= MAX_DAYS:
            raise ValueError(f"retention days must be {MIN_DAYS}..{MAX_DAYS}")
        self._rows = {"launch_states": launch_states, "join_links": join_links, "subscriptions": subscriptions,
                      "visits": visits, "notifications": notifications}
        self._clock = clock
        self._days = days

    def cutoffs(self, now: datetime) -> dict[str, datetime]:
        kept = now - timedelta(days=self._days)
        return {"launch_states": now - LAUNCH_STATE_GRACE, "join_links": now - JOIN_LINK_GRACE,
                "subscriptions": now - SUBSCRIPTION_GRACE, "visits": kept, "notifications": kept}

    def run(self) -> dict[str, Purged]:
        """One pass over every table; a table that fails does not stop the others (the failure is
        raised at the end, so the invocation is recorded as failed; tomorrow's run goes on)."""
        done: dict[str, Purged] = {}
        failed: ConnectorError | None = None
        for kind, cutoff in self.cutoffs(self._clock.now()).items():
            try:
                done[kind] = self._purge(kind, cutoff)
            except ConnectorError as exc:
                log.warning("retention: %s not purged (%s)", kind, type(exc).__name__)
                failed = exc
                continue
            log.info("retention: %s deleted %d, kept %d (changed since read)", kind, done[kind].deleted,
                     done[kind].kept)
        if failed is not None:
            raise failed
        return done

    def _purge(self, kind: str, cutoff: datetime) -> Purged:
        rows, last_used = self._rows[kind], LAST_USED[kind]
        total = Purged()
        for page in rows.before(cutoff):
            # The store's filter only narrows; the rule is this one, whatever the store returned.
            stale = [row for row in page if last_used(row.item) < cutoff]
            if stale:
                total += rows.delete_unchanged(stale)
        return total
