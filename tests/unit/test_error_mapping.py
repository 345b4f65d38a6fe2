"""One place maps errors to HTTP: statuses follow the hierarchy, bodies name fields, never values."""

from __future__ import annotations

import json

import pytest

from connector import errors
from connector.functions.http import error_response


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (errors.InvalidInput("bad"), 400, "invalid_input"),
        (errors.UnprocessableInput("rule"), 422, "unprocessable_input"),
        (errors.NotAuthenticated("who?"), 401, "not_authenticated"),
        (errors.NotAuthorized("no"), 403, "not_authorized"),
        (errors.NotFound("gone"), 404, "not_found"),
        (errors.Conflict("dup"), 409, "conflict"),
        (errors.ConcurrencyConflict("stale"), 409, "concurrency_conflict"),
        (errors.UpstreamError("ehr"), 502, "upstream_error"),
        (errors.UpstreamUnavailable("later"), 503, "upstream_unavailable"),
        (errors.InvalidUpstreamData("junk"), 502, "invalid_upstream_data"),
        (errors.ConfigurationError("cfg"), 500, "configuration_error"),
    ],
)
def test_each_error_has_its_status(error, status, code):
    resp = error_response(error)
    assert resp.status_code == status
    assert json.loads(resp.get_body())["error"] == code
    assert resp.mimetype == "application/json"


def test_problems_name_the_field():
    error = errors.InvalidInput("invalid endpoint", problems=[errors.Problem("base_url", "must be https")])
    body = json.loads(error_response(error).get_body())
    assert body["problems"] == [{"field": "base_url", "message": "must be https"}]


def test_retry_after_is_passed_on():
    resp = error_response(errors.UpstreamUnavailable("busy", retry_after=7))
    assert resp.headers["Retry-After"] == "7"


def test_unknown_errors_hide_their_message(caplog):
    resp = error_response(KeyError("Jane Doe +15555551234"))
    text = resp.get_body().decode()
    assert resp.status_code == 500 and json.loads(text)["error"] == "internal_error"
    assert "Jane" not in text and "Jane" not in caplog.text
    assert "KeyError" in caplog.text


def test_401_names_the_bearer_scheme():
    resp = error_response(errors.NotAuthenticated("expired"))
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")
