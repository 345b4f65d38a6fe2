"""The provider launch, the visit page and the patient link, attacked over real sockets.

One whole stamp in this process (``visit_stack``: the local Functions host, Azurite, the
Cerner, Entra, ACS and Graph simulators). Each refusal is checked twice: the answer (status,
a readable page or JSON body, never a stack trace, never a redirect) and what it left
behind: no Graph meeting or subscription, no row in visits / joinlinks / meetingsubs /
usageevents, no SMS, and no code exchanged at the EHR's token endpoint where none should be.

The launch, hop by hop: ``GET /api/launch/provider?iss&launch`` -> 302 to the simulator's
authorize -> 302 to ``/api/launch/callback?code&state`` -> 303 to ``/api/visit/{sid}`` with
the sealed ``vv_session`` cookie scoped to that path.
"""

from __future__ import annotations

import concurrent.futures
import html
import os
import re
import secrets
from dataclasses import dataclass, replace
from datetime import timedelta
from urllib.parse import parse_qs, quote, urlencode, urlsplit, urlunsplit

import httpx
import pytest

from connector.adapters.identity.sessions import SessionSealer
from connector.domain.launch import LaunchSession
from connector.domain.meeting import meeting_external_id
from connector.domain.usage import UsageKind
from connector.domain.visit import JoinLink, token_hash
from dev.demo import PROVIDER_CLIENT_ID
from dev.sandbox.entra import CONTOSO_TID
from dev.sandbox.faults import Fault

pytestmark = pytest.mark.integration

VIDEO_VISIT = "4826005"  # PATEL, ASHA: booked video visit today, with an Encounter
OTHER_VISIT = "4826003"  # GARCIA, SOFIA: another booked video visit today, with an Encounter
# MORRISON, JAMES has two open appointments today (4826006 with Chen, 4826009 with Rivera):
# launched by Adeyemi without an Encounter, neither is "hers", so the clinician picks.
PICK_PATIENT, PICK_USER, PICK_CANDIDATES = "12744006", "4122703", ("4826006", "4826009")
ATTACKER = "https://attacker.example"
TRACE = re.compile(r"Traceback|File \"|line \d+, in ")
WATCHED_TABLES = ("visits", "join_links", "subscriptions", "usage_events")


# -- the launch, hop by hop -------------------------------------------------------------------

@dataclass(frozen=True)
class Launched:
    session_id: str
    cookie: str  # the sealed vv_session value

    @property
    def path(self) -> str:
        return f"/api/visit/{self.session_id}"

    @property
    def header(self) -> dict[str, str]:
        return {"Cookie": f"vv_session={self.cookie}"}


def params_of(url: str) -> dict[str, str]:
    return {key: values[0] for key, values in parse_qs(urlsplit(url).query).items()}


def with_params(url: str, **changes: str) -> str:
    parts = urlsplit(url)
    query = {**params_of(url), **changes}
    return urlunsplit((parts.scheme, parts.netloc, parts.path, urlencode(query), ""))


# The launch cookie each launch left in "the browser", by state (httpx keeps no Secure cookie over
# http, which a browser does on loopback: the tests carry it by hand).
LAUNCH_COOKIES: dict[str, str] = {}


def begin(client: httpx.Client, stack, appointment: str = VIDEO_VISIT, *, launch_url: str | None = None) -> str:
    """Our launch endpoint's answer: a 302 to the EHR's authorize endpoint (its URL)."""
    response = client.get(launch_url or stack.launch_url(appointment))
    assert response.status_code == 302, response.text
    location = response.headers["location"]
    assert location.startswith(stack.sandbox.cerner.urls.authorize("provider") + "?")
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("vv_launch_") and "Path=/api/launch/callback" in cookie and "HttpOnly" in cookie
    LAUNCH_COOKIES[params_of(location)["state"]] = cookie.split(";")[0]
    return location


def call_back(client: httpx.Client, callback_url: str, **kwargs) -> httpx.Response:
    """GET our callback as the browser that began the launch (with its launch cookie)."""
    cookie = LAUNCH_COOKIES.get(params_of(callback_url).get("state", ""))
    headers = {**kwargs.pop("headers", {}), **({"Cookie": cookie} if cookie else {})}
    return client.get(callback_url, headers=headers, **kwargs)


