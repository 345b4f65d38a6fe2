"""Validating a FHIR base URL before it is registered: each check's verdict and sentence.

The real SafeHttpClient runs over a fake network (``httpx.MockTransport``) and a fake resolver,
serving Cerner's published metadata and smart-configuration documents.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from connector.adapters.fhir.smart_discovery import SmartDiscoveryClient
from connector.adapters.net import SafeHttpClient
from connector.domain.validation import CheckName, ValidationReport
from connector.errors import InvalidInput
from connector.services.fhir_validation import validate_fhir_base_url
from tests.conftest import DATA

CERNER = DATA / "fixtures" / "cerner"
TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
CERNER_HOST = "fhir-ehr.cerner.com"
BASE = f"https://{CERNER_HOST}/r4/{TENANT}"
PUBLIC_IP = "93.184.216.34"
AUTH_IP = "151.101.1.140"
SMART_V1 = f"https://authorization.cerner.com/tenants/{TENANT}/protocols/oauth2/profiles/smart-v1"
AUTHORIZE = f"{SMART_V1}/personas/provider/authorize"
TOKEN = f"{SMART_V1}/token"
ALL_CHECKS = [c.value for c in CheckName]

Route = httpx.Response | Callable[[httpx.Request], httpx.Response]


def fixture(name: str) -> dict[str, Any]:
    return json.loads((CERNER / name).read_text())


def fhir_json(document: Any, status: int = 200) -> httpx.Response:
    return httpx.Response(status, json=document, headers={"content-type": "application/fhir+json"})


class FakeNetwork:
    """Answers by URL as the admin wrote it (Host header + path); records every request."""

    def __init__(self, routes: dict[str, Route]):
        self.routes = routes
        self.requests: list[httpx.Request] = []

    def _handle(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        logical = f"{request.url.scheme}://{request.headers['host']}{request.url.raw_path.decode()}"
        route = self.routes.get(logical)
        if route is None:
            return httpx.Response(404, text="<html>Not Found</html>", headers={"content-type": "text/html"})
        return route(request) if callable(route) else route

    def transport(self) -> httpx.BaseTransport:
        return httpx.MockTransport(self._handle)


def cerner_routes(base: str = BASE, **overrides: Route) -> dict[str, Route]:
    routes: dict[str, Route] = {
        f"{base}/metadata": fhir_json(fixture("metadata-capabilitystatement-secure.json")),
        f"{base}/.well-known/smart-configuration": httpx.Response(200, json=fixture("smart-configuration.json")),
    }
    routes.update({f"{base}/{path}": route for path, route in overrides.items()})
    return routes


DNS = {CERNER_HOST: [PUBLIC_IP], "authorization.cerner.com": [AUTH_IP], "localhost": ["127.0.0.1"]}


def validate(
    url: str = BASE,
    routes: dict[str, Route] | None = None,
    *,
    environment: str = "production",
    local_mode: bool = False,
    dns: dict[str, list[str]] | None = None,
) -> tuple[ValidationReport, FakeNetwork]:
    network = FakeNetwork(cerner_routes() if routes is None else routes)
    answers = DNS if dns is None else {**DNS, **dns}

    def resolve(host: str, port: int) -> list[str]:
        return answers.get(host, [])

    # As the composition root builds it: loopback allowed only when the stamp runs locally.
    http = SafeHttpClient(resolver=resolve, transport_factory=network.transport, allow_loopback_http=local_mode)
    report = validate_fhir_base_url(url, environment=environment, http=http, discovery=SmartDiscoveryClient(http),
                                    local_mode=local_mode)
    return report, network


def verdicts(report: ValidationReport) -> dict[str, bool | None]:
    return {check.name.value: check.passed for check in report.checks}


def message(report: ValidationReport, name: str) -> str:
    return report.check(name).message


# -- the happy path ----------------------------------------------------------------------------


def test_cerner_published_documents_pass_every_check():
    report, network = validate()

    assert [c.name.value for c in report.checks] == ALL_CHECKS
    assert verdicts(report) == dict.fromkeys(ALL_CHECKS, True)
    assert report.ok is True
    assert report.base_url == BASE
    assert report.fhir_version == "4.0.1"
    assert report.authorize_url == AUTHORIZE
    assert report.token_url == TOKEN
    assert report.cerner_tenant_id == TENANT
    assert message(report, "public_address") == f"{CERNER_HOST} resolves to public addresses only (1 checked)."
    assert message(report, "metadata") == "GET metadata is a FHIR R4 CapabilityStatement (FHIR 4.0.1)."
    assert message(report, "smart_discovery") == "SMART endpoints found in .well-known/smart-configuration."
    assert message(report, "cerner_tenant") == f"Cerner tenant id {TENANT} recognised in the Cerner-hosted URL."
    assert message(report, "token_endpoint") == (
        "Token endpoint at authorization.cerner.com (from .well-known/smart-configuration); "
        "it resolves to public addresses only."
    )

    metadata, smart = network.requests
    assert (metadata.url.path, metadata.headers["accept"]) == (f"/r4/{TENANT}/metadata", "application/fhir+json")
    assert smart.url.path == f"/r4/{TENANT}/.well-known/smart-configuration"
    assert smart.headers["accept"] == "application/json"
    assert {r.url.host for r in network.requests} == {PUBLIC_IP}  # pinned to the checked address


def test_the_report_serialises_with_statuses_for_the_portal():
    report, _ = validate()
    body = json.loads(report.model_dump_json())
    assert body["ok"] is True and body["environment"] == "production"
    assert body["checks"][0] == {
        "name": "url_syntax", "passed": True, "message": "The URL is an absolute https URL.", "status": "passed"
    }


def test_the_url_is_normalised_before_use():
    normalised = f"https://{CERNER_HOST}/r4/{TENANT.upper()}"  # the path keeps its case
    report, network = validate(f"  HTTPS://FHIR-EHR.Cerner.com/r4/{TENANT.upper()}/ ", cerner_routes(normalised))
    assert report.ok and report.base_url == normalised
    assert report.cerner_tenant_id == TENANT  # tenant ids are compared lower-case
    assert network.requests[0].headers["host"] == CERNER_HOST


# -- SMART discovery -------------------------------------------------------------------------


def test_discovery_falls_back_to_the_oauth_uris_extension_when_smart_configuration_is_missing():
    routes = cerner_routes(**{".well-known/smart-configuration": httpx.Response(404)})
    report, _ = validate(routes=routes)

    assert report.ok is True
    assert message(report, "smart_discovery") == (
        "SMART endpoints found in the CapabilityStatement's oauth-uris extension "
        "(.well-known/smart-configuration answered HTTP 404)."
    )
    assert report.authorize_url == AUTHORIZE and report.token_url == TOKEN
    assert "oauth-uris" in message(report, "token_endpoint")


def test_discovery_falls_back_when_smart_configuration_times_out():
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ReadTimeout("timed out")

    report, _ = validate(routes=cerner_routes(**{".well-known/smart-configuration": hang}))
    assert report.check("smart_discovery").passed is True
    expected = "could not be read (fhir-ehr.cerner.com did not answer within 5 seconds)"
    assert expected in message(report, "smart_discovery")
    assert report.token_url == TOKEN


def test_no_discovery_document_and_no_extension_fails_and_skips_the_endpoint_checks():
    routes = cerner_routes(
        metadata=fhir_json(fixture("metadata-capabilitystatement-open.json")),
        **{".well-known/smart-configuration": httpx.Response(404)},
    )
    report, _ = validate(routes=routes)

    assert verdicts(report) | {} == {
        "url_syntax": True, "public_address": True, "metadata": True, "smart_discovery": False,
        "authorize_endpoint": None, "token_endpoint": None, "cerner_tenant": True,
    }
    assert message(report, "smart_discovery") == (
        "No SMART endpoints found: .well-known/smart-configuration answered HTTP 404, "
        "and the CapabilityStatement has no oauth-uris extension."
    )
    assert message(report, "token_endpoint") == "Skipped because the SMART discovery check did not pass."
    assert report.ok is False and report.authorize_url is None and report.token_url is None


def test_a_token_endpoint_on_a_private_address_fails_its_check():
    smart = fixture("smart-configuration.json") | {"token_endpoint": "https://token.hospital.example/token"}
    routes = cerner_routes(**{".well-known/smart-configuration": httpx.Response(200, json=smart)})
    report, network = validate(routes=routes, dns={"token.hospital.example": ["10.20.30.40"]})

    assert report.check("authorize_endpoint").passed is True
    assert report.check("token_endpoint").passed is False
    assert message(report, "token_endpoint") == (
        "The token endpoint cannot be used. token.hospital.example resolves to a private network "
        "address; only public addresses may be reached."
    )
    assert report.token_url is None and report.ok is False
    assert all(r.headers["host"] == CERNER_HOST for r in network.requests)  # never contacted


def test_a_plain_http_authorize_endpoint_fails_its_check():
    plain_http = "http://authorization.cerner.com/authorize"
    smart = fixture("smart-configuration.json") | {"authorization_endpoint": plain_http}
    routes = cerner_routes(**{".well-known/smart-configuration": httpx.Response(200, json=smart)})
    report, _ = validate(routes=routes)
    assert message(report, "authorize_endpoint") == "The authorization endpoint is not an https URL."
    assert report.check("token_endpoint").passed is True and report.ok is False


# -- metadata must be an R4 CapabilityStatement ---------------------------------------------------


def _metadata_answer(answer: httpx.Response) -> ValidationReport:
    report, _ = validate(routes=cerner_routes(metadata=answer))
    assert report.check("metadata").passed is False
    assert report.check("smart_discovery").passed is None
    assert message(report, "smart_discovery") == "Skipped because the metadata check did not pass."
    assert report.check("cerner_tenant").passed is True  # needs only the URL
    assert report.ok is False and report.fhir_version is None
    return report


def test_an_html_page_is_not_a_capability_statement():
    html = {"content-type": "text/html; charset=utf-8"}
    page = httpx.Response(200, text="<html><body>Welcome</body></html>", headers=html)
    report = _metadata_answer(page)
    assert message(report, "metadata") == (
        "GET metadata answered with text/html, not JSON, so it is not a FHIR CapabilityStatement."
    )


def test_json_that_is_not_r4_valid_fails_naming_the_path_not_the_value():
    document = {
        "resourceType": "CapabilityStatement", "status": "active", "kind": "instance",
        "fhirVersion": "4.0.1", "date": "not-a-date-Jane-Doe", "format": ["json"],
    }
    report = _metadata_answer(fhir_json(document))
    text = message(report, "metadata")
    assert text.startswith(
        "GET metadata is not a valid FHIR R4 CapabilityStatement: CapabilityStatement is not valid FHIR R4: date:"
    )
    assert "Jane-Doe" not in text


def test_another_resource_type_is_not_a_capability_statement():
    report = _metadata_answer(fhir_json(fixture("patient-read-12724067.json")))
    assert message(report, "metadata") == (
        "GET metadata is not a valid FHIR R4 CapabilityStatement: "
        "resourceType: expected CapabilityStatement, got Patient."
    )


@pytest.mark.parametrize(
    ("version", "shown"),
    [("5.0.0", "FHIR 5.0.0"), ("3.0.2", "FHIR 3.0.2"), ("<b>four</b>", "an unrecognised FHIR version")],
)
def test_a_capability_statement_of_another_fhir_version_fails(version: str, shown: str):
    document = copy.deepcopy(fixture("metadata-capabilitystatement-secure.json")) | {"fhirVersion": version}
    report = _metadata_answer(fhir_json(document))
    assert message(report, "metadata") == f"The server reports {shown}; the connector needs FHIR R4 (4.0.x)."


def test_an_error_status_is_reported_without_echoing_the_body():
    report = _metadata_answer(httpx.Response(500, text="stack trace: token=SECRET-abc123 at db.internal"))
    assert message(report, "metadata") == "GET metadata answered HTTP 500, not 200."
    assert "SECRET" not in report.model_dump_json()


def test_metadata_behind_a_login_says_it_must_be_open():
    report = _metadata_answer(httpx.Response(401))
    assert message(report, "metadata") == (
        "GET metadata answered HTTP 401, not 200. It must be readable without a token."
    )


def test_a_metadata_timeout_is_a_failed_check_with_a_sentence():
    def hang(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectTimeout("timed out")

    report = _metadata_answer(hang)  # type: ignore[arg-type]
    assert message(report, "metadata") == (
        "Reading the CapabilityStatement (GET metadata) failed. "
        f"{CERNER_HOST} did not accept a connection within 5 seconds."
    )


def test_a_metadata_redirect_to_the_metadata_service_is_refused():
    to_metadata_service = "https://169.254.169.254/metadata/identity/oauth2/token"
    report = _metadata_answer(httpx.Response(302, headers={"location": to_metadata_service}))
    assert message(report, "metadata") == (
        "Reading the CapabilityStatement (GET metadata) failed. The server redirected to 169.254.169.254, "
        "which is the cloud instance metadata address; only public addresses may be reached."
    )


# -- addresses -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "dns", "expected"),
    [
        (f"https://fhir.hospital.example/r4/{TENANT}", {"fhir.hospital.example": ["10.0.0.5"]},
         "fhir.hospital.example resolves to a private network address; only public addresses may be reached."),
        (f"https://169.254.169.254/r4/{TENANT}", {},
         "169.254.169.254 is the cloud instance metadata address; only public addresses may be reached."),
        (f"https://[::1]/r4/{TENANT}", {}, "::1 is a loopback address; only public addresses may be reached."),
        (f"https://192.168.1.20/r4/{TENANT}", {},
         "192.168.1.20 is a private network address; only public addresses may be reached."),
        (f"https://nowhere.example/r4/{TENANT}", {}, "The host name nowhere.example could not be resolved."),
    ],
)
def test_a_host_that_is_not_public_fails_public_address_and_nothing_is_fetched(url, dns, expected):
    report, network = validate(url, routes={}, dns=dns)
    assert report.check("url_syntax").passed is True
    assert message(report, "public_address") == expected
    assert [report.check(n).passed for n in ALL_CHECKS[2:6]] == [None] * 4
    assert message(report, "metadata") == "Skipped because the public address check did not pass."
    assert report.ok is False and network.requests == []


# -- loopback: local mode, test environment only ---------------------------------------------------


LOCAL_BASE = f"http://127.0.0.1:7071/r4/{TENANT}"


def test_loopback_passes_in_local_mode_for_a_test_environment():
    report, network = validate(LOCAL_BASE, cerner_routes(LOCAL_BASE), environment="test", local_mode=True)

    assert report.ok is True, report.checks
    local = "accepted in local mode for a test environment."
    assert message(report, "url_syntax") == f"Plain http to a loopback address, {local}"
    assert message(report, "public_address") == f"127.0.0.1 is a loopback address, {local}"
    assert message(report, "cerner_tenant") == f"Cerner tenant id {TENANT} recognised in the URL's /r4/{{tenant}} path."
    assert {r.url.host for r in network.requests} == {"127.0.0.1"}


def test_loopback_fails_for_a_production_environment_even_in_local_mode():
    report, network = validate(LOCAL_BASE, cerner_routes(LOCAL_BASE), environment="production", local_mode=True)

    assert verdicts(report)["url_syntax"] is False
    assert message(report, "url_syntax") == (
        "Plain http to loopback is accepted only for a test environment in local mode; "
        "a production FHIR base URL must use https."
    )
    assert [c.passed for c in report.checks[1:]] == [None] * 6
    assert report.ok is False and network.requests == []


def test_https_loopback_for_production_in_local_mode_fails_the_address_check_with_a_hint():
    url = f"https://localhost:7443/r4/{TENANT}"
    report, network = validate(url, cerner_routes(url), environment="production", local_mode=True)
    assert report.check("url_syntax").passed is True
    assert message(report, "public_address") == (
        "localhost resolves to a loopback address; only public addresses may be reached. "
        "Loopback is accepted only for a test environment in local mode."
    )
    assert report.ok is False and network.requests == []


def test_loopback_fails_for_a_test_environment_outside_local_mode():
    report, _ = validate(LOCAL_BASE, cerner_routes(LOCAL_BASE), environment="test", local_mode=False)
    assert message(report, "url_syntax") == "The URL must use https."
    report, _ = validate(f"https://127.0.0.1/r4/{TENANT}", {}, environment="test", local_mode=False)
    assert message(report, "public_address") == "127.0.0.1 is a loopback address; only public addresses may be reached."


def test_local_mode_still_refuses_http_to_anything_but_loopback():
    report, _ = validate(f"http://{CERNER_HOST}/r4/{TENANT}", environment="test", local_mode=True)
    assert message(report, "url_syntax") == (
        "Plain http is accepted only for loopback addresses in local mode; use https."
    )
    report, _ = validate(f"https://{CERNER_HOST}/r4/{TENANT}", {}, environment="test", local_mode=True,
                         dns={CERNER_HOST: ["172.16.4.4"]})
    assert message(report, "public_address") == (
        f"{CERNER_HOST} resolves to a private network address; only public addresses may be reached."
    )


# -- URL syntax and the Cerner tenant ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "expected"),
    [
        (f"{CERNER_HOST}/r4/{TENANT}", "The URL is not an absolute URL starting with https://."),
        ("", "The URL is not an absolute URL starting with https://."),
        (f"ftp://{CERNER_HOST}/r4/{TENANT}", "The URL is not an absolute URL starting with https://."),
        (f"https://admin:pw@{CERNER_HOST}/r4/{TENANT}", "The URL contains a user name or password."),
        (f"https://{CERNER_HOST}/r4/{TENANT}?_format=json", "A FHIR base URL has no query (?...) or fragment (#...)."),
        (f"https://fhir ehr.cerner.com/r4/{TENANT}", "The URL contains spaces or control characters."),
        (f"https://{CERNER_HOST}:99999/r4/{TENANT}", "The URL is not a valid URL."),
        ("https://" + "a" * 2050 + ".com/r4", "The URL is longer than 2048 characters."),
    ],
)
def test_unusable_urls_fail_url_syntax_and_everything_else_is_skipped(url: str, expected: str):
    report, network = validate(url, routes={})
    assert message(report, "url_syntax") == expected
    assert [c.passed for c in report.checks] == [False] + [None] * 6
    assert message(report, "cerner_tenant") == "Skipped because the URL check did not pass."
    assert network.requests == []


def test_a_cerner_host_without_a_tenant_id_fails_the_tenant_check():
    url = f"https://{CERNER_HOST}/r4"
    report, _ = validate(url, cerner_routes(url))
    assert report.check("metadata").passed is True
    assert report.check("cerner_tenant").passed is False
    assert message(report, "cerner_tenant") == (
        "This Cerner-hosted URL has no tenant id; Cerner FHIR base URLs look like "
        "https://fhir-ehr.cerner.com/r4/{tenant-id}."
    )
    assert report.ok is False and report.cerner_tenant_id is None


def test_a_url_that_is_not_cerner_skips_the_tenant_check_and_can_still_pass():
    url = "https://fhir.hospital.example/fhir/R4"
    report, _ = validate(url, cerner_routes(url), dns={"fhir.hospital.example": [PUBLIC_IP]})
    assert report.check("cerner_tenant").passed is None
    assert message(report, "cerner_tenant") == "Not a Cerner-hosted URL, so there is no Cerner tenant id to recognise."
    assert report.ok is True and report.cerner_tenant_id is None and report.token_url == TOKEN


def test_an_unknown_environment_is_invalid_input():
    with pytest.raises(InvalidInput) as raised:
        validate(environment="staging")
    assert raised.value.problems[0].field == "environment"
