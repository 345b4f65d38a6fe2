"""The tenant segment of an Entra URL: a tenant id, a tenant domain, or a multi-tenant alias."""

from __future__ import annotations

from dataclasses import dataclass

from .directory import Directory, Tenant

# ``consumers`` (personal Microsoft accounts) has no place in a clinic's directory.
MULTI_TENANT_SEGMENTS = frozenset({"common", "organizations"})


@dataclass(frozen=True)
class Authority:
    segment: str  # as written in the URL
    tenant: Tenant | None  # None for common / organizations

    @property
    def path_tenant(self) -> str:
        """The segment endpoints are published under (a domain resolves to its id)."""
        return self.tenant.tid if self.tenant else self.segment

    def allows(self, tenant: Tenant) -> bool:
        return self.tenant is None or self.tenant.tid == tenant.tid

    def tenants(self, directory: Directory) -> tuple[Tenant, ...]:
        return (self.tenant,) if self.tenant else directory.tenants


def resolve_authority(segment: str, directory: Directory) -> Authority | None:
    if segment.lower() in MULTI_TENANT_SEGMENTS:
        return Authority(segment.lower(), None)
    tenant = directory.tenant(segment)
    return Authority(segment, tenant) if tenant else None