def authorize(client: httpx.Client, authorize_url: str) -> str:
    """The simulator's answer: a 302 back to a redirect URI with code and state (its URL)."""
    response = client.get(authorize_url)
    assert response.status_code == 302, response.text
    return response.headers["location"]


def callback_of(client: httpx.Client, stack, appointment: str = VIDEO_VISIT, **kwargs) -> str:
    callback = authorize(client, begin(client, stack, appointment, **kwargs))
    assert callback.startswith(f"{stack.host_url}/api/launch/callback?")
    return callback


def complete(client: httpx.Client, callback_url: str) -> Launched:
    response = call_back(client, callback_url)
    assert response.status_code == 303, response.text
    match = re.fullmatch(r"/api/visit/([A-Za-z0-9_-]{22})", response.headers["location"])
    assert match, response.headers["location"]
    session_id = match.group(1)
    cookie = response.headers["set-cookie"]
    value, *attributes = [part.strip() for part in cookie.split(";")]
    name, _, sealed = value.partition("=")
    assert name == "vv_session" and sealed
    assert {a.lower() for a in attributes} >= {f"path=/api/visit/{session_id}".lower(), "httponly", "secure",
                                               "samesite=lax"}
    return Launched(session_id, sealed)


def launch(client: httpx.Client, stack, appointment: str = VIDEO_VISIT, **kwargs) -> Launched:
    return complete(client, callback_of(client, stack, appointment, **kwargs))


def launch_url_for(stack, **context: str) -> str:
    sim = stack.sandbox.cerner
    return f"{stack.host_url}/api/launch/provider?iss={quote(sim.urls.fhir_base, safe='')}" \
           f"&launch={sim.mint_launch(**context)}"


# -- what a refusal may leave behind ----------------------------------------------------------

@dataclass(frozen=True)
class Snapshot:
    rows: dict[str, frozenset[tuple[str, str]]]
    launch_states: frozenset[tuple[str, str]]
    meetings: frozenset[str]
    graph_subscriptions: frozenset[str]
    token_calls: int
    authorize_calls: int
    sms: int


def keys_of(table) -> frozenset[tuple[str, str]]:
    return frozenset((e["PartitionKey"], e["RowKey"]) for e in table._client.list_entities())


def snapshot(stack) -> Snapshot:
    tables = stack.deps.tables
    sim = stack.sandbox.cerner
    return Snapshot(
        rows={name: keys_of(getattr(tables, name)) for name in WATCHED_TABLES},
        launch_states=keys_of(tables.launch_states),
        meetings=frozenset(m["id"] for m in stack.meetings()),
        graph_subscriptions=frozenset(s.id for s in stack.sandbox.graph.subscriptions.store.all()),
        token_calls=len(sim.audit("token")),
        authorize_calls=len(sim.audit("authorize")),
        sms=len(stack.outbox()),
    )


def assert_nothing_created(before: Snapshot, after: Snapshot, *, token_calls: int = 0) -> None:
    """No meeting, subscription, visit, link, usage event or SMS; ``token_calls`` code exchanges."""
    for name in WATCHED_TABLES:
        assert after.rows[name] == before.rows[name], f"a new row in {name}"
    assert after.meetings == before.meetings, "a Graph meeting was created"
    assert after.graph_subscriptions == before.graph_subscriptions, "a Graph subscription was created"
    assert after.sms == before.sms, "an SMS was sent"
    assert after.token_calls - before.token_calls == token_calls, "unexpected token endpoint calls"


def token_events_since(stack, before: Snapshot) -> list[dict]:
    return stack.sandbox.cerner.audit("token")[before.token_calls:]


# -- what a refusal looks like ----------------------------------------------------------------

TITLES = {400: "This launch cannot continue", 401: "Sign-in failed", 403: "Not allowed", 404: "Not found"}


def assert_page(response: httpx.Response, status: int, *phrases: str, title: str | None = None,
                case: object = "") -> None:
    """A readable refusal page: the status, a title and a sentence, no redirect, no cookie, no trace."""
    assert response.status_code == status, (case, response.text[:600])
    assert response.headers["content-type"].startswith("text/html")
    assert "location" not in response.headers
    assert "set-cookie" not in response.headers
    assert response.headers["cache-control"] == "no-store"
    assert "frame-ancestors 'none'" in response.headers["content-security-policy"]
    text = html.unescape(response.text)
    assert text.startswith("<!doctype html>")
    assert f"<h1>{title or TITLES[status]}</h1>" in text, text[-600:]
    for phrase in phrases:
        assert phrase in text, (phrase, text[-600:])
    assert not TRACE.search(text)


