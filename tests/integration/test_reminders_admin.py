"""The admin API of reminders over real sockets (the local host, bearer tokens from the sandbox
issuer): the policy with If-Match, its validation and tenant isolation; the preview of every
message in every language for the seeded clinic names, each within two SMS segments (counted
here independently of the connector's own counter); the failed list and replay."""

from __future__ import annotations

import math
import time
from datetime import datetime, time as clock_time, timedelta, timezone

import httpx
import pytest

from connector.domain.notification import (
    NotificationClaim, NotificationKind, NotificationRef, NotificationStatus, notification_tag,
)
from dev.sandbox.entra import CONTOSO_TID, FABRIKAM_TID
from tests.integration.test_reminders import ENDPOINT, set_policy, wait_for

pytestmark = pytest.mark.integration
POLICY = f"/api/admin/endpoints/{ENDPOINT}/reminder-policy"

# GSM 03.38: the basic alphabet (one septet each) and the extension table (escape + one).
GSM_BASIC = ("@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?"
             "¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿abcdefghijklmnopqrstuvwxyzäöñüà")
GSM_EXTENSION = "^{}\\[~]|€\f"


def sms_segments(text: str) -> int:
    """Segments as carriers bill them: GSM-7 160 / 153 per part, else UCS-2 70 / 67 (UTF-16 units)."""
    if all(ch in GSM_BASIC or ch in GSM_EXTENSION for ch in text):
        septets = sum(2 if ch in GSM_EXTENSION else 1 for ch in text)
        return 1 if septets <= 160 else math.ceil(septets / 153)
    units = len(text.encode("utf-16-le")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def test_the_independent_segment_counter():
    assert sms_segments("a" * 160) == 1 and sms_segments("a" * 161) == 2 and sms_segments("a" * 306) == 2
    assert sms_segments("a" * 307) == 3 and sms_segments("€" * 80) == 1 and sms_segments("€" * 81) == 2
    assert sms_segments("ó" + "a" * 69) == 1 and sms_segments("ó" + "a" * 70) == 2 and sms_segments("ó" * 135) == 3


# -- helpers -----------------------------------------------------------------------------------


class Admin:
    def __init__(self, stack, tenant: str = CONTOSO_TID, user: str = "admin"):
        self._base = stack.host_url
        self._token = stack.sandbox.entra_app.state.issuer.mint_access_token(tenant, user)

    def call(self, method: str, path: str, *, json=None, content=None, headers=None) -> httpx.Response:
        return httpx.request(method, f"{self._base}{path}", json=json, content=content, timeout=30,
                             headers={"Authorization": f"Bearer {self._token}", **(headers or {})})


def stored_policy(stack):
    return stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT).item.reminder_policy


def failed_claim(tenant: str, appointment: str, kind=NotificationKind.confirmation,
                 status=NotificationStatus.failed, endpoint: str = ENDPOINT, start: datetime | None = None
                 ) -> NotificationClaim:
    now = datetime.now(timezone.utc)
    return NotificationClaim(tenant_id=tenant, endpoint_id=endpoint, appointment_id=appointment, kind=kind,
                             appointment_start=start or now + timedelta(days=1), claimed_at=now, due_at=now,
                             status=status,
                             failure="gave up after the queue's retries" if status is NotificationStatus.failed
                             else None)


def ref_json(claim: NotificationClaim) -> dict:
    return NotificationRef.of(claim).model_dump(mode="json")


# -- policy ------------------------------------------------------------------------------------


