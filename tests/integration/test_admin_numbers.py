"""SMS numbers through the admin API: consents first, 202 + operation, the queue worker drives
the real phonenumbers SDK against the ACS simulator, then link and unlink."""

from __future__ import annotations

import base64
import re

import pytest
from azure.functions.queue import QueueMessage
from azure.storage.queue import QueueClient

from connector.adapters.acs.phone_numbers import PurchaseAlreadyStarted
from connector.composition import container
from connector.domain.phone_number import ProvisioningStep
from connector.functions import provisioning
from connector.settings import get_settings
from connector.functions.admin import endpoints, numbers, tenant
from connector.errors import UpstreamUnavailable
from dev.sandbox import acs, entra
from tests.integration.admin_fixtures import ACS_KEY, body_of, call

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


def deliver_once(storage_env, queue_name: str) -> None:
    """Deliver the one message the queue holds; if the worker raises, put the message back
    (visible at once) as the host would for its retry, and re-raise."""
    queue = QueueClient.from_connection_string(storage_env["AzureWebJobsStorage"], queue_name)
    [message] = queue.receive_messages(max_messages=32)
    try:
        provisioning.provision_number_worker.build().get_user_function()(
            QueueMessage(id=message.id, body=base64.b64decode(message.content), dequeue_count=message.dequeue_count))
    except Exception:
        queue.update_message(message, visibility_timeout=0)
        raise
    queue.delete_message(message)


def operation_of(token, operation_id: str) -> dict:
    return body_of(call(numbers.get_operation, "GET", token=token, route_params={"operation_id": operation_id}))


def acs_purchases(sandbox) -> list[dict]:
    return [op for op in sandbox.acs_app.state.phone_numbers.snapshot()["operations"]
            if op["operationType"] == "purchase"]


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
                  body={"phone_number": done["phone_number"]}, headers={"If-Match": endpoint["etag"]})
    assert linked.status_code == 200 and body_of(linked)["linked_number"] == done["phone_number"]
    assert linked.headers["ETag"] == body_of(linked)["etag"] != endpoint["etag"]
    listing = body_of(call(numbers.list_numbers, "GET", token=admin))
    assert listing["phone_numbers"][0]["linked_endpoint_ids"] == [endpoint["endpoint_id"]]
    assert listing["operations"][0]["status"] == "succeeded"

    unlinked = call(numbers.unlink_number, "DELETE", token=admin, route_params=link_route,
                    headers={"If-Match": linked.headers["ETag"]})
    assert unlinked.status_code == 200 and body_of(unlinked)["linked_number"] is None
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
    route, if_match = {"endpoint_id": endpoint["endpoint_id"]}, {"If-Match": endpoint["etag"]}
    resp = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": "+18005550100"},
                headers=if_match)
    assert resp.status_code == 422 and body_of(resp)["problems"][0]["field"] == "phone_number"
    bad = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": "555-0100"},
               headers=if_match)
    assert bad.status_code == 400


def owned_number(token, admin_env, storage_env) -> str:
    """A number provisioned for the caller's tenant through the API and the worker."""
    operation = body_of(call(numbers.provision_number, "POST", token=token, body={"country_code": "US"}))
    assert run_worker(storage_env, get_settings().provisioning_queue) == 1
    return operation_of(token, operation["operation_id"])["phone_number"]


def test_link_and_unlink_need_the_etag_the_endpoint_was_read_with(admin, admin_env, storage_env):
    """As for endpoint changes: no If-Match is a 428 with the same error shape, a malformed one a
    400, a stale one a 409; none of them changes what is stored."""
    consent(admin)
    number = owned_number(admin, admin_env, storage_env)
    endpoint = body_of(call(endpoints.add_endpoint, "POST", token=admin,
                            body={"base_url": admin_env.fhir_base, "environment": "test"}))
    route = {"endpoint_id": endpoint["endpoint_id"]}
    change_missing = call(endpoints.change_endpoint, "PATCH", token=admin, route_params=route,
                          body={"display_name": "x"})
    for builder, method, body in ((numbers.link_number, "PUT", {"phone_number": number}),
                                  (numbers.unlink_number, "DELETE", None)):
        missing = call(builder, method, token=admin, route_params=route, body=body)
        assert missing.status_code == 428 == change_missing.status_code
        assert body_of(missing) == body_of(change_missing) == {
            "error": "precondition_required", "message": "send the endpoint's ETag in If-Match",
            "problems": [{"field": "If-Match", "message": "is required"}]}
        garbage = call(builder, method, token=admin, route_params=route, body=body, headers={"If-Match": "garbage"})
        assert garbage.status_code == 400 and body_of(garbage)["problems"][0]["field"] == "If-Match"
    assert body_of(call(endpoints.get_endpoint, "GET", token=admin, route_params=route))["etag"] == endpoint["etag"]

    # Another tab renames the endpoint; this one still holds the ETag it read before.
    renamed = call(endpoints.change_endpoint, "PATCH", token=admin, route_params=route,
                   headers={"If-Match": endpoint["etag"]}, body={"display_name": "Renamed meanwhile"})
    assert renamed.status_code == 200
    stale = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": number},
                 headers={"If-Match": endpoint["etag"]})
    assert stale.status_code == 409 and body_of(stale)["error"] == "concurrency_conflict"
    current = body_of(call(endpoints.get_endpoint, "GET", token=admin, route_params=route))
    assert (current["display_name"], current["linked_number"]) == ("Renamed meanwhile", None)

    linked = call(numbers.link_number, "PUT", token=admin, route_params=route, body={"phone_number": number},
                  headers={"If-Match": current["etag"]})
    assert linked.status_code == 200 and body_of(linked)["display_name"] == "Renamed meanwhile"
    stale_unlink = call(numbers.unlink_number, "DELETE", token=admin, route_params=route,
                        headers={"If-Match": current["etag"]})
    assert stale_unlink.status_code == 409 and body_of(stale_unlink)["error"] == "concurrency_conflict"
    assert body_of(call(endpoints.get_endpoint, "GET", token=admin, route_params=route))["linked_number"] == number