def assert_json_error(response: httpx.Response, status: int, code: str) -> dict:
    assert response.status_code == status, response.text[:600]
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["error"] == code and body["message"], body
    assert not TRACE.search(response.text)
    return body


@pytest.fixture
def client(visit_stack):
    with httpx.Client(follow_redirects=False, timeout=30.0) as http:
        yield http


# -- 1. unknown iss -----------------------------------------------------------------------------

def test_an_unknown_iss_is_a_400_page_and_never_a_redirect(visit_stack, client):
    sim = visit_stack.sandbox.cerner
    base = sim.urls.fhir_base
    parts = urlsplit(base)
    tenant = sim.urls.tenant_id
    launch_code = sim.mint_launch(appointment=VIDEO_VISIT)
    endpoint = f"{visit_stack.host_url}/api/launch/provider"
    unknown = {
        "another EHR": f"https://fhir-ehr.cerner.com/r4/{tenant}",
        "another tenant on our EHR": base.replace(tenant, "0b8a0111-e8e6-4c26-a91c-5069cbc6b1ca"),
        "another FHIR version": f"{parts.scheme}://{parts.netloc}/dstu2/{tenant}",
        "a resource under the base": f"{base}/Patient",
        "a prefix of the base": base[:-1],
        "the tenant id in upper case": base.replace(tenant, tenant.upper()),
        "https instead of http": base.replace("http://", "https://", 1),
        "another port": f"http://127.0.0.1:{parts.port + 1}{parts.path}",
        "localhost for 127.0.0.1": base.replace("127.0.0.1", "localhost", 1),
        "credentials in the URL": f"http://user:secret@{parts.netloc}{parts.path}",
        "a user name in the URL": f"http://admin@{parts.netloc}{parts.path}",
        "a dot segment": f"{parts.scheme}://{parts.netloc}/r4/x/../{tenant}",
        "not a URL": "not a url",
        "a script URL": "javascript:alert(document.cookie)",
        "empty": "",
    }
    before = snapshot(visit_stack)
    for label, iss in unknown.items():
        response = client.get(endpoint, params={"iss": iss, "launch": launch_code})
        assert_page(response, 400, "(unknown iss)", "FHIR base URL", case=label)
    assert_page(client.get(endpoint, params={"launch": launch_code}), 400, "(unknown iss)")  # no iss at all
    # A known iss without a launch is refused the same way: validate, then redirect.
    assert_page(client.get(endpoint, params={"iss": base}), 400, "did not send a launch context")
    assert_page(client.get(endpoint, params={"iss": base, "launch": "not a launch!"}), 400,
                "did not send a launch context")

    after = snapshot(visit_stack)
    assert after.launch_states == before.launch_states == frozenset()
    assert after.authorize_calls == before.authorize_calls  # nobody was sent to the EHR
    assert_nothing_created(before, after)
    assert sim.grants.peek_launch(launch_code) is not None  # the launch was not spent either

    # The same launch with the registered iss is redirected: the refusals were about the iss.
    known = f"{endpoint}?{urlencode({'iss': base, 'launch': launch_code})}"
    authorize_url = begin(client, visit_stack, launch_url=known)
    assert params_of(authorize_url)["aud"] == base
    assert len(keys_of(visit_stack.deps.tables.launch_states)) == 1


# -- 2. state: forged, malformed, replayed, expired ---------------------------------------------

