"""Validate a FHIR base URL before it is registered (issue 3, "Validation").

    report = validate_fhir_base_url(url, environment="production", http=safe_http,
                                    discovery=smart_discovery, local_mode=False)
    report.ok, [(c.name, c.status, c.message) for c in report.checks], report.token_url

Checks run in order; one whose prerequisite did not pass is skipped with a sentence saying so:

    url_syntax ─┬─ public_address ── metadata ── smart_discovery ─┬─ authorize_endpoint
                │                                                 └─ token_endpoint
                └─ cerner_tenant

Loopback is acceptable only in local mode *and* for a test environment: a production endpoint
is never loopback or private, even on a developer's machine (issue 3: "fails one that points at
127.0.0.1 in production mode"). Every network call goes through ``http`` (the SSRF-safe client),
which refuses non-public addresses at every hop, and SMART discovery goes through the
``SmartDiscovery`` port (the same adapter every launch uses); the checks here turn refusals,
timeouts and failures into sentences. Sentences never echo response bodies or upstream values other than
ones already validated (a version number, a media type, a host name).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from connector.adapters.fhir.parsing import FhirParseError, parse_resource
from connector.domain.endpoint import Environment, is_loopback_url, normalize_base_url, url_problem
from connector.domain.smart import DiscoveredEndpoint
from connector.domain.validation import Check, CheckName, ValidationReport
from connector.errors import InvalidInput, Problem, UnprocessableInput, UpstreamError
from connector.services.ports import HttpResponse, SafeHttp, SmartDiscovery

FHIR_JSON = "application/fhir+json"

_GUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
# Cerner serves every tenant at https://fhir-ehr(-code).cerner.com/r4/{tenant}; the sandbox
# and reverse proxies keep the path, so the path alone is enough to recognise the tenant.
_CERNER_TENANT_PATH = re.compile(rf"/r4/({_GUID})")
_FHIR_R4_VERSION = re.compile(r"4\.0\.\d+")
_VERSION_SHAPE = re.compile(r"\d{1,3}\.\d{1,3}\.\d{1,3}(-[A-Za-z0-9.]{1,20})?")
_MEDIA_TYPE_SHAPE = re.compile(r"[a-z0-9!#$&^_.+-]{1,50}/[a-z0-9!#$&^_.+-]{1,50}")

# Which check each one needs to have passed, and how its absence is explained.
_NEEDS: dict[CheckName, CheckName] = {
    CheckName.public_address: CheckName.url_syntax,
    CheckName.metadata: CheckName.public_address,
    CheckName.smart_discovery: CheckName.metadata,
    CheckName.authorize_endpoint: CheckName.smart_discovery,
    CheckName.token_endpoint: CheckName.smart_discovery,
    CheckName.cerner_tenant: CheckName.url_syntax,
}
_LABEL = {
    CheckName.url_syntax: "URL",
    CheckName.public_address: "public address",
    CheckName.metadata: "metadata",
    CheckName.smart_discovery: "SMART discovery",
}


Verdict = tuple[bool | None, str]


def validate_fhir_base_url(
    url: str, *, environment: Environment | str, http: SafeHttp, discovery: SmartDiscovery, local_mode: bool
) -> ValidationReport:
    """Run every check on ``url`` and report each; never raises for what the URL leads to."""
    try:
        environment = Environment(environment)
    except ValueError:
        raise InvalidInput(
            "environment must be test or production",
            problems=[Problem("environment", "must be test or production")],
        ) from None
    return _Validation(url, environment, http, discovery, local_mode).run()


class _Validation:
    """One run: the checks as methods, and what they discover, shared with later checks."""

    def __init__(self, url: str, environment: Environment, http: SafeHttp, discovery: SmartDiscovery,
                 local_mode: bool):
        self.raw = url.strip()
        self.base = _normalized(self.raw)
        self.environment = environment
        self.http = http
        self.discovery = discovery
        self.local_mode = local_mode
        self.loopback_ok = local_mode and environment is Environment.test
        self.capability: CapabilityStatement | None = None
        self.fhir_version: str | None = None
        self.endpoints: dict[str, DiscoveredEndpoint] = {}  # "authorize" / "token"
        self.found: dict[str, str] = {}  # report fields that passed checks established

    def run(self) -> ValidationReport:
        steps: dict[CheckName, Callable[[], Verdict]] = {
            CheckName.url_syntax: self.url_syntax,
            CheckName.public_address: self.public_address,
            CheckName.metadata: self.metadata,
            CheckName.smart_discovery: self.smart_discovery,
            CheckName.authorize_endpoint: self.authorize_endpoint,
            CheckName.token_endpoint: self.token_endpoint,
            CheckName.cerner_tenant: self.cerner_tenant,
        }
        checks: dict[CheckName, Check] = {}
        for name, step in steps.items():
            needed = _NEEDS.get(name)
            if needed is not None and checks[needed].passed is not True:
                passed, message = None, f"Skipped because the {_LABEL[needed]} check did not pass."
            else:
                passed, message = step()
            checks[name] = Check(name=name, passed=passed, message=message)
        return ValidationReport(
            base_url=self.base,
            environment=self.environment,
            checks=list(checks.values()),
            fhir_version=self.fhir_version,
            **self.found,
        )

    # -- the checks -------------------------------------------------------------------------

    def url_syntax(self) -> Verdict:
        problem = url_problem(self.raw)
        if problem:
            return False, f"The URL {problem}."
        parts = urlsplit(self.raw)
        if parts.query or parts.fragment:
            return False, "A FHIR base URL has no query (?...) or fragment (#...)."
        if parts.scheme.lower() == "https":
            return True, "The URL is an absolute https URL."
        if self.loopback_ok and is_loopback_url(self.raw):
            return True, "Plain http to a loopback address, accepted in local mode for a test environment."
        if self.local_mode and is_loopback_url(self.raw):
            return False, (
                "Plain http to loopback is accepted only for a test environment in local mode; "
                "a production FHIR base URL must use https."
            )
        if self.local_mode:
            return False, "Plain http is accepted only for loopback addresses in local mode; use https."
        return False, "The URL must use https."

    def public_address(self) -> Verdict:
        host = _host(self.base)
        try:
            destination = self.http.check_destination(self.base, allow_loopback=self.loopback_ok)
        except (UnprocessableInput, UpstreamError) as exc:
            hint = ""
            if self.local_mode and not self.loopback_ok and is_loopback_url(self.base):
                hint = " Loopback is accepted only for a test environment in local mode."
            return False, exc.message + hint
        if destination.is_loopback:
            return True, f"{host} is a loopback address, accepted in local mode for a test environment."
        count = len(destination.addresses)
        return True, f"{host} resolves to public addresses only ({count} checked)."

    def metadata(self) -> Verdict:
        response, failure = self._get("metadata", FHIR_JSON)
        if response is None:
            return False, f"Reading the CapabilityStatement (GET metadata) failed. {failure}"
        if response.status_code != 200:
            hint = " It must be readable without a token." if response.status_code in (401, 403) else ""
            return False, f"GET metadata answered HTTP {response.status_code}, not 200.{hint}"
        document, problem = _json_body(response)
        if problem:
            return False, f"GET metadata {problem}, so it is not a FHIR CapabilityStatement."
        try:
            parsed = parse_resource(document, expected="CapabilityStatement")
        except FhirParseError as exc:  # its message names paths and kinds, never values
            return False, f"GET metadata is not a valid FHIR R4 CapabilityStatement: {exc.message}."
        capability: CapabilityStatement = parsed.resource  # type: ignore[assignment]
        version = str(capability.fhirVersion)
        if not _FHIR_R4_VERSION.fullmatch(version):
            shown = f"FHIR {version}" if _VERSION_SHAPE.fullmatch(version) else "an unrecognised FHIR version"
            return False, f"The server reports {shown}; the connector needs FHIR R4 (4.0.x)."
        self.capability, self.fhir_version = capability, version
        return True, f"GET metadata is a FHIR R4 CapabilityStatement (FHIR {version})."

    def smart_discovery(self) -> Verdict:
        found = self.discovery.find(self.base, allow_loopback=self.loopback_ok, capability=self.capability)
        why_not = found.smart_configuration_problem
        self.endpoints = {key: endpoint for key, endpoint in (("authorize", found.authorization),
                                                               ("token", found.token)) if endpoint}
        if not self.endpoints:
            return False, (
                f"No SMART endpoints found: {why_not}, "
                "and the CapabilityStatement has no oauth-uris extension."
            )
        sources = sorted({endpoint.source for endpoint in self.endpoints.values()})
        message = f"SMART endpoints found in {' and '.join(sources)}"
        return True, f"{message} ({why_not})." if why_not else f"{message}."

    def authorize_endpoint(self) -> Verdict:
        if "authorize" not in self.endpoints:
            return False, "No authorization endpoint was discovered; SMART launches need one."
        url, source = self.endpoints["authorize"].url, self.endpoints["authorize"].source
        problem = self._endpoint_problem(url)
        if problem:
            return False, f"The authorization endpoint {problem}."
        self.found["authorize_url"] = url
        return True, f"Authorization endpoint at {_host(url)} (from {source})."

    def token_endpoint(self) -> Verdict:
        if "token" not in self.endpoints:
            return False, "No token endpoint was discovered; SMART launches need one."
        url, source = self.endpoints["token"].url, self.endpoints["token"].source
        problem = self._endpoint_problem(url)
        if problem:
            return False, f"The token endpoint {problem}."
        # The connector itself POSTs codes and client assertions here, so its host must pass
        # the same address rules as the FHIR base (the browser, not we, calls authorize).
        try:
            destination = self.http.check_destination(url, allow_loopback=self.loopback_ok)
        except (UnprocessableInput, UpstreamError) as exc:
            return False, f"The token endpoint cannot be used. {exc.message}"
        self.found["token_url"] = url
        reach = "a loopback address (local mode)" if destination.is_loopback else "public addresses only"
        return True, f"Token endpoint at {_host(url)} (from {source}); it resolves to {reach}."

    def cerner_tenant(self) -> Verdict:
        parts = urlsplit(self.base)
        host = (parts.hostname or "").lower()
        cerner_hosted = host == "cerner.com" or host.endswith(".cerner.com")
        match = _CERNER_TENANT_PATH.fullmatch(parts.path)
        if match:
            tenant = match.group(1).lower()
            self.found["cerner_tenant_id"] = tenant
            where = "Cerner-hosted URL" if cerner_hosted else "URL's /r4/{tenant} path"
            return True, f"Cerner tenant id {tenant} recognised in the {where}."
        if cerner_hosted:
            return False, (
                "This Cerner-hosted URL has no tenant id; Cerner FHIR base URLs look like "
                "https://fhir-ehr.cerner.com/r4/{tenant-id}."
            )
        return None, "Not a Cerner-hosted URL, so there is no Cerner tenant id to recognise."

    # -- helpers ----------------------------------------------------------------------------

    def _get(self, path: str, accept: str) -> tuple[HttpResponse | None, str]:
        try:
            return self.http.get(f"{self.base}/{path}", accept=accept, allow_loopback=self.loopback_ok), ""
        except (UnprocessableInput, UpstreamError) as exc:
            return None, exc.message

    def _endpoint_problem(self, url: str) -> str | None:
        """What makes a discovered endpoint URL unusable, as a phrase, or None."""
        problem = url_problem(url)
        if problem:
            return problem
        parts = urlsplit(url)
        if parts.fragment:
            return "has a fragment (#...)"
        if parts.scheme.lower() == "http" and not (self.loopback_ok and is_loopback_url(url)):
            return "is not an https URL"
        return None


def _json_body(response: HttpResponse) -> tuple[Any, str]:
    """The JSON document, or why the body is not one (media types shown only when well-formed)."""
    kind = response.content_type
    if kind and not (kind in ("application/json", FHIR_JSON) or kind.endswith("+json")):
        shown = kind if _MEDIA_TYPE_SHAPE.fullmatch(kind) else "an unrecognised type"
        return None, f"answered with {shown}, not JSON"
    try:
        return response.json(), ""
    except ValueError:
        return None, "answered with a body that is not valid JSON"


def _normalized(url: str) -> str:
    """``normalize_base_url``, or the URL as given when it cannot even be parsed."""
    try:
        return normalize_base_url(url)
    except ValueError:
        return url


def _host(url: str) -> str:
    host = urlsplit(url).hostname or ""
    return f"[{host}]" if ":" in host else host
