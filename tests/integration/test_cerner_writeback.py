"""Writing the video visit links back into Cerner's Appointment, against the simulator.

Cerner documents the write as JSON Patch on the Video Visit Appointment
(https://fhir.cerner.com/millennium/r4/base/workflow/appointment/#patch): four operations, all
``add`` the first time and all ``replace`` afterwards, where ``/contained/0`` is the provider
link and ``/contained/1`` the patient link, with ``If-Match`` and
``Content-Type: application/json-patch+json``. :func:`video_link_patch` is the connector's pure
builder (``connector.services.write_back``); the tests drive it, and Cerner's own published
example bodies, through the simulator.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from fhir.resources.R4B.appointment import Appointment

from connector.services.write_back import (
    MAX_LINK_LENGTH, PATIENT_LINK_PATH, PATIENT_ROOM, PERIOD_END_PATH, PERIOD_START_PATH, PROVIDER_LINK_PATH,
    PROVIDER_ROOM, VideoLinkPatchError, video_link_patch,
)
from dev.sandbox.cerner import CernerSimulator, RegisteredClient, create_app
from dev.sandbox.server import LoopbackServer, free_port

pytestmark = pytest.mark.integration

# -- Cerner's published example bodies (cerner/fhir.cerner.com, r4_examples_appointment.rb) -------

CERNER_ADD_EXAMPLE = [  # R4_APPOINTMENT_VIDEO_VISIT_ADD_PATCH, "Example - Add Video Visit Links"
    {"op": "add", "path": "/contained/0/telecom/0/value", "value": "http://providerlink.vmr.net"},
    {"op": "add", "path": "/contained/1/telecom/0/value", "value": "http://patientlink.vmr.net"},
    {"op": "add", "path": "/contained/0/telecom/0/period/start", "value": "2019-07-13T08:00:00.000Z"},
    {"op": "add", "path": "/contained/0/telecom/0/period/end", "value": "2019-07-13T08:10:00.000Z"},
]
CERNER_REPLACE_EXAMPLE = [  # R4_APPOINTMENT_VIDEO_VISIT_REPLACE_PATCH, "Example - Replace Video Visit Links"
    {"op": "replace", "path": "/contained/0/telecom/0/value", "value": "http://providerlink.vmr.net"},
    {"op": "replace", "path": "/contained/1/telecom/0/value", "value": "http://patientlink.vmr.net"},
    {"op": "replace", "path": "/contained/0/telecom/0/period/start", "value": "2019-07-13T08:00:00.000Z"},
    {"op": "replace", "path": "/contained/0/telecom/0/period/end", "value": "2019-07-13T08:10:00.000Z"},
]

# -- the simulator ----------------------------------------------------------------------------------

TODAY = date(2026, 1, 15)
WRITER, WRITER_SECRET = "writer-app", "writer secret"
UNLINKED, LINKED, IN_PERSON = "4826003", "4826009", "4826002"  # seeded video visits / an office visit
PROVIDER_URL = "https://connector.example.org/api/v/4826003?role=provider"
PATIENT_URL = "https://connector.example.org/api/j/Zk3h8TqR2mVx9LpC4sNa7bYd1eWg6uJo"


@dataclass
class Cerner:
    url: str
    sim: CernerSimulator

    @property
    def iss(self) -> str:
        return self.sim.urls.fhir_base


@pytest.fixture
def cerner():
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    app = create_app(public_url=url, today=TODAY, clients=[
        RegisteredClient(WRITER, client_secret=WRITER_SECRET),
        RegisteredClient("patient-app", redirect_uris=["http://127.0.0.1:9/cb"]),
    ])
    with LoopbackServer(app, port, name="cerner"):
        yield Cerner(url, app.state.cerner)


@pytest.fixture
def http(cerner: Cerner):
    with httpx.Client(timeout=10.0) as client:
        yield client


def token(http: httpx.Client, cerner: Cerner, scope: str = "system/Appointment.read system/Appointment.write") -> str:
    response = http.post(cerner.sim.urls.token, auth=(WRITER, WRITER_SECRET),
                         data={"grant_type": "client_credentials", "scope": scope})
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def read(http: httpx.Client, cerner: Cerner, access_token: str, appointment_id: str) -> tuple[dict, str]:
    response = http.get(f"{cerner.iss}/Appointment/{appointment_id}",
                        headers={"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json"})
    assert response.status_code == 200, response.text
    return response.json(), response.headers["etag"]


def patch(http: httpx.Client, cerner: Cerner, access_token: str, appointment_id: str, operations: Any,
          if_match: str | None, content_type: str = "application/json-patch+json") -> httpx.Response:
    headers = {"Authorization": f"Bearer {access_token}", "Accept": "application/fhir+json",
               "Content-Type": content_type}
    if if_match is not None:
        headers["If-Match"] = if_match
    return http.patch(f"{cerner.iss}/Appointment/{appointment_id}", content=json.dumps(operations), headers=headers)


def rooms(appointment: dict) -> dict[str, dict]:
    """The contained meeting rooms by kind, as the read shows them (with their read index)."""
    found = {}
    for index, contained in enumerate(appointment.get("contained", [])):
        found[contained["type"][0]["text"]] = {**contained["telecom"][0], "index": index}
    return found


def diagnostics(response: httpx.Response) -> str:
    body = response.json()
    assert body["resourceType"] == "OperationOutcome"
    return body["issue"][0]["diagnostics"]


# -- the builder, purely ------------------------------------------------------------------------------

def test_builder_adds_all_four_links_to_an_appointment_without_rooms(cerner):
    appointment = cerner.sim.store.get("Appointment", UNLINKED)
    assert video_link_patch(appointment, PROVIDER_URL, PATIENT_URL) == [
        {"op": "add", "path": "/contained/0/telecom/0/value", "value": PROVIDER_URL},
        {"op": "add", "path": "/contained/1/telecom/0/value", "value": PATIENT_URL},
        {"op": "add", "path": "/contained/0/telecom/0/period/start", "value": "2026-01-15T16:30:00.000Z"},
        {"op": "add", "path": "/contained/0/telecom/0/period/end", "value": "2026-01-15T16:45:00.000Z"},
    ]


def test_builder_replaces_links_already_written_and_writes_nothing_when_they_match(cerner):
    appointment = cerner.sim.store.get("Appointment", LINKED)
    operations = video_link_patch(appointment, PROVIDER_URL, PATIENT_URL, start="2026-01-16T01:55:00-06:00",
                                  end="2026-01-16T02:20:00-06:00")
    assert [(o["op"], o["path"]) for o in operations] == [
        ("replace", PROVIDER_LINK_PATH), ("replace", PATIENT_LINK_PATH),
        ("replace", PERIOD_START_PATH), ("replace", PERIOD_END_PATH)]
    assert [o["value"] for o in operations[2:]] == ["2026-01-16T07:55:00.000Z", "2026-01-16T08:20:00.000Z"]
    # The seeded links of 4826009 are already there: asking for them again writes nothing.
    assert video_link_patch(appointment, "https://vv.example.org/rooms/4826009/provider",
                            "https://vv.example.org/rooms/4826009/patient") == []


@pytest.mark.parametrize("provider, patient, fragment", [
    ("https://teams.example.org/" + "x" * 230, PATIENT_URL, "at most 255"),
    (PROVIDER_URL, "javascript:alert(1)", "absolute http"),
    ("/relative/link", PATIENT_URL, "absolute http"),
])
def test_builder_refuses_links_cerner_would_refuse(cerner, provider, patient, fragment):
    appointment = cerner.sim.store.get("Appointment", UNLINKED)
    with pytest.raises(VideoLinkPatchError, match=fragment):
        video_link_patch(appointment, provider, patient)


def test_builder_needs_the_appointments_times_and_both_rooms(cerner):
    request = {**cerner.sim.store.get("Appointment", UNLINKED)}
    del request["start"]
    with pytest.raises(VideoLinkPatchError, match="no start"):
        video_link_patch(request, PROVIDER_URL, PATIENT_URL)
    half = cerner.sim.store.get("Appointment", LINKED)
    half["contained"] = half["contained"][:1]
    with pytest.raises(VideoLinkPatchError, match="only one"):
        video_link_patch(half, PROVIDER_URL, PATIENT_URL)


# -- through the simulator ----------------------------------------------------------------------------

def test_links_are_added_with_if_match_and_read_back_in_the_right_rooms(http, cerner):
    access = token(http, cerner)
    appointment, etag = read(http, cerner, access, UNLINKED)
    assert etag == 'W/"1"' and "contained" not in appointment
    done = patch(http, cerner, access, UNLINKED, video_link_patch(appointment, PROVIDER_URL, PATIENT_URL), etag)
    assert done.status_code == 200, done.text
    assert done.content == b""
    assert done.headers["etag"] == 'W/"2-1"'  # Cerner's two-part video visit version

    after, etag = read(http, cerner, access, UNLINKED)
    assert etag == 'W/"2-1"' and after["meta"]["versionId"] == "2-1"
    found = rooms(after)
    # Patch index 0 went to the provider room, although the read lists the patient room first.
    assert found[PROVIDER_ROOM]["value"] == PROVIDER_URL and found[PROVIDER_ROOM]["index"] == 1
    assert found[PATIENT_ROOM]["value"] == PATIENT_URL and found[PATIENT_ROOM]["index"] == 0
    for room in found.values():
        assert room["period"] == {"start": "2026-01-15T16:30:00.000Z", "end": "2026-01-15T16:45:00.000Z"}
        assert room["system"] == "url"
    Appointment.model_validate(after)  # still valid R4 with the rooms in
    references = {p["actor"]["reference"]: p["type"][0]["text"] for p in after["participant"]
                  if p["actor"]["reference"].startswith("#")}
    assert references == {f"#{c['id']}": c["type"][0]["text"] for c in after["contained"]}
    # Everything else is as it was.
    assert {k: v for k, v in after.items() if k not in ("contained", "participant", "meta")} == \
        {k: v for k, v in appointment.items() if k not in ("participant", "meta")}

    # Adding again is Cerner's 409; the builder now answers replace, which is accepted.
    again = patch(http, cerner, access, UNLINKED, video_link_patch(appointment, PROVIDER_URL, PATIENT_URL), etag)
    assert again.status_code == 409
    assert "previously been patched" in diagnostics(again)
    moved = video_link_patch(after, PROVIDER_URL + "&v=2", PATIENT_URL)
    assert {o["op"] for o in moved} == {"replace"}
    replaced = patch(http, cerner, access, UNLINKED, moved, etag)
    assert replaced.status_code == 200, replaced.text
    assert replaced.headers["etag"] == 'W/"3-2"'
    final, etag = read(http, cerner, access, UNLINKED)
    assert rooms(final)[PROVIDER_ROOM]["value"] == PROVIDER_URL + "&v=2"
    assert rooms(final)[PATIENT_ROOM]["value"] == PATIENT_URL
    assert video_link_patch(final, PROVIDER_URL + "&v=2", PATIENT_URL) == []
    # A status patch afterwards keeps the links' part of the version.
    arrived = patch(http, cerner, access, UNLINKED, [{"op": "replace", "path": "/status", "value": "arrived"}], etag)
    assert (arrived.status_code, arrived.headers["etag"]) == (200, 'W/"4-2"')


def test_cerners_published_example_bodies_are_accepted_verbatim(http, cerner):
    access = token(http, cerner)
    _, etag = read(http, cerner, access, UNLINKED)
    added = patch(http, cerner, access, UNLINKED, CERNER_ADD_EXAMPLE, etag)
    assert added.status_code == 200, added.text
    _, etag = read(http, cerner, access, LINKED)
    assert etag == 'W/"1-1"'
    replaced = patch(http, cerner, access, LINKED, CERNER_REPLACE_EXAMPLE, etag)
    assert replaced.status_code == 200, replaced.text
    after, _ = read(http, cerner, access, LINKED)
    assert rooms(after)[PROVIDER_ROOM]["value"] == "http://providerlink.vmr.net"
    assert rooms(after)[PATIENT_ROOM]["value"] == "http://patientlink.vmr.net"
    assert rooms(after)[PATIENT_ROOM]["period"]["end"] == "2019-07-13T08:10:00.000Z"  # applied to both


def _with(operations: list[dict], **changes: Any) -> list[dict]:
    return [{**o, **changes.get(o["path"], {})} for o in operations]


@pytest.mark.parametrize("appointment_id, operations, status, fragment", [
    # documented: "Mixing add and replace patch operations is not supported" -> 422
    (UNLINKED, _with(CERNER_ADD_EXAMPLE, **{PATIENT_LINK_PATH: {"op": "replace"}}), 422, "Mixing add and replace"),
    # documented: "any missing required patch operations" -> 422
    (UNLINKED, CERNER_ADD_EXAMPLE[:3], 422, "missing: /contained/0/telecom/0/period/end"),
    (UNLINKED, CERNER_ADD_EXAMPLE[:2], 422, "needs all four"),
    # documented: "add ... that has previously been patched for Video Visit links" -> 409
    (LINKED, CERNER_ADD_EXAMPLE, 409, "previously been patched"),
    # documented: URL length <= 255 (status code not documented)
    (UNLINKED, _with(CERNER_ADD_EXAMPLE, **{PROVIDER_LINK_PATH: {"value": "https://x.example.org/" + "a" * 240}}),
     422, "less than or equal to 255"),
    # documented: "may only be used for Cerner Video Visit appointments" (status code not documented)
    (IN_PERSON, CERNER_ADD_EXAMPLE, 422, "only be used for Cerner Video Visit"),
    # not documented, the simulator's choices
    (UNLINKED, CERNER_REPLACE_EXAMPLE, 422, "no Video Visit links to replace"),
    (UNLINKED, [*CERNER_ADD_EXAMPLE, {"op": "replace", "path": "/status", "value": "arrived"}], 422,
     "cannot be combined"),
    (UNLINKED, _with(CERNER_ADD_EXAMPLE, **{PERIOD_START_PATH: {"value": "2019-07-13 08:00"}}), 422,
     "dateTime with a time zone"),
    (UNLINKED, [{"op": "test", "path": PROVIDER_LINK_PATH, "value": None}, *CERNER_ADD_EXAMPLE], 422,
     "only 'add' and 'replace'"),
    (UNLINKED, [{"op": "add", "path": "/contained/2/telecom/0/value", "value": "https://x.example.org"}], 422,
     "Unsupported JSON Patch operation"),
    (UNLINKED, [{"op": "add", "path": "/slot", "value": [{"reference": "Slot/1"}]}], 422, "does not simulate"),
    (UNLINKED, {"op": "add"}, 400, "JSON Patch array"),
])
def test_video_link_patch_errors_are_cerners(http, cerner, appointment_id, operations, status, fragment):
    access = token(http, cerner)
    before, etag = read(http, cerner, access, appointment_id)
    response = patch(http, cerner, access, appointment_id, operations, etag)
    assert response.status_code == status, response.text
    assert fragment in diagnostics(response)
    assert read(http, cerner, access, appointment_id) == (before, etag)  # nothing was written


def test_headers_and_scopes_the_link_patch_needs(http, cerner):
    access = token(http, cerner)
    appointment, etag = read(http, cerner, access, UNLINKED)
    operations = video_link_patch(appointment, PROVIDER_URL, PATIENT_URL)
    assert patch(http, cerner, access, UNLINKED, operations, None).status_code == 412  # no If-Match
    assert patch(http, cerner, access, UNLINKED, operations, 'W/"7"').status_code == 409  # stale
    assert patch(http, cerner, access, UNLINKED, operations, etag, "application/json").status_code == 415
    # "For Video Visit link patch operations, both Appointment.read and Appointment.write scopes
    # are required."
    write_only = token(http, cerner, "system/Appointment.write")
    refused = patch(http, cerner, write_only, UNLINKED, operations, etag)
    assert refused.status_code == 403
    assert "Appointment.read" in diagnostics(refused)
    # ... while a status patch needs only write.
    status_only = patch(http, cerner, write_only, UNLINKED, [{"op": "replace", "path": "/status",
                                                              "value": "checked-in"}], etag)
    assert status_only.status_code == 200, status_only.text


def test_patient_tokens_cannot_patch(http, cerner):
    """Appointment Patch's authorization types are provider and system only."""
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    redirect = http.get(cerner.sim.urls.authorize("patient"), params={
        "response_type": "code", "client_id": "patient-app", "redirect_uri": "http://127.0.0.1:9/cb", "state": "s",
        "scope": "launch/patient patient/Appointment.read patient/Appointment.write", "aud": cerner.iss,
        "code_challenge": challenge, "code_challenge_method": "S256"})
    assert redirect.status_code == 302, redirect.text
    code = parse_qs(urlsplit(redirect.headers["location"]).query)["code"][0]
    patient_token = http.post(cerner.sim.urls.token, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": "http://127.0.0.1:9/cb",
        "client_id": "patient-app", "code_verifier": verifier}).json()["access_token"]
    appointment, etag = read(http, cerner, patient_token, "4826001")
    refused = patch(http, cerner, patient_token, "4826001", [{"op": "replace", "path": "/status", "value": "arrived"}],
                    etag)
    assert refused.status_code == 403