def test_forged_malformed_and_replayed_states_are_refused_without_a_code_exchange(visit_stack, client):
    callback = callback_of(client, visit_stack)
    real = params_of(callback)
    endpoint = f"{visit_stack.host_url}/api/launch/callback"
    before = snapshot(visit_stack)
    assert len(before.launch_states) == 1

    forged = [secrets.token_urlsafe(32) for _ in range(3)] + ["A" * 43, real["state"][:-1] + (
        "B" if real["state"][-1] != "B" else "C")]
    for state in forged:
        assert len(state) == 43
        assert_page(client.get(endpoint, params={"code": real["code"], "state": state}), 400,
                    "already used or is unknown", case=state)
    malformed = ["", "short", "A" * 42, "A" * 44, "A" * 42 + "=", "A" * 42 + "+", "A" * 42 + "/", "A" * 42 + ".",
                 "é" * 43, "A" * 42 + "\n", real["state"] + "\n", " " + real["state"][1:], "A" * 5000]
    for state in malformed:
        assert_page(client.get(endpoint, params={"code": real["code"], "state": state}), 400, "not valid",
                    case=state)
    assert_page(client.get(endpoint, params={"code": real["code"]}), 400, "not valid")  # no state at all
    # An EHR error with a forged state is still a forged state.
    assert_page(client.get(endpoint, params={"error": "access_denied", "state": forged[0]}), 400,
                "already used or is unknown")

    after = snapshot(visit_stack)
    assert after.launch_states == before.launch_states  # the real state is still there, untouched
    assert_nothing_created(before, after, token_calls=0)

    # The real callback still works once (its code was not spent by the forgeries) ...
    launched = complete(client, callback)
    assert [e["outcome"] for e in token_events_since(visit_stack, before)] == ["issued"]
    assert keys_of(visit_stack.deps.tables.launch_states) == frozenset()
    # ... and never twice: the replay is refused before any exchange, and changes nothing.
    replay_before = snapshot(visit_stack)
    assert_page(client.get(callback), 400, "already used or is unknown")
    assert_nothing_created(replay_before, snapshot(visit_stack), token_calls=0)
    assert client.get(f"{visit_stack.host_url}{launched.path}", headers=launched.header).status_code == 200


def test_an_expired_state_is_refused_without_a_code_exchange(visit_stack, client):
    callback = callback_of(client, visit_stack)
    state = params_of(callback)["state"]
    states = visit_stack.deps.launch_states
    # Ten minutes and a second later: the row as it would be then (same verifier, nonce, endpoint).
    taken = states.take_state(state)
    assert taken is not None
    now = visit_stack.deps.clock.now()
    states.save_state(taken.model_copy(update={"created_at": now - timedelta(minutes=10, seconds=1),
                                               "expires_at": now - timedelta(seconds=1)}))
    before = snapshot(visit_stack)

    assert_page(client.get(callback), 400, "has expired")

    after = snapshot(visit_stack)
    assert after.launch_states == frozenset()  # taken all the same: it can never be used
    assert_nothing_created(before, after, token_calls=0)
    assert_page(client.get(callback), 400, "already used or is unknown")


# -- 3. PKCE: another launch's code ----------------------------------------------------------------

def test_a_code_from_another_launch_fails_pkce_at_the_ehr_and_creates_nothing(visit_stack, client):
    authorize_a = begin(client, visit_stack, VIDEO_VISIT)  # A: redirected, its code never asked for
    authorize_b = begin(client, visit_stack, OTHER_VISIT)
    state_a = params_of(authorize_a)["state"]
    assert params_of(authorize_a)["code_challenge"] != params_of(authorize_b)["code_challenge"]
    callback_b = authorize(client, authorize_b)  # B: the EHR issued a code, nobody delivered it
    code_b, state_b = params_of(callback_b)["code"], params_of(callback_b)["state"]
    before = snapshot(visit_stack)

    # Delivered to A's browser (with A's launch cookie): only PKCE stands in the way.
    response = call_back(client, f"{visit_stack.host_url}/api/launch/callback?{urlencode({'code': code_b, 'state': state_a})}")

    assert_page(response, 401, "The EHR refused the sign-in (invalid_grant)")
    events = token_events_since(visit_stack, before)
    assert [(e["outcome"], e["reason"]) for e in events] == [
        ("invalid_grant", "code_verifier does not match the code_challenge")]  # A's verifier, B's challenge
    after = snapshot(visit_stack)
    assert_nothing_created(before, after, token_calls=1)
    assert {row for _, row in after.launch_states} == {state_b}  # A's state is spent, B's untouched


# -- 4. redirect_uri ---------------------------------------------------------------------------------

def test_an_authorize_request_for_another_redirect_uri_is_a_400_at_the_ehr(visit_stack, client):
    authorize_url = begin(client, visit_stack)
    ours = params_of(authorize_url)["redirect_uri"]
    assert ours == f"{visit_stack.host_url}/api/launch/callback"
    before = snapshot(visit_stack)
    for other in (f"{ATTACKER}/api/launch/callback", f"{ours}/", f"{ours}?next=x",
                  ours.replace("127.0.0.1", "localhost")):
        response = client.get(with_params(authorize_url, redirect_uri=other))
        assert response.status_code == 400, response.text
        assert "location" not in response.headers
        assert response.headers["content-type"].startswith("text/plain")
        assert "redirect_uri is not registered" in response.text
    rejected = visit_stack.sandbox.cerner.audit("authorize")[before.authorize_calls:]
    assert [(e["outcome"], e["reason"]) for e in rejected] == [("rejected", "redirect_uri")] * 4
    after = snapshot(visit_stack)
    assert_nothing_created(before, after, token_calls=0)
    assert after.launch_states == before.launch_states  # our launch state waits, unused


