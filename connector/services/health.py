"""Health: version, stamp region, and whether storage answers. Never a secret or a URL with a key."""

from __future__ import annotations

from typing import Protocol

from pydantic import BaseModel


class StorageProbePort(Protocol):
    def tables_reachable(self) -> bool: ...
    def queues_reachable(self) -> bool: ...


class HealthReport(BaseModel):
    status: str
    version: str
    region: str
    checks: dict[str, bool]

    @property
    def healthy(self) -> bool:
        return all(self.checks.values())


def check_health(probe: StorageProbePort, *, version: str, region: str) -> HealthReport:
    checks = {"tables": probe.tables_reachable(), "queues": probe.queues_reachable()}
    return HealthReport(
        status="ok" if all(checks.values()) else "degraded", version=version, region=region, checks=checks
    )