def test_policy_read_and_write_with_if_match(visit_stack):
    admin = Admin(visit_stack)
    read = admin.call("GET", POLICY)
    assert read.status_code == 200, read.text
    body, etag = read.json(), read.headers["ETag"]
    assert body["etag"] == etag and body["endpoint_id"] == ENDPOINT
    assert body["policy"]["enabled"] is True and body["policy"]["reminder_offsets_minutes"] == [1440, 60]
    assert body["timezone"] == visit_stack.sandbox.cerner.tz.key and body["location_ids"] == ["32216101", "32216102"]
    changed = {**body["policy"], "reminder_offsets_minutes": [30, 2880], "default_language": "es",
               "quiet_hours_start": "20:30:00", "quiet_hours_end": "07:45:00"}

    missing = admin.call("PUT", POLICY, json=changed)
    assert missing.status_code == 428, missing.text
    assert missing.json()["error"] == "precondition_required" and "If-Match" in str(missing.json()["problems"])
    assert stored_policy(visit_stack).reminder_offsets_minutes == (1440, 60)

    saved = admin.call("PUT", POLICY, json=changed, headers={"If-Match": etag})
    assert saved.status_code == 200, saved.text
    assert saved.headers["ETag"] != etag and saved.json()["etag"] == saved.headers["ETag"]
    assert saved.json()["policy"]["reminder_offsets_minutes"] == [2880, 30]  # kept longest first
    assert stored_policy(visit_stack).default_language == "es"
    assert str(stored_policy(visit_stack).quiet_hours_start) == "20:30:00"

    stale = admin.call("PUT", POLICY, json={**changed, "default_language": "de"}, headers={"If-Match": etag})
    assert stale.status_code == 409, stale.text
    assert stored_policy(visit_stack).default_language == "es"
    again = admin.call("GET", POLICY)
    assert again.headers["ETag"] == saved.headers["ETag"] and again.json()["policy"] == saved.json()["policy"]


@pytest.mark.parametrize("change, field", [
    ({"reminder_offsets_minutes": [1]}, "reminder_offsets_minutes"),  # under 5 minutes
    ({"reminder_offsets_minutes": [60, 60]}, "reminder_offsets_minutes"),  # twice the same
    ({"reminder_offsets_minutes": [20161]}, "reminder_offsets_minutes"),  # over 14 days
    ({"reminder_offsets_minutes": [5, 10, 15, 20, 25, 30]}, "reminder_offsets_minutes"),  # six
    ({"reminder_offsets_minutes": "60"}, "reminder_offsets_minutes"),  # not a list
    ({"reminder_offsets_minutes": [-60]}, "reminder_offsets_minutes"),
    ({"enabled": "maybe"}, "enabled"),
    ({"look_ahead_days": "eight"}, "look_ahead_days"),
    ({"look_ahead_days": 0}, "look_ahead_days"),
    ({"default_language": "it"}, "default_language"),
    ({"country": "FR"}, "country"),
    ({"quiet_hours_start": "late"}, "quiet_hours_start"),
    ({"virtual_visit": {"cerner_video_visit": True, "colour": "blue"}}, "virtual_visit"),
    ({"reminders": True}, "reminders"),  # unknown field
    ({"enabled": 1}, "enabled"),  # strict: a number is not a boolean
    ({"reminder_offsets_minutes": ["60"]}, "reminder_offsets_minutes"),  # nor a string a number
    ({"quiet_hours_start": "21:00:00Z"}, "quiet_hours_start"),  # a local clock time has no offset
    ({"quiet_hours_start": "10:00:00", "quiet_hours_end": "10:00:00"}, 422),  # an empty window: a rule, 422
])
def test_a_bad_policy_is_refused_naming_the_field_and_nothing_changes(visit_stack, change, field):
    admin = Admin(visit_stack)
    read = admin.call("GET", POLICY)
    before = stored_policy(visit_stack)
    answer = admin.call("PUT", POLICY, json={**read.json()["policy"], **change},
                        headers={"If-Match": read.headers["ETag"]})
    if field == 422:  # fits the document, breaks a rule between two fields (the description states it)
        assert answer.status_code == 422 and answer.json()["error"] == "unprocessable_input", answer.text
    else:
        assert answer.status_code == 400, answer.text
        assert answer.json()["error"] == "invalid_input"
        assert any(field in str(problem) for problem in answer.json()["problems"]), answer.json()
    assert stored_policy(visit_stack) == before
    assert admin.call("GET", POLICY).headers["ETag"] == read.headers["ETag"]


