"""SMART discovery: the well-known document first, the CapabilityStatement's oauth-uris for
what it lacks, and the per-process cache launches use.

The real SafeHttpClient over ``httpx.MockTransport`` serves Cerner's published documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.adapters.fhir.parsing import parse_resource
from connector.adapters.fhir.smart_discovery import (
    OAUTH_URIS_SOURCE, SMART_CONFIGURATION, CachedSmartDiscovery, SmartDiscoveryClient, oauth_uris,
)
from connector.adapters.net import SafeHttpClient
from connector.errors import InvalidUpstreamData, UpstreamError
from tests.conftest import DATA

CERNER = DATA / "fixtures" / "cerner"
TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
HOST = "fhir-ehr.cerner.com"
BASE = f"https://{HOST}/r4/{TENANT}"
SMART_V1 = f"https://authorization.cerner.com/tenants/{TENANT}/protocols/oauth2/profiles/smart-v1"
AUTHORIZE = f"{SMART_V1}/personas/provider/authorize"
TOKEN = f"{SMART_V1}/token"
WELL_KNOWN = f"{BASE}/{SMART_CONFIGURATION}"
METADATA = f"{BASE}/metadata"

Route = httpx.Response | Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((CERNER / name).read_text())


class FakeNetwork:
    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.url.scheme}://{request.headers['host']}{request.url.path}")
        if route is None:
            return httpx.Response(404, text="<html>Not Found</html>", headers={"content-type": "text/html"})
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)

    @property
    def paths(self) -> list[str]:
        return [r.url.path.rsplit("/", 1)[-1] for r in self.requests]


def client(routes: dict[str, Route], dns: dict[str, list[str]] | None = None):
    network = FakeNetwork(routes)
    answers = dns or {HOST: ["93.184.216.34"]}
    http = SafeHttpClient(resolver=lambda host, port: answers.get(host, []), transport_factory=network.transport)
    return SmartDiscoveryClient(http), network


def metadata() -> httpx.Response:
    return httpx.Response(200, json=fixture("metadata-capabilitystatement-secure.json"),
                          headers={"content-type": "application/fhir+json"})


def well_known(document: Any = None, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=fixture("smart-configuration.json") if document is None else document)


# -- find / discover -------------------------------------------------------------------------------


def test_the_well_known_document_gives_everything_without_reading_metadata():
    discovery, network = client({WELL_KNOWN: well_known(), METADATA: metadata()})
    found = discovery.find(BASE, allow_loopback=False)
    assert (found.authorization.url, found.authorization.source) == (AUTHORIZE, SMART_CONFIGURATION)
    assert (found.token.url, found.token.source) == (TOKEN, SMART_CONFIGURATION)
    assert found.jwks_uri == "https://authorization.cerner.com/jwk"
    assert found.issuer is None  # Cerner's document names none
    assert found.token_endpoint_auth_methods_supported == ("client_secret_basic", "private_key_jwt")
    assert "launch-ehr" in found.capabilities and "permission-v1" in found.capabilities
    assert found.smart_configuration_problem == ""
    assert network.paths == ["smart-configuration"]
    assert network.requests[0].headers["accept"] == "application/json"


def test_discover_returns_the_usable_configuration():
    discovery, _ = client({WELL_KNOWN: well_known()})
    config = discovery.discover(BASE, allow_loopback=False)
    assert (config.authorization_endpoint, config.token_endpoint) == (AUTHORIZE, TOKEN)
    assert config.jwks_uri == "https://authorization.cerner.com/jwk"


@pytest.mark.parametrize(("answer", "problem"), [
    (httpx.Response(404), "answered HTTP 404"),
    (httpx.Response(200, text="<html/>"), "not valid JSON"),
    (httpx.Response(200, json=["a list"]), "is not a JSON object"),
    (httpx.Response(200, json={"jwks_uri": "https://authorization.cerner.com/jwk"}),
     "names neither an authorization nor a token endpoint"),
])
def test_without_a_usable_well_known_document_the_capability_statement_fills_in(answer, problem):
    discovery, network = client({WELL_KNOWN: answer, METADATA: metadata()})
    found = discovery.find(BASE, allow_loopback=False)
    assert (found.authorization.url, found.authorization.source) == (AUTHORIZE, OAUTH_URIS_SOURCE)
    assert (found.token.url, found.token.source) == (TOKEN, OAUTH_URIS_SOURCE)
    assert problem in found.smart_configuration_problem
    assert network.paths == ["smart-configuration", "metadata"]
    assert network.requests[1].headers["accept"] == "application/fhir+json"


def test_the_well_known_document_wins_field_by_field():
    document = {"authorization_endpoint": "https://auth.example.org/authorize", "jwks_uri": "https://auth.example.org/jwks",
                "issuer": "https://auth.example.org", "capabilities": ["launch-ehr", 7, None]}
    discovery, _ = client({WELL_KNOWN: well_known(document), METADATA: metadata()})
    found = discovery.find(BASE, allow_loopback=False)
    assert (found.authorization.url, found.authorization.source) == ("https://auth.example.org/authorize",
                                                                     SMART_CONFIGURATION)
    assert (found.token.url, found.token.source) == (TOKEN, OAUTH_URIS_SOURCE)
    assert (found.jwks_uri, found.issuer) == ("https://auth.example.org/jwks", "https://auth.example.org")
    assert found.capabilities == ("launch-ehr",)  # what is not a string is dropped


def test_a_capability_statement_in_hand_saves_the_metadata_request():
    capability = parse_resource(fixture("metadata-capabilitystatement-secure.json")).resource
    discovery, network = client({WELL_KNOWN: httpx.Response(404), METADATA: metadata()})
    found = discovery.find(BASE, allow_loopback=False, capability=capability)
    assert found.token.url == TOKEN and network.paths == ["smart-configuration"]


def test_the_open_capability_statement_names_no_endpoints():
    capability = parse_resource(fixture("metadata-capabilitystatement-open.json")).resource
    assert oauth_uris(capability) == {}
    assert oauth_uris(None) == {}


def test_discover_fails_with_the_reason_when_nothing_names_the_endpoints():
    discovery, _ = client({WELL_KNOWN: httpx.Response(404), METADATA: httpx.Response(500)})
    with pytest.raises(InvalidUpstreamData, match="answered HTTP 404"):
        discovery.discover(BASE, allow_loopback=False)


def test_a_metadata_document_that_is_not_fhir_is_no_help():
    discovery, _ = client({WELL_KNOWN: httpx.Response(404), METADATA: httpx.Response(200, json={"hello": 1})})
    found = discovery.find(BASE, allow_loopback=False)
    assert found.configuration() is None


def test_a_base_url_on_a_private_address_is_never_fetched():
    discovery, network = client({WELL_KNOWN: well_known()}, dns={HOST: ["10.0.0.7"]})
    found = discovery.find(BASE, allow_loopback=False)
    assert found.configuration() is None
    assert "could not be read" in found.smart_configuration_problem
    assert "private" in found.smart_configuration_problem
    assert network.requests == []
    with pytest.raises(UpstreamError):
        discovery.discover(BASE, allow_loopback=False)


# -- the cache --------------------------------------------------------------------------------------


class Ticks:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_cache_answers_within_its_ttl_and_asks_again_after():
    inner, network = client({WELL_KNOWN: well_known()})
    ticks = Ticks()
    cached = CachedSmartDiscovery(inner, ttl=600, clock=ticks)
    first = cached.discover(BASE, allow_loopback=False)
    ticks.now += 599
    assert cached.discover(BASE, allow_loopback=False) == first
    assert len(network.requests) == 1
    ticks.now += 2
    cached.discover(BASE, allow_loopback=False)
    assert len(network.requests) == 2


def test_the_cache_follows_a_server_that_moved_its_endpoints():
    document = fixture("smart-configuration.json")
    inner, _ = client({WELL_KNOWN: lambda _: httpx.Response(200, json=document)})
    ticks = Ticks()
    cached = CachedSmartDiscovery(inner, ttl=60, clock=ticks)
    assert cached.discover(BASE, allow_loopback=False).token_endpoint == TOKEN
    document["token_endpoint"] = "https://authorization.cerner.com/moved/token"
    assert cached.discover(BASE, allow_loopback=False).token_endpoint == TOKEN
    ticks.now += 61
    assert cached.discover(BASE, allow_loopback=False).token_endpoint == "https://authorization.cerner.com/moved/token"


def test_failures_are_not_cached():
    answers = [httpx.Response(404), well_known()]
    inner, network = client({WELL_KNOWN: lambda _: answers.pop(0), METADATA: httpx.Response(404)})
    cached = CachedSmartDiscovery(inner, clock=Ticks())
    with pytest.raises(InvalidUpstreamData):
        cached.discover(BASE, allow_loopback=False)
    assert cached.discover(BASE, allow_loopback=False).token_endpoint == TOKEN


def test_the_cache_keeps_loopback_permission_apart_and_find_is_never_cached():
    inner, network = client({WELL_KNOWN: well_known()})
    cached = CachedSmartDiscovery(inner, clock=Ticks())
    cached.discover(BASE, allow_loopback=False)
    cached.discover(BASE, allow_loopback=True)
    assert len(network.requests) == 2
    cached.find(BASE, allow_loopback=False)
    cached.find(BASE, allow_loopback=False)
    assert len(network.requests) == 4
