"""Writing the visit links into Cerner's video-visit Appointment.

Oracle Health documents the patch (Millennium R4 "Patch an appointment"): contained index 0 is
the provider link and index 1 the patient link whatever order a read returns, the period goes
on ``/contained/0/telecom/0/period``, operations are all ``add`` (first time) or all ``replace``
(after), ``If-Match`` guards concurrency. Checked on Cerner's published video visit and on the
sandbox seed; ``write_back_links`` runs with a real PatientLinks on the fakes.
"""

from __future__ import annotations

import copy
import json
import logging
from datetime import date, datetime, timedelta, timezone

import pytest

from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.tenant import Tenant
from connector.domain.visit import LinkAudience, Visit
from connector.errors import ConcurrencyConflict, NotAuthenticated
from connector.services.patient_links import PatientLinks
from connector.services.write_back import (
    PATIENT_LINK_PATH, PERIOD_END_PATH, PERIOD_START_PATH, PROVIDER_LINK_PATH, VideoLinkPatchError, video_link_patch,
    write_back_links,
)
from dev.sandbox.cerner.seed import build_seed
from tests.conftest import DATA
from tests.fakes import (
    FakeClock, FakeEndpointRepository, FakeFhirReader, FakeIdSource, FakeJoinLinkRepository, FakeSmsSender,
    FakeTenantRepository, FakeVisitRepository,
)

TENANT = "11111111-2222-3333-4444-555555555555"
NOW = datetime(2025, 3, 3, 16, 0, tzinfo=timezone.utc)
SEED = build_seed(today=date(2025, 3, 3), tz="America/Chicago")
VIDEO_VISIT = json.loads((DATA / "fixtures" / "cerner" / "appointment-read-4817572-video-visit.json").read_text())
PROVIDER_URL = "https://visits.example.org/api/j/PPPPPPPPPPPPPPPPPPPPPPPPPPPPPPPP"
PATIENT_URL = "https://visits.example.org/api/j/QQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQQ"
TOKEN = "launch-access-token"


def ops(op: str, start: str, end: str) -> list[dict[str, str]]:
    return [
        {"op": op, "path": "/contained/0/telecom/0/value", "value": PROVIDER_URL},
        {"op": op, "path": "/contained/1/telecom/0/value", "value": PATIENT_URL},
        {"op": op, "path": "/contained/0/telecom/0/period/start", "value": start},
        {"op": op, "path": "/contained/0/telecom/0/period/end", "value": end},
    ]


# == the patch ===============================================================================================


def test_the_published_video_visit_gets_four_replace_operations_at_cerners_indexes():
    patch = video_link_patch(VIDEO_VISIT, provider_url=PROVIDER_URL, patient_url=PATIENT_URL)
    assert patch == ops("replace", "2020-07-10T13:00:00.000Z", "2020-07-10T13:15:00.000Z")
    assert (PROVIDER_LINK_PATH, PATIENT_LINK_PATH, PERIOD_START_PATH, PERIOD_END_PATH) == tuple(o["path"] for o in patch)
    # the read lists the patient room first: the paths are Cerner's convention, not read positions
    assert VIDEO_VISIT["contained"][0]["type"][0]["text"] == "Patient Virtual Meeting Room"


def test_an_appointment_without_meeting_rooms_gets_four_add_operations():
    appointment = SEED.appointment("4826003")  # a video visit whose links were never written
    assert "contained" not in appointment
    assert video_link_patch(appointment, provider_url=PROVIDER_URL, patient_url=PATIENT_URL) == ops(
        "add", "2025-03-03T16:30:00.000Z", "2025-03-03T16:45:00.000Z")


def test_the_period_is_written_as_a_cerner_instant_in_utc():
    appointment = SEED.appointment("4826006")  # start written with a -06:00 offset
    assert appointment["start"] == "2025-03-03T14:30:00-06:00"
    patch = video_link_patch(appointment, provider_url=PROVIDER_URL, patient_url=PATIENT_URL)
    assert [o["value"] for o in patch[2:]] == ["2025-03-03T20:30:00.000Z", "2025-03-03T21:00:00.000Z"]


def test_links_already_in_place_need_no_patch():
    done = copy.deepcopy(VIDEO_VISIT)
    for room in done["contained"]:
        room["telecom"][0]["value"] = PROVIDER_URL if room["type"][0]["text"].startswith("Provider") else PATIENT_URL
        room["telecom"][0]["period"] = {"start": "2020-07-10T13:00:00Z", "end": "2020-07-10T13:15:00.000Z"}
    assert video_link_patch(done, provider_url=PROVIDER_URL, patient_url=PATIENT_URL) == []
    # one link differs: the whole set is replaced
    assert len(video_link_patch(done, provider_url=PROVIDER_URL, patient_url=PATIENT_URL[:-1] + "R")) == 4


def test_operations_never_mix_add_and_replace():
    for appointment in (VIDEO_VISIT, SEED.appointment("4826003"), SEED.appointment("4826009")):
        patch = video_link_patch(appointment, provider_url=PROVIDER_URL, patient_url=PATIENT_URL)
        assert len({o["op"] for o in patch}) == 1


