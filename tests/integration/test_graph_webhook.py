"""``POST /api/notifications/graph`` over a real socket, against one whole stamp (``visit_stack``).

A launch makes the visit, its meeting and its Graph subscription (rich notifications: the call
event encrypted with the stamp's certificate). The notifications posted here are built by the
Graph simulator itself (``SubscriptionService.notification``: what Graph would POST for that
subscription), then altered: a notification is trusted only with its subscription's
``clientState``; anything else is refused (403) and changes nothing, down to the visit row's
ETag. Unknown subscriptions are ignored (202); the transport rules (JSON only, 1 MiB, a
readable 400 naming the JSON path, the validation handshake) hold without any launch.
"""

from __future__ import annotations

import copy
import json
import re
import secrets
import uuid
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
import pytest

from connector.adapters.graph.notifications import MAX_BODY_BYTES as WEBHOOK_MAX_BODY_BYTES  # the one limit
from tests.integration.browser_like import BrowserLike
from dev.sandbox.entra import CONTOSO_TID

pytestmark = pytest.mark.integration

VIDEO_VISIT = "4826005"  # PATEL, ASHA: booked video visit today, with an Encounter
JSON = {"Content-Type": "application/json"}
TRACE = re.compile(r"Traceback|File \"|line \d+, in ")


@pytest.fixture
def client(visit_stack):
    with httpx.Client(follow_redirects=False, timeout=30.0) as http:
        yield http


def webhook(stack) -> str:
    return f"{stack.host_url}/api/notifications/graph"


def launch(client: httpx.Client, stack, appointment: str = VIDEO_VISIT) -> None:
    """PowerChart's launch, as a browser follows it, to the visit page's 303."""
    response = BrowserLike(client).follow(stack.launch_url(appointment), stop_at=(303,))
    assert response.status_code == 303, response.text[:400]
    assert response.headers["location"].startswith("/api/visit/")


def rows(table) -> dict[tuple[str, str], str]:
    """Every entity of ``table`` by key, with its ETag: a change anywhere shows."""
    return {(e["PartitionKey"], e["RowKey"]): e.metadata["etag"] for e in table._client.list_entities()}


def state_of(stack) -> dict[str, dict]:
    tables = stack.deps.tables
    return {name: rows(getattr(tables, name))
            for name in ("visits", "subscriptions", "usage_events", "join_links", "notifications")}


def lobby_event(meeting) -> dict:
    """A rosterUpdated call event: an anonymous guest waiting in the lobby (Graph's shape)."""
    now = datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f0Z")
    return {
        "@odata.type": "#microsoft.graph.callevent", "@odata.id": meeting.resource(), "id": str(uuid.uuid4()),
        "eventType": "rosterUpdated", "eventDateTime": now,
        "participants@delta": [{"id": str(uuid.uuid4()), "isInLobby": True,
                                "info": {"identity": {"guest": {"id": str(uuid.uuid4()), "displayName": "Guest"}}}}],
    }


@pytest.fixture
def live_visit(visit_stack, client):
    """A launched visit, its subscription in the Graph simulator and a genuine notification for it."""
    launch(client, visit_stack)
    deps = visit_stack.deps
    endpoint = deps.endpoints.list_endpoints(CONTOSO_TID)[0].item
    key = (CONTOSO_TID, endpoint.endpoint_id, VIDEO_VISIT)
    visit = deps.visit_rows.get_visit(*key).item
    subscription_rows = list(deps.tables.subscriptions._client.list_entities())
    assert [row["RowKey"] for row in subscription_rows] == [visit.subscription_id]
    graph = visit_stack.sandbox.graph
    subscription = next(s for s in graph.subscriptions.store.all() if s.id == visit.subscription_id)
    meeting = graph.meetings.find(visit.meeting_id)
    assert subscription.include_resource_data and subscription.certificate is not None  # rich notifications
    genuine = graph.subscriptions.notification(subscription, meeting, lobby_event(meeting))
    assert "encryptedContent" in genuine["value"][0] and genuine["value"][0]["clientState"] == subscription.client_state
    return {"key": key, "genuine": genuine, "hash": subscription_rows[0]["client_state_hash"]}


def post(client: httpx.Client, stack, body, headers=JSON) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return client.post(webhook(stack), content=content, headers=headers)


def item_with(genuine: dict, **changes) -> dict:
    body = copy.deepcopy(genuine)
    for name, value in changes.items():
        if value is None:
            body["value"][0].pop(name, None)
        else:
            body["value"][0][name] = value
    return body