def test_a_code_issued_for_another_registered_redirect_uri_is_refused(visit_stack, client):
    sim = visit_stack.sandbox.cerner
    registered = sim.clients.get(PROVIDER_CLIENT_ID)
    ours = f"{visit_stack.host_url}/api/launch/callback"
    other = f"{ATTACKER}/oauth/callback"
    assert registered.redirect_uris == (ours,) and registered.launch_url
    sim.register_client(replace(registered, redirect_uris=(ours, other)))
    try:
        authorize_url = begin(client, visit_stack)
        state = params_of(authorize_url)["state"]
        elsewhere = authorize(client, with_params(authorize_url, redirect_uri=other))
        assert elsewhere.startswith(other + "?")
        code = params_of(elsewhere)["code"]
        assert params_of(elsewhere)["state"] == state
        before = snapshot(visit_stack)

        response = call_back(client, f"{visit_stack.host_url}/api/launch/callback?{urlencode({'code': code, 'state': state})}")

        assert_page(response, 401, "The EHR refused the sign-in (invalid_grant)")
        assert [(e["outcome"], e["reason"]) for e in token_events_since(visit_stack, before)] == [
            ("invalid_grant", "redirect_uri does not match the authorization request")]
        after = snapshot(visit_stack)
        assert_nothing_created(before, after, token_calls=1)
        assert after.launch_states == frozenset()
    finally:
        sim.register_client(registered)


# -- 5. id_token -------------------------------------------------------------------------------------

@pytest.mark.parametrize("fault, phrase", [
    ("signature", "The id_token's signature or claims are not valid"),
    ("audience", "The id_token was issued for another application"),
])
def test_an_id_token_with_a_bad_signature_or_audience_is_refused(visit_stack, client, fault, phrase):
    sim = visit_stack.sandbox.cerner
    callback = callback_of(client, visit_stack)
    before = snapshot(visit_stack)
    sim.id_token_fault = fault
    try:
        response = call_back(client, callback)
    finally:
        sim.id_token_fault = None

    assert_page(response, 401, phrase)
    assert [e["outcome"] for e in token_events_since(visit_stack, before)] == ["issued"]  # exchanged, then refused
    after = snapshot(visit_stack)
    assert_nothing_created(before, after, token_calls=1)
    # With the fault gone the same appointment launches: the refusal was the id_token's.
    complete(client, callback_of(client, visit_stack))


# -- 6. the visit page and its API: one launch's session only ------------------------------------------

