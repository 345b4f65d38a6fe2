"""The demo seed runs at every `make run`: idempotent, and it follows the sandbox to new ports."""

from __future__ import annotations

import pytest

from connector.composition import Container
from connector.settings import Settings
from dev.seed import DemoTenant, seed_demo_tenant

pytestmark = pytest.mark.integration
TID = "e5076923-6a11-40df-b594-eb890ad6bea0"


def demo(port: int) -> DemoTenant:
    base = f"http://127.0.0.1:{port}/r4/ec2458f2-1e24-41c8-b71b-0e701af7583d"
    return DemoTenant(
        tenant_id=TID, fhir_base_url=base, location_ids=["32216101"], timezone="America/Chicago",
        provider_client_id="p", patient_client_id="q", backend_client_id="b",
        cerner_tenant_id="ec2458f2-1e24-41c8-b71b-0e701af7583d",
        authorize_url=f"http://127.0.0.1:{port}/authorize", token_url=f"http://127.0.0.1:{port}/token",
    )


def test_seed_is_idempotent_and_follows_a_moved_sandbox(storage_env):
    deps = Container(Settings())
    first = seed_demo_tenant(deps, demo(8081))
    assert seed_demo_tenant(deps, demo(8081)) == first  # a restart changes nothing
    moved = seed_demo_tenant(deps, demo(9191))
    assert moved.base_url.startswith("http://127.0.0.1:9191/") and moved.token_url.endswith(":9191/token")
    assert deps.endpoints.find_by_base_url(first.base_url) is None
    assert deps.endpoints.find_by_base_url(moved.base_url).item.endpoint_id == "demo-clinic"
    assert [v.item.endpoint_id for v in deps.endpoints.list_endpoints(TID)] == ["demo-clinic"]
