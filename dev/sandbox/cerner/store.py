"""In-memory FHIR resources by type and id, with Cerner-style numeric version ids."""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable, Iterable
from datetime import datetime, timezone
from typing import Any

Resource = dict[str, Any]


def instant(moment: datetime) -> str:
    """Cerner's instant format: UTC with milliseconds, e.g. ``2020-07-11T05:05:01.000Z``."""
    utc = moment.astimezone(timezone.utc)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


class ResourceStore:
    """Resources as JSON dicts. Callers get copies, so nobody edits the store by accident."""

    def __init__(self, resources: Iterable[Resource] = ()) -> None:
        self._by_type: dict[str, dict[str, Resource]] = {}
        self._lock = threading.Lock()
        for resource in resources:
            self.put(resource)

    def put(self, resource: Resource) -> None:
        with self._lock:
            self._by_type.setdefault(resource["resourceType"], {})[resource["id"]] = copy.deepcopy(resource)

    def get(self, resource_type: str, resource_id: str) -> Resource | None:
        with self._lock:
            found = self._by_type.get(resource_type, {}).get(resource_id)
            return copy.deepcopy(found) if found is not None else None

    def all(self, resource_type: str) -> list[Resource]:
        with self._lock:
            return [copy.deepcopy(r) for r in self._by_type.get(resource_type, {}).values()]

    def types(self) -> list[str]:
        with self._lock:
            return sorted(self._by_type)

    def replace_versioned(self, resource: Resource, expected_version: str, now: datetime, *,
                          video_links: bool = False) -> Resource | None:
        """Store ``resource`` as the next version if the stored one is still ``expected_version``.

        Returns the stored copy, or None when someone else changed it first (optimistic
        concurrency, what If-Match is for).
        """
        with self._lock:
            current = self._by_type.get(resource["resourceType"], {}).get(resource["id"])
            if current is None or current["meta"]["versionId"] != expected_version:
                return None
            updated = copy.deepcopy(resource)
            updated["meta"] = {**current["meta"], "versionId": next_version(expected_version, video_links),
                               "lastUpdated": instant(now)}
            self._by_type[resource["resourceType"]][resource["id"]] = updated
            return copy.deepcopy(updated)

    def change(self, resource_type: str, resource_id: str, mutate: Callable[[Resource], None],
               now: datetime) -> Resource | None:
        """Apply ``mutate`` to a copy of the stored resource and store it as the next version
        (``meta.versionId`` moved as :func:`next_version` does, ``meta.lastUpdated`` = ``now``),
        atomically. What the EHR does when someone changes the record inside Millennium (the
        sandbox's reschedule and cancel). None when there is no such resource; ``mutate`` may
        raise to refuse the change, and then nothing is stored."""
        with self._lock:
            current = self._by_type.get(resource_type, {}).get(resource_id)
            if current is None:
                return None
            updated = copy.deepcopy(current)
            mutate(updated)
            updated["meta"] = {**current["meta"], "versionId": next_version(current["meta"]["versionId"]),
                               "lastUpdated": instant(now)}
            self._by_type[resource_type][resource_id] = updated
            return copy.deepcopy(updated)

    def count(self, resource_type: str) -> int:
        with self._lock:
            return len(self._by_type.get(resource_type, {}))


def next_version(version: str, video_links: bool = False) -> str:
    """The version after a change: ``N`` or, on video visits, ``N-M``.

    Cerner's video visit versions have two parts (appointment-read-4817572: ``"2-1"``; the
    Video Visit link patch examples answer ``ETag: W/"10-1"``, status patches ``W/"10"``).
    How the parts move is not documented; the simulator's rule: every change moves ``N``, a
    Video Visit link patch also moves ``M`` (from nothing to 1). Clients must treat ETags
    as opaque strings.
    """
    record, _, links = version.partition("-")
    record = str(int(record) + 1)
    if video_links:
        return f"{record}-{int(links or 0) + 1}"
    return f"{record}-{links}" if links else record
