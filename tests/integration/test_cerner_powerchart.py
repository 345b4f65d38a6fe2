"""The sandbox "PowerChart" page of the Cerner simulator: a clinician's day and the Teams button.

The page lists today's appointments; the Teams button on each booked video visit does what
PowerChart does for a SMART EHR launch: mint a launch for that appointment and send the same
window to ``{app launch URL}?iss={FHIR base}&launch={launch}``. A tiny app on loopback stands
in for the connector's launch endpoint and records what it receives; the launch it gets must
then be accepted by the authorize endpoint.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
from dataclasses import dataclass, field
from datetime import date
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import parse_qs, urljoin, urlsplit

import httpx
import jwt
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.routing import Route

from dev.sandbox.cerner import SECOND_TENANT, CernerSimulator, RegisteredClient, create_app
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

TODAY = date(2026, 1, 15)
APP_ID = "teams-visits"
REDIRECT_URI = "http://127.0.0.1:7071/api/launch/callback"
SCOPE = "launch openid fhirUser online_access user/Patient.read user/Encounter.read user/Appointment.read"
TODAY_IDS = ["4826001", "4826002", "4826003", "4826004", "4826005", "4826006", "4826007", "4826008", "4826009"]
BOOKED_VIDEO = ["4826003", "4826005", "4826007", "4826008", "4826009"]


# -- a stand-in for the app's SMART launch URL ---------------------------------------------------

@dataclass
class LaunchedApp:
    url: str
    hits: list[dict[str, list[str]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def last(self) -> dict[str, list[str]]:
        with self.lock:
            assert self.hits, "the app's launch URL was never opened"
            return self.hits[-1]


@pytest.fixture
def app_server():
    recorded = LaunchedApp("")

    async def launch(request: Request) -> HTMLResponse:
        with recorded.lock:
            recorded.hits.append(parse_qs(request.url.query, keep_blank_values=True))
        return HTMLResponse("<!doctype html><title>App</title><h1 id='launched'>Launched</h1>")

    port = free_port()
    with LoopbackServer(Starlette(routes=[Route("/smart/launch", launch)]), port, name="app"):
        recorded.url = f"http://127.0.0.1:{port}/smart/launch"
        yield recorded


@dataclass
class Cerner:
    url: str
    sim: CernerSimulator

    @property
    def iss(self) -> str:
        return self.sim.urls.fhir_base

    @property
    def page(self) -> str:
        return f"{self.url}/_sandbox/powerchart"


@pytest.fixture
def cerner(app_server: LaunchedApp):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    clients = [RegisteredClient("backend-only", client_secret="s"),  # no launch URL: never offered
               RegisteredClient(APP_ID, redirect_uris=[REDIRECT_URI], launch_url=app_server.url, name="Teams visits")]
    app = create_app(public_url=url, today=TODAY, clients=clients)
    with LoopbackServer(app, port, name="cerner"):
        yield Cerner(url, app.state.cerner)


@pytest.fixture
def http(cerner: Cerner):
    with httpx.Client(timeout=10.0) as client:
        yield client


# -- reading the page ---------------------------------------------------------------------------------

@dataclass
class Form:
    action: str
    method: str
    fields: dict[str, str]
    button: dict[str, str]


@dataclass
class Row:
    appointment: str
    cells: dict[str, str]
    forms: list[Form]


class PageParser(HTMLParser):
    """Rows (by ``data-appointment-row``), their cells' text by ``data-label``, their forms."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[Row] = []
        self.notices: list[str] = []
        self.options: list[tuple[str, str]] = []
        self._row: Row | None = None
        self._cell: str | None = None
        self._form: Form | None = None
        self._notice = False
        self._option: str | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag == "tr" and "data-appointment-row" in a:
            self._row = Row(a["data-appointment-row"], {}, [])
            self.rows.append(self._row)
        elif tag == "td" and self._row is not None:
            self._cell = a.get("data-label", "")
            self._row.cells[self._cell] = ""
        elif tag == "form" and self._row is not None:
            self._form = Form(a.get("action", ""), a.get("method", "get").lower(), {}, {})
            self._row.forms.append(self._form)
        elif tag == "input" and self._form is not None and a.get("type") == "hidden":
            self._form.fields[a["name"]] = a["value"]
        elif tag == "button" and self._form is not None:
            self._form.button = a
        elif tag == "p" and "notice" in a.get("class", ""):
            self._notice = True
            self.notices.append("")
        elif tag == "option":
            self._option = a.get("value", "")
            self.options.append((self._option, ""))

    def handle_endtag(self, tag: str) -> None:
        if tag == "tr":
            self._row = None
        elif tag == "td":
            self._cell = None
        elif tag == "form":
            self._form = None
        elif tag == "p":
            self._notice = False
        elif tag == "option":
            self._option = None

    def handle_data(self, data: str) -> None:
        if self._row is not None and self._cell is not None:
            self._row.cells[self._cell] += data
        if self._notice:
            self.notices[-1] += data
        if self._option is not None:
            value, text = self.options[-1]
            self.options[-1] = (value, text + data)


