"""The admin API over real sockets (the local host, Azurite, bearer tokens from the sandbox issuer)
against the stamp `make run` seeds: Contoso Clinic set up on its Cerner tenant, Fabrikam Health
not set up yet, the Cerner sandbox serving a tenant for each.

- The second demo admin sets Fabrikam up with Fabrikam's own FHIR base URL; Contoso's URL is
  refused with what to do next and nothing about who holds it.
- Linking and unlinking a phone number need the endpoint's ETag in If-Match, as every other
  change of an endpoint does: 428 without it, 409 when stale, never a silent overwrite.
"""

from __future__ import annotations

import pytest

from dev.demo import DEMO_ORGANISATIONS, demo_fhir_base
from dev.sandbox.cerner import SECOND_TENANT
from dev.sandbox.entra import CONTOSO_TID, FABRIKAM_TID
from dev.stack import DEMO_NUMBERS
from tests.integration.test_reminders import ENDPOINT
from tests.integration.test_reminders_admin import Admin

pytestmark = pytest.mark.integration
CONTOSO, FABRIKAM = DEMO_ORGANISATIONS
NUMBER_PATH = f"/api/admin/endpoints/{ENDPOINT}/phone-number"


def test_the_second_demo_admin_sets_up_fabrikam_with_its_own_cerner_tenant(visit_stack):
    cerner_app = visit_stack.sandbox.cerner_app
    contoso_url, fabrikam_url = demo_fhir_base(cerner_app, CONTOSO), demo_fhir_base(cerner_app, FABRIKAM)
    assert (CONTOSO.tenant_id, FABRIKAM.tenant_id) == (CONTOSO_TID, FABRIKAM_TID)
    assert contoso_url == visit_stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT).item.base_url  # seeded
    assert fabrikam_url.endswith(f"/r4/{SECOND_TENANT}")

    samira = Admin(visit_stack, tenant=FABRIKAM_TID)
    assert samira.call("GET", "/api/admin/tenant").status_code == 404  # "not set up yet"
    assert samira.call("POST", "/api/admin/tenant").status_code == 201

    # Contoso's URL (what a new user copies from the README's first row): refused, with what to do next.
    taken = samira.call("POST", "/api/admin/endpoints", json={"base_url": contoso_url, "environment": "test"})
    assert taken.status_code == 409, taken.text
    body = taken.json()
    assert body["error"] == "base_url_registered"
    assert body["message"].startswith("this FHIR base URL is already registered to another organisation")
    assert "Oracle Health contact" in body["message"]
    [problem] = body["problems"]
    assert problem["field"] == "base_url" and "each Cerner domain has its own tenant id" in problem["message"]
    for secret in (CONTOSO_TID, ENDPOINT, "Contoso", "Demo clinic", contoso_url):
        assert secret not in taken.text

    # Fabrikam's own URL validates and registers: the wizard's first step, then its records.
    report = samira.call("POST", "/api/admin/endpoints/validate", json={"base_url": fabrikam_url, "environment": "test"})
    assert report.status_code == 200 and report.json()["ok"] is True, report.text
    added = samira.call("POST", "/api/admin/endpoints", json={
        "base_url": fabrikam_url, "environment": "test", "display_name": "Fabrikam clinic",
        "location_ids": ["32216101"], "timezone": "America/Chicago", "provider_client_id": "fabrikam-provider"})
    assert added.status_code == 201, added.text
    endpoint = added.json()
    assert endpoint["cerner_tenant_id"] == SECOND_TENANT and f"/tenants/{SECOND_TENANT}/" in endpoint["token_url"]
    record = samira.call("GET", f"/api/admin/endpoints/{endpoint['endpoint_id']}/integration-record")
    assert record.status_code == 200 and record.json()["base_url"] == fabrikam_url
    assert [e["endpoint_id"] for e in samira.call("GET", "/api/admin/endpoints").json()["endpoints"]] == [
        endpoint["endpoint_id"]]

    # Contoso's admin adding Fabrikam's URL hears the same about Fabrikam; adding its own again, that it is its own.
    avery = Admin(visit_stack)
    theirs = avery.call("POST", "/api/admin/endpoints", json={"base_url": fabrikam_url, "environment": "test"})
    assert theirs.status_code == 409 and theirs.json() == body  # word for word: no hint of whose
    mine = avery.call("POST", "/api/admin/endpoints", json={"base_url": contoso_url + "/", "environment": "test"})
    assert mine.status_code == 409 and "already registered for your organisation" in mine.json()["message"]


def test_link_and_unlink_need_the_etag_over_the_host(visit_stack):
    avery = Admin(visit_stack)
    number = DEMO_NUMBERS[0]
    read = avery.call("GET", f"/api/admin/endpoints/{ENDPOINT}")
    first = read.headers["ETag"]
    assert read.json()["linked_number"] == number  # seeded linked

    missing_change = avery.call("PATCH", f"/api/admin/endpoints/{ENDPOINT}", json={"display_name": "x"})
    for method, body in (("DELETE", None), ("PUT", {"phone_number": number})):
        missing = avery.call(method, NUMBER_PATH, json=body)
        assert missing.status_code == 428 == missing_change.status_code, missing.text
        assert missing.json() == missing_change.json()  # the same error, from the same code path
        assert missing.json()["problems"] == [{"field": "If-Match", "message": "is required"}]

    # Another admin renames the endpoint; this portal still holds the first ETag.
    renamed = avery.call("PATCH", f"/api/admin/endpoints/{ENDPOINT}", json={"display_name": "Renamed meanwhile"},
                         headers={"If-Match": first})
    assert renamed.status_code == 200, renamed.text
    stale = avery.call("DELETE", NUMBER_PATH, headers={"If-Match": first})
    assert stale.status_code == 409 and stale.json()["error"] == "concurrency_conflict", stale.text
    assert visit_stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT).item.linked_number == number

    unlinked = avery.call("DELETE", NUMBER_PATH, headers={"If-Match": renamed.headers["ETag"]})
    assert unlinked.status_code == 200 and unlinked.json()["linked_number"] is None, unlinked.text
    assert unlinked.json()["display_name"] == "Renamed meanwhile"  # the other change is kept
    again = avery.call("PUT", NUMBER_PATH, json={"phone_number": number}, headers={"If-Match": renamed.headers["ETag"]})
    assert again.status_code == 409
    relinked = avery.call("PUT", NUMBER_PATH, json={"phone_number": number},
                          headers={"If-Match": unlinked.headers["ETag"]})
    assert relinked.status_code == 200 and relinked.json()["linked_number"] == number
    assert relinked.headers["ETag"] == relinked.json()["etag"] != unlinked.headers["ETag"]
