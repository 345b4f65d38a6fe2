"""Retention: what the daily pass deletes, what it keeps, and what it logs (counts, never a key)."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest

from connector.domain.notification import notification_keys
from connector.errors import UpstreamUnavailable
from connector.services.ports import Purged
from connector.services.retention import Retention
from tests.fakes import FakeClock, FakeExpiringRows
from tests.retention_fixtures import EHR_USER, EID, NOW, TID, join_link, launch_state, notification, subscription, visit


class Stamp:
    def __init__(self, days: int = 30):
        self.clock = FakeClock(NOW)
        self.launch_states = FakeExpiringRows(lambda s: s.state)
        self.join_links = FakeExpiringRows(lambda link: link.token_hash)
        self.subscriptions = FakeExpiringRows(lambda s: s.subscription_id)
        self.visits = FakeExpiringRows(lambda v: v.appointment_id)
        self.notifications = FakeExpiringRows(notification_keys)
        self.retention = Retention(launch_states=self.launch_states, join_links=self.join_links,
                                   subscriptions=self.subscriptions, visits=self.visits,
                                   notifications=self.notifications, clock=self.clock, days=days)


def test_launch_states_go_an_hour_after_they_expire():
    stamp = Stamp()
    states = [launch_state(1, NOW - timedelta(hours=1, seconds=1)), launch_state(2, NOW - timedelta(hours=1)),
              launch_state(3, NOW - timedelta(minutes=5)), launch_state(4, NOW + timedelta(minutes=9))]
    for state in states:
        stamp.launch_states.put(state)
    assert stamp.retention.run()["launch_states"] == Purged(deleted=1)
    assert stamp.launch_states.keys() == {s.state for s in states[1:]}  # at the boundary: kept


def test_join_links_and_subscriptions_go_a_day_after_they_expire():
    stamp = Stamp()
    for n, age in enumerate([timedelta(days=3), timedelta(days=1, seconds=1), timedelta(days=1), timedelta(hours=2)]):
        stamp.join_links.put(join_link(n, NOW - age))
        stamp.subscriptions.put(subscription(n, NOW - age))
    stamp.subscriptions.put(subscription(9, NOW + timedelta(days=2)))  # alive: the renewal timer's
    done = stamp.retention.run()
    assert done["join_links"] == done["subscriptions"] == Purged(deleted=2)
    assert len(stamp.join_links.keys()) == 2
    assert stamp.subscriptions.keys() == {"sub-2", "sub-3", "sub-9"}


def test_visits_go_days_after_the_appointment_ended_and_the_row_last_changed():
    stamp = Stamp(days=30)
    old = NOW - timedelta(days=30, seconds=1)
    stamp.visits.put(visit("ended-long-ago", old))
    stamp.visits.put(visit("at-the-boundary", NOW - timedelta(days=30)))
    stamp.visits.put(visit("recent", NOW - timedelta(days=2)))
    stamp.visits.put(visit("future", NOW + timedelta(days=5)))
    stamp.visits.put(visit("relaunched-lately", old, updated_at=NOW - timedelta(days=1)))
    stamp.visits.put(visit("ran-over", old, ended_at=NOW - timedelta(days=29)))
    assert stamp.retention.run()["visits"] == Purged(deleted=1)
    assert stamp.visits.keys() == {"at-the-boundary", "recent", "future", "relaunched-lately", "ran-over"}
    assert stamp.visits.cutoffs == [NOW - timedelta(days=30)]


def test_notifications_go_days_after_the_appointment_and_their_last_outcome():
    stamp = Stamp(days=7)
    old = NOW - timedelta(days=8)
    for row in (notification("old", old), notification("recent", NOW - timedelta(days=6)),
                notification("late-report", old, delivered_at=NOW - timedelta(days=1)),
                notification("upcoming", NOW + timedelta(days=1))):
        stamp.notifications.put(row)
    assert stamp.retention.run()["notifications"] == Purged(deleted=1)
    assert {row[1].split("_")[0] for row in stamp.notifications.keys()} == {"recent", "late-report", "upcoming"}


def test_a_row_changed_after_it_was_read_is_kept_and_a_row_already_gone_counts_as_deleted():
    stamp = Stamp()
    old = NOW - timedelta(days=40)
    for name in ("relaunched", "taken-by-another-run", "plain"):
        stamp.visits.put(visit(name, old))

    def meanwhile(rows):  # between the read and the delete: a relaunch saves one, another run deletes one
        stamp.visits.touch("relaunched")
        stamp.visits.rows.pop("taken-by-another-run", None)

    stamp.visits.before_delete = meanwhile
    stamp.visits.page_size = 10
    assert stamp.retention.run()["visits"] == Purged(deleted=2, kept=1)
    assert stamp.visits.keys() == {"relaunched"}
    stamp.visits.before_delete = None
    assert stamp.retention.run()["visits"] == Purged(deleted=1)  # the next run takes it: nothing changed since


def test_a_second_run_finds_nothing_to_do():
    stamp = Stamp()
    stamp.visits.put(visit("old", NOW - timedelta(days=40)))
    stamp.launch_states.put(launch_state(1, NOW - timedelta(days=1)))
    stamp.retention.run()
    assert all(p == Purged() for p in stamp.retention.run().values())


@pytest.mark.parametrize("days", [0, 3651])
def test_days_are_bounded(days):
    with pytest.raises(ValueError):
        Stamp(days=days)


def test_a_failing_table_does_not_stop_the_others_but_fails_the_run(caplog):
    stamp = Stamp()
    stamp.visits.put(visit("old", NOW - timedelta(days=40)))
    stamp.launch_states.put(launch_state(1, NOW - timedelta(days=1)))

    def unavailable(cutoff):
        raise UpstreamUnavailable("table visits could not be read")

    stamp.visits.before = unavailable
    with caplog.at_level(logging.INFO, logger="connector.retention"), pytest.raises(UpstreamUnavailable):
        stamp.retention.run()
    assert stamp.launch_states.keys() == set()
    assert "visits not purged (UpstreamUnavailable)" in caplog.text


def test_logs_carry_counts_only(caplog):
    stamp = Stamp()
    old = NOW - timedelta(days=40)
    stamp.visits.put(visit("4817572", old))
    stamp.notifications.put(notification("4817572", old))
    stamp.join_links.put(join_link(7, old))
    stamp.launch_states.put(launch_state(7, old))
    stamp.subscriptions.put(subscription(7, old))
    with caplog.at_level(logging.DEBUG, logger="connector"):
        stamp.retention.run()
    logged = "\n".join(r.getMessage() for r in caplog.records)
    assert "visits deleted 1, kept 0" in logged
    for secret in ("4817572", EHR_USER, TID, EID, "sub-7", join_link(7, old).token_hash, launch_state(7, old).state):
        assert secret not in logged
