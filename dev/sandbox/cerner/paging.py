"""Search paging the Cerner way: ``next`` links carry ``-pageContext`` and ``-pageDirection``.

The first page snapshots the matching ids, so walking the ``next`` links yields every
match exactly once even if resources change meanwhile. A page context belongs to one
query: replaying it with other parameters is a 400, which catches clients that rebuild
the next URL instead of following it.
"""

from __future__ import annotations

import threading
import uuid
from collections import OrderedDict
from dataclasses import dataclass

PAGING_PARAMS = ("-pageContext", "-pageDirection")  # not part of the query a page context belongs to
DEFAULT_COUNT = 10  # Cerner documents no default; small, so connectors meet paging early
MAX_COUNT = 100  # larger _count values are clamped, not refused
_KEEP = 1000  # page contexts remembered (oldest forgotten first)


@dataclass(frozen=True)
class Page:
    ids: tuple[str, ...]
    next_context: str | None


@dataclass(frozen=True)
class _Cursor:
    resource_type: str
    query: tuple[tuple[str, str], ...]
    ids: tuple[str, ...]
    offset: int
    count: int


class PageContexts:
    def __init__(self) -> None:
        self._cursors: OrderedDict[str, _Cursor] = OrderedDict()
        self._lock = threading.Lock()

    def first(self, resource_type: str, query: tuple[tuple[str, str], ...], ids: list[str], count: int) -> Page:
        return self._page(_Cursor(resource_type, query, tuple(ids), 0, count))

    def resume(self, context: str, resource_type: str, query: tuple[tuple[str, str], ...]) -> Page | None:
        """The page ``context`` points at, or None if unknown or minted for another query."""
        with self._lock:
            cursor = self._cursors.get(context)
        if cursor is None or cursor.resource_type != resource_type or cursor.query != query:
            return None
        return self._page(cursor)

    def _page(self, cursor: _Cursor) -> Page:
        end = cursor.offset + cursor.count
        next_context = None
        if end < len(cursor.ids):
            next_context = str(uuid.uuid4())
            with self._lock:
                self._cursors[next_context] = _Cursor(cursor.resource_type, cursor.query, cursor.ids, end,
                                                      cursor.count)
                while len(self._cursors) > _KEEP:
                    self._cursors.popitem(last=False)
        return Page(cursor.ids[cursor.offset:end], next_context)


def parse_count(value: str | None) -> int:
    """``_count`` -> page size; ValueError for anything but a positive integer."""
    if value is None:
        return DEFAULT_COUNT
    if not value.isdigit() or int(value) < 1:
        raise ValueError("The '_count' parameter must be a positive integer.")
    return min(int(value), MAX_COUNT)
