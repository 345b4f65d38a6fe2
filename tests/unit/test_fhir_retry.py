"""Retries for the scans: Retry-After honoured (never sooner), exponential backoff with jitter
for 5xx, nothing else retried; and the page walk that retries one page, not the whole search.

The page walk runs the real SafeHttpClient over ``httpx.MockTransport`` serving Cerner's
published examples; sleeping is a recorded fake, so nothing here waits.
"""

from __future__ import annotations

import copy
import json
import logging
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.adapters.fhir.parsing import parse_resource
from connector.adapters.fhir.rest import FhirRestClient
from connector.adapters.fhir.retry import MAX_SCAN_PAGES, RetryingFhir, RetryPolicy, retrying
from connector.adapters.net import OutboundConnectionFailed, OutboundTimeout, SafeHttpClient
from connector.errors import (
    InvalidUpstreamData, NotAuthenticated, NotAuthorized, UpstreamError, UpstreamUnavailable,
)
from connector.services import fhir_context
from connector.services.fhir_context import AppointmentTimes
from tests.conftest import DATA

CERNER = DATA / "fixtures" / "cerner"
TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
HOST = "fhir-ehr.cerner.com"
BASE = f"https://{HOST}/r4/{TENANT}"
DNS = {HOST: ["93.184.216.34"], "other-ehr.example.com": ["151.101.1.140"]}
FIRST = (f"{BASE}/Appointment?location=32216101&date=ge2026-01-15T00%3A00%3A00-06%3A00"
         "&date=lt2026-01-18T00%3A00%3A00-06%3A00&_count=2")
PARAMS = [("location", "32216101"), ("date", "ge2026-01-15T00:00:00-06:00"), ("date", "lt2026-01-18T00:00:00-06:00"),
          ("_count", "2")]


class Sleeps:
    def __init__(self):
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


class Failing:
    """A call that raises the given errors in turn, then answers ``result``."""

    def __init__(self, *errors: Exception, result: Any = "done"):
        self.errors = list(errors)
        self.result = result
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return self.result


def busy(retry_after: float | None = None) -> UpstreamUnavailable:
    return UpstreamUnavailable("the EHR is busy (Appointment search: HTTP 503)", retry_after=retry_after)


# -- retrying() --------------------------------------------------------------------------------------


def test_5xx_is_retried_with_exponential_backoff_and_jitter():
    sleeps = Sleeps()
    call = Failing(busy(), busy(), busy())
    assert retrying(call, sleep=sleeps, jitter=lambda: 0.0) == "done"
    assert call.calls == 4
    assert sleeps.waits == [0.25, 0.5, 1.0]  # half of 0.5 * 2**(n-1) with no jitter
    sleeps = Sleeps()
    retrying(Failing(busy(), busy()), sleep=sleeps, jitter=lambda: 0.5)
    assert sleeps.waits == [0.375, 0.75]  # half the step plus half of the jitter's share


def test_backoff_is_capped_and_never_longer_than_max_wait():
    policy = RetryPolicy(attempts=10, base=1.0, cap=8.0, max_wait=30.0)
    assert [policy.backoff(n, 0.999999) for n in (1, 4, 5, 9)] == pytest.approx([1.0, 8.0, 8.0, 8.0], abs=1e-4)
    assert RetryPolicy(base=10, cap=100, max_wait=3).backoff(3, 0.9) == 3


def test_retry_after_is_waited_exactly():
    sleeps = Sleeps()
    call = Failing(busy(7), busy(2.5))
    assert retrying(call, sleep=sleeps, jitter=lambda: 0.99) == "done"
    assert sleeps.waits == [7.0, 2.5]


def test_a_retry_after_longer_than_max_wait_gives_up_at_once_keeping_it():
    sleeps = Sleeps()
    call = Failing(busy(120))
    with pytest.raises(UpstreamUnavailable) as caught:
        retrying(call, policy=RetryPolicy(max_wait=30), sleep=sleeps)
    assert caught.value.retry_after == 120  # the timer can come back then
    assert (call.calls, sleeps.waits) == (1, [])


