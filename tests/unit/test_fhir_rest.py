"""FHIR REST with a launch's token: reads, searches across pages, JSON Patch, status mapping.

The real SafeHttpClient over ``httpx.MockTransport`` serves Cerner's published examples.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.adapters.fhir.parsing import FhirParseError
from connector.adapters.fhir.rest import MAX_PAGES, FhirRestClient
from connector.adapters.net import OutboundRequestRefused, SafeHttpClient
from connector.errors import (
    ConcurrencyConflict, InvalidInput, InvalidUpstreamData, NotAuthenticated, NotAuthorized, NotFound, UpstreamError,
    UpstreamUnavailable,
)
from tests.conftest import DATA

CERNER = DATA / "fixtures" / "cerner"
TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
HOST = "fhir-ehr.cerner.com"
BASE = f"https://{HOST}/r4/{TENANT}"
TOKEN = "launch-access-token-abc123"
DNS = {HOST: ["93.184.216.34"], "other-ehr.example.com": ["151.101.1.140"], "cdn.example.net": ["151.101.1.141"]}

Route = httpx.Response | Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((CERNER / name).read_text())


def fhir(document: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=document, headers={"content-type": "application/fhir+json", **headers})


class FakeNetwork:
    """Answers by the URL as written (scheme, Host header, path and query); records requests."""

    def __init__(self, routes: dict[str, Route] | None = None):
        self.routes: dict[str, Route] = routes or {}
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}")
        if route is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome"})
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)


def client_for(routes: dict[str, Route]) -> tuple[FhirRestClient, FakeNetwork]:
    network = FakeNetwork(routes)
    http = SafeHttpClient(resolver=lambda host, port: DNS.get(host, []), transport_factory=network.transport)
    return FhirRestClient(http), network


# -- reads ------------------------------------------------------------------------------------------


def test_a_read_sends_the_bearer_token_and_returns_an_r4b_model():
    client, network = client_for({f"{BASE}/Appointment/4817572": fhir(fixture("appointment-read-4817572-video-visit.json"))})
    appointment = client.read(BASE, TOKEN, "Appointment", "4817572")
    assert appointment.get_resource_type() == "Appointment" and appointment.id == "4817572"
    assert appointment.status == "noshow" and len(appointment.contained) == 2
    [request] = network.requests
    assert request.method == "GET"
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["accept"] == "application/fhir+json"
    assert request.headers["host"] == HOST and request.url.host == "93.184.216.34"


def test_read_versioned_returns_the_etag():
    client, _ = client_for({f"{BASE}/Patient/12724067": fhir(fixture("patient-read-12724067.json"), etag='W/"7"')})
    patient, etag = client.read_versioned(BASE, TOKEN, "Patient", "12724067")
    assert patient.id == "12724067" and etag == 'W/"7"'
    without, _ = client_for({f"{BASE}/Patient/12724067": fhir(fixture("patient-read-12724067.json"))})
    assert without.read_versioned(BASE, TOKEN, "Patient", "12724067")[1] is None


@pytest.mark.parametrize(("status", "error", "words"), [
    (401, NotAuthenticated, "sign-in has expired"),
    (403, NotAuthorized, "does not allow"),
    (404, NotFound, "no such resource"),
    (409, ConcurrencyConflict, "changed since it was read"),
    (412, ConcurrencyConflict, "changed since it was read"),
    (400, UpstreamError, "HTTP 400"),
    (418, UpstreamError, "HTTP 418"),
])
def test_statuses_map_to_the_connectors_errors(status, error, words):
    client, _ = client_for({f"{BASE}/Appointment/1": fhir({"resourceType": "OperationOutcome"}, status)})
    with pytest.raises(error, match=words) as caught:
        client.read(BASE, TOKEN, "Appointment", "1")
    assert type(caught.value) is error  # 400 is the base UpstreamError, not "unavailable"


@pytest.mark.parametrize(("status", "retry_after", "expected"), [
    (429, "30", 30.0), (500, None, None), (502, "5", 5.0), (503, "soon", None),
])
def test_throttling_and_server_errors_are_unavailable_with_retry_after(status, retry_after, expected):
    headers = {"retry-after": retry_after} if retry_after else {}
    client, _ = client_for({f"{BASE}/Appointment/1": httpx.Response(status, headers=headers)})
    with pytest.raises(UpstreamUnavailable, match=f"HTTP {status}") as caught:
        client.read(BASE, TOKEN, "Appointment", "1")
    assert caught.value.retry_after == expected


def test_a_body_that_is_not_json_or_not_the_type_asked_for_is_invalid_upstream_data():
    client, _ = client_for({
        f"{BASE}/Appointment/1": httpx.Response(200, text="<html/>"),
        f"{BASE}/Appointment/2": fhir(fixture("patient-read-12724067.json")),
    })
    with pytest.raises(InvalidUpstreamData, match="not JSON"):
        client.read(BASE, TOKEN, "Appointment", "1")
    with pytest.raises(FhirParseError, match="expected Appointment, got Patient"):
        client.read(BASE, TOKEN, "Appointment", "2")


@pytest.mark.parametrize("resource_id", ["../Patient/12724067", "1/../../metadata", "a b", "", "1?x=1",
                                         "%2e%2e", "x" * 65, "12724067#frag"])
def test_ids_are_validated_before_any_request(resource_id):
    client, network = client_for({})
    with pytest.raises(InvalidInput, match="not a FHIR id"):
        client.read(BASE, TOKEN, "Patient", resource_id)
    with pytest.raises(InvalidInput):
        client.patch(BASE, TOKEN, "Patient", resource_id, [], if_match='W/"1"')
    assert network.requests == []


@pytest.mark.parametrize("resource_id", ["..", ".", "..."])
def test_dot_segment_ids_are_refused_before_any_request(resource_id):
    # (found while writing these tests: ".." passed FHIR's id pattern and sent the token to the base URL)
    client, network = client_for({})
    with pytest.raises(InvalidInput):
        client.read(BASE, TOKEN, "Patient", resource_id)
    with pytest.raises(InvalidInput):
        client.patch(BASE, TOKEN, "Appointment", resource_id, [], if_match='W/"1"')
    assert network.requests == []


@pytest.mark.parametrize("resource_id", ["a.b", "1.2.3", "-1", "12724067", "x" * 64])
def test_ids_with_dots_inside_are_fhir_ids(resource_id):
    client, network = client_for({f"{BASE}/Patient/{resource_id}": fhir(
        {**fixture("patient-read-12724067.json"), "id": resource_id})})
    assert client.read(BASE, TOKEN, "Patient", resource_id).id == resource_id


@pytest.mark.parametrize("resource_type", ["patient", "../Patient", "Patient/1", "", "Pa tient"])
def test_resource_types_are_validated_before_any_request(resource_type):
    client, network = client_for({})
    with pytest.raises(ValueError):
        client.read(BASE, TOKEN, resource_type, "1")
    with pytest.raises(ValueError):
        client.search(BASE, TOKEN, resource_type, [])
    assert network.requests == []


def test_a_base_url_on_a_private_address_is_refused():
    client, network = client_for({})
    with pytest.raises(OutboundRequestRefused):
        client.read("https://10.0.0.8/r4", TOKEN, "Patient", "1")
    assert network.requests == []


def test_the_token_does_not_follow_a_redirect_to_another_host():
    client, network = client_for({
        f"{BASE}/Patient/12724067": httpx.Response(302, headers={"location": "https://cdn.example.net/p/12724067"}),
        "https://cdn.example.net/p/12724067": fhir(fixture("patient-read-12724067.json")),
    })
    assert client.read(BASE, TOKEN, "Patient", "12724067").id == "12724067"
    first, second = network.requests
    assert first.headers["authorization"] == f"Bearer {TOKEN}"
    assert "authorization" not in second.headers


# -- search ------------------------------------------------------------------------------------------


def encounter_pages() -> tuple[dict, dict, str]:
    page1 = fixture("encounter-search-patient-paged.bundle.json")
    next_url = next(link["url"] for link in page1["link"] if link["relation"] == "next")
    page2 = copy.deepcopy(page1)
    page2["link"] = [{"relation": "self", "url": next_url}]
    for n, entry in enumerate(page2["entry"]):
        entry["resource"]["id"] = f"9800000{n}"
    return page1, page2, next_url


def test_search_follows_next_links_on_the_same_origin_with_the_token():
    page1, page2, next_url = encounter_pages()
    client, network = client_for({f"{BASE}/Encounter?patient=12724066": fhir(page1), next_url: fhir(page2)})
    found = client.search(BASE, TOKEN, "Encounter", [("patient", "12724066")])
    assert [e.id for e in found] == ([e["resource"]["id"] for e in page1["entry"]]
                                     + [e["resource"]["id"] for e in page2["entry"]])
    assert len(found) == 12
    assert [r.url.params.get("-pageContext") for r in network.requests] == [
        None, "51709352-6ee2-4d09-be3b-23dcc3fcc1eb"]
    assert all(r.headers["authorization"] == f"Bearer {TOKEN}" for r in network.requests)


def test_search_parameters_are_url_encoded():
    client, network = client_for({})
    network.routes[f"{BASE}/Appointment?patient=12744003&date=ge2025-03-03T00%3A00%3A00-06%3A00"] = fhir(
        {"resourceType": "Bundle", "type": "searchset"})
    assert client.search(BASE, TOKEN, "Appointment", [("patient", "12744003"),
                                                      ("date", "ge2025-03-03T00:00:00-06:00")]) == []
    assert len(network.requests) == 1


@pytest.mark.parametrize("next_url", [
    "https://other-ehr.example.com/r4/x/Encounter?page=2",
    f"http://{HOST}/r4/{TENANT}/Encounter?page=2",  # a downgrade to http is another origin
    f"https://{HOST}:8443/r4/{TENANT}/Encounter?page=2",
])
def test_a_next_link_to_another_origin_is_refused_before_the_token_goes_there(next_url):
    page1, _, _ = encounter_pages()
    page1["link"] = [{"relation": "next", "url": next_url}]
    client, network = client_for({f"{BASE}/Encounter?patient=12724066": fhir(page1)})
    with pytest.raises(InvalidUpstreamData, match="linked to another host"):
        client.search(BASE, TOKEN, "Encounter", [("patient", "12724066")])
    assert len(network.requests) == 1


def test_an_entry_that_does_not_parse_is_skipped_and_logged_by_index_only(caplog):
    page1, _, _ = encounter_pages()
    page1.pop("link")
    page1["entry"][2]["resource"]["status"] = {"secret": "PHI-LIKE-VALUE"}
    page1["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": []}, "search": {"mode": "outcome"}})
    client, _ = client_for({f"{BASE}/Encounter?patient=12724066": fhir(page1)})
    with caplog.at_level(logging.WARNING, logger="connector.fhir"):
        found = client.search(BASE, TOKEN, "Encounter", [("patient", "12724066")])
    assert [e.id for e in found] == [e["resource"]["id"] for i, e in enumerate(page1["entry"][:6]) if i != 2]
    [record] = caplog.records
    assert "entry 2" in record.getMessage()
    assert "PHI-LIKE-VALUE" not in caplog.text and TOKEN not in caplog.text


def test_a_search_answer_that_is_not_a_bundle_is_invalid_upstream_data():
    client, _ = client_for({f"{BASE}/Encounter?patient=1": fhir(fixture("encounter-read-97939518.json"))})
    with pytest.raises(InvalidUpstreamData, match="did not answer with a Bundle"):
        client.search(BASE, TOKEN, "Encounter", [("patient", "1")])


def test_search_stops_after_max_pages():
    looping = {"resourceType": "Bundle", "type": "searchset",
               "link": [{"relation": "next", "url": f"{BASE}/Encounter?patient=1"}],
               "entry": [{"resource": fixture("encounter-read-97939518.json")}]}
    client, network = client_for({f"{BASE}/Encounter?patient=1": fhir(looping)})
    found = client.search(BASE, TOKEN, "Encounter", [("patient", "1")])
    assert len(network.requests) == MAX_PAGES == 10 and len(found) == 10


def test_search_errors_map_like_reads():
    client, _ = client_for({f"{BASE}/Encounter?patient=1": httpx.Response(401)})
    with pytest.raises(NotAuthenticated):
        client.search(BASE, TOKEN, "Encounter", [("patient", "1")])


# -- patch -----------------------------------------------------------------------------------------


def test_patch_sends_json_patch_with_if_match_and_returns_the_new_etag():
    operations = [{"op": "test", "path": "/contained/0/type/0/text", "value": "Patient Virtual Meeting Room"},
                  {"op": "replace", "path": "/contained/0/telecom/0/value", "value": "https://x.example/api/j/t"}]
    client, network = client_for({f"{BASE}/Appointment/4817572": httpx.Response(200, headers={"etag": 'W/"3"'})})
    assert client.patch(BASE, TOKEN, "Appointment", "4817572", operations, if_match='W/"2"') == 'W/"3"'
    [request] = network.requests
    assert request.method == "PATCH"
    assert request.headers["content-type"] == "application/json-patch+json"
    assert request.headers["if-match"] == 'W/"2"'
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert json.loads(request.content) == operations


def test_a_patch_against_a_changed_resource_is_a_concurrency_conflict():
    client, _ = client_for({f"{BASE}/Appointment/4817572": httpx.Response(412)})
    with pytest.raises(ConcurrencyConflict):
        client.patch(BASE, TOKEN, "Appointment", "4817572", [], if_match='W/"1"')


def test_a_patch_is_never_redirected():
    client, network = client_for({f"{BASE}/Appointment/1": httpx.Response(307, headers={"location": "https://cdn.example.net/a"})})
    with pytest.raises(UpstreamError, match="HTTP 307"):
        client.patch(BASE, TOKEN, "Appointment", "1", [], if_match='W/"1"')
    assert len(network.requests) == 1


def test_a_non_ascii_retry_after_is_still_unavailable():
    client, _ = client_for({f"{BASE}/Appointment/1": httpx.Response(503, headers=[(b"retry-after", "²".encode())])})
    with pytest.raises(UpstreamUnavailable) as caught:
        client.read(BASE, TOKEN, "Appointment", "1")
    assert caught.value.retry_after is None
