"""SMS numbers through the admin API: consents first, 202 + operation, the queue worker drives
the real phonenumbers SDK against the ACS simulator, then link and unlink."""

from __future__ import annotations

import base64
import re

import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from connector.functions import provisioning
from connector.settings import get_settings
from connector.functions.admin import endpoints, numbers, tenant
from tests.integration.admin_fixtures import body_of, call

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(admin_env):
    token = admin_env.token()
    call(tenant.onboard_tenant, "POST", token=token)
    return token


def consent(token, terms=True, data=True):
    return call(tenant.put_sms_consents, "PUT", token=token, body={"terms": terms, "data": data})


def run_worker(storage_env, queue_name: str) -> int:
    """Deliver what the provisioning queue holds to the worker, as the host would."""
    queue = QueueClient.from_connection_string(storage_env["AzureWebJobsStorage"], queue_name)
    delivered = 0
    for message in queue.receive_messages(max_messages=32):
        body = base64.b64decode(message.content)
        provisioning.provision_number_worker.build().get_user_function()(
            QueueMessage(id=message.id, body=body, dequeue_count=message.dequeue_count))
        queue.delete_message(message)
        delivered += 1
    return delivered


def test_number_cannot_be_provisioned_without_both_consents(admin):
    consent(admin, terms=True, data=False)
    resp = call(numbers.provision_number, "POST", token=admin, body={"country_code": "US"})
    assert resp.status_code == 422
    assert [p["field"] for p in body_of(resp)["problems"]] == ["data"]


def test_provision_link_and_unlink(admin, admin_env, storage_env):
    consent(admin)
    started = call(numbers.provision_number, "POST", token=admin, body={"country_code": "US"})
    operation = body_of(started)
    assert started.status_code == 202
    assert operation["status"] == "running" and operation["step"] == "searching"
    assert started.headers["Location"].endswith(f"/api/admin/operations/{operation['operation_id']}")

    assert run_worker(storage_env, get_settings().provisioning_queue) == 1
    route = {"operation_id": operation["operation_id"]}
    done = body_of(call(numbers.get_operation, "GET", token=admin, route_params=route))
    assert done["status"] == "succeeded" and done["step"] == "done"
    assert re.fullmatch(r"\+1(800|833|844|855|866|877|888)\d{7}", done["phone_number"])
    owned = {n["phoneNumber"] for n in admin_env.acs_app.state.phone_numbers.snapshot()["purchased"]}
    assert done["phone_number"] in owned

    endpoint = body_of(call(endpoints.add_endpoint, "POST", token=admin,
                            body={"base_url": admin_env.fhir_base, "environment": "test"}))
    link_route = {"endpoint_id": endpoint["endpoint_id"]}
    linked = call(numbers.link_number, "PUT", token=admin, route_params=link_route,
                  body={"phone_number": done["phone_number"]})
    assert linked.status_code == 200 and body_of(linked)["linked_number"] == done["phone_number"]
    listing = body_of(call(numbers.list_numbers, "GET", token=admin))
    assert listing["phone_numbers"][0]["linked_endpoint_ids"] == [endpoint["endpoint_id"]]
    assert listing["operations"][0]["status"] == "succeeded"

    unlinked = call(numbers.unlink_number, "DELETE", token=admin, route_params=link_route)
    assert body_of(unlinked)["linked_number"] is None
    assert body_of(call(numbers.list_numbers, "GET", token=admin))["phone_numbers"][0]["linked_endpoint_ids"] == []


def test_a_failed_search_is_reported_on_the_operation(admin, admin_env, storage_env):
    consent(admin)
    admin_env.acs_app.state.phone_numbers.fail_next("search")
    operation = body_of(call(numbers.provision_number, "POST", token=admin, body={}))
    run_worker(storage_env, get_settings().provisioning_queue)
    seen = body_of(call(numbers.get_operation, "GET", token=admin,
                        route_params={"operation_id": operation["operation_id"]}))
    assert seen["status"] == "failed" and "refused" in seen["error"]
    assert body_of(call(numbers.list_numbers, "GET", token=admin))["phone_numbers"] == []


def test_only_the_tenants_own_active_numbers_can_be_linked(admin, admin_env):
    consent(admin)
    endpoint = body_of(call(endpoints.add_endpoint, "POST", token=admin,
                            body={"base_url": admin_env.fhir_base, "environment": "test"}))
    route = {"endpoint_id": endpoint["endpoint_id"]}
    resp = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": "+18005550100"})
    assert resp.status_code == 422 and body_of(resp)["problems"][0]["field"] == "phone_number"
    bad = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": "555-0100"})
    assert bad.status_code == 400


def test_unknown_operation_is_404(admin):
    for operation_id in ("0" * 24, "../x"):
        resp = call(numbers.get_operation, "GET", token=admin, route_params={"operation_id": operation_id})
        assert resp.status_code == 404