def test_a_body_that_is_not_a_policy_is_refused(visit_stack):
    admin = Admin(visit_stack)
    etag = admin.call("GET", POLICY).headers["ETag"]
    for content in (b"not json", b"[]", b"null", b'"enabled"'):
        answer = admin.call("PUT", POLICY, content=content,
                            headers={"If-Match": etag, "Content-Type": "application/json"})
        assert answer.status_code == 400, (content, answer.text)
    assert admin.call("GET", POLICY).headers["ETag"] == etag


def test_another_tenants_admin_gets_404_for_this_endpoint(visit_stack):
    contoso = Admin(visit_stack)
    read = contoso.call("GET", POLICY)
    fabrikam = Admin(visit_stack, FABRIKAM_TID)
    assert fabrikam.call("GET", POLICY).status_code == 404
    put = fabrikam.call("PUT", POLICY, json={**read.json()["policy"], "enabled": False},
                        headers={"If-Match": read.headers["ETag"]})
    assert put.status_code == 404, put.text
    assert fabrikam.call("POST", f"{POLICY}/preview", json={}).status_code == 404
    assert stored_policy(visit_stack).enabled is True
    assert contoso.call("GET", "/api/admin/endpoints/no-such-endpoint/reminder-policy").status_code == 404
    assert Admin(visit_stack, CONTOSO_TID, "user").call("GET", POLICY).status_code == 403
    assert httpx.get(f"{visit_stack.host_url}{POLICY}", timeout=15).status_code == 401


# -- preview -----------------------------------------------------------------------------------


def test_every_message_in_every_language_fits_two_segments_for_the_seeded_clinic_names(visit_stack):
    stack = visit_stack
    admin = Admin(stack)
    sim = stack.sandbox.cerner
    stored = stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT)
    clinic_names = [stored.item.display_name] + [location["name"] for location in sim.seed.locations]
    assert clinic_names == ["Demo clinic (Cerner sandbox)", "Family Medicine Clinic", "Cardiology Clinic"]
    zone = sim.tz
    today = datetime.now(zone).date()
    # Tomorrow 10:00 (the default), and the longest dates and times: late September at 12:45 PM.
    starts = [None, datetime(today.year + 1, 9, 28, 12, 45, tzinfo=zone).isoformat(),
              datetime(today.year + 1, 2, 22, 11, 59, tzinfo=zone).isoformat()]
    kinds = {"confirmation", "update", "cancellation", "reminder"}
    languages = {"en", "es", "de", "fr"}
    words = {"en": "video visit", "es": "videoconsulta", "de": "Videosprechstunde", "fr": "teleconsultation"}
    seen = 0
    for name in clinic_names:
        current = stack.deps.endpoints.get_endpoint(CONTOSO_TID, ENDPOINT)
        stack.deps.endpoints.save_endpoint(current.item.model_copy(update={"display_name": name}), current.etag)
        for start in starts:
            answer = admin.call("POST", f"{POLICY}/preview", json={} if start is None else {"start": start})
            assert answer.status_code == 200, answer.text
            messages = answer.json()["messages"]
            assert {(m["kind"], m["language"]) for m in messages} == {(k, lang) for k in kinds for lang in languages}
            assert len(messages) == 16
            for message in messages:
                text = message["text"]
                assert sms_segments(text) <= 2, (name, message)
                assert message["segments"] == sms_segments(text), message
                assert name in text, (name, text)  # the clinic's name, whole
                assert words[message["language"]] in text.replace("é", "e"), text
                if message["kind"] == "cancellation":
                    assert "/api/j/" not in text
                else:
                    assert f"{stack.host_url}/api/j/" in text
                    assert ("?hl=" in text) == (message["language"] != "en")
                seen += 1
    assert seen == 3 * 3 * 16
    assert admin.call("POST", f"{POLICY}/preview", json={"start": "tomorrow"}).status_code == 400
    assert admin.call("POST", f"{POLICY}/preview", json={"when": None}).status_code == 400


