"""The one place where results and errors become HTTP responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from connector.errors import (
    ConfigurationError, ConnectorError, InvalidInput, NotAuthenticated, Problem, problems_from,
)

M = TypeVar("M", bound=BaseModel)

log = logging.getLogger("connector.http")

JSON = "application/json"


def json_response(body: BaseModel | dict | list, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    text = body.model_dump_json() if isinstance(body, BaseModel) else json.dumps(body)
    return func.HttpResponse(text, status_code=status, mimetype=JSON, charset="utf-8", headers=headers)


def error_response(error: Exception) -> func.HttpResponse:
    """Map any exception to a status and a JSON body; unknown ones become a bare 500.

    Only the error's class is logged for unknown errors: messages of foreign exceptions may
    quote request data.
    """
    if isinstance(error, ValidationError):  # settings or a model built from configuration
        error = ConfigurationError("the stamp's configuration is invalid; see the host log")
    if isinstance(error, ConnectorError):
        if error.http_status >= 500:
            log.warning("request failed: %s", type(error).__name__)
        headers = {}
        retry_after = getattr(error, "retry_after", None)
        if retry_after:
            headers["Retry-After"] = str(max(1, round(retry_after)))
        if isinstance(error, NotAuthenticated):  # RFC 6750: say which scheme would work
            headers["WWW-Authenticate"] = 'Bearer error="invalid_token"'
        return json_response(error.as_dict(), error.http_status, headers or None)
    log.error("unexpected error: %s", type(error).__name__)
    return json_response({"error": "internal_error", "message": "unexpected error; see the host log"}, 500)


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    """The request's JSON body as ``model``; every problem named by its field, no values echoed."""
    try:
        data = json.loads(req.get_body() or b"null")
    except RecursionError:
        raise InvalidInput("the body is nested too deeply", problems=[Problem("body", "is nested too deeply")]) from None
    except ValueError:
        raise InvalidInput("the body is not valid JSON", problems=[Problem("body", "must be a JSON object")]) from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", problems=[Problem("body", "must be a JSON object")])
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise InvalidInput("some fields are missing or invalid", problems=problems_from(exc)) from None


def handles_errors(handler: Callable[[func.HttpRequest], func.HttpResponse]):
    """Decorate an HTTP trigger so every error goes through :func:`error_response`."""

    @wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        try:
            return handler(req)
        except Exception as exc:  # noqa: BLE001 - the whole point: nothing escapes as a stack trace
            return error_response(exc)

    return wrapper
