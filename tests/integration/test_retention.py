"""The retention pass against a real Azurite: server-side filters, paging while deleting, batched
deletes conditional on the ETag, and logs with counts only."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from connector.adapters.storage.repositories import TableExpiringRows, expiring_rows
from connector.composition import Container
from connector.domain.usage import UsageEvent, UsageKind
from connector.services.ports import Purged
from connector.services.retention import Retention
from connector.settings import Settings
from tests.fakes import FakeClock
from tests.retention_fixtures import EHR_USER, NOW, TID, join_link, launch_state, notification, subscription, visit

pytestmark = pytest.mark.integration

OLD = NOW - timedelta(days=40)
RECENT = NOW - timedelta(days=2)


@pytest.fixture
def stamp(storage_env) -> Container:
    deps = Container(Settings())
    deps.tables.create_missing()
    return deps


def retention(stamp: Container) -> Retention:
    return Retention(**expiring_rows(stamp.tables), clock=FakeClock(NOW), days=30)


def keys(table) -> set[str]:
    """The row keys left in a table."""
    return {table._keys(v.item)[1] for v in table.query("PartitionKey ne @none", {"none": ""})}


def test_rows_past_retention_go_fresh_ones_and_usage_events_stay(stamp: Container, caplog):
    t = stamp.tables
    for n, when in ((1, OLD), (2, NOW - timedelta(minutes=5)), (3, NOW + timedelta(minutes=5))):
        t.launch_states.insert(launch_state(n, when))
        t.join_links.insert(join_link(n, when))
        t.subscriptions.insert(subscription(n, when))
    for appointment, when in (("4817572", OLD), ("4817573", RECENT), ("4817574", NOW + timedelta(days=3))):
        t.visits.insert(visit(appointment, when))
        t.notifications.insert(notification(appointment, when))
    t.visits.insert(visit("4817575", OLD, updated_at=NOW - timedelta(days=1)))  # relaunched lately
    stamp.usage_events.append([UsageEvent(tenant_id=TID, event_id="e1", at=OLD, kind=UsageKind.launch)])

    with caplog.at_level(logging.DEBUG, logger="connector"):
        done = retention(stamp).run()

    assert done == {kind: Purged(deleted=1) for kind in done} and len(done) == 5
    assert keys(t.launch_states) == {launch_state(n, NOW).state for n in (2, 3)}
    assert keys(t.join_links) == {join_link(n, NOW).token_hash for n in (2, 3)}
    assert keys(t.subscriptions) == {"sub-2", "sub-3"}
    assert keys(t.visits) == {"4817573", "4817574", "4817575"}
    assert {k.split("_")[0] for k in keys(t.notifications)} == {"4817573", "4817574"}
    assert len(stamp.usage_events.month(TID, OLD.year, OLD.month)) == 1  # the reports are kept
    assert all(p == Purged() for p in retention(stamp).run().values())  # idempotent

    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "retention: visits deleted 1, kept 0" in logged
    for identifier in ("4817572", EHR_USER, TID, "sub-1", join_link(1, OLD).token_hash, launch_state(1, OLD).state):
        assert identifier not in logged


def test_a_row_updated_after_it_was_read_is_not_deleted_and_one_already_gone_is_no_error(stamp: Container):
    rows = TableExpiringRows(stamp.tables.visits, "appointment_end", "updated_at")
    for n in range(150):  # one partition, more than one transaction's 100
        stamp.tables.visits.insert(visit(f"a{n:03d}", OLD))
    stamp.tables.visits.insert(visit("fresh", RECENT))
    [page] = list(rows.before(NOW - timedelta(days=30)))
    assert len(page) == 150  # the table service left the fresh one out

    relaunched = stamp.visit_rows.get_visit(TID, "cardiology", "a005")  # in the first chunk
    stamp.visit_rows.save_visit(relaunched.item.model_copy(update={"department": "32216049"}), relaunched.etag)
    stamp.tables.visits.delete(f"{TID}_cardiology", "a120")  # in the second: another run took it

    assert rows.delete_unchanged(page) == Purged(deleted=149, kept=1)
    assert keys(stamp.tables.visits) == {"a005", "fresh"}
    assert stamp.visit_rows.get_visit(TID, "cardiology", "a005").item.department == "32216049"


def test_pages_are_read_while_rows_are_deleted(stamp: Container, monkeypatch):
    monkeypatch.setattr(TableExpiringRows, "PAGE_SIZE", 7)
    for n in range(40):  # spread over many partitions (the state's first characters)
        stamp.tables.launch_states.insert(launch_state(n * 10**41, OLD))
    stamp.tables.launch_states.insert(launch_state(7, NOW))
    assert retention(stamp).run()["launch_states"] == Purged(deleted=40)
    assert keys(stamp.tables.launch_states) == {launch_state(7, NOW).state}


def test_the_container_binds_the_days_setting(stamp: Container, monkeypatch):
    monkeypatch.setenv("CONNECTOR_RETENTION_DAYS", "7")
    deps = Container(Settings())
    assert deps.retention.cutoffs(NOW)["visits"] == NOW - timedelta(days=7)


def test_the_app_in_the_local_host_runs_the_timer_from_its_setting(storage_env):
    """The deployed shape: function_app's timer resolves %CONNECTOR_RETENTION_SCHEDULE% and, fired by
    the host's admin API, purges with the real clock."""
    from datetime import datetime, timezone
    from pathlib import Path

    import httpx

    from connector.composition import container
    from connector.settings import get_settings
    from dev.host import LocalFunctionsHost
    from tests.integration.hostapps import wait_until

    get_settings.cache_clear()
    container.cache_clear()
    deps = container()
    deps.tables.create_missing()
    now = datetime.now(timezone.utc)
    deps.tables.visits.insert(visit("4817572", now - timedelta(days=31)))
    deps.tables.visits.insert(visit("4817573", now - timedelta(days=29)))
    try:
        with LocalFunctionsHost(Path(__file__).resolve().parents[2], port=0, poll_interval=0.2) as host:
            fired = httpx.post(f"{host.url}/admin/functions/purge_expired_rows", json={"input": ""}, timeout=10)
            assert fired.status_code == 202
            assert wait_until(lambda: keys(deps.tables.visits) == {"4817573"}, timeout=10)
    finally:
        get_settings.cache_clear()
        container.cache_clear()
