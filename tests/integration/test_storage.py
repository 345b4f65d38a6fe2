"""The typed repositories against a real Azurite: ETags, conditional claims, transactions."""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone

import pytest
from azure.storage.queue import QueueClient

from connector.adapters.storage.queues import StorageQueue
from connector.composition import Container
from connector.domain.endpoint import Environment, FhirEndpoint
from connector.domain.notification import NotificationClaim, NotificationKind, NotificationStatus
from connector.domain.tenant import Consent, Tenant
from connector.domain.usage import UsageEvent, UsageKind
from connector.errors import ConcurrencyConflict, Conflict
from connector.settings import Settings

pytestmark = pytest.mark.integration

TID = "72f988bf-86f1-41af-91ab-2d7cd011db47"
OID = "00000000-0000-0000-0000-0000000000a1"
NOW = datetime(2026, 11, 25, 15, 0, tzinfo=timezone.utc)


@pytest.fixture
def stamp(storage_env) -> Container:
    deps = Container(Settings())
    deps.tables.create_missing()
    return deps


def endpoint(endpoint_id: str = "cardiology", url: str = "https://fhir-ehr.example.org/r4/abc") -> FhirEndpoint:
    return FhirEndpoint(
        tenant_id=TID, endpoint_id=endpoint_id, base_url=url, environment=Environment.production,
        location_ids=["32216049", "32216050"], timezone="America/Chicago", created_at=NOW,
    )


def test_tenant_round_trip_and_optimistic_concurrency(stamp: Container):
    assert stamp.tenants.onboard_tenant(Tenant(tenant_id=TID, region="us", created_at=NOW))
    assert not stamp.tenants.onboard_tenant(Tenant(tenant_id=TID, region="eu", created_at=NOW))

    first = stamp.tenants.get_tenant(TID)
    second = stamp.tenants.get_tenant(TID)
    assert first.item.region == "us" and first.item.created_at == NOW

    consented = first.item.model_copy(update={"sms_terms_consent": Consent(by_oid=OID, at=NOW)})
    stamp.tenants.save_tenant(consented, first.etag)
    with pytest.raises(ConcurrencyConflict):
        stamp.tenants.save_tenant(second.item, second.etag)  # stale: would erase the consent

    stored = stamp.tenants.get_tenant(TID).item
    assert stored.sms_terms_consent == Consent(by_oid=OID, at=NOW)
    assert not stored.sms_allowed


def test_endpoint_lists_and_json_fields_survive(stamp: Container):
    stamp.endpoints.add_endpoint(endpoint("cardiology", "https://fhir.example.org/r4/a"))
    stamp.endpoints.add_endpoint(endpoint("oncology", "https://fhir.example.org/r4/b"))
    listed = stamp.endpoints.list_endpoints(TID)
    assert [v.item.endpoint_id for v in listed] == ["cardiology", "oncology"]
    assert listed[0].item.location_ids == ["32216049", "32216050"]
    assert listed[0].item.environment is Environment.production


def test_base_url_is_unique_in_the_stamp_whatever_its_spelling(stamp: Container):
    stamp.endpoints.add_endpoint(endpoint("cardiology", "https://FHIR.example.org/r4/abc/"))
    with pytest.raises(Conflict):
        stamp.endpoints.add_endpoint(endpoint("other", "https://fhir.example.org/r4/abc"))
    found = stamp.endpoints.find_by_base_url("https://fhir.example.org/r4/abc")
    assert found.item.endpoint_id == "cardiology"
    # the failed add left nothing half-written
    assert stamp.endpoints.get_endpoint(TID, "other") is None


def test_failed_endpoint_insert_releases_the_url_claim(stamp: Container):
    stamp.endpoints.add_endpoint(endpoint("cardiology", "https://fhir.example.org/r4/one"))
    with pytest.raises(Conflict):  # same id, new URL: the endpoint row exists
        stamp.endpoints.add_endpoint(endpoint("cardiology", "https://fhir.example.org/r4/two"))
    assert stamp.endpoints.find_by_base_url("https://fhir.example.org/r4/two") is None


def test_remove_endpoint_frees_its_url(stamp: Container):
    stamp.endpoints.add_endpoint(endpoint())
    stored = stamp.endpoints.get_endpoint(TID, "cardiology")
    stamp.endpoints.remove_endpoint(stored.item, stored.etag)
    assert stamp.endpoints.find_by_base_url(stored.item.base_url) is None
    stamp.endpoints.add_endpoint(endpoint("again"))


def test_notification_claim_is_won_exactly_once(stamp: Container):
    claim = NotificationClaim(
        tenant_id=TID, endpoint_id="cardiology", appointment_id="4817572",
        kind=NotificationKind.reminder, appointment_start=NOW + timedelta(days=1), claimed_at=NOW,
    )
    results = [stamp.notifications.claim_notification(claim) for _ in range(3)]
    assert results[0] == stamp.notifications.get_notification(claim).etag  # the winner holds the ETag
    assert results[1:] == [None, None]
    rescheduled = claim.model_copy(update={"appointment_start": NOW + timedelta(days=2)})
    assert stamp.notifications.claim_notification(rescheduled)

    stored = stamp.notifications.get_notification(claim)
    sent = stored.item.model_copy(update={"status": NotificationStatus.sent, "acs_message_id": "m-1"})
    stamp.notifications.record_outcome(sent, stored.etag)
    assert stamp.notifications.get_notification(claim).item.status is NotificationStatus.sent


