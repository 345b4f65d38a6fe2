"""The OpenAPI document is valid OpenAPI 3.1 and lists exactly the HTTP routes the app registers."""

from __future__ import annotations

import importlib
import json

import azure.functions as func
from openapi_spec_validator import validate

from connector.functions.openapi import openapi, openapi_document
from tests.functions.conftest import user_function


def registered_routes() -> set[tuple[str, str]]:
    app_module = importlib.reload(importlib.import_module("function_app"))  # a fresh app: get_functions() once
    routes = set()
    for function in app_module.app.get_functions():
        trigger = function.get_trigger()
        if trigger.get_binding_name() != "httpTrigger":
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
        assert {"409", "428"} <= set(operation["responses"]), (method, path)
    unconditional = [(path, method) for path, item in paths.items() for method, operation in item.items()
                     if any(p["in"] == "header" for p in operation.get("parameters", []))]
    assert sorted(unconditional) == sorted(changes)  # and nothing else asks for it