@pytest.mark.parametrize(("change", "message"), [
    (lambda a: a.update(resourceType="Encounter"), "not an Appointment"),
    (lambda a: a.pop("start"), "no start"),
    (lambda a: a.update(end="tomorrow"), "not a dateTime"),
    (lambda a: a.update(start="2020-07-10T13:00:00"), "no time zone"),
    (lambda a: a["contained"].pop(1), "only one of the two"),
])
def test_an_appointment_that_cannot_take_the_links_is_refused(change, message):
    appointment = copy.deepcopy(VIDEO_VISIT)
    change(appointment)
    with pytest.raises(VideoLinkPatchError, match=message):
        video_link_patch(appointment, provider_url=PROVIDER_URL, patient_url=PATIENT_URL)


@pytest.mark.parametrize("which", ["provider_url", "patient_url"])
def test_links_longer_than_255_characters_are_refused(which):
    urls = {"provider_url": PROVIDER_URL, "patient_url": PATIENT_URL, which: "https://x.example/" + "a" * 238}
    with pytest.raises(VideoLinkPatchError, match="255"):
        video_link_patch(VIDEO_VISIT, **urls)
    urls[which] = urls[which][:-1]  # 255 exactly is fine
    assert len(video_link_patch(VIDEO_VISIT, **urls)) == 4


# == write_back_links =========================================================================================


def endpoint() -> FhirEndpoint:
    return FhirEndpoint(tenant_id=TENANT, endpoint_id="main", base_url="https://fhir-ehr.cerner.com/r4/x",
                        environment=Environment.production, write_back_links=True, created_at=NOW)


def visit(appointment_id: str) -> Visit:
    appointment = SEED.appointment(appointment_id)
    start = datetime.fromisoformat(appointment["start"].replace("Z", "+00:00"))
    return Visit(tenant_id=TENANT, endpoint_id="main", appointment_id=appointment_id, meeting_id="MSo-1",
                 join_web_url="https://teams.microsoft.com/l/meetup-join/" + "x" * 300,  # longer than Cerner takes
                 organizer_user_id="dr@example.org", appointment_start=start,
                 appointment_end=start + timedelta(minutes=appointment["minutesDuration"]),
                 created_at=NOW, updated_at=NOW)


class World:
    def __init__(self):
        self.clock = FakeClock(NOW)
        self.fhir = FakeFhirReader(*SEED.resources())
        self.join_links = FakeJoinLinkRepository()
        self.links = PatientLinks(self.join_links, FakeVisitRepository(), FakeEndpointRepository(endpoint()),
                                  FakeTenantRepository(Tenant(tenant_id=TENANT, region="us", created_at=NOW)),
                                  FakeSmsSender(), self.clock, FakeIdSource(), public_base_url="https://visits.example.org")

    def write(self, appointment_id: str) -> bool:
        return write_back_links(self.fhir, self.links, endpoint(), TOKEN, visit(appointment_id))


@pytest.fixture
def world() -> World:
    return World()


def test_write_back_patches_with_if_match_and_our_short_links(world):
    assert world.write("4826009") is True  # rooms already there (another vendor's links)
    [patch] = world.fhir.patches
    assert patch["if_match"] == 'W/"1"' and patch["id"] == "4826009"
    by_path = {o["path"]: o for o in patch["operations"]}
    assert {o["op"] for o in patch["operations"]} == {"replace"}
    provider, patient = by_path[PROVIDER_LINK_PATH]["value"], by_path[PATIENT_LINK_PATH]["value"]
    for url in (provider, patient):
        assert url.startswith("https://visits.example.org/api/j/") and len(url) <= 255
    audiences = sorted(link.audience.value for link in world.join_links.links.values())
    assert audiences == [LinkAudience.patient.value, LinkAudience.provider.value]
    assert all(token not in json.dumps(world.join_links.rows) for token in (provider[-32:], patient[-32:]))
    assert ("read_versioned", "Appointment", "4826009", TOKEN) in world.fhir.calls


def test_a_video_visit_without_rooms_gets_add_operations(world):
    assert world.write("4826003") is True
    [patch] = world.fhir.patches
    assert {o["op"] for o in patch["operations"]} == {"add"}


def test_an_appointment_that_is_not_a_video_visit_is_left_alone(world):
    assert world.write("4826006") is True
    assert world.fhir.patches == [] and world.join_links.rows == []


def test_no_etag_means_no_write(world, caplog):
    world.fhir.send_etags = False
    with caplog.at_level(logging.WARNING, logger="connector.writeback"):
        assert world.write("4826003") is False
    assert world.fhir.patches == [] and "no ETag" in caplog.text


@pytest.mark.parametrize("error", [ConcurrencyConflict("changed"), NotAuthenticated("expired")])
def test_a_failed_patch_is_reported_as_false_and_logged_by_class_only(world, error, caplog):
    world.fhir.errors["patch"] = error
    with caplog.at_level(logging.WARNING, logger="connector.writeback"):
        assert world.write("4826003") is False
    assert type(error).__name__ in caplog.text
    assert TOKEN not in caplog.text and "api/j" not in caplog.text and "4826003" not in caplog.text


def test_a_changed_appointment_fails_on_its_etag(world):
    stale = world.fhir.read_versioned("b", TOKEN, "Appointment", "4826003")[1]
    world.fhir.put(SEED.appointment("4826003"))  # someone edits it: a new version
    assert stale == 'W/"1"'
    assert world.write("4826003") is True  # the write reads afresh and uses the current ETag
    assert world.fhir.patches[0]["if_match"] == 'W/"2"'
