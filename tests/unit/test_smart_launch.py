"""SMART EHR launch: ``begin`` validates before it redirects, ``complete`` takes the single-use
state, exchanges the code and verifies who signed in. Runs on the fakes of ``tests/fakes.py``;
the URL rules of ``connector.domain.endpoint`` and PKCE are checked here too.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone
from urllib.parse import parse_qs, urlsplit

import pytest

from connector.domain.endpoint import Environment, FhirEndpoint, is_loopback_url, normalize_base_url, url_problem
from connector.domain.integration import PATIENT_SCOPES, PROVIDER_SCOPES
from connector.domain.launch import STATE_TTL, LaunchState, Persona, pkce_challenge
from connector.domain.smart import SmartConfiguration, TokenResponse
from connector.errors import InvalidUpstreamData, NotAuthenticated
from connector.services.smart_launch import LaunchRefused, SmartLaunch, token_expiry
from tests.fakes import (
    FakeClock, FakeEndpointRepository, FakeIdSource, FakeIdTokenVerifier, FakeLaunchStateRepository,
    FakeSmartDiscovery, FakeSmartTokenClient,
)

TENANT = "11111111-2222-3333-4444-555555555555"
CERNER_TENANT = "ec2458f2-1e24-41c8-b71b-0e701af7583d"
BASE = f"https://fhir-ehr.cerner.com/r4/{CERNER_TENANT}"
PROVIDER_CLIENT = "0c5ff07e-6c6f-4f50-b2c1-5a3f3e1c4d2b"
PATIENT_CLIENT = "9f1e2d3c-4b5a-6978-8a9b-0c1d2e3f4a5b"
REDIRECT = "https://visits.example.org/api/launch/callback"
LAUNCH = "a1b2c3d4-e5f6-4a7b-8c9d-0e1f2a3b4c5d"
AUTHORIZE = f"https://authorization.cerner.com/tenants/{CERNER_TENANT}/protocols/oauth2/profiles/smart-v1/personas/provider/authorize"
ACCESS_TOKEN = "eyJ.access-token-of-the-launch.sig"


def endpoint(**changes) -> FhirEndpoint:
    base = dict(tenant_id=TENANT, endpoint_id="main", base_url=BASE, environment=Environment.production,
                provider_client_id=PROVIDER_CLIENT, patient_client_id=PATIENT_CLIENT,
                meeting_organizer="dr.teams@example.org", created_at=datetime(2025, 1, 1, tzinfo=timezone.utc))
    return FhirEndpoint(**{**base, **changes})


class Launch:
    """A SmartLaunch on fakes, and the fakes."""

    def __init__(self, *endpoints: FhirEndpoint):
        self.clock = FakeClock()
        self.ids = FakeIdSource()
        self.endpoints = FakeEndpointRepository(*(endpoints or (endpoint(),)))
        self.states = FakeLaunchStateRepository()
        self.discovery = FakeSmartDiscovery()
        self.config = self.discovery.add(BASE, SmartConfiguration(
            authorization_endpoint=AUTHORIZE, token_endpoint=f"{BASE}/token", jwks_uri="https://authorization.cerner.com/jwk"))
        self.tokens = FakeSmartTokenClient(TokenResponse(access_token=ACCESS_TOKEN, expires_in=570, id_token="id.token.jwt",
                                                         patient="12744003", encounter="97960003", user="4122701"))
        self.id_tokens = FakeIdTokenVerifier({"sub": "4122701", "fhirUser": f"{BASE}/Practitioner/4122701"})
        self.launch = SmartLaunch(self.endpoints, self.states, self.discovery, self.tokens, self.id_tokens, self.clock,
                                  self.ids, redirect_uri=REDIRECT, allow_loopback=False)

    def begin(self, persona: Persona = Persona.provider, *, iss: str | None = BASE, launch: str | None = LAUNCH):
        return self.launch.begin(persona, iss=iss, launch=launch)

    def begun(self, persona: Persona = Persona.provider) -> LaunchState:
        query = query_of(self.begin(persona))
        return self.states.states[query["state"]]


def query_of(url: str) -> dict[str, str]:
    parsed = parse_qs(urlsplit(url).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in parsed.values()), "no parameter may be repeated"
    return {k: v[0] for k, v in parsed.items()}


@pytest.fixture
def flow() -> Launch:
    return Launch()


# == begin ==============================================================================================


def test_begin_redirects_to_the_authorize_endpoint_with_every_smart_parameter(flow):
    url = flow.begin()
    assert url.startswith(AUTHORIZE + "?")
    query = query_of(url)
    assert set(query) == {"response_type", "client_id", "redirect_uri", "scope", "state", "aud", "launch",
                          "code_challenge", "code_challenge_method", "nonce"}
    assert query["response_type"] == "code"
    assert query["client_id"] == PROVIDER_CLIENT
    assert query["redirect_uri"] == REDIRECT
    assert query["aud"] == BASE
    assert query["launch"] == LAUNCH
    scopes = query["scope"].split(" ")
    assert {"launch", "openid", "fhirUser"} <= set(scopes)
    assert scopes == list(PROVIDER_SCOPES)
    assert all(s.split("/")[-1].endswith((".read", ".write")) for s in scopes if "/" in s)  # SMART v1 scopes
    assert query["code_challenge_method"] == "S256"


def test_begin_saves_a_single_use_state_holding_the_verifier_for_ten_minutes(flow):
    query = query_of(flow.begin())
    assert len(query["state"]) >= 43
    saved = flow.states.states[query["state"]]
    assert query["code_challenge"] == pkce_challenge(saved.code_verifier)
    assert query["code_challenge"] != saved.code_verifier and saved.code_verifier not in query.values()
    assert 43 <= len(saved.code_verifier) <= 128
    assert query["nonce"] == saved.nonce
    assert (saved.tenant_id, saved.endpoint_id, saved.persona, saved.client_id) == (
        TENANT, "main", Persona.provider, PROVIDER_CLIENT)
    assert saved.created_at == flow.clock.now()
    assert saved.expires_at == flow.clock.now() + timedelta(minutes=10) == flow.clock.now() + STATE_TTL
    assert flow.discovery.calls == [(BASE, False)]


def test_each_launch_gets_its_own_state_verifier_and_nonce(flow):
    one, two = flow.begun(), flow.begun()
    assert one.state != two.state and one.code_verifier != two.code_verifier and one.nonce != two.nonce
    assert len(flow.states.states) == 2


def test_the_patient_persona_uses_the_patient_app_and_scopes(flow):
    query = query_of(flow.begin(Persona.patient))
    assert query["client_id"] == PATIENT_CLIENT
    assert query["scope"].split(" ") == list(PATIENT_SCOPES)
    assert flow.states.states[query["state"]].persona is Persona.patient


def test_an_authorize_endpoint_with_a_query_keeps_it(flow):
    flow.discovery.add(BASE, flow.config.model_copy(update={"authorization_endpoint": f"{AUTHORIZE}?tenant=x"}))
    url = flow.begin()
    assert url.startswith(f"{AUTHORIZE}?tenant=x&") and query_of(url)["tenant"] == "x"


@pytest.mark.parametrize("iss", [
    f"HTTPS://FHIR-EHR.CERNER.COM/r4/{CERNER_TENANT}",
    f"{BASE}/",
    f"https://Fhir-Ehr.Cerner.com/r4/{CERNER_TENANT}/",
    f"https://fhir-ehr.cerner.com:443/r4/{CERNER_TENANT}",
])
def test_an_iss_spelled_differently_finds_the_registered_endpoint(flow, iss):
    assert query_of(flow.begin(iss=iss))["aud"] == BASE
    [saved] = flow.states.states.values()
    assert (saved.tenant_id, saved.endpoint_id) == (TENANT, "main")


@pytest.mark.parametrize("iss", [
    None, "", "https://fhir-ehr.cerner.com/r4/another-tenant", f"https://evil.example/r4/{CERNER_TENANT}",
    f"https://fhir-ehr.cerner.com/R4/{CERNER_TENANT}",  # paths are case-sensitive
    "not a url", "javascript:alert(1)", f"https://user:pw@fhir-ehr.cerner.com/r4/{CERNER_TENANT}",
    "https://fhir-ehr.cerner.com:99999/r4/x", "https://" + "a" * 2050, "ftp://fhir-ehr.cerner.com/r4",
    f" {BASE}", f"{BASE}\n",  # white space is a broken URL, not a spelling
    f"{BASE}?tenant=x", f"{BASE}#x",  # a base URL has no query or fragment
])
def test_an_unknown_or_malformed_iss_is_refused_without_a_redirect_or_a_state(flow, iss):
    with pytest.raises(LaunchRefused, match="unknown iss") as caught:
        flow.begin(iss=iss)
    assert caught.value.http_status == 400
    assert flow.states.states == {} and flow.discovery.calls == []


@pytest.mark.parametrize("launch", [None, "", "has space", "<script>", "x" * 513])
def test_a_missing_or_malformed_launch_is_refused(flow, launch):
    with pytest.raises(LaunchRefused, match="launch context"):
        flow.begin(launch=launch)
    assert flow.states.states == {} and flow.discovery.calls == []


@pytest.mark.parametrize(("persona", "missing", "which"), [
    (Persona.provider, "provider_client_id", "provider"), (Persona.patient, "patient_client_id", "patient"),
])
def test_an_endpoint_without_the_personas_client_id_is_refused(persona, missing, which):
    flow = Launch(endpoint(**{missing: None}))
    with pytest.raises(LaunchRefused, match=f"no {which} app client id") as caught:
        flow.begin(persona)
    assert "administrator" in caught.value.message
    assert flow.states.states == {} and flow.discovery.calls == []


def test_a_failed_discovery_saves_nothing(flow):
    flow.discovery.error = InvalidUpstreamData("The FHIR server names no SMART authorization and token endpoints.")
    with pytest.raises(InvalidUpstreamData):
        flow.begin()
    assert flow.states.states == {}


def test_the_launch_log_names_no_launch_value(flow, caplog):
    with caplog.at_level(logging.DEBUG, logger="connector.launch"):
        saved = flow.begun()
    assert "main" in caplog.text
    for secret in (LAUNCH, saved.state, saved.code_verifier, saved.nonce):
        assert secret not in caplog.text


# == complete ============================================================================================


def test_complete_exchanges_the_code_with_the_saved_verifier_and_redirect_uri(flow):
    saved = flow.begun()
    signed_in = flow.launch.complete(state=saved.state, code="the-code")
    [call] = flow.tokens.calls
    assert call == {"endpoint_id": "main", "token_endpoint": f"{BASE}/token", "client_id": PROVIDER_CLIENT,
                    "code": "the-code", "redirect_uri": REDIRECT, "code_verifier": saved.code_verifier}
    assert flow.id_tokens.calls == [("id.token.jwt", PROVIDER_CLIENT, saved.nonce)]
    assert signed_in.endpoint.endpoint_id == "main" and signed_in.persona is Persona.provider
    assert signed_in.tokens.access_token == ACCESS_TOKEN and signed_in.configuration == flow.config
    assert (signed_in.user_type, signed_in.user_id) == ("Practitioner", "4122701")
    assert signed_in.tokens.expires_in == 570
    assert flow.states.states == {}  # taken


@pytest.mark.parametrize("state", [None, "", "short", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "/"])
def test_a_missing_or_malformed_state_is_refused_before_storage_is_asked(flow, state):
    saved = flow.begun()
    with pytest.raises(LaunchRefused, match="not valid"):
        flow.launch.complete(state=state, code="the-code")
    assert flow.states.taken == [] and flow.tokens.calls == []
    assert saved.state in flow.states.states


def test_an_unknown_state_is_refused_without_a_token_exchange(flow):
    with pytest.raises(LaunchRefused, match="already used or is unknown"):
        flow.launch.complete(state="B" * 43, code="the-code")
    assert flow.tokens.calls == []


def test_a_replayed_state_is_refused(flow):
    saved = flow.begun()
    flow.launch.complete(state=saved.state, code="the-code")
    with pytest.raises(LaunchRefused, match="already used"):
        flow.launch.complete(state=saved.state, code="the-code")
    assert len(flow.tokens.calls) == 1


def test_an_expired_state_is_refused_and_spent(flow):
    saved = flow.begun()
    flow.clock.advance(minutes=10)
    with pytest.raises(LaunchRefused, match="expired"):
        flow.launch.complete(state=saved.state, code="the-code")
    assert flow.tokens.calls == [] and flow.states.states == {}


def test_a_state_just_inside_its_ten_minutes_still_works(flow):
    saved = flow.begun()
    flow.clock.advance(minutes=9, seconds=59)
    assert flow.launch.complete(state=saved.state, code="the-code").user_id == "4122701"


@pytest.mark.parametrize("error", ["access_denied", "invalid_scope", "unauthorized_client"])
def test_an_oauth_error_is_refused_naming_its_code(flow, error):
    saved = flow.begun()
    with pytest.raises(LaunchRefused) as caught:
        flow.launch.complete(state=saved.state, code=None, error=error)
    assert f"({error})" in caught.value.message
    assert flow.tokens.calls == [] and flow.states.states == {}


@pytest.mark.parametrize("error", ["<script>alert(1)</script>", "Access Denied", "x" * 65, "access_denied\nInjected"])
def test_an_unsafe_oauth_error_is_not_echoed(flow, error, caplog):
    saved = flow.begun()
    with caplog.at_level(logging.INFO, logger="connector.launch"), pytest.raises(LaunchRefused) as caught:
        flow.launch.complete(state=saved.state, code="c", error=error)
    assert "(an error)" in caught.value.message
    assert error not in caught.value.message and error not in caplog.text
    assert flow.tokens.calls == []


def test_a_callback_without_a_code_is_refused(flow):
    saved = flow.begun()
    with pytest.raises(LaunchRefused, match="no authorization code"):
        flow.launch.complete(state=saved.state, code="")
    assert flow.tokens.calls == []


def test_an_endpoint_removed_during_the_launch_is_refused(flow):
    saved = flow.begun()
    stored = flow.endpoints.get_endpoint(TENANT, "main")
    flow.endpoints.remove_endpoint(stored.item, stored.etag)
    with pytest.raises(LaunchRefused, match="no longer registered"):
        flow.launch.complete(state=saved.state, code="c")
    assert flow.tokens.calls == []


def test_a_failed_id_token_verification_is_not_authenticated(flow):
    saved = flow.begun()
    flow.id_tokens.error = NotAuthenticated("the id_token's signature or claims are not valid")
    with pytest.raises(NotAuthenticated, match="signature"):
        flow.launch.complete(state=saved.state, code="c")


def test_a_token_answer_without_an_id_token_is_not_authenticated(flow):
    saved = flow.begun()
    flow.tokens.answer = flow.tokens.answer.model_copy(update={"id_token": None})
    with pytest.raises(NotAuthenticated, match="no id_token"):
        flow.launch.complete(state=saved.state, code="c")
    assert flow.id_tokens.calls == []


@pytest.mark.parametrize(("claims", "persona", "expected"), [
    ({"fhirUser": f"{BASE}/Practitioner/4122701"}, Persona.provider, ("Practitioner", "4122701")),
    ({"fhirUser": "Practitioner/4122702"}, Persona.provider, ("Practitioner", "4122702")),
    ({"fhirUser": f"{BASE}/Patient/12744003"}, Persona.patient, ("Patient", "12744003")),
    ({"fhirUser": f"{BASE}/RelatedPerson/77"}, Persona.patient, ("RelatedPerson", "77")),
    ({"profile": f"{BASE}/Practitioner/4122703"}, Persona.provider, ("Practitioner", "4122703")),  # SMART v1 name
    ({}, Persona.provider, ("Practitioner", "4122701")),  # Cerner's `user` in the token answer
    ({"fhirUser": f"{BASE}/Practitioner/4122701/_history/2"}, Persona.provider, ("Practitioner", "4122701")),
    ({"fhirUser": f"{BASE}/Organization/1"}, Persona.provider, ("Practitioner", "4122701")),
    ({"fhirUser": f"{BASE}/Practitioner/../../x"}, Persona.provider, ("Practitioner", "4122701")),
    ({}, Persona.patient, (None, None)),
    ({"fhirUser": 42}, Persona.patient, (None, None)),
])
def test_who_signed_in_comes_from_fhir_user(flow, claims, persona, expected):
    flow.id_tokens.claims = claims
    saved = flow.begun(persona)
    signed_in = flow.launch.complete(state=saved.state, code="c")
    assert (signed_in.user_type, signed_in.user_id) == expected


def test_complete_never_logs_the_code_or_tokens(flow, caplog):
    saved = flow.begun()
    with caplog.at_level(logging.DEBUG):
        flow.launch.complete(state=saved.state, code="the-secret-code")
    for secret in ("the-secret-code", ACCESS_TOKEN, "id.token.jwt", saved.state, saved.code_verifier):
        assert secret not in caplog.text


def test_token_expiry_stops_a_little_before_the_ehr_says():
    now = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
    assert token_expiry(now, TokenResponse(access_token="t", expires_in=3600)) == now + timedelta(seconds=3570)
    assert token_expiry(now, TokenResponse(access_token="t")) == now + timedelta(seconds=270)
    assert token_expiry(now, TokenResponse(access_token="t", expires_in=10)) == now + timedelta(seconds=30)


# == PKCE and the URL rules ================================================================================


def test_pkce_challenge_matches_rfc_7636_appendix_b():
    assert pkce_challenge("dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk") == "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM"


def test_a_launch_state_only_takes_a_256_bit_state_and_a_valid_verifier():
    now = datetime(2025, 3, 3, 9, 0, tzinfo=timezone.utc)
    common = dict(tenant_id=TENANT, endpoint_id="main", persona=Persona.provider, client_id="c", nonce="n",
                  created_at=now, expires_at=now + STATE_TTL)
    state = LaunchState(state="A" * 43, code_verifier="v" * 43, **common)
    assert not state.expired(now + STATE_TTL - timedelta(seconds=1)) and state.expired(now + STATE_TTL)
    for bad in ({"state": "A" * 42, "code_verifier": "v" * 43}, {"state": "A" * 43, "code_verifier": "v" * 42},
                {"state": "A" * 43, "code_verifier": "v" * 129}):
        with pytest.raises(ValueError):
            LaunchState(**bad, **common)
    assert "v" * 43 not in repr(state)


@pytest.mark.parametrize(("url", "normalized"), [
    (f"HTTPS://FHIR-EHR.CERNER.COM/r4/{CERNER_TENANT}/", BASE),
    ("https://fhir.example.org:8443/R4/", "https://fhir.example.org:8443/R4"),
    ("https://fhir.example.org/r4?x=1#frag", "https://fhir.example.org/r4"),
    ("https://[::1]:8081/r4/", "https://[::1]:8081/r4"),
    ("  https://fhir.example.org/r4//  ", "https://fhir.example.org/r4"),
])
def test_normalize_base_url(url, normalized):
    assert normalize_base_url(url) == normalized
    assert normalize_base_url(normalized) == normalized


def test_an_explicit_default_port_is_the_same_url():
    # (found while writing these tests: ":443" used to make another URL)
    assert normalize_base_url(f"https://fhir-ehr.cerner.com:443/r4/{CERNER_TENANT}") == BASE
    assert normalize_base_url("http://localhost:80/r4") == "http://localhost/r4"
    assert normalize_base_url("https://fhir.example.org:80/r4") == "https://fhir.example.org:80/r4"


def test_normalize_base_url_refuses_a_port_out_of_range():
    with pytest.raises(ValueError):
        normalize_base_url("https://fhir.example.org:99999/r4")


@pytest.mark.parametrize(("url", "loopback"), [
    ("http://localhost:8081/r4", True), ("http://127.0.0.1/r4", True), ("http://127.9.9.9/r4", True),
    ("http://[::1]:8081/r4", True), ("https://fhir.example.org/r4", False), ("http://10.0.0.1/", False),
    ("http://localhost.example.org/", False), ("not a url", False), ("http://[::1/", False),
])
def test_is_loopback_url(url, loopback):
    assert is_loopback_url(url) is loopback


@pytest.mark.parametrize(("url", "problem"), [
    (BASE, None), ("http://localhost:8081/r4", None),
    ("https://" + "a" * 2048, "longer than 2048"), ("https://fhir.example.org/r 4", "spaces or control"),
    ("https://fhir.example.org/\x00", "spaces or control"), ("https://fhir.example.org:99999/", "not a valid URL"),
    ("ftp://fhir.example.org/", "absolute URL"), ("/r4/relative", "absolute URL"),
    ("https://user:pw@fhir.example.org/", "user name or password"), ("https://fhir_example!.org/", "invalid host"),
])
def test_url_problem(url, problem):
    found = url_problem(url)
    assert (found is None) if problem is None else (problem in found)


# == the endpoints the admin validated ================================================================


def test_the_validated_endpoints_win_over_what_discovery_says_now():
    stored = endpoint(authorize_url=AUTHORIZE, token_url=f"{BASE}/token")
    flow = Launch(stored)
    flow.discovery.add(BASE, flow.config.model_copy(update={
        "authorization_endpoint": "https://evil.example/authorize", "token_endpoint": "https://evil.example/token"}))
    assert flow.begin().startswith(AUTHORIZE + "?")
    state = query_of(flow.begin())["state"]
    flow.launch.complete(state=state, code="code-1")
    [call] = flow.tokens.calls
    assert call["token_endpoint"] == f"{BASE}/token"  # the code (and any secret) goes where the admin approved


def test_discovered_endpoints_that_are_not_https_are_not_used():
    flow = Launch(endpoint())  # registered before validation stored the endpoints
    flow.discovery.add(BASE, flow.config.model_copy(update={"authorization_endpoint": "http://fhir.example/authorize"}))
    with pytest.raises(LaunchRefused, match="validate its FHIR base URL again"):
        flow.begin()
    assert flow.states.states == {}


# == the callback comes back to the browser that began ================================================


def test_a_callback_without_the_launch_cookie_of_its_browser_is_refused(flow):
    state = query_of(flow.launch.begin(Persona.provider, iss=BASE, launch=LAUNCH, browser_binding="binding-a"))["state"]
    saved = flow.states.states[state]
    assert saved.browser_binding_hash and "binding-a" not in saved.model_dump_json()  # only its hash is stored
    with pytest.raises(LaunchRefused, match="did not start in this browser"):
        flow.launch.complete(state=state, code="code-1", browser_bindings=("binding-b", ""))
    assert flow.tokens.calls == []  # nothing exchanged, and the state is spent
    with pytest.raises(LaunchRefused, match="already used"):
        flow.launch.complete(state=state, code="code-1", browser_bindings=("binding-a",))


def test_the_launch_cookie_among_others_lets_the_callback_through(flow):
    state = query_of(flow.launch.begin(Persona.provider, iss=BASE, launch=LAUNCH, browser_binding="binding-a"))["state"]
    signed_in = flow.launch.complete(state=state, code="code-1", browser_bindings=("other-launch", "binding-a"))
    assert signed_in.tokens.access_token == ACCESS_TOKEN and len(flow.tokens.calls) == 1
