"""The connector's one error hierarchy.

Services raise these; the HTTP layer maps them to a status and a JSON body in exactly one
place (``connector.functions.http.error_response``). Messages are written for the person
who reads the response: they name the field and the problem, never a value that could be
PHI or a secret.

    ConnectorError                      500  (base; never raised directly)
    ├── InvalidInput                    400  the request is malformed
    │   ├── UnprocessableInput          422  well-formed, but breaks a rule
    │   └── PreconditionRequired        428  a change needs the If-Match it was read with
    ├── NotAuthenticated                401  no valid bearer token
    ├── NotAuthorized                   403  authenticated, not allowed
    ├── NotFound                        404  absent, or another tenant's
    ├── Conflict                        409  duplicates or races with existing state
    │   ├── ConcurrencyConflict         409  an ETag no longer matches (re-read and retry)
    │   └── BaseUrlRegistered           409  a FHIR base URL is registered once per stamp
    ├── UpstreamError                   502  an outside service (EHR, Graph, ACS) failed
    │   ├── UpstreamUnavailable         503  ... and says to come back later (429/5xx)
    │   └── InvalidUpstreamData         502  ... or answered with data we cannot use
    └── ConfigurationError              500  the stamp's own settings are wrong
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Problem:
    """One thing wrong with an input: where (a field path) and what (a sentence)."""

    field: str
    message: str

    def as_dict(self) -> dict[str, str]:
        return {"field": self.field, "message": self.message}


# The pydantic error type of a rule between fields that a JSON Schema cannot state (an empty
# quiet-hours window): raise ``rule_broken(...)`` in a model validator and the request is a 422,
# not a 400 (connector.functions.http.parse_body), since it fits the document.
RULE = "rule"


def rule_broken(message: str):
    """The error a model validator raises for a broken :data:`RULE`."""
    from pydantic_core import PydanticCustomError

    return PydanticCustomError(RULE, message)


# pydantic's wording where it would puzzle an admin (a regex, "Value error, ...").
_READABLE = {
    "missing": "is required",
    "extra_forbidden": "is not a field of this request",
    "string_pattern_mismatch": "has characters or a form that is not allowed here",
}


def problems_from(validation_error) -> list[Problem]:
    """A pydantic ValidationError as problems: each field's path and a sentence, never its value."""
    return [
        Problem(".".join(str(part) for part in error["loc"]) or "body",
                _READABLE.get(error["type"]) or error["msg"].removeprefix("Value error, "))
        for error in validation_error.errors(include_input=False, include_url=False)
    ]


class ConnectorError(Exception):
    """Base of every error the connector raises on purpose."""

    http_status = 500
    code = "internal_error"

    def __init__(self, message: str, *, problems: list[Problem] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.problems = problems or []

    def as_dict(self) -> dict:
        body: dict = {"error": self.code, "message": self.message}
        if self.problems:
            body["problems"] = [p.as_dict() for p in self.problems]
        return body


class InvalidInput(ConnectorError):
    http_status = 400
    code = "invalid_input"


class UnprocessableInput(InvalidInput):
    http_status = 422
    code = "unprocessable_input"


class PreconditionRequired(InvalidInput):
    http_status = 428
    code = "precondition_required"


class NotAuthenticated(ConnectorError):
    http_status = 401
    code = "not_authenticated"


class NotAuthorized(ConnectorError):
    http_status = 403
    code = "not_authorized"


class NotFound(ConnectorError):
    http_status = 404
    code = "not_found"


class Conflict(ConnectorError):
    http_status = 409
    code = "conflict"


class ConcurrencyConflict(Conflict):
    code = "concurrency_conflict"


class BaseUrlRegistered(Conflict):
    """The FHIR base URL is already registered in this stamp (a launch's ``iss`` must lead to one
    tenant). Says what to do next; never which organisation holds it when it is not the caller's
    (``ours``: the caller's own tenant holds it, which the caller can see in its own list)."""

    code = "base_url_registered"

    def __init__(self, *, ours: bool) -> None:
        if ours:
            message = ("this FHIR base URL is already registered for your organisation; change or remove that "
                       "endpoint instead of registering the URL again")
            problem = ("This URL is already one of your organisation's FHIR base URLs (see the list). A URL is "
                       "registered once: change or remove that one instead.")
        else:
            message = ("this FHIR base URL is already registered to another organisation in this stamp; check the "
                       "URL, or ask your Oracle Health contact which FHIR base URL is your organisation's")
            problem = ("This URL is already registered to another organisation in this stamp. Check it: each Cerner "
                       "domain has its own tenant id after /r4/, so copy your domain's URL again. If it is right, "
                       "ask your Oracle Health contact to confirm it is your domain's, then ask whoever runs this "
                       "connector to find out why it is taken.")
        super().__init__(message, problems=[Problem("base_url", problem)])
        self.ours = ours


class UpstreamError(ConnectorError):
    http_status = 502
    code = "upstream_error"


class UpstreamUnavailable(UpstreamError):
    http_status = 503
    code = "upstream_unavailable"

    def __init__(self, message: str, *, retry_after: float | None = None, **kwargs) -> None:
        super().__init__(message, **kwargs)
        self.retry_after = retry_after


class InvalidUpstreamData(UpstreamError):
    code = "invalid_upstream_data"


class ConfigurationError(ConnectorError):
    code = "configuration_error"
