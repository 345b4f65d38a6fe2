"""The one place where results and errors become HTTP responses."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable
from functools import wraps
from typing import TypeVar

import azure.functions as func
from pydantic import BaseModel, ValidationError

from connector import telemetry
from connector.errors import (
    RULE, ConfigurationError, ConnectorError, InvalidInput, NotAuthenticated, Problem, UnprocessableInput, problems_from,
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


def _json_number(text: str) -> int | float:
    """A JSON number with a fraction or exponent: an integer when its value is one (``60.0`` is
    the integer 60 in JSON Schema, so the document's "integer" accepts it), else a float."""
    value = float(text)
    return int(value) if value.is_integer() else value


def parse_body(req: func.HttpRequest, model: type[M]) -> M:
    """The request's JSON body as ``model``; every problem named by its field, no values echoed.

    Strict: JSON types are taken as they are, never coerced (``1`` is not ``true``, ``"60"`` is not
    ``60``), so what the document says a field is, is what the API accepts (numbers compare by
    value, as in JSON Schema: ``60.0`` is an integer). A body that breaks the
    document (its types, patterns, lengths, required fields) is a 400; one that fits it but breaks
    a rule between fields the document can only state in words (:data:`RULE`) is a 422.
    """
    try:
        data = json.loads(req.get_body() or b"null", parse_float=_json_number)
    except RecursionError:
        raise InvalidInput("the body is nested too deeply", problems=[Problem("body", "is nested too deeply")]) from None
    except ValueError:
        raise InvalidInput("the body is not valid JSON", problems=[Problem("body", "must be a JSON object")]) from None
    if not isinstance(data, dict):
        raise InvalidInput("the body must be a JSON object", problems=[Problem("body", "must be a JSON object")])
    try:
        # Validated as JSON (a string may be an enum member or a date, as the document says),
        # re-encoded so that an integral number is an integer, as in JSON Schema.
        return model.model_validate_json(json.dumps(data), strict=True)
    except ValidationError as exc:
        problems = problems_from(exc)
        if all(error["type"] == RULE for error in exc.errors(include_input=False, include_url=False)):
            raise UnprocessableInput("the request breaks a rule", problems=problems) from None
        raise InvalidInput("some fields are missing or invalid", problems=problems) from None


# Route parameters that are our own ids, recorded on the invocation's span; the others (a join
# token, a visit's session id) open something and are never recorded.
TRACED_ROUTE_PARAMS = ("endpoint_id", "operation_id")


def _invoke(handler: Callable[[func.HttpRequest], func.HttpResponse], req: func.HttpRequest,
            on_error: Callable[[Exception], func.HttpResponse]) -> func.HttpResponse:
    """One HTTP invocation in its span (named after the function, never the URL): the method,
    the route's ids, the status and, when the handler raised, the error's class."""
    ids = {name: req.route_params.get(name) for name in TRACED_ROUTE_PARAMS}
    with telemetry.invocation(handler.__name__, trigger="http", method=req.method, **ids) as span:
        try:
            response = handler(req)
        except Exception as exc:  # noqa: BLE001 - the whole point: nothing escapes as a stack trace
            span.set(error=type(exc).__name__)
            response = on_error(exc)
        span.set(status=response.status_code)
        return response


def handles_errors(handler: Callable[[func.HttpRequest], func.HttpResponse]):
    """Decorate an HTTP trigger so every error goes through :func:`error_response`."""

    @wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        return _invoke(handler, req, error_response)

    return wrapper


# -- pages -----------------------------------------------------------------------------------

# Pages of the clinical flows are never cached or framed, and say nothing to other sites.
PAGE_HEADERS = {"Cache-Control": "no-store", "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer",
                "X-Frame-Options": "DENY"}


def html_response(page, status: int = 200, headers: dict | None = None) -> func.HttpResponse:
    """A rendered ``connector.pages`` page with its CSP."""
    all_headers = {**PAGE_HEADERS, "Content-Security-Policy": page.csp, **(headers or {})}
    return func.HttpResponse(page.html, status_code=status, mimetype="text/html", charset="utf-8",
                             headers=all_headers)


def redirect(location: str, status: int = 302, headers: dict | None = None) -> func.HttpResponse:
    return func.HttpResponse(status_code=status, headers={**PAGE_HEADERS, "Location": location, **(headers or {})})


def error_page(error: Exception) -> func.HttpResponse:
    """Map an exception to a readable page: what happened and what to do, never a trace."""
    from connector.pages.layout import message_page

    if isinstance(error, ValidationError):
        error = ConfigurationError("the stamp's configuration is invalid; see the host log")
    if not isinstance(error, ConnectorError):
        log.error("unexpected error: %s", type(error).__name__)
        page = message_page("Something went wrong", "The visit could not be opened. Try again in a moment; if it "
                            "keeps happening, tell your administrator.")
        return html_response(page, 500)
    if error.http_status >= 500:
        log.warning("request failed: %s", type(error).__name__)
    titles = {400: "This launch cannot continue", 401: "Sign-in failed", 403: "Not allowed",
              404: "Not found", 409: "Setup needed", 422: "Cannot do that", 502: "A connected service failed",
              503: "Please try again shortly"}
    message = error.message[:1].upper() + error.message[1:]
    page = message_page(titles.get(error.http_status, "Something went wrong"),
                        message if message.endswith(".") else f"{message}.")
    headers = {}
    retry_after = getattr(error, "retry_after", None)
    if retry_after:
        headers["Retry-After"] = str(max(1, round(retry_after)))
    return html_response(page, error.http_status, headers or None)


def handles_errors_as_pages(handler: Callable[[func.HttpRequest], func.HttpResponse]):
    """Decorate a page trigger so every error becomes a readable page (:func:`error_page`)."""

    @wraps(handler)
    def wrapper(req: func.HttpRequest) -> func.HttpResponse:
        return _invoke(handler, req, error_page)

    return wrapper