def parse(html: str) -> PageParser:
    parser = PageParser()
    parser.feed(html)
    return parser


def teams_buttons(page: PageParser) -> dict[str, Form]:
    return {row.appointment: form for row in page.rows for form in row.forms
            if "teams-launch" in form.button.get("class", "")}


def click(http: httpx.Client, cerner: Cerner, form: Form, *, follow: bool = True) -> httpx.Response:
    """What the browser does with the button's form: POST it and follow, in the same window."""
    assert form.method == "post"
    return http.post(urljoin(cerner.page, form.action), data=form.fields, follow_redirects=follow)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def complete_launch(http: httpx.Client, iss: str, launch: str, cerner: Cerner) -> dict:
    """What the connector does next: discovery from iss, authorize with the launch, token."""
    config = http.get(f"{iss}/.well-known/smart-configuration").json()
    verifier, challenge = pkce()
    response = http.get(config["authorization_endpoint"], params={
        "response_type": "code", "client_id": APP_ID, "redirect_uri": REDIRECT_URI, "scope": SCOPE,
        "state": "st-1", "aud": iss, "launch": launch, "code_challenge": challenge,
        "code_challenge_method": "S256", "nonce": "nonce-1"})
    assert response.status_code == 302, response.text
    params = parse_qs(urlsplit(response.headers["location"]).query)
    assert "error" not in params, params
    token = http.post(config["token_endpoint"], data={
        "grant_type": "authorization_code", "code": params["code"][0], "redirect_uri": REDIRECT_URI,
        "client_id": APP_ID, "code_verifier": verifier})
    assert token.status_code == 200, token.text
    return token.json()


# -- the page -------------------------------------------------------------------------------------