def test_a_forged_client_state_is_403_and_changes_nothing(visit_stack, client, live_visit):
    deps = visit_stack.deps
    genuine, stored_hash = live_visit["genuine"], live_visit["hash"]
    real_state = genuine["value"][0]["clientState"]
    before_visit = deps.visit_rows.get_visit(*live_visit["key"])
    plaintext = item_with(genuine, clientState=secrets.token_urlsafe(32), encryptedContent=None)
    plaintext["value"][0]["resourceData"].update(
        {k: v for k, v in lobby_event(visit_stack.sandbox.graph.meetings.find(before_visit.item.meeting_id)).items()
         if k not in plaintext["value"][0]["resourceData"]})
    forged = {
        "a random clientState": item_with(genuine, clientState=secrets.token_urlsafe(32)),
        "no clientState": item_with(genuine, clientState=None),
        "an empty clientState": item_with(genuine, clientState=""),
        "the stored hash as clientState": item_with(genuine, clientState=stored_hash),
        "the clientState in another case": item_with(genuine, clientState=real_state.swapcase()),
        "the clientState and a character": item_with(genuine, clientState=real_state + "x"),
        "a plaintext event with a random clientState": plaintext,
    }
    before = state_of(visit_stack)

    for label, body in forged.items():
        response = post(client, visit_stack, body)
        assert response.status_code == 403, (label, response.text)
        assert response.json()["error"] == "not_authorized", label
        assert not TRACE.search(response.text)

    assert state_of(visit_stack) == before
    after_visit = deps.visit_rows.get_visit(*live_visit["key"])
    assert after_visit.etag == before_visit.etag
    assert after_visit.item.patient.value == "invited" and after_visit.item.lobby_since is None

    # Unknown subscriptions are not ours to judge: ignored, 202, nothing changes.
    for body in (item_with(genuine, subscriptionId=str(uuid.uuid4())),
                 item_with(plaintext, subscriptionId=str(uuid.uuid4()), clientState=real_state)):
        response = post(client, visit_stack, body)
        assert response.status_code == 202, response.text
    assert state_of(visit_stack) == before

    # Control: the genuine notification is applied (the patient waits in the lobby, counted once).
    assert post(client, visit_stack, genuine).status_code == 202
    applied = deps.visit_rows.get_visit(*live_visit["key"])
    assert applied.etag != before_visit.etag and applied.item.patient.value == "lobby"
    now = deps.clock.now()
    kinds = sorted(e.kind.value for e in deps.usage_events.month(CONTOSO_TID, now.year, now.month))
    assert kinds == ["launch", "lobby"]
    assert post(client, visit_stack, genuine).status_code == 202  # Graph delivers it again
    assert sorted(e.kind.value for e in deps.usage_events.month(CONTOSO_TID, now.year, now.month)) == kinds


def test_transport_rules_content_type_size_json_and_the_validation_handshake(visit_stack, client):
    url = webhook(visit_stack)
    before = state_of(visit_stack)
    well_formed = {"value": [{"subscriptionId": str(uuid.uuid4()), "clientState": "x", "changeType": "updated",
                              "resourceData": {"eventType": "callStarted",
                                               "eventDateTime": "2026-01-15T10:00:00.0000000Z"}}]}
    assert post(client, visit_stack, well_formed).status_code == 202  # control: unknown subscription, ignored

    for headers in ({"Content-Type": "text/plain"}, {"Content-Type": "application/x-www-form-urlencoded"},
                    {"Content-Type": "application/jsonp"}, {}):
        response = client.post(url, content=json.dumps(well_formed).encode(), headers=headers)
        assert response.status_code == 415, (headers, response.text)
        assert response.json()["error"] == "unsupported_media_type"
    assert post(client, visit_stack, well_formed, {"Content-Type": "Application/JSON; charset=utf-8"}).status_code == 202

    too_big = b'{"value": [], "pad": "' + b"x" * WEBHOOK_MAX_BODY_BYTES + b'"}'
    response = post(client, visit_stack, too_big)
    assert response.status_code == 413, response.text[:300]
    assert response.json()["error"] == "payload_too_large"

    bad = {
        b"{not json": "body",
        b"\xff\xfe\x00": "body",
        b"[]": "body",
        b'{"value": {}}': "value",
        b'{"value": [42]}': "value[0]",
        b'{"value": [{"subscriptionId": 5}]}': "value[0].subscriptionId",
        json.dumps({"value": [{"subscriptionId": "s", "resourceData": {"eventType": "callExploded"}}]}).encode():
            "value[0].resourceData.eventType",
        json.dumps({"value": [{"subscriptionId": "s", "resourceData": {"eventType": "callStarted",
                                                                       "eventDateTime": "yesterday"}}]}).encode():
            "value[0].resourceData.eventDateTime",
        json.dumps({"value": [{"subscriptionId": "s", "encryptedContent": {"encryptionCertificateId": "nope",
                                                                          "data": "", "dataKey": "",
                                                                          "dataSignature": ""}}]}).encode():
            "value[0].encryptedContent.encryptionCertificateId",
    }
    for body, path in bad.items():
        response = post(client, visit_stack, body)
        assert response.status_code == 400, (body, response.text)
        assert response.headers["content-type"].startswith("application/json")
        problems = response.json()["problems"]
        assert [p["field"] for p in problems] == [path], (body, problems)
        assert not TRACE.search(response.text)

    for token in ("Validation: Token 123", "a+b/c=d&e", "ünïcødé-tøken", "x" * 1024):
        response = client.post(f"{url}?validationToken={quote(token, safe='')}",
                               headers={"Content-Type": "text/plain"})
        assert response.status_code == 200, response.text
        assert response.headers["content-type"].startswith("text/plain")
        assert response.headers["x-content-type-options"] == "nosniff"
        assert response.text == token
    for token in ("", "x" * 1025, "line\nbreak"):
        response = client.post(f"{url}?validationToken={quote(token, safe='')}")
        assert response.status_code == 400, (token, response.text)
        assert response.json()["problems"][0]["field"] == "validationToken"

    assert state_of(visit_stack) == before


def test_one_size_limit_for_the_webhook_and_the_parser(visit_stack, client):
    """A body one byte over the limit is a 413; one at the limit is read (here: no events, 202)."""
    prefix, suffix = b'{"value": [], "pad": "', b'"}'
    at_limit = prefix + b"x" * (WEBHOOK_MAX_BODY_BYTES - len(prefix) - len(suffix)) + suffix
    assert len(at_limit) == WEBHOOK_MAX_BODY_BYTES
    assert post(client, visit_stack, at_limit).status_code == 202
    over = prefix + b"x" * (WEBHOOK_MAX_BODY_BYTES - len(prefix) - len(suffix) + 1) + suffix
    response = post(client, visit_stack, over)
    assert response.status_code == 413, response.text[:300]
