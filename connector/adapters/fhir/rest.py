"""FHIR R4 REST with a launch's access token: read, search (following ``next``), JSON Patch.

    fhir = FhirRestClient(safe_http, allow_loopback=settings.local_mode)
    appointment = fhir.read(base_url, access_token, "Appointment", "4826003")   # R4B model
    found = fhir.search(base_url, access_token, "Appointment", [("patient", "12744003"), ...])

Every call goes through the SSRF-safe client (the base URL is admin-supplied) and every
answer through :mod:`connector.adapters.fhir.parsing` (R4B models, Cerner's artefacts
repaired). A search keeps going past an entry that does not parse: it is skipped and logged
by index only. ``next`` links are followed only on the base URL's own origin, at most
``MAX_PAGES`` pages. Statuses become the connector's errors: 401 -> NotAuthenticated (the
launch's token expired), 403 -> NotAuthorized, 404 -> NotFound, 429 / 5xx ->
UpstreamUnavailable (with Retry-After), anything else -> UpstreamError.
"""

from __future__ import annotations

import json
import logging
import re
from typing import Any
from urllib.parse import urlencode, urlsplit

from fhir.resources.R4B.resource import Resource

from connector.adapters.fhir.parsing import FhirParseError, parse_resource
from connector.adapters.net.headers import retry_after_seconds
from connector.errors import (
    ConcurrencyConflict, InvalidInput, InvalidUpstreamData, NotAuthenticated, NotAuthorized, NotFound, UpstreamError,
    UpstreamUnavailable,
)
from connector.services.ports import HttpResponse, SafeHttp

FHIR_JSON = "application/fhir+json"
MAX_PAGES = 10
# FHIR's id datatype: what may go into a URL path segment ("." and ".." are path steps, not ids).
FHIR_ID = re.compile(r"^(?!\.+$)[A-Za-z0-9.-]{1,64}$")
RESOURCE_TYPE = re.compile(r"^[A-Z][A-Za-z]{1,63}$")

log = logging.getLogger("connector.fhir")


class FhirRestClient:
    def __init__(self, http: SafeHttp, *, allow_loopback: bool = False):
        self._http = http
        self._allow_loopback = allow_loopback

    def read(self, base_url: str, access_token: str, resource_type: str, resource_id: str) -> Resource:
        return self.read_versioned(base_url, access_token, resource_type, resource_id)[0]

    def read_versioned(self, base_url: str, access_token: str, resource_type: str,
                       resource_id: str) -> tuple[Resource, str | None]:
        """The resource and its ETag (what a later PATCH must send in If-Match)."""
        url = f"{base_url}/{_type(resource_type)}/{_id(resource_id)}"
        response = self._http.get(url, accept=FHIR_JSON, headers=_bearer(access_token),
                                  allow_loopback=self._allow_loopback)
        check_status(response, f"{resource_type} read")
        return _parsed(_json(response, resource_type), resource_type), response.headers.get("etag")

    def search(self, base_url: str, access_token: str, resource_type: str,
               params: list[tuple[str, str]]) -> list[Resource]:
        url = f"{base_url}/{_type(resource_type)}?{urlencode(params)}"
        origin = origin_of(base_url)
        found: list[Resource] = []
        for _ in range(MAX_PAGES):
            response = self._http.get(url, accept=FHIR_JSON, headers=_bearer(access_token),
                                      allow_loopback=self._allow_loopback)
            check_status(response, f"{resource_type} search")
            bundle = _json(response, "Bundle")
            if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
                raise InvalidUpstreamData(f"the EHR's {resource_type} search did not answer with a Bundle")
            for index, entry in enumerate(bundle.get("entry") or []):
                resource = entry.get("resource") if isinstance(entry, dict) else None
                if not isinstance(resource, dict) or resource.get("resourceType") != resource_type:
                    continue  # OperationOutcome warnings, included resources
                try:
                    found.append(parse_resource(resource, expected=resource_type).resource)
                except FhirParseError as exc:
                    log.warning("skipped %s search entry %d: %s", resource_type, index, exc.message)
            url = next_link(bundle)
            if url is None:
                return found
            if origin_of(url) != origin:
                raise InvalidUpstreamData(f"the EHR's {resource_type} search linked to another host")
        log.warning("%s search stopped after %d pages", resource_type, MAX_PAGES)
        return found

    def patch(self, base_url: str, access_token: str, resource_type: str, resource_id: str,
              operations: list[dict], *, if_match: str) -> str | None:
        """JSON Patch with If-Match; returns the new ETag."""
        url = f"{base_url}/{_type(resource_type)}/{_id(resource_id)}"
        response = self._http.patch(
            url, body=json.dumps(operations).encode(), content_type="application/json-patch+json",
            accept=FHIR_JSON, headers={**_bearer(access_token), "If-Match": if_match},
            allow_loopback=self._allow_loopback)
        check_status(response, f"{resource_type} patch")
        return response.headers.get("etag")


def _bearer(access_token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {access_token}"}


def _type(resource_type: str) -> str:
    if not RESOURCE_TYPE.fullmatch(resource_type):
        raise ValueError("not a FHIR resource type")
    return resource_type


def _id(resource_id: str) -> str:
    if not FHIR_ID.fullmatch(resource_id):
        raise InvalidInput("not a FHIR id")
    return resource_id


# Who the EHR answered: a clinician's launch token, or the stamp's backend services token.
USER = ("the sign-in has expired", "this user")
SYSTEM = ("the access token has expired or was revoked", "this client")


def check_status(response: HttpResponse, what: str, caller: tuple[str, str] = USER) -> None:
    """An EHR answer's status as the connector's errors (the module docstring's list)."""
    status = response.status_code
    if 200 <= status < 300:
        return
    expired, who = caller
    if status == 401:
        raise NotAuthenticated(f"the EHR refused the {what}: {expired}")
    if status == 403:
        raise NotAuthorized(f"the EHR does not allow the {what} to {who}")
    if status == 404:
        raise NotFound(f"the EHR has no such resource ({what})")
    if status in (409, 412):
        raise ConcurrencyConflict(f"the EHR's resource changed since it was read ({what})")
    if status == 429 or status >= 500:
        raise UpstreamUnavailable(f"the EHR is busy ({what}: HTTP {status})",
                                  retry_after=retry_after_seconds(response.headers))
    raise UpstreamError(f"the EHR answered HTTP {status} to the {what}")


def _json(response: HttpResponse, what: str) -> Any:
    try:
        return response.json()
    except ValueError:
        raise InvalidUpstreamData(f"the EHR's {what} answer is not JSON") from None


def _parsed(document: Any, resource_type: str) -> Resource:
    return parse_resource(document, expected=resource_type).resource


def next_link(bundle: dict) -> str | None:
    """A searchset Bundle's ``next`` URL, if any."""
    for link in bundle.get("link") or []:
        if isinstance(link, dict) and link.get("relation") == "next" and isinstance(link.get("url"), str):
            return link["url"]
    return None


def origin_of(url: str) -> tuple[str, str]:
    parts = urlsplit(url)
    return parts.scheme.lower(), parts.netloc.lower()
