"""The admin API in-process, against Azurite, the sandbox issuer (https) and the Cerner simulator."""

from __future__ import annotations

import logging

import pytest

from connector.composition import container
from connector.functions.admin import endpoints, tenant
from connector.settings import get_settings
from dev.sandbox import entra
from dev.sandbox.cerner import SECOND_TENANT
from tests.integration.admin_fixtures import body_of, call

pytestmark = pytest.mark.integration


@pytest.fixture
def admin(admin_env):
    token = admin_env.token()
    assert call(tenant.onboard_tenant, "POST", token=token).status_code == 201
    return token


def add(token, base_url, environment="test", **fields):
    body = {"base_url": base_url, "environment": environment, "display_name": "Cardiology",
            "location_ids": ["32216101"], "timezone": "America/Chicago", **fields}
    return call(endpoints.add_endpoint, "POST", token=token, body=body)


# -- authentication and authority: 401 / 401 / 401 / 401 / 403 / 404 -----------------------


def test_no_token_is_401(admin_env):
    resp = call(endpoints.list_endpoints, "GET")
    assert resp.status_code == 401 and body_of(resp)["error"] == "not_authenticated"


@pytest.mark.parametrize("kwargs", [
    {"expires_in": -600},                      # expired beyond the clock skew
    {"audience": "api://someone-else"},        # wrong audience
    {"signed_by": "forged"},                   # published kid, signature does not verify
    {"signed_by": "foreign"},                  # a key the issuer never published
])
def test_bad_tokens_are_401(admin_env, kwargs):
    resp = call(endpoints.list_endpoints, "GET", token=admin_env.token(**kwargs))
    assert resp.status_code == 401
    assert body_of(resp)["error"] == "not_authenticated"


def test_a_token_without_the_api_scope_is_403(admin_env):
    resp = call(endpoints.list_endpoints, "GET", token=admin_env.token(scopes=("User.Read",)))
    assert resp.status_code == 403 and "Admin.ReadWrite" in body_of(resp)["message"]


def test_a_non_admin_is_403(admin_env):
    resp = call(endpoints.list_endpoints, "GET", token=admin_env.token(user="user"))
    assert resp.status_code == 403 and body_of(resp)["error"] == "not_authorized"


def test_the_app_role_grants_admin_rights(admin_env):
    resp = call(tenant.onboard_tenant, "POST", token=admin_env.token(user="app-admin"))
    assert resp.status_code in (200, 201)


def test_another_tenants_endpoint_is_404(admin, admin_env):
    created = body_of(add(admin, admin_env.fhir_base))
    fabrikam = admin_env.token(tenant=entra.FABRIKAM_TID)
    call(tenant.onboard_tenant, "POST", token=fabrikam)
    for builder, method in ((endpoints.get_endpoint, "GET"), (endpoints.remove_endpoint, "DELETE"),
                            (endpoints.get_integration_record, "GET")):
        resp = call(builder, method, token=fabrikam, route_params={"endpoint_id": created["endpoint_id"]})
        assert resp.status_code == 404, builder
    assert body_of(call(endpoints.list_endpoints, "GET", token=fabrikam)) == {"endpoints": []}


# -- onboarding and stamps ---------------------------------------------------------------------


def test_onboarding_is_per_stamp(admin_env, monkeypatch):
    token = admin_env.token()
    assert call(tenant.get_tenant, "GET", token=token).status_code == 404
    first = call(tenant.onboard_tenant, "POST", token=token)
    assert first.status_code == 201 and body_of(first)["region"] == "us"
    assert call(tenant.onboard_tenant, "POST", token=token).status_code == 200
    assert body_of(call(tenant.get_tenant, "GET", token=token))["tenant_id"] == entra.CONTOSO_TID

    # a second stamp (its own storage names, another region) never sees the tenant
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "eu")
    monkeypatch.setenv("CONNECTOR_STORAGE_NAME_PREFIX", get_settings().storage_name_prefix + "eu")
    get_settings.cache_clear()
    container.cache_clear()
    container().tables.create_missing()
    assert call(tenant.get_tenant, "GET", token=token).status_code == 404
    assert body_of(call(tenant.onboard_tenant, "POST", token=token))["region"] == "eu"