# -- failed messages and replay ------------------------------------------------------------------


def test_the_failed_list_is_the_tenants_own_and_only_a_failed_row_can_be_replayed(visit_stack):
    stack = visit_stack
    deps = stack.deps
    set_policy(stack, quiet_hours_start=clock_time(0), quiet_hours_end=clock_time(0))
    tomorrow = stack.sandbox.cerner.store.get("Appointment", "4826010")  # NGUYEN's video visit tomorrow
    ours = failed_claim(CONTOSO_TID, "4826010",
                        start=datetime.fromisoformat(tomorrow["start"].replace("Z", "+00:00")))
    ours_sent = failed_claim(CONTOSO_TID, "4826012", status=NotificationStatus.sent)
    ours_queued = failed_claim(CONTOSO_TID, "4826007", kind=NotificationKind.reminder, status=NotificationStatus.queued)
    theirs = failed_claim(FABRIKAM_TID, "4826010", endpoint="fabrikam-clinic")
    for claim in (ours, ours_sent, ours_queued, theirs):
        assert deps.notifications.claim_notification(claim)
    contoso, fabrikam = Admin(stack), Admin(stack, FABRIKAM_TID)

    listed = contoso.call("GET", "/api/admin/notifications/failed")
    assert listed.status_code == 200, listed.text
    assert [n["ref"] for n in listed.json()["notifications"]] == [ref_json(ours)]
    view = listed.json()["notifications"][0]
    assert view["status"] == "failed" and view["failure"] == "gave up after the queue's retries"
    assert set(view) == {"ref", "status", "claimed_at", "due_at", "attempts", "failure", "replays"}
    assert [n["ref"] for n in fabrikam.call("GET", "/api/admin/notifications/failed").json()["notifications"]] \
        == [ref_json(theirs)]

    for claim, status in ((ours_sent, 409), (ours_queued, 409), (theirs, 404)):
        answer = contoso.call("POST", "/api/admin/notifications/replay", json=ref_json(claim))
        assert answer.status_code == status, (claim.status, answer.text)
    unknown = {**ref_json(ours), "appointment_id": "4899999"}
    assert contoso.call("POST", "/api/admin/notifications/replay", json=unknown).status_code == 404
    assert contoso.call("POST", "/api/admin/notifications/replay", json={**ref_json(ours), "x": 1}).status_code == 400
    assert deps.notifications.get_notification(theirs).item.status is NotificationStatus.failed
    assert deps.notifications.get_notification(ours_sent).item.status is NotificationStatus.sent

    before = len(stack.outbox())
    first = contoso.call("POST", "/api/admin/notifications/replay", json=ref_json(ours))
    assert first.status_code == 202, first.text
    assert first.json()["status"] == "queued" and first.json()["replays"] == 1 and first.json()["failure"] is None
    assert contoso.call("POST", "/api/admin/notifications/replay", json=ref_json(ours)).status_code == 409
    # The row was made by hand for a real appointment at its real start: the replay is sent, once.
    done = wait_for(lambda: (lambda r: r if r.status is not NotificationStatus.queued else None)(
        deps.notifications.get_notification(ours).item), what="the replay")
    assert done.status is NotificationStatus.sent and done.replays == 1
    time.sleep(1.5)
    texts = [m for m in stack.outbox()[before:] if m["tag"] == notification_tag(ours)]
    assert [m["messageId"] for m in texts] == [done.acs_message_id] and texts[0]["to"] == "+13125550101"
    assert len(stack.outbox()) == before + 1
    assert contoso.call("GET", "/api/admin/notifications/failed").json()["notifications"] == []