def test_another_tenants_endpoint_is_404_whatever_the_if_match(admin, admin_env):
    endpoint = body_of(call(endpoints.add_endpoint, "POST", token=admin,
                            body={"base_url": admin_env.fhir_base, "environment": "test"}))
    fabrikam = admin_env.token(tenant=entra.FABRIKAM_TID)
    call(tenant.onboard_tenant, "POST", token=fabrikam)
    for headers in ({}, {"If-Match": endpoint["etag"]}):
        resp = call(numbers.unlink_number, "DELETE", token=fabrikam, headers=headers,
                    route_params={"endpoint_id": endpoint["endpoint_id"]})
        assert resp.status_code == 404


def test_a_second_request_while_one_runs_is_409_naming_it_then_accepted_once_done(admin, admin_env, storage_env):
    consent(admin)
    purchases_before = len(acs_purchases(admin_env))
    first = body_of(call(numbers.provision_number, "POST", token=admin, body={"country_code": "US"}))

    again = call(numbers.provision_number, "POST", token=admin, body={"country_code": "US"})
    assert again.status_code == 409
    refused = body_of(again)
    assert refused["error"] == "provisioning_in_progress" and refused["operation_id"] == first["operation_id"]
    listing = body_of(call(numbers.list_numbers, "GET", token=admin))
    assert [o["operation_id"] for o in listing["operations"]] == [first["operation_id"]]

    assert run_worker(storage_env, get_settings().provisioning_queue) == 1  # only the first was queued
    assert operation_of(admin, first["operation_id"])["status"] == "succeeded"
    assert len(acs_purchases(admin_env)) == purchases_before + 1

    second = call(numbers.provision_number, "POST", token=admin, body={"country_code": "US"})
    assert second.status_code == 202
    assert body_of(second)["operation_id"] != first["operation_id"] and body_of(second)["status"] == "running"


def test_a_retry_after_acs_took_the_purchase_does_not_buy_again(admin, admin_env, storage_env):
    """The worker died after ACS accepted the purchase: the retry gets ACS's 409 (through the
    real SDK), keeps the operation running, and succeeds once ACS owns the number."""
    consent(admin)
    inventory = admin_env.acs_app.state.phone_numbers
    purchases_before = len(acs_purchases(admin_env))
    started = body_of(call(numbers.provision_number, "POST", token=admin, body={}))
    # What the dead worker had done: searched, recorded that it starts buying, asked ACS to buy.
    found = container().acs_phone_numbers.search_toll_free("US")
    repo = container().phone_numbers
    stored = repo.get_provisioning(entra.CONTOSO_TID, started["operation_id"])
    repo.save_provisioning(stored.item.model_copy(update={
        "step": ProvisioningStep.purchasing, "search_id": found.search_id, "phone_number": found.phone_numbers[0],
        "purchase_started_at": stored.item.created_at}), stored.etag)
    in_flight = inventory.start_purchase(found.search_id)  # pending until ACS is polled (sandbox pace)

    with pytest.raises(PurchaseAlreadyStarted):  # ACS's 409, through the real SDK
        deliver_once(storage_env, get_settings().provisioning_queue)
    seen = operation_of(admin, started["operation_id"])
    assert (seen["status"], seen["step"], seen["error"]) == ("running", "purchasing", None)

    statuses = [inventory.poll(in_flight.id).status for _ in range(3)]  # ACS finishes in the background
    assert statuses[-1] == "succeeded"
    deliver_once(storage_env, get_settings().provisioning_queue)
    done = operation_of(admin, started["operation_id"])
    assert done["status"] == "succeeded" and done["phone_number"] == found.phone_numbers[0]
    assert len(acs_purchases(admin_env)) == purchases_before + 1  # the 409 bought nothing
    listed = body_of(call(numbers.list_numbers, "GET", token=admin))["phone_numbers"]
    assert [n["phone_number"] for n in listed] == [found.phone_numbers[0]]


def test_an_acs_credential_failure_is_retried_not_failed(admin, admin_env, storage_env, monkeypatch):
    consent(admin)
    started = body_of(call(numbers.provision_number, "POST", token=admin, body={}))
    monkeypatch.setenv("CONNECTOR_ACS_EMULATOR_KEY", acs.generate_access_key())  # ACS answers 401 Denied
    get_settings.cache_clear()
    container.cache_clear()
    with pytest.raises(UpstreamUnavailable) as raised:
        deliver_once(storage_env, get_settings().provisioning_queue)
    assert type(raised.value) is UpstreamUnavailable and "signed in" in raised.value.message
    seen = operation_of(admin, started["operation_id"])
    assert (seen["status"], seen["step"], seen["error"]) == ("running", "searching", None)

    monkeypatch.setenv("CONNECTOR_ACS_EMULATOR_KEY", ACS_KEY)  # the identity is back
    get_settings.cache_clear()
    container.cache_clear()
    deliver_once(storage_env, get_settings().provisioning_queue)
    assert operation_of(admin, started["operation_id"])["status"] == "succeeded"


def test_unknown_operation_is_404(admin):
    for operation_id in ("0" * 24, "../x", "a" * 600):
        resp = call(numbers.get_operation, "GET", token=admin, route_params={"operation_id": operation_id})
        assert resp.status_code == 404