def test_endpoints_need_an_onboarded_tenant(admin_env):
    resp = add(admin_env.token(), admin_env.fhir_base)
    assert resp.status_code == 404


# -- FHIR endpoints --------------------------------------------------------------------------


def test_add_validates_and_records_what_it_discovered(admin, admin_env):
    resp = add(admin, admin_env.fhir_base + "/")
    view = body_of(resp)
    assert resp.status_code == 201, view
    assert view["base_url"] == admin_env.fhir_base
    assert view["token_url"].endswith("/protocols/oauth2/profiles/smart-v1/token")
    assert "/personas/provider/authorize" in view["authorize_url"]
    assert view["cerner_tenant_id"] == admin_env.fhir_base.rsplit("/", 1)[1]
    assert resp.headers["ETag"] == view["etag"]
    assert "tenant_id" not in view


def test_same_url_twice_is_409(admin, admin_env):
    assert add(admin, admin_env.fhir_base).status_code == 201
    resp = add(admin, admin_env.fhir_base)
    assert resp.status_code == 409 and body_of(resp)["error"] == "base_url_registered"
    [problem] = body_of(resp)["problems"]
    assert problem["field"] == "base_url"
    assert problem["message"].startswith("This URL is already one of your organisation's FHIR base URLs")


def test_the_second_organisation_registers_its_own_cerner_tenant_and_is_told_what_to_do_with_anothers(
        admin, admin_env):
    """The sandbox serves a Cerner tenant per demo organisation: the second organisation's admin
    adds their own tenant's URL; the first organisation's URL is refused with what to do next and
    nothing about who holds it."""
    contoso = body_of(add(admin, admin_env.fhir_base, display_name="Contoso main campus"))
    fabrikam = admin_env.token(tenant=entra.FABRIKAM_TID)
    assert call(tenant.onboard_tenant, "POST", token=fabrikam).status_code == 201

    taken = add(fabrikam, admin_env.fhir_base + "/")
    body = body_of(taken)
    assert taken.status_code == 409 and body["error"] == "base_url_registered"
    assert body["message"].startswith("this FHIR base URL is already registered to another organisation in this stamp")
    [problem] = body["problems"]
    assert problem["field"] == "base_url"
    assert "each Cerner domain has its own tenant id" in problem["message"]
    assert "Oracle Health contact" in problem["message"]
    text = taken.get_body().decode()
    for secret in (entra.CONTOSO_TID, contoso["endpoint_id"], "Contoso", admin_env.fhir_base):
        assert secret not in text

    own = add(fabrikam, admin_env.fhir_base_of(SECOND_TENANT), display_name="Fabrikam clinic")
    assert own.status_code == 201, body_of(own)
    assert body_of(own)["cerner_tenant_id"] == SECOND_TENANT
    assert body_of(own)["token_url"] == admin_env.fhir_base_of(SECOND_TENANT).replace(
        f"/r4/{SECOND_TENANT}", f"/tenants/{SECOND_TENANT}/protocols/oauth2/profiles/smart-v1/token")
    assert [e["endpoint_id"] for e in body_of(call(endpoints.list_endpoints, "GET", token=admin))["endpoints"]] == [
        contoso["endpoint_id"]]


def test_loopback_in_production_fails_validation_and_saves_nothing(admin, admin_env):
    resp = add(admin, admin_env.fhir_base, environment="production")
    body = body_of(resp)
    assert resp.status_code == 422 and body["error"] == "validation_failed"
    assert body["validation"]["ok"] is False
    assert body["validation"]["checks"][0]["name"] == "url_syntax"
    assert body["validation"]["checks"][0]["passed"] is False
    assert body_of(call(endpoints.list_endpoints, "GET", token=admin)) == {"endpoints": []}


