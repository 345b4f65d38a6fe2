"""SMART discovery: where a FHIR server's authorization and token endpoints are.

    discovery = SmartDiscoveryClient(safe_http)
    found = discovery.find(base_url, allow_loopback=False)        # everything, with sources
    config = discovery.discover(base_url, allow_loopback=False)   # usable, or UpstreamError

SMART App Launch 2 publishes them in ``{base}/.well-known/smart-configuration``; SMART v1
servers (Cerner among them) also put them in the CapabilityStatement's ``oauth-uris``
extension (``rest.security``). The well-known document wins field by field; the extension
fills what it lacks. Used by the admin's URL validation (with the CapabilityStatement it
already read) and by every launch (through :class:`CachedSmartDiscovery`).

Every request goes through the SSRF-safe client: the URLs are admin-supplied.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from fhir.resources.R4B.capabilitystatement import CapabilityStatement

from connector.adapters.fhir.parsing import FhirParseError, parse_resource
from connector.domain.smart import DiscoveredEndpoint, Discovery, SmartConfiguration
from connector.errors import InvalidUpstreamData, UnprocessableInput, UpstreamError
from connector.services.ports import SafeHttp

FHIR_JSON = "application/fhir+json"
OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SMART_CONFIGURATION = ".well-known/smart-configuration"
OAUTH_URIS_SOURCE = "the CapabilityStatement's oauth-uris extension"


class SmartDiscoveryClient:
    def __init__(self, http: SafeHttp):
        self._http = http

    def find(self, base_url: str, *, allow_loopback: bool,
             capability: CapabilityStatement | None = None) -> Discovery:
        """What the well-known document and the CapabilityStatement say. ``capability`` saves
        a GET of metadata when the caller has read it already; without it, metadata is read
        only if the well-known document lacks an endpoint."""
        document, problem = self._smart_configuration(base_url, allow_loopback)
        found: dict[str, DiscoveredEndpoint] = {}
        for key, field in (("authorize", "authorization_endpoint"), ("token", "token_endpoint")):
            if isinstance(document.get(field), str) and document[field]:
                found[key] = DiscoveredEndpoint(url=document[field], source=SMART_CONFIGURATION)
        if len(found) < 2:
            if capability is None:
                capability = self._capability(base_url, allow_loopback)
            for key, url in oauth_uris(capability).items():
                found.setdefault(key, DiscoveredEndpoint(url=url, source=OAUTH_URIS_SOURCE))
        return Discovery(
            authorization=found.get("authorize"), token=found.get("token"),
            jwks_uri=_string(document.get("jwks_uri")), issuer=_string(document.get("issuer")),
            token_endpoint_auth_methods_supported=_strings(document.get("token_endpoint_auth_methods_supported")),
            capabilities=_strings(document.get("capabilities")),
            smart_configuration_problem=problem,
        )

    def discover(self, base_url: str, *, allow_loopback: bool) -> SmartConfiguration:
        """The endpoints a launch needs; ``UpstreamError`` when the server names them nowhere."""
        found = self.find(base_url, allow_loopback=allow_loopback)
        configuration = found.configuration()
        if configuration is None:
            raise InvalidUpstreamData(
                "The FHIR server names no SMART authorization and token endpoints "
                f"({found.smart_configuration_problem or 'the well-known document is incomplete'}).")
        return configuration

    def _smart_configuration(self, base_url: str, allow_loopback: bool) -> tuple[dict[str, Any], str]:
        """The well-known document, or {} and why it is no help."""
        try:
            response = self._http.get(f"{base_url}/{SMART_CONFIGURATION}", accept="application/json",
                                      allow_loopback=allow_loopback)
        except (UnprocessableInput, UpstreamError) as exc:
            return {}, f"{SMART_CONFIGURATION} could not be read ({exc.message.rstrip('.')})"
        if response.status_code != 200:
            return {}, f"{SMART_CONFIGURATION} answered HTTP {response.status_code}"
        try:
            document = response.json()
        except ValueError:
            return {}, f"{SMART_CONFIGURATION} answered with a body that is not valid JSON"
        if not isinstance(document, dict):
            return {}, f"{SMART_CONFIGURATION} is not a JSON object"
        if not any(isinstance(document.get(f), str) and document[f]
                   for f in ("authorization_endpoint", "token_endpoint")):
            return document, f"{SMART_CONFIGURATION} names neither an authorization nor a token endpoint"
        return document, ""

    def _capability(self, base_url: str, allow_loopback: bool) -> CapabilityStatement | None:
        try:
            response = self._http.get(f"{base_url}/metadata", accept=FHIR_JSON, allow_loopback=allow_loopback)
            if response.status_code != 200:
                return None
            parsed = parse_resource(response.json(), expected="CapabilityStatement")
        except (UnprocessableInput, UpstreamError, FhirParseError, ValueError):
            return None
        return parsed.resource  # type: ignore[return-value]


def oauth_uris(capability: CapabilityStatement | None) -> dict[str, str]:
    """The authorize/token URIs of the SMART oauth-uris extension in rest.security, if any."""
    found: dict[str, str] = {}
    for rest in (capability.rest if capability else None) or []:
        for extension in (rest.security.extension if rest.security else None) or []:
            if extension.url != OAUTH_URIS:
                continue
            for part in extension.extension or []:
                if part.url in ("authorize", "token") and part.valueUri:
                    found.setdefault(part.url, str(part.valueUri))
    return found


class CachedSmartDiscovery:
    """Discovery for launches: one answer per base URL for ``ttl`` seconds, per process.

    A launch must not pay a discovery round trip each time (PowerChart waits), yet a server
    that moves its endpoints is followed within minutes. Failures are not cached."""

    def __init__(self, inner: SmartDiscoveryClient, *, ttl: float = 600.0, clock=time.monotonic):
        self._inner = inner
        self._ttl = ttl
        self._clock = clock
        self._cache: dict[tuple[str, bool], tuple[float, SmartConfiguration]] = {}
        self._lock = threading.Lock()

    def discover(self, base_url: str, *, allow_loopback: bool) -> SmartConfiguration:
        key = (base_url, allow_loopback)
        with self._lock:
            hit = self._cache.get(key)
        if hit is not None and hit[0] > self._clock():
            return hit[1]
        configuration = self._inner.discover(base_url, allow_loopback=allow_loopback)
        with self._lock:
            self._cache[key] = (self._clock() + self._ttl, configuration)
        return configuration

    def find(self, base_url: str, *, allow_loopback: bool,
             capability: CapabilityStatement | None = None) -> Discovery:
        return self._inner.find(base_url, allow_loopback=allow_loopback, capability=capability)


def _string(value: Any) -> str | None:
    return value if isinstance(value, str) and value else None


def _strings(value: Any) -> tuple[str, ...]:
    return tuple(v for v in value if isinstance(v, str)) if isinstance(value, list) else ()
