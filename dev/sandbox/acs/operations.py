"""Long-running operations of the phone numbers API, as ``GET /phoneNumbers/operations/{id}`` shows them.

ACS answers a search, purchase or release with 202 and ``Operation-Location``; the client
polls the operation until ``status`` is ``succeeded`` or ``failed`` (azure-core's
``LROBasePolling`` treats both, and ``canceled``, as terminal and raises on ``failed``).
Real purchases take minutes; the sandbox moves at an :class:`LroPace` so a portal can show
progress and tests stay fast.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from .wire import iso

NOT_STARTED = "notStarted"
RUNNING = "running"
SUCCEEDED = "succeeded"
FAILED = "failed"

# operationType values, and the prefix ACS gives the ids of each kind ("search_<guid>").
SEARCH = "search"
PURCHASE = "purchase"
RELEASE = "releasePhoneNumber"
_ID_PREFIX = {SEARCH: "search", PURCHASE: "purchase", RELEASE: "release"}
# ACS fills lastActionDateTime with .NET's DateTime.MinValue while an operation runs.
_NO_ACTION_YET = "0001-01-01T00:00:00+00:00"


@dataclass(frozen=True)
class LroPace:
    """How fast operations finish: after ``polls`` non-terminal answers AND ``seconds`` of time.

    The first non-terminal answer is ``notStarted``, later ones ``running``. With the
    default, a client sees notStarted, running, then the outcome. ``polls=0`` makes the pace
    purely time-based (the operation finishes even if nobody polls).
    """

    polls: int = 2
    seconds: float = 0.0


@dataclass(frozen=True)
class PlannedFailure:
    """What a failed operation reports in its ``error`` (armed by the sandbox controls)."""

    code: str
    message: str


@dataclass
class Operation:
    operation_type: str
    created: datetime
    resource_location: str | None
    # Called once, under the inventory's lock, when the operation succeeds (with the time).
    on_success: Callable[[datetime], None]
    failure: PlannedFailure | None = None  # set: the operation ends failed with this error
    resource_id: str = field(default_factory=lambda: str(uuid.uuid4()))
    status: str = NOT_STARTED
    answers: int = 0  # non-terminal answers served so far
    finished: datetime | None = None

    @property
    def id(self) -> str:
        return f"{_ID_PREFIX[self.operation_type]}_{self.resource_id}"

    @property
    def terminal(self) -> bool:
        return self.status in (SUCCEEDED, FAILED)

    def due(self, now: datetime, pace: LroPace) -> bool:
        return self.answers >= pace.polls and (now - self.created).total_seconds() >= pace.seconds

    def settle(self, now: datetime, pace: LroPace) -> None:
        """Reach the outcome if the pace allows it (at most once)."""
        if self.terminal or not self.due(now, pace):
            return
        self.finished = now
        if self.failure is None:
            self.status = SUCCEEDED
            self.on_success(now)
        else:
            self.status = FAILED

    def poll(self, now: datetime, pace: LroPace) -> None:
        """One status read by a client: finish if due, else count a non-terminal answer."""
        self.settle(now, pace)
        if not self.terminal:
            self.answers += 1
            self.status = NOT_STARTED if self.answers == 1 else RUNNING

    def to_json(self) -> dict[str, Any]:
        body: dict[str, Any] = {
            "operationType": self.operation_type,
            "status": self.status,
            "resourceLocation": self.resource_location,
            "createdDateTime": iso(self.created),
            "id": self.id,
            "lastActionDateTime": iso(self.finished) if self.finished else _NO_ACTION_YET,
        }
        if self.status == FAILED and self.failure is not None:
            body["error"] = {"code": self.failure.code, "message": self.failure.message}
        return body