@pytest.mark.parametrize(("body", "field"), [
    ({"environment": "test"}, "base_url"),
    ({"base_url": "https://fhir.example.org/r4/x", "environment": "staging"}, "environment"),
    ({"base_url": "https://fhir.example.org/r4/x", "environment": "test", "timezone": "Mars/Olympus"}, "timezone"),
    ({"base_url": "https://fhir.example.org/r4/x", "environment": "test", "tenant_id": entra.FABRIKAM_TID}, "tenant_id"),
    ({"base_url": "https://fhir.example.org/r4/x", "environment": "test", "location_ids": ["a/b"]}, "location_ids.0"),
])
def test_bad_fields_are_400_and_named(admin, body, field):
    resp = call(endpoints.add_endpoint, "POST", token=admin, body=body)
    problems = body_of(resp)["problems"]
    assert resp.status_code == 400
    assert field in [p["field"] for p in problems]
    assert "Mars" not in resp.get_body().decode()  # values are not echoed


def test_a_body_that_is_not_json_is_400(admin):
    resp = call(endpoints.add_endpoint, "POST", token=admin, body=b"{not json")
    assert resp.status_code == 400 and body_of(resp)["problems"][0]["field"] == "body"


def test_validate_reports_each_check(admin, admin_env):
    resp = call(endpoints.validate_endpoint, "POST", token=admin,
                body={"base_url": admin_env.fhir_base, "environment": "test"})
    report = body_of(resp)
    assert resp.status_code == 200 and report["ok"] is True
    assert [c["name"] for c in report["checks"]] == [
        "url_syntax", "public_address", "metadata", "smart_discovery",
        "authorize_endpoint", "token_endpoint", "cerner_tenant"]
    assert all(c["passed"] is True and c["message"] for c in report["checks"])


def test_change_is_optimistic_and_remove_frees_the_url(admin, admin_env):
    created = body_of(add(admin, admin_env.fhir_base))
    route = {"endpoint_id": created["endpoint_id"]}
    changed = call(endpoints.change_endpoint, "PATCH", token=admin, route_params=route,
                   headers={"If-Match": created["etag"]}, body={"display_name": "Oncology"})
    assert changed.status_code == 200 and body_of(changed)["display_name"] == "Oncology"

    stale = call(endpoints.change_endpoint, "PATCH", token=admin, route_params=route,
                 headers={"If-Match": created["etag"]}, body={"display_name": "Lost update"})
    assert stale.status_code == 409 and body_of(stale)["error"] == "concurrency_conflict"

    current = body_of(changed)["etag"]
    to_prod = call(endpoints.change_endpoint, "PATCH", token=admin, route_params=route,
                   headers={"If-Match": current}, body={"environment": "production"})
    assert to_prod.status_code == 422  # a changed environment is validated again
    assert body_of(call(endpoints.get_endpoint, "GET", token=admin, route_params=route))["environment"] == "test"

    removed = call(endpoints.remove_endpoint, "DELETE", token=admin, route_params=route, headers={"If-Match": current})
    assert removed.status_code == 204
    assert call(endpoints.get_endpoint, "GET", token=admin, route_params=route).status_code == 404
    assert add(admin, admin_env.fhir_base).status_code == 201


def test_unknown_or_malformed_endpoint_ids_are_404(admin):
    for endpoint_id in ("ep-00000000", "../etc", "a#b"):
        resp = call(endpoints.get_endpoint, "GET", token=admin, route_params={"endpoint_id": endpoint_id})
        assert resp.status_code == 404


def test_integration_record_has_the_stamps_urls(admin, admin_env):
    created = body_of(add(admin, admin_env.fhir_base, provider_client_id="prov-1", backend_client_id="back-1"))
    route = {"endpoint_id": created["endpoint_id"]}
    record = body_of(call(endpoints.get_integration_record, "GET", token=admin, route_params=route))
    assert record["provider_launch_url"] == "http://127.0.0.1:7071/api/launch/provider"
    assert record["patient_launch_url"] == "http://127.0.0.1:7071/api/launch/patient"
    assert record["redirect_uri"] == "http://127.0.0.1:7071/api/launch/callback"
    assert record["jwks_url"] == "http://127.0.0.1:7071/api/.well-known/jwks.json"
    assert record["client_ids"] == {"provider": "prov-1", "patient": None, "backend": "back-1"}
    assert "user/Appointment.read" in record["scopes"]["provider"]
    assert all(s.startswith("system/") for s in record["scopes"]["backend"])
    download = call(endpoints.get_integration_record, "GET", token=admin, route_params=route,
                    params={"download": "true"})
    assert download.headers["Content-Disposition"] == (
        f'attachment; filename="integration-record-{created["endpoint_id"]}.json"')