def test_the_visit_page_and_its_api_take_only_their_own_launchs_session(visit_stack, client):
    host = visit_stack.host_url
    a = launch(client, visit_stack, VIDEO_VISIT)
    b = launch(client, visit_stack, OTHER_VISIT)
    assert a.session_id != b.session_id
    deps = visit_stack.deps
    endpoint = deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    now = deps.clock.now()
    forged_session = LaunchSession(
        session_id=a.session_id, tenant_id=CONTOSO_TID, endpoint_id=endpoint.endpoint_id, appointment_id=VIDEO_VISIT,
        access_token="not-a-token", token_expires_at=now + timedelta(hours=1), expires_at=now + timedelta(hours=4))
    middle = len(a.cookie) // 2
    flipped = a.cookie[:middle] + ("A" if a.cookie[middle] != "A" else "B") + a.cookie[middle + 1:]
    foreign = {
        "another launch's cookie": b.cookie,
        "one character flipped": flipped,
        "truncated": a.cookie[:-8],
        "cut in half": a.cookie[:middle],
        "sealed with another key": SessionSealer(os.urandom(32)).seal(forged_session),
        "empty": "",
        "not base64": "%%%" + a.cookie[3:],
    }
    # Controls: each launch's own cookie opens its own page.
    assert client.get(f"{host}{a.path}", headers=a.header).status_code == 200
    assert client.get(f"{host}{b.path}", headers=b.header).status_code == 200
    same_origin = {"Origin": host, "X-Requested-With": "fetch"}
    before = snapshot(visit_stack)

    for label, value in foreign.items():
        cookie = {"Cookie": f"vv_session={value}"}
        assert_page(client.get(f"{host}{a.path}", headers=cookie), 401, "launch the visit again", case=label)
        assert_json_error(client.get(f"{host}{a.path}/status", headers=cookie), 401, "not_authenticated")
        assert_json_error(client.post(f"{host}{a.path}/send-link", headers={**cookie, **same_origin}), 401,
                          "not_authenticated")
    assert_page(client.get(f"{host}{a.path}"), 401)  # no cookie at all
    assert_json_error(client.get(f"{host}{a.path}/status"), 401, "not_authenticated")
    assert_json_error(client.post(f"{host}{a.path}/send-link", headers=same_origin), 401, "not_authenticated")
    # A's cookie, but not from A's page: no X-Requested-With, or another origin.
    for headers in ({"Origin": host}, {}, {"Origin": host, "X-Requested-With": "XMLHttpRequest"},
                    {"Origin": ATTACKER, "X-Requested-With": "fetch"}, {"Origin": "null", "X-Requested-With": "fetch"},
                    {"Origin": host.replace("127.0.0.1", "localhost"), "X-Requested-With": "fetch"}):
        assert_json_error(client.post(f"{host}{a.path}/send-link", headers={**a.header, **headers}), 403,
                          "not_authorized")

    after = snapshot(visit_stack)
    assert_nothing_created(before, after)
    # A's status with A's cookie: the patient is invited, nothing was sent.
    status = client.get(f"{host}{a.path}/status", headers=a.header)
    assert status.status_code == 200 and status.json()["patient"] == "invited" and status.json()["link_sent_at"] is None
    # Control: from A's page, the link goes out, once, to A's patient.
    sent = client.post(f"{host}{a.path}/send-link", headers={**a.header, **same_origin})
    assert sent.status_code == 200, sent.text
    outbox = visit_stack.outbox()[before.sms:]
    assert [message["to"] for message in outbox] == ["+13125550105"]


# -- 7. patient links ----------------------------------------------------------------------------------

def test_guessed_and_malformed_join_tokens_are_404_pages_and_a_spent_link_is_410(visit_stack, client):
    host = visit_stack.host_url
    launch(client, visit_stack)
    deps = visit_stack.deps
    endpoint = deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    visit = deps.visit_rows.get_visit(CONTOSO_TID, endpoint.endpoint_id, VIDEO_VISIT).item
    real_link = deps.patient_links.mint(visit)
    real_token = real_link.rsplit("/", 1)[1]
    before = snapshot(visit_stack)

    statuses = []
    for _ in range(200):
        token = secrets.token_urlsafe(24)
        assert len(token) == 32
        response = client.get(f"{host}/api/j/{token}")
        statuses.append(response.status_code)
        assert_page(response, 404, "call your clinic", title="We could not find this visit")
    assert statuses == [404] * 200

    near_misses = [real_token[:-1], real_token + "A", real_token.swapcase(), real_token[::-1],
                   real_token[:-1] + ("A" if real_token[-1] != "A" else "B")]
    malformed = ["a", "A" * 31, "A" * 33, "A" * 5000, "%2e%2e", "..%2F..%2Fapi%2Fhealth", "%2E%2E%2Fadmin",
                 "..%5C..%5Cwindows", quote("é" * 32), quote("😀" * 32), quote("Ａ" * 32), "%00" * 32,
                 quote(real_token + "\n"), quote(real_token + " "), quote("<script>alert(1)</script>"),
                 secrets.token_urlsafe(24) + "%2F", "%252e%252e%252f", quote("A" * 31 + "="), quote("A" * 31 + "+")]
    for raw in near_misses + malformed:
        response = client.get(f"{host}/api/j/{raw}")
        assert response.status_code == 404, (raw, response.status_code)
        assert not TRACE.search(response.text)
        if "/" not in httpx.URL(f"{host}/api/j/{raw}").path.removeprefix("/api/j/").replace("%2F", "/"):
            assert_page(response, 404, title="We could not find this visit")  # it reached the join page
    assert_nothing_created(before, snapshot(visit_stack))

    # Controls: the real link opens the visit; the same visit's spent link says so.
    opened = client.get(real_link)
    assert opened.status_code == 200 and "Join the video visit" in opened.text
    spent = secrets.token_urlsafe(24)
    now = deps.clock.now()
    deps.join_links.add_link(JoinLink(
        token_hash=token_hash(spent), tenant_id=visit.tenant_id, endpoint_id=visit.endpoint_id,
        appointment_id=visit.appointment_id, created_at=now - timedelta(days=2), expires_at=now - timedelta(seconds=1)))
    assert_page(client.get(f"{host}/api/j/{spent}"), 410, "no longer valid", title="This link has expired")
    assert_page(client.get(f"{host}/api/j/{spent}?hl=es"), 410, title="Este enlace ha caducado")