def test_the_deadline_bounds_every_wait():
    now = [100.0]
    sleeps = Sleeps()

    def clock() -> float:
        return now[0]

    def sleep(seconds: float) -> None:
        sleeps(seconds)
        now[0] += seconds

    # Retry-After beyond the deadline: give up rather than come back early.
    with pytest.raises(UpstreamUnavailable):
        retrying(Failing(busy(10)), sleep=sleep, clock=clock, deadline=105.0)
    assert sleeps.waits == []
    # Backoff is cut to what is left, then nothing is left.
    call = Failing(busy(), busy(), busy())
    with pytest.raises(UpstreamUnavailable):
        retrying(call, policy=RetryPolicy(attempts=4, base=4.0), sleep=sleep, clock=clock, deadline=104.5,
                 jitter=lambda: 0.0)
    assert sleeps.waits == [2.0, 2.5]
    assert call.calls == 3


def test_attempts_are_counted_and_the_last_error_raised():
    sleeps = Sleeps()
    last = busy()
    call = Failing(busy(), busy(), last, result="never")
    with pytest.raises(UpstreamUnavailable) as caught:
        retrying(call, policy=RetryPolicy(attempts=3), sleep=sleeps, jitter=lambda: 0.0)
    assert caught.value is last
    assert call.calls == 3 and len(sleeps.waits) == 2


def test_timeouts_are_retried_like_outages():
    sleeps = Sleeps()
    call = Failing(OutboundTimeout("fhir-ehr.cerner.com did not answer within 5 seconds."))
    assert retrying(call, sleep=sleeps, jitter=lambda: 0.0) == "done"
    assert call.calls == 2 and sleeps.waits == [0.25]


@pytest.mark.parametrize("error", [
    NotAuthenticated("the EHR refused the Appointment search: the sign-in has expired"),
    NotAuthorized("no"),
    InvalidUpstreamData("not a Bundle"),
    UpstreamError("the EHR answered HTTP 418"),
    OutboundConnectionFailed("The TLS certificate of fhir-ehr.cerner.com could not be verified."),
    ValueError("a bug"),
])
def test_nothing_else_is_retried(error):
    sleeps = Sleeps()
    call = Failing(error)
    with pytest.raises(type(error)):
        retrying(call, sleep=sleeps)
    assert (call.calls, sleeps.waits) == (1, [])


def test_retries_are_logged_with_the_calls_name_only(caplog):
    with caplog.at_level(logging.WARNING, logger="connector.fhir.retry"):
        retrying(Failing(busy(3)), sleep=Sleeps(), what="Appointment search page 2")
    [record] = caplog.records
    assert record.getMessage() == ("Appointment search page 2 unavailable (UpstreamUnavailable, attempt 1 of 4); "
                                   "retrying in 3.00 s")


@pytest.mark.parametrize("bad", [dict(attempts=0), dict(max_wait=-1), dict(base=-0.1)])
def test_a_policy_must_make_sense(bad):
    with pytest.raises(ValueError):
        RetryPolicy(**bad)


# -- the page walk ----------------------------------------------------------------------------------


Route = httpx.Response | Callable[[httpx.Request], httpx.Response] | list