def test_usage_events_append_in_atomic_batches(stamp: Container):
    events = [
        UsageEvent(tenant_id=TID, event_id=f"e{i}", at=NOW + timedelta(seconds=i), kind=UsageKind.launch)
        for i in range(130)  # more than one transaction's 100
    ]
    assert stamp.usage_events.append(events) == 130
    assert len(stamp.usage_events.month(TID, 2026, 11)) == 130
    with pytest.raises(Conflict):  # all or nothing: one duplicate fails its batch
        stamp.usage_events.append(
            [UsageEvent(tenant_id=TID, event_id="new", at=NOW + timedelta(hours=1), kind=UsageKind.no_show), events[0]]
        )
    assert len(stamp.usage_events.month(TID, 2026, 11)) == 130


def test_queue_messages_are_base64_json_and_can_be_delayed(stamp: Container, storage_env):
    queue = StorageQueue.from_service(stamp.queue_service, stamp.settings.queue_name("outbox"))
    queue.create_if_missing()
    claim_ref = Tenant(tenant_id=TID, region="us", created_at=NOW)
    queue.send(claim_ref)
    queue.send(claim_ref, delay=timedelta(minutes=10))

    raw = QueueClient.from_connection_string(storage_env["AzureWebJobsStorage"], queue.name)
    visible = list(raw.receive_messages(max_messages=32))
    assert len(visible) == 1  # the delayed one is still invisible
    assert json.loads(base64.b64decode(visible[0].content))["tenant_id"] == TID
    with pytest.raises(ValueError):
        queue.send(claim_ref, delay=timedelta(days=8))


def test_emulator_key_is_refused_for_a_real_account(monkeypatch):
    monkeypatch.setenv("CONNECTOR_STAMP_REGION", "eu")
    monkeypatch.setenv("CONNECTOR_STORAGE_ACCOUNT_NAME", "stampeu")
    monkeypatch.setenv("CONNECTOR_STORAGE_EMULATOR_KEY", "a2V5")
    monkeypatch.delenv("CONNECTOR_STORAGE_TABLE_ENDPOINT", raising=False)
    monkeypatch.delenv("CONNECTOR_STORAGE_QUEUE_ENDPOINT", raising=False)
    with pytest.raises(ValueError, match="only for an emulator on loopback"):
        Settings()


def test_the_same_instant_in_two_offsets_is_one_claim(stamp: Container):
    from datetime import timezone as tz

    chicago = tz(timedelta(hours=-6))
    start = datetime(2026, 11, 26, 15, 0, tzinfo=timezone.utc)
    as_utc = NotificationClaim(tenant_id=TID, endpoint_id="cardiology", appointment_id="4817572",
                               kind=NotificationKind.reminder, appointment_start=start, claimed_at=NOW)
    as_offset = as_utc.model_copy(update={"appointment_start": start.astimezone(chicago)})
    assert stamp.notifications.claim_notification(as_utc)
    assert not stamp.notifications.claim_notification(as_offset)


def test_a_claim_left_by_a_crash_does_not_lock_the_url(stamp: Container):
    from connector.adapters.storage.repositories import UrlClaim, url_hash

    url = "https://fhir.example.org/r4/orphan"
    # a claim whose endpoint was never written (the process died in between)
    stamp.tables.endpoint_urls.insert(UrlClaim(url_hash=url_hash(url), base_url=url, tenant_id=TID, endpoint_id="gone"))
    assert stamp.endpoints.find_by_base_url(url) is None
    stamp.endpoints.add_endpoint(endpoint("cardiology", url))
    assert stamp.endpoints.find_by_base_url(url).item.endpoint_id == "cardiology"


def test_a_moved_endpoint_is_not_found_by_its_old_url(stamp: Container):
    old, new = "https://fhir.example.org/r4/old", "https://fhir.example.org/r4/new"
    stamp.endpoints.add_endpoint(endpoint("cardiology", old))
    stored = stamp.endpoints.get_endpoint(TID, "cardiology")
    moved = stored.item.model_copy(update={"base_url": new})
    stamp.endpoints.save_endpoint(moved, stored.etag, previous_base_url=old)
    assert stamp.endpoints.find_by_base_url(old) is None
    assert stamp.endpoints.find_by_base_url(new).item.endpoint_id == "cardiology"
    stamp.endpoints.add_endpoint(endpoint("oncology", old))  # the old URL is free again


def test_naive_times_are_refused():
    with pytest.raises(ValueError):
        UsageEvent(tenant_id=TID, event_id="e", at=datetime(2026, 1, 1), kind=UsageKind.launch)


def test_a_launch_state_is_taken_exactly_once_even_by_racing_callbacks(stamp: Container):
    from concurrent.futures import ThreadPoolExecutor
    from threading import Barrier

    from connector.domain.launch import LaunchState, Persona

    now = datetime.now(timezone.utc)
    states = []
    for n in range(5):
        state = LaunchState(state=f"{n}" * 43, tenant_id="t", endpoint_id="e", persona=Persona.provider,
                            client_id="c", code_verifier="v" * 43, nonce="n", created_at=now,
                            expires_at=now + timedelta(minutes=10))
        stamp.launch_states.save_state(state)
        states.append(state.state)
    for state in states:
        barrier = Barrier(4)

        def take(_):
            barrier.wait()  # four callbacks for one state at the same moment
            return stamp.launch_states.take_state(state)

        with ThreadPoolExecutor(4) as pool:
            won = [result for result in pool.map(take, range(4)) if result is not None]
        assert len(won) == 1, state
        assert stamp.launch_states.take_state(state) is None  # and it is gone