# -- 9. relaunch ------------------------------------------------------------------------------------------

def join_url_on(client: httpx.Client, host: str, launched: Launched) -> str:
    page = client.get(f"{host}{launched.path}", headers=launched.header)
    assert page.status_code == 200, page.text[:400]
    return html.unescape(re.search(r'id="join" href="([^"]+)"', page.text).group(1))


def usage_kinds(stack) -> list[str]:
    now = stack.deps.clock.now()
    return sorted(e.kind.value for e in stack.deps.usage_events.month(CONTOSO_TID, now.year, now.month))


def test_relaunching_an_appointment_reuses_its_meeting_and_counts_two_launches(visit_stack, client):
    host = visit_stack.host_url
    deps = visit_stack.deps
    endpoint = deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    external_id = meeting_external_id(CONTOSO_TID, endpoint.endpoint_id, VIDEO_VISIT)
    before = snapshot(visit_stack)

    first = launch(client, visit_stack, VIDEO_VISIT)
    second = launch(client, visit_stack, VIDEO_VISIT)

    assert first.session_id != second.session_id and first.cookie != second.cookie
    join_url = join_url_on(client, host, first)
    assert join_url == join_url_on(client, host, second)
    meetings = httpx.get(f"{visit_stack.graph_url}/_sandbox/meetings", params={"externalId": external_id}).json()
    assert [m["joinWebUrl"] for m in meetings] == [join_url]
    after = snapshot(visit_stack)
    new_visits = after.rows["visits"] - before.rows["visits"]
    assert new_visits == {(f"{CONTOSO_TID}_{endpoint.endpoint_id}", VIDEO_VISIT)}
    assert len(after.rows["subscriptions"] - before.rows["subscriptions"]) == 1
    assert len(after.graph_subscriptions - before.graph_subscriptions) == 1  # one live-status subscription
    assert usage_kinds(visit_stack) == [UsageKind.launch.value] * 2
    assert [e["outcome"] for e in token_events_since(visit_stack, before)] == ["issued", "issued"]


def race(stack, client: httpx.Client, appointment: str, *, slow_graph_path: str) -> tuple[Snapshot, list[Launched]]:
    """Two launches of ``appointment`` whose callbacks run at once; the Graph calls under
    ``slow_graph_path`` take 400 ms, so both launches are inside them together."""
    callbacks = [callback_of(client, stack, appointment) for _ in range(2)]
    before = snapshot(stack)
    faults = stack.sandbox.graph.faults
    faults.arm(Fault(latency_ms=400, count=2, path_prefix=slow_graph_path))

    def run(url: str) -> Launched:
        with httpx.Client(follow_redirects=False, timeout=30.0) as own:
            return complete(own, url)

    try:
        with concurrent.futures.ThreadPoolExecutor(2) as pool:
            launched = list(pool.map(run, callbacks))
    finally:
        faults.clear()
    return before, launched


def test_two_launches_racing_for_one_appointment_share_one_meeting_and_one_visit(visit_stack, client):
    host = visit_stack.host_url
    endpoint = visit_stack.deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    external_id = meeting_external_id(CONTOSO_TID, endpoint.endpoint_id, OTHER_VISIT)
    before, launched = race(visit_stack, client, OTHER_VISIT, slow_graph_path="/v1.0/users/")  # createOrGet

    assert join_url_on(client, host, launched[0]) == join_url_on(client, host, launched[1])
    meetings = httpx.get(f"{visit_stack.graph_url}/_sandbox/meetings", params={"externalId": external_id}).json()
    assert len(meetings) == 1
    after = snapshot(visit_stack)
    assert after.rows["visits"] - before.rows["visits"] == {(f"{CONTOSO_TID}_{endpoint.endpoint_id}", OTHER_VISIT)}
    assert usage_kinds(visit_stack) == [UsageKind.launch.value] * 2