# -- SMS consents ------------------------------------------------------------------------------


def test_sms_needs_both_consents_with_who_and_when(admin):
    one = body_of(call(tenant.put_sms_consents, "PUT", token=admin, body={"terms": True, "data": False}))
    assert one["sms"]["enabled"] is False
    assert one["sms"]["terms_consent"]["by_oid"] == entra.demo_directory().tenant(entra.CONTOSO_TID).user("admin").oid
    both = body_of(call(tenant.put_sms_consents, "PUT", token=admin, body={"terms": True, "data": True}))
    assert both["sms"]["enabled"] is True
    assert both["sms"]["terms_consent"] == one["sms"]["terms_consent"]  # given once, kept
    withdrawn = body_of(call(tenant.put_sms_consents, "PUT", token=admin, body={"terms": False, "data": True}))
    assert withdrawn["sms"]["enabled"] is False and withdrawn["sms"]["terms_consent"] is None


# -- privacy -----------------------------------------------------------------------------------


def test_tokens_and_bodies_never_reach_the_log(admin, admin_env, caplog):
    caplog.set_level(logging.DEBUG)
    created = body_of(add(admin, admin_env.fhir_base, display_name="Dr Jane Example clinic"))
    call(endpoints.list_endpoints, "GET", token=admin_env.token(expires_in=-600))
    audit = [r.getMessage() for r in caplog.records if r.name == "connector.audit"]
    assert audit == [f"tenant {entra.CONTOSO_TID} added endpoint {created['endpoint_id']} (test)"]  # the log is live
    assert admin not in caplog.text
    assert "Jane" not in caplog.text


def test_field_problems_read_as_sentences_not_regexes(admin):
    body = {"environment": "test", "tenant_id": entra.FABRIKAM_TID, "timezone": "Mars/Olympus",
            "location_ids": ["a/b"]}
    problems = {p["field"]: p["message"] for p in body_of(call(endpoints.add_endpoint, "POST", token=admin, body=body))["problems"]}
    assert problems == {
        "base_url": "is required",
        "tenant_id": "is not a field of this request",
        "timezone": "must be an IANA time zone such as America/Chicago",
        "location_ids.0": "has characters or a form that is not allowed here",
    }


def test_changes_need_a_well_formed_if_match(admin, admin_env):
    created = body_of(add(admin, admin_env.fhir_base))
    route = {"endpoint_id": created["endpoint_id"]}
    for builder, method, body in ((endpoints.change_endpoint, "PATCH", {"display_name": "x"}),
                                  (endpoints.remove_endpoint, "DELETE", None)):
        missing = call(builder, method, token=admin, route_params=route, body=body)
        assert missing.status_code == 428 and body_of(missing)["problems"][0]["field"] == "If-Match"
        garbage = call(builder, method, token=admin, route_params=route, body=body, headers={"If-Match": "garbage"})
        assert garbage.status_code == 400
    assert body_of(call(endpoints.get_endpoint, "GET", token=admin, route_params=route))["display_name"] == "Cardiology"


@pytest.mark.parametrize("field", ["base_url", "environment", "timezone", "display_name", "location_ids"])
def test_null_for_a_required_field_is_400_not_500(admin, admin_env, field):
    created = body_of(add(admin, admin_env.fhir_base))
    resp = call(endpoints.change_endpoint, "PATCH", token=admin, route_params={"endpoint_id": created["endpoint_id"]},
                headers={"If-Match": created["etag"]}, body={field: None})
    assert resp.status_code == 400
    assert body_of(resp)["problems"] == [{"field": field, "message": "cannot be null; leave the field out to keep it"}]


def test_a_deeply_nested_body_is_400(admin):
    resp = call(endpoints.add_endpoint, "POST", token=admin, body=b"[" * 100_000 + b"]" * 100_000)
    assert resp.status_code == 400 and body_of(resp)["problems"][0]["message"] == "is nested too deeply"
