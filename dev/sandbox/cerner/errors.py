"""The two error shapes the simulator speaks: OAuth 2.0 errors and FHIR OperationOutcomes."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode, urlsplit, urlunsplit

from starlette.responses import JSONResponse, RedirectResponse

FHIR_JSON = "application/fhir+json"

# RFC 6749 section 5.2 / RFC 7009: token endpoint answers must never be cached.
NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}


class OAuthError(Exception):
    """An RFC 6749 error: ``error`` is the registered code, ``description`` says why."""

    def __init__(self, error: str, description: str, status: int = 400) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.status = status

    def json_response(self) -> JSONResponse:
        headers = dict(NO_STORE)
        if self.status == 401:
            headers["WWW-Authenticate"] = 'Basic realm="smart-v1", error="invalid_client"'
        body = {"error": self.error, "error_description": self.description}
        return JSONResponse(body, self.status, headers=headers)

    def redirect(self, redirect_uri: str, state: str | None) -> RedirectResponse:
        """Authorization errors go back to the (already validated) redirect_uri with state."""
        params = {"error": self.error, "error_description": self.description}
        if state is not None:
            params["state"] = state
        return RedirectResponse(with_query(redirect_uri, params), 302)


def with_query(url: str, params: dict[str, str]) -> str:
    """``url`` with ``params`` appended, keeping any query the registered URI already has."""
    parts = urlsplit(url)
    extra = urlencode(params)
    query = f"{parts.query}&{extra}" if parts.query else extra
    return urlunsplit((parts.scheme, parts.netloc, parts.path, query, parts.fragment))


class FhirError(Exception):
    """A FHIR interaction failure, answered as an OperationOutcome."""

    def __init__(self, status: int, code: str, diagnostics: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(diagnostics)
        self.status = status
        self.code = code
        self.diagnostics = diagnostics
        self.headers = headers or {}

    def response(self) -> JSONResponse:
        return fhir_response(operation_outcome(self.code, self.diagnostics), self.status, self.headers)


def operation_outcome(code: str, diagnostics: str, severity: str = "error") -> dict[str, Any]:
    return {
        "resourceType": "OperationOutcome",
        "issue": [{"severity": severity, "code": code, "diagnostics": diagnostics}],
    }


def fhir_response(body: dict[str, Any], status: int = 200, headers: dict[str, str] | None = None) -> JSONResponse:
    return JSONResponse(body, status, headers=headers, media_type=FHIR_JSON)