def test_two_launches_racing_for_one_appointment_leave_one_live_status_subscription(visit_stack, client):
    before, launched = race(visit_stack, client, VIDEO_VISIT, slow_graph_path="/beta/subscriptions")
    assert launched[0].session_id != launched[1].session_id
    after = snapshot(visit_stack)
    endpoint = visit_stack.deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    visit = visit_stack.deps.visit_rows.get_visit(CONTOSO_TID, endpoint.endpoint_id, VIDEO_VISIT).item
    assert visit.subscription_id is not None
    assert {row for _, row in after.rows["subscriptions"] - before.rows["subscriptions"]} == {visit.subscription_id}
    assert after.graph_subscriptions - before.graph_subscriptions == {visit.subscription_id}


# -- 10. picking the appointment -----------------------------------------------------------------------------

def test_pick_needs_the_same_origin_and_one_of_the_launchs_candidates(visit_stack, client):
    host = visit_stack.host_url
    launched = launch(client, visit_stack, launch_url=launch_url_for(visit_stack, patient=PICK_PATIENT,
                                                                     user=PICK_USER))
    picker = client.get(f"{host}{launched.path}", headers=launched.header)
    assert picker.status_code == 200 and "Which appointment?" in picker.text
    assert sorted(re.findall(r'name="appointment" value="(\d+)"', picker.text)) == list(PICK_CANDIDATES)
    pick = f"{host}{launched.path}/pick"
    form = {"Content-Type": "application/x-www-form-urlencoded"}
    before = snapshot(visit_stack)
    assert before.rows["visits"] == frozenset()

    for origin in (ATTACKER, "null", host.replace("127.0.0.1", "localhost"), f"{host}.attacker.example"):
        response = client.post(pick, content=f"appointment={PICK_CANDIDATES[1]}",
                               headers={**launched.header, **form, "Origin": origin})
        assert_page(response, 403, "did not come from the visit page", case=origin)
    for appointment in (VIDEO_VISIT, OTHER_VISIT, "", f"{PICK_CANDIDATES[1]}0", "4826006,4826009", "../4826009"):
        response = client.post(pick, content=urlencode({"appointment": appointment}),
                               headers={**launched.header, **form, "Origin": host})
        assert_page(response, 403, "not one this launch offered", case=appointment)
    assert_page(client.post(pick, content=f"appointment={PICK_CANDIDATES[1]}", headers={**form, "Origin": host}), 401)
    after = snapshot(visit_stack)
    assert_nothing_created(before, after)

    # Control: one of the candidates, from the page's origin, makes that visit and only it.
    chosen = client.post(pick, content=f"appointment={PICK_CANDIDATES[1]}",
                         headers={**launched.header, **form, "Origin": host})
    assert chosen.status_code == 303 and chosen.headers["location"] == launched.path
    picked = snapshot(visit_stack)
    assert {row for _, row in picked.rows["visits"]} == {PICK_CANDIDATES[1]}
    endpoint = visit_stack.deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    external_id = meeting_external_id(CONTOSO_TID, endpoint.endpoint_id, PICK_CANDIDATES[1])
    meetings = httpx.get(f"{visit_stack.graph_url}/_sandbox/meetings", params={"externalId": external_id}).json()
    assert len(meetings) == 1
    assert "Video visit" in client.get(f"{host}{launched.path}", headers={
        "Cookie": f"vv_session={chosen.headers['set-cookie'].split(';')[0].split('=', 1)[1]}"}).text


# -- 11. a callback URL sent to someone else (login CSRF) --------------------------------------------------

def test_a_callback_opened_in_another_browser_opens_nothing(visit_stack, client):
    callback = callback_of(client, visit_stack)  # a real code and state, from "the attacker's" launch
    before = snapshot(visit_stack)

    response = client.get(callback)  # the victim's browser: no launch cookie of this launch
    assert_page(response, 400, "did not start in this browser")
    forged = client.get(callback, headers={"Cookie": "vv_launch_0123456789ab=not-the-binding"})
    assert_page(forged, 400, "already used or is unknown")  # and the state is spent by the first try
    assert token_events_since(visit_stack, before) == []  # no code was exchanged
    assert_nothing_created(before, snapshot(visit_stack))