def test_page_lists_today_with_teams_buttons_only_on_booked_video_visits(http, cerner):
    response = http.get(cerner.page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    # Nothing that would stop PowerChart-style embedding, and no third-party resources.
    assert "x-frame-options" not in response.headers and "content-security-policy" not in response.headers
    assert "<script" not in response.text and "https://" not in response.text.split("<body>")[0]
    page = parse(response.text)
    assert [row.appointment for row in page.rows] == TODAY_IDS  # today only, by time; tomorrow is not listed
    assert sorted(teams_buttons(page)) == BOOKED_VIDEO
    first = next(row for row in page.rows if row.appointment == "4826003")
    assert first.cells == {
        "Time": "10:30 AM – 10:45 AM", "Patient": "GARCIA, SOFIA", "Type": "Video Visit", "Status": "Booked",
        "Department": "Family Medicine Clinic", "Practitioner": "Rivera MD, Elena", "Video visit": "Teams"}
    cancelled = next(row for row in page.rows if row.appointment == "4826004")
    assert (cancelled.cells["Time"], cancelled.cells["Status"], cancelled.cells["Type"]) == \
        ("11:15 AM – 11:45 AM", "Cancelled", "Office Visit")
    fulfilled_video = next(row for row in page.rows if row.appointment == "4826001")
    assert fulfilled_video.cells["Status"] == "Fulfilled" and not fulfilled_video.forms
    assert next(row for row in page.rows if row.appointment == "4826009").cells["Time"] == "8:00 PM – 8:15 PM"

    form = teams_buttons(page)["4826003"]
    assert form.action == "/_sandbox/powerchart/launch"
    assert form.fields == {"appointment": "4826003", "client_id": APP_ID}
    assert form.button["type"] == "submit" and form.button["data-appointment"] == "4826003"
    assert form.button["aria-label"] == "Start the Teams video visit with GARCIA, SOFIA at 10:30 AM"
    assert "target" not in form.button  # same window: no pop-up
    assert "Teams visits" in response.text and cerner.sim.urls.tenant_id in response.text


def test_the_teams_button_launches_the_app_in_the_same_window(http, cerner, app_server):
    form = teams_buttons(parse(http.get(cerner.page).text))["4826003"]
    response = click(http, cerner, form, follow=False)
    assert response.status_code == 303
    assert response.headers["cache-control"] == "no-store"
    location = response.headers["location"]
    assert location.startswith(app_server.url + "?")
    assert http.get(location).status_code == 200  # the browser follows, in the same window

    received = app_server.last()
    assert sorted(received) == ["iss", "launch"]
    assert received["iss"] == [cerner.iss]
    launch = received["launch"][0]
    assert len(launch) >= 20
    token = complete_launch(http, received["iss"][0], launch, cerner)
    assert (token["patient"], token["encounter"], token["user"]) == ("12744003", "97960003", "4122701")
    claims = jwt.decode(token["id_token"], options={"verify_signature": False})
    assert (claims["nonce"], claims["aud"]) == ("nonce-1", APP_ID)
    # The connector finds the appointment from the launch's Encounter (SMART v1 has no
    # appointment context): Encounter.appointment points back at the clicked visit.
    encounter = http.get(f"{cerner.iss}/Encounter/{token['encounter']}",
                         headers={"Authorization": f"Bearer {token['access_token']}"}).json()
    assert encounter["appointment"] == [{"reference": "Appointment/4826003"}]
    # The launch is PowerChart's: single use.
    verifier, challenge = pkce()
    again = http.get(cerner.sim.urls.authorize("provider"), params={
        "response_type": "code", "client_id": APP_ID, "redirect_uri": REDIRECT_URI, "scope": SCOPE, "state": "s",
        "aud": cerner.iss, "launch": launch, "code_challenge": challenge, "code_challenge_method": "S256"})
    assert parse_qs(urlsplit(again.headers["location"]).query)["error"] == ["invalid_request"]
    clicked = cerner.sim.audit("powerchart")
    assert [(e["appointment"], e["client_id"]) for e in clicked] == [("4826003", APP_ID)]


def test_the_practitioner_switcher_lists_their_day_and_launches_as_them(http, cerner, app_server):
    everyone = parse(http.get(cerner.page).text)
    assert everyone.options == [("", "All clinicians"), ("4122701", "Rivera MD, Elena"),
                                ("4122702", "Chen MD, Wei"), ("4122703", "Adeyemi NP, Funmi")]
    page = parse(http.get(cerner.page, params={"user": "4122703"}).text)
    assert [row.appointment for row in page.rows] == ["4826005", "4826008"]
    assert {row.cells["Practitioner"] for row in page.rows} == {"Adeyemi NP, Funmi"}
    form = teams_buttons(page)["4826008"]
    assert form.fields == {"appointment": "4826008", "client_id": APP_ID, "user": "4122703"}
    click(http, cerner, form)
    token = complete_launch(http, cerner.iss, app_server.last()["launch"][0], cerner)
    assert (token["user"], token["patient"], token["encounter"]) == ("4122703", "12744008", "97960008")
    unknown = http.get(cerner.page, params={"user": "999"})
    assert unknown.status_code == 400 and "999" in unknown.text


def test_another_tenants_powerchart_launches_with_that_tenants_fhir_base(http, cerner, app_server):
    page = http.get(cerner.page, params={"tenant": SECOND_TENANT})
    assert page.status_code == 200 and SECOND_TENANT in page.text
    form = teams_buttons(parse(page.text))["4826005"]
    assert form.fields == {"appointment": "4826005", "client_id": APP_ID, "tenant": SECOND_TENANT}
    click(http, cerner, form)
    second_iss = f"{cerner.url}/r4/{SECOND_TENANT}"
    assert app_server.last()["iss"] == [second_iss]
    token = complete_launch(http, second_iss, app_server.last()["launch"][0], cerner)
    assert (token["tenant"], token["patient"], token["encounter"]) == (SECOND_TENANT, "12744005", "97960005")
    assert cerner.sim.audit("powerchart") == []  # the primary tenant saw nothing of it
    assert http.get(cerner.page, params={"tenant": "not-a-tenant"}).status_code == 404


def test_without_a_launch_url_the_page_says_so_and_offers_no_button(app_server):
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(public_url=url, today=TODAY, clients=[RegisteredClient(APP_ID, redirect_uris=[REDIRECT_URI])])
    with LoopbackServer(app, port, name="cerner"), httpx.Client(timeout=10.0) as http:
        response = http.get(f"{url}/_sandbox/powerchart")
        assert response.status_code == 200
        page = parse(response.text)
        assert [row.appointment for row in page.rows] == TODAY_IDS
        assert teams_buttons(page) == {}
        assert page.notices == ["No registered app has a SMART launch URL, so no app can be launched. Register a "
                                "client with a launch_url (POST /_sandbox/clients) and reload this page."]
        refused = http.post(f"{url}/_sandbox/powerchart/launch", data={"appointment": "4826003", "client_id": APP_ID})
        assert refused.status_code == 400 and "location" not in refused.headers
        # Registering the launch URL over HTTP (as runners in another process do) brings the buttons.
        created = http.post(f"{url}/_sandbox/clients", json={"client_id": "late", "launch_url": app_server.url,
                                                              "redirect_uris": [REDIRECT_URI]})
        assert created.status_code == 201 and created.json()["launch_url"] == app_server.url
        assert sorted(teams_buttons(parse(http.get(f"{url}/_sandbox/powerchart").text))) == BOOKED_VIDEO


def test_client_id_chooses_among_several_launchable_apps(http, cerner, app_server):
    cerner.sim.register_client(RegisteredClient("second-app", redirect_uris=[REDIRECT_URI],
                                                launch_url=app_server.url + "?site=north%20wing&v=2"))
    default = teams_buttons(parse(http.get(cerner.page).text))
    assert default["4826005"].fields["client_id"] == APP_ID  # the first registered
    chosen = http.get(cerner.page, params={"client_id": "second-app"})
    form = teams_buttons(parse(chosen.text))["4826005"]
    assert form.fields["client_id"] == "second-app"
    assert "site=north%20wing&amp;v=2" in chosen.text  # shown, escaped
    click(http, cerner, form)
    received = app_server.last()
    # The registered query is kept; PowerChart adds iss and launch.
    assert received["site"] == ["north wing"] and received["v"] == ["2"] and received["iss"] == [cerner.iss]
    missing = http.get(cerner.page, params={"client_id": "backend-only"})
    assert missing.status_code == 400
    assert parse(missing.text).notices[0].startswith("The client backend-only has no SMART launch URL")
    assert teams_buttons(parse(missing.text)) == {}


@pytest.mark.parametrize("fields", [
    {"appointment": "4826001", "client_id": APP_ID},  # fulfilled video visit
    {"appointment": "4826002", "client_id": APP_ID},  # office visit
    {"appointment": "4826010", "client_id": APP_ID},  # tomorrow
    {"appointment": "nope", "client_id": APP_ID},
    {"appointment": "4826003", "client_id": "backend-only"},  # no launch URL
    {"appointment": "4826003", "client_id": APP_ID, "user": "12744003"},  # a patient is no PowerChart user
])
def test_the_launch_route_only_launches_what_the_page_offers(http, cerner, app_server, fields):
    response = http.post(f"{cerner.url}/_sandbox/powerchart/launch", data=fields)
    assert response.status_code == 400
    assert "location" not in response.headers
    assert response.headers["content-type"].startswith("text/html")
    assert app_server.hits == []
    assert cerner.sim.audit("launch") == []  # nothing was minted


def test_everything_shown_is_escaped(http, cerner):
    cerner.sim.register_client(RegisteredClient("x", launch_url="http://127.0.0.1:9/l?a=<b>", name="<i>App</i>"))
    patient = cerner.sim.store.get("Appointment", "4826005")
    patient["participant"][0]["actor"]["display"] = '<img src=x onerror="alert(1)">'
    cerner.sim.store.put(patient)
    text = http.get(cerner.page, params={"client_id": "x"}).text
    assert "<img" not in text and "<i>App" not in text and "a=<b>" not in text
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in text
    assert "&lt;i&gt;App&lt;/i&gt;" in text


def test_a_written_back_provider_link_shows_on_the_visit(http, cerner):
    row = next(r for r in parse(http.get(cerner.page).text).rows if r.appointment == "4826009")
    assert row.cells["Video visit"] == "Teams Provider link"  # seeded with links already written
    assert 'href="https://vv.example.org/rooms/4826009/provider"' in http.get(cerner.page).text
    plain = next(r for r in parse(http.get(cerner.page).text).rows if r.appointment == "4826003")
    assert plain.cells["Video visit"] == "Teams"


def test_registered_client_launch_url_from_json_and_summary():
    client = RegisteredClient.from_json({"client_id": "a", "launch_url": "https://app.example.org/launch?x=1"})
    assert client.launch_url == "https://app.example.org/launch?x=1"
    assert client.summary()["launch_url"] == "https://app.example.org/launch?x=1"
    assert RegisteredClient.from_json({"client_id": "b"}).summary()["launch_url"] is None
    for bad in ("javascript:alert(1)", "/relative", "https://app.example.org/launch#frag", "ftp://x.example.org/"):
        with pytest.raises(ValueError):
            RegisteredClient.from_json({"client_id": "c", "launch_url": bad})


# -- in a browser, as a clinician would ---------------------------------------------------------------

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


@pytest.mark.e2e
@pytest.mark.parametrize("width, height", [(1024, 768), (480, 640)])
def test_clicking_teams_in_a_browser_opens_the_app_in_the_same_window(browser, cerner, app_server, request,
                                                                       width, height):
    context = browser.new_context(viewport={"width": width, "height": height})
    try:
        page = context.new_page()
        popups: list = []
        page.on("popup", lambda popup: popups.append(popup))
        page.goto(cerner.page)
        assert page.title() == "PowerChart – Ambulatory Organizer (sandbox)"
        # Readable without sideways scrolling, at PowerChart's window sizes too.
        assert page.evaluate("document.documentElement.scrollWidth") <= width
        button = page.locator('button[data-appointment="4826007"]')
        assert button.is_visible()
        assert page.get_by_role("button", name="Start the Teams video visit with KOWALSKI, ANNA at 4:00 PM").count() == 1
        folder = ARTIFACTS / request.node.name
        folder.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(folder / "powerchart.png"), full_page=True)
        button.click()
        page.wait_for_url(app_server.url + "?*")
        assert page.locator("#launched").inner_text() == "Launched"
        assert popups == []
        received = app_server.last()
        assert received["iss"] == [cerner.iss]
        assert cerner.sim.grants.peek_launch(received["launch"][0]).appointment == "4826007"
    finally:
        context.close()
