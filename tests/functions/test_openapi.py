"""The OpenAPI document is valid OpenAPI 3.1 and lists exactly the HTTP routes the app registers."""

from __future__ import annotations

import importlib
import json

import azure.functions as func
from openapi_spec_validator import validate

from connector.functions.openapi import openapi, openapi_document
from connector.services.admin_setup import ETAG
from tests.functions.conftest import user_function


def registered_routes(*, refusals: bool = False) -> set[tuple[str, str]]:
    """(method, path) of every HTTP function; ``refusals``: only the 405 functions of
    connector.functions.methods, else only the others."""
    app_module = importlib.reload(importlib.import_module("function_app"))  # a fresh app: get_functions() once
    routes = set()
    for function in app_module.app.get_functions():
        trigger = function.get_trigger()
        if trigger.get_binding_name() != "httpTrigger":
            continue
        if function.get_function_name().startswith("not_allowed_") != refusals:
            continue
        for method in trigger.methods:
            routes.add((str(method.value if hasattr(method, "value") else method).lower(), "/" + trigger.route))
    return routes


def documented_routes() -> set[tuple[str, str]]:
    return {(method, path) for path, item in openapi_document()["paths"].items() for method in item}


def test_document_is_valid_openapi_3_1():
    document = openapi_document()
    assert document["openapi"] == "3.1.0"
    validate(document)


def test_document_matches_the_registered_routes():
    assert documented_routes() == registered_routes()


def test_every_other_method_of_a_documented_path_is_a_405_naming_the_served_ones():
    """The host routes by method: without these, a method no function lists is the host's 404."""
    refusals = registered_routes(refusals=True)
    served = documented_routes()
    routable = {m.value.lower() for m in func.HttpMethod}
    for path in {p for _, p in served}:
        mine = {m for m, p in served if p == path}
        refused = {m for m, p in refusals if p == path}
        assert not refused & mine, path
        assert mine | refused <= routable, path
    # Every method of every path is served or refused, except where a more specific path serves
    # it on the same URL shape (POST /admin/endpoints/validate): never shadowed, in any host.
    assert routable - {m for m, p in served | refusals if p == "/admin/endpoints/{endpoint_id}"} == {"post"}
    assert {m for m, p in refusals if p == "/admin/endpoints/validate"} == routable - {"post"}
    assert {m for m, p in refusals if p == "/admin/endpoints"} == routable - {"get", "post"}


def test_a_refused_method_is_405_with_allow():
    app_module = importlib.reload(importlib.import_module("function_app"))
    refusal = next(f for f in app_module.app.get_functions() if f.get_function_name() == "not_allowed_admin_endpoints")
    req = func.HttpRequest("OPTIONS", "http://127.0.0.1:7071/api/admin/endpoints", headers={}, params={}, body=b"")
    resp = refusal.get_user_function()(req)
    assert resp.status_code == 405 and resp.headers["Allow"] == "GET, POST"
    assert json.loads(resp.get_body())["error"] == "method_not_allowed"


def test_served_at_api_openapi_json():
    req = func.HttpRequest("GET", "http://127.0.0.1:7071/api/openapi.json", headers={}, params={}, body=b"")
    resp = user_function(openapi)(req)
    assert resp.status_code == 200
    assert json.loads(resp.get_body())["paths"].keys() == openapi_document()["paths"].keys()


def test_admin_operations_declare_bearer_security_and_auth_errors():
    for path, item in openapi_document()["paths"].items():
        for method, operation in item.items():
            if path.startswith("/admin/"):
                assert operation["security"] == [{"entraId": []}], (method, path)
                assert {"401", "403"} <= set(operation["responses"]), (method, path)


def test_every_change_of_an_endpoint_requires_if_match():
    """Changes of an endpoint (its settings, its removal, its number, its reminder policy) name
    the version they saw: If-Match is a required header, 428 without it, 409 when stale."""
    paths = openapi_document()["paths"]
    changes = [("/admin/endpoints/{endpoint_id}", "patch"), ("/admin/endpoints/{endpoint_id}", "delete"),
               ("/admin/endpoints/{endpoint_id}/phone-number", "put"),
               ("/admin/endpoints/{endpoint_id}/phone-number", "delete"),
               ("/admin/endpoints/{endpoint_id}/reminder-policy", "put")]
    for path, method in changes:
        operation = paths[path][method]
        headers = [p for p in operation["parameters"] if p["in"] == "header"]
        assert [(h["name"], h["required"]) for h in headers] == [("If-Match", True)], (method, path)
        assert headers[0]["schema"]["pattern"] == ETAG  # the form required_etag checks (400 otherwise)
        assert {"409", "428"} <= set(operation["responses"]), (method, path)
    unconditional = [(path, method) for path, item in paths.items() for method, operation in item.items()
                     if any(p["in"] == "header" for p in operation.get("parameters", []))]
    assert sorted(unconditional) == sorted(changes)  # and nothing else asks for it


def test_links_lead_from_what_a_post_creates_to_its_operations():
    """The stateful fuzz phase follows these: a provisioning to its operation, an endpoint to its
    read, change and removal (with the ETag it was created with)."""
    paths = openapi_document()["paths"]
    provisioned = paths["/admin/phone-numbers"]["post"]["responses"]["202"]["links"]
    assert provisioned == {"GetOperation": {"operationId": "get_operation",
                                            "parameters": {"operation_id": "$response.body#/operation_id"}}}
    added = paths["/admin/endpoints"]["post"]["responses"]["201"]["links"]
    assert {link["operationId"] for link in added.values()} == {"get_endpoint", "change_endpoint", "remove_endpoint"}
    assert added["RemoveEndpoint"]["parameters"]["header.If-Match"] == "$response.header.ETag"