class FakeNetwork:
    """Answers by URL as written (scheme, Host, path and query). A list route answers its items in turn."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        route = self.routes.get(f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}")
        if isinstance(route, list):
            route = route.pop(0) if len(route) > 1 else route[0]
        if route is None:
            return httpx.Response(404, json={"resourceType": "OperationOutcome"})
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)

    def urls(self) -> list[str]:
        return [f"{r.url.scheme}://{r.headers['host']}{r.url.raw_path.decode()}" for r in self.requests]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((CERNER / name).read_text())


def fhir(document: Any, status: int = 200, **headers: str) -> httpx.Response:
    return httpx.Response(status, json=document, headers={"content-type": "application/fhir+json", **headers})


def appointment(appointment_id: str) -> dict:
    resource = copy.deepcopy(fixture("appointment-search-patient-date.bundle.normalized.json")["entry"][0]["resource"])
    resource["id"] = appointment_id
    return resource


def page(ids: list[str], next_url: str | None) -> dict:
    bundle = {"resourceType": "Bundle", "type": "searchset",
              "link": [{"relation": "self", "url": FIRST}],
              "entry": [{"fullUrl": f"{BASE}/Appointment/{i}", "resource": appointment(i)} for i in ids]}
    if next_url:
        bundle["link"].append({"relation": "next", "url": next_url})
    return bundle


def next_url(context: str) -> str:
    # Cerner's next links: the query again plus -pageContext and -pageDirection.
    return f"{FIRST}&-pageContext={context}&-pageDirection=NEXT"


def walker(routes: dict[str, Route], **options) -> tuple[RetryingFhir, FakeNetwork, Sleeps]:
    network = FakeNetwork(routes)
    http = SafeHttpClient(resolver=lambda host, port: DNS.get(host, []), transport_factory=network.transport)
    sleeps = Sleeps()
    options.setdefault("jitter", lambda: 0.0)
    return RetryingFhir(FhirRestClient(http), http, sleep=sleeps, **options), network, sleeps


def three_pages() -> dict[str, Route]:
    return {FIRST: fhir(page(["1001", "1002"], next_url("c2"))),
            next_url("c2"): fhir(page(["1003", "1004"], next_url("c3"))),
            next_url("c3"): fhir(page(["1005"], None))}


def test_pages_stream_one_by_one_with_a_fresh_token_each():
    fhir_client, network, _ = walker(three_pages())
    issued = iter(["token-a", "token-b", "token-c"])
    pages = fhir_client.search_pages(BASE, lambda: next(issued), "Appointment", PARAMS)
    first = next(pages)
    assert (first.number, [a.id for a in first.resources]) == (1, ["1001", "1002"])
    assert len(network.requests) == 1  # the next page is not fetched before it is wanted
    rest = list(pages)
    assert [(p.number, [a.id for a in p.resources]) for p in rest] == [(2, ["1003", "1004"]), (3, ["1005"])]
    assert network.urls() == [FIRST, next_url("c2"), next_url("c3")]
    assert [r.headers["authorization"] for r in network.requests] == [
        "Bearer token-a", "Bearer token-b", "Bearer token-c"]
    assert all(r.headers["accept"] == "application/fhir+json" for r in network.requests)
    assert all(r.url.host == "93.184.216.34" for r in network.requests)


def test_a_failed_page_is_fetched_again_alone():
    routes = three_pages()
    routes[next_url("c2")] = [fhir({"resourceType": "OperationOutcome"}, 503),
                              fhir({"resourceType": "OperationOutcome"}, 429, **{"retry-after": "3"}),
                              routes[next_url("c2")]]
    fhir_client, network, sleeps = walker(routes)
    found = [a.id for p in fhir_client.search_pages(BASE, "t", "Appointment", PARAMS) for a in p.resources]
    assert found == ["1001", "1002", "1003", "1004", "1005"]
    assert network.urls() == [FIRST, next_url("c2"), next_url("c2"), next_url("c2"), next_url("c3")]
    assert sleeps.waits == [0.25, 3.0]


def test_a_page_that_stays_down_ends_the_walk_after_the_pages_already_given():
    routes = three_pages()
    routes[next_url("c3")] = fhir({"resourceType": "OperationOutcome"}, 502)
    fhir_client, network, sleeps = walker(routes, policy=RetryPolicy(attempts=3))
    seen = []
    with pytest.raises(UpstreamUnavailable, match="HTTP 502"):
        for p in fhir_client.search_pages(BASE, "t", "Appointment", PARAMS):
            seen.append(p.number)
    assert seen == [1, 2]
    assert network.urls().count(next_url("c3")) == 3 and len(sleeps.waits) == 2


def test_a_bad_entry_is_skipped_and_logged_by_its_id_only(caplog):
    bundle = page(["1001", "1002", "1003"], None)
    bundle["entry"][1]["resource"]["status"] = {"secret": "PHI-LIKE-VALUE"}
    bundle["entry"][2]["resource"]["id"] = "not an id / PHI-LIKE-NAME"
    bundle["entry"][2]["resource"]["participant"] = "PHI-LIKE-VALUE"
    bundle["entry"].append({"resource": {"resourceType": "OperationOutcome", "issue": []},
                            "search": {"mode": "outcome"}})
    fhir_client, _, _ = walker({FIRST: fhir(bundle)})
    with caplog.at_level(logging.WARNING, logger="connector.fhir.retry"):
        [only] = list(fhir_client.search_pages(BASE, "TOKEN-XYZ", "Appointment", PARAMS))
    assert [a.id for a in only.resources] == ["1001"]
    assert only.skipped == ["1002", "#2"] and only.total_entries == 3
    assert [r.getMessage().split(":")[0] for r in caplog.records] == [
        "skipped Appointment 1002 on search page 1", "skipped Appointment #2 on search page 1"]
    assert "PHI-LIKE" not in caplog.text and "TOKEN-XYZ" not in caplog.text


def test_with_a_projection_model_entries_are_validated_as_it_and_agree_with_the_full_r4b_model(caplog):
    bundle = page(["1001", "1002", "1003", "1004", "1005"], None)
    bundle["entry"][1]["resource"]["start"] = 1767225600  # a number: pydantic alone would take it as Unix time
    bundle["entry"][2]["resource"]["id"] = "not an id / PHI-LIKE-NAME"
    bundle["entry"][3]["resource"]["start"] = "2026-01-16"  # a date without a time: kept, but has no times
    bundle["entry"][4]["resource"]["participant"] = [{"actor": {"reference": "PHI-LIKE-VALUE"}}]
    fhir_client, _, _ = walker({FIRST: fhir(bundle)})
    with caplog.at_level(logging.WARNING, logger="connector.fhir.retry"):
        [only] = list(fhir_client.search_pages(BASE, "t", "Appointment", PARAMS,
                                               select=lambda raw: raw["id"] != "1005", model=AppointmentTimes))
    assert [type(a).__name__ for a in only.resources] == ["AppointmentTimes", "AppointmentTimes"]
    assert [a.id for a in only.resources] == ["1001", "1004"] and only.skipped == ["1002", "#2"]
    assert only.total_entries == 5
    assert [r.getMessage() for r in caplog.records] == [
        "skipped Appointment 1002 on search page 1: start: value_error",
        "skipped Appointment #2 on search page 1: id: string_pattern_mismatch"]
    assert "PHI-LIKE" not in caplog.text
    projected, dated = only.resources
    full = parse_resource(appointment("1001"), expected="Appointment").resource
    assert fhir_context.has_times(projected) and not fhir_context.has_times(dated)
    assert fhir_context.window(projected) == fhir_context.window(full)
    assert (projected.status, fhir_context.participant_id(projected, "Patient"),
            fhir_context.participant_id(projected, "Location")) == (
        full.status, fhir_context.participant_id(full, "Patient"), fhir_context.participant_id(full, "Location"))
    assert fhir_context.participant_id(projected, "Patient") is not None


@pytest.mark.parametrize("elsewhere", ["https://other-ehr.example.com/r4/x/Appointment?page=2",
                                       f"http://{HOST}/r4/{TENANT}/Appointment?page=2"])
def test_a_next_link_to_another_origin_is_refused_before_the_token_goes_there(elsewhere):
    fhir_client, network, _ = walker({FIRST: fhir(page(["1001"], elsewhere))})
    pages = fhir_client.search_pages(BASE, "t", "Appointment", PARAMS)
    assert [a.id for a in next(pages).resources] == ["1001"]
    with pytest.raises(InvalidUpstreamData, match="linked to another host"):
        next(pages)
    assert len(network.requests) == 1


def test_a_walk_longer_than_max_pages_fails_loudly_rather_than_miss_appointments():
    looping = page(["1001"], FIRST)
    fhir_client, network, _ = walker({FIRST: fhir(looping)}, max_pages=5)
    with pytest.raises(InvalidUpstreamData, match="more than 5 pages"):
        list(fhir_client.search_pages(BASE, "t", "Appointment", PARAMS))
    assert len(network.requests) == 5
    assert MAX_SCAN_PAGES > 10  # more than FhirRestClient.search's ten


@pytest.mark.parametrize("status, error", [(401, NotAuthenticated), (403, NotAuthorized), (400, UpstreamError)])
def test_refusals_are_not_retried(status, error):
    fhir_client, network, sleeps = walker({FIRST: fhir({"resourceType": "OperationOutcome"}, status)})
    with pytest.raises(error):
        list(fhir_client.search_pages(BASE, "t", "Appointment", PARAMS))
    assert len(network.requests) == 1 and sleeps.waits == []


def test_an_answer_that_is_not_a_bundle_is_invalid_upstream_data():
    fhir_client, _, _ = walker({FIRST: fhir(appointment("1001"))})
    with pytest.raises(InvalidUpstreamData, match="did not answer with a Bundle"):
        list(fhir_client.search_pages(BASE, "t", "Appointment", PARAMS))


def test_search_gives_every_page_and_read_is_retried_but_patch_is_not():
    routes = three_pages()
    routes[f"{BASE}/Appointment/4822366"] = [fhir({}, 503), fhir(appointment("4822366"), etag='W/"3"')]
    routes[f"{BASE}/Appointment/4822367"] = fhir({"resourceType": "OperationOutcome"}, 503)
    fhir_client, network, sleeps = walker(routes)
    assert [a.id for a in fhir_client.search(BASE, "t", "Appointment", PARAMS)] == [
        "1001", "1002", "1003", "1004", "1005"]
    resource, etag = fhir_client.read_versioned(BASE, "t", "Appointment", "4822366")
    assert (resource.id, etag) == ("4822366", 'W/"3"')
    assert network.urls().count(f"{BASE}/Appointment/4822366") == 2 and sleeps.waits == [0.25]
    with pytest.raises(UpstreamUnavailable):
        fhir_client.patch(BASE, "t", "Appointment", "4822367", [{"op": "replace", "path": "/status",
                                                                  "value": "arrived"}], if_match='W/"1"')
    assert network.urls().count(f"{BASE}/Appointment/4822367") == 1


def test_resource_types_are_checked_before_any_request():
    fhir_client, network, _ = walker({})
    with pytest.raises(ValueError):
        list(fhir_client.search_pages(BASE, "t", "../Appointment", PARAMS))
    assert network.requests == []


def test_built_from_a_fhir_rest_client_alone_it_pages_through_that_clients_http_and_loopback_rule():
    network = FakeNetwork(three_pages())
    http = SafeHttpClient(resolver=lambda host, port: DNS.get(host, []), transport_factory=network.transport)
    fhir_client = RetryingFhir(FhirRestClient(http), sleep=Sleeps())  # what composition.py builds
    assert [a.id for a in fhir_client.search(BASE, "t", "Appointment", PARAMS)] == [
        "1001", "1002", "1003", "1004", "1005"]
    assert len(network.requests) == 3
    local = SafeHttpClient(allow_loopback_http=True)
    assert RetryingFhir(FhirRestClient(local, allow_loopback=True))._allow_loopback is True
    assert RetryingFhir(FhirRestClient(local))._allow_loopback is False
    with pytest.raises(TypeError, match="needs the SafeHttp"):
        RetryingFhir(object())  # type: ignore[arg-type]
