"""The local Functions host fires timer triggers on their NCRONTAB schedules."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import azure.functions as func
import httpx
import pytest
from azure.functions.timer import TimerRequest

from dev.host import LocalFunctionsHost
from tests.integration.hostapps import HostProject, wait_until, write_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> HostProject:
    return write_project(tmp_path_factory.mktemp("timer-project"), "timer_app")


@pytest.fixture(scope="module")
def host(project: HostProject) -> Iterator[LocalFunctionsHost]:
    with pytest.MonkeyPatch.context() as env:
        env.setenv("TICK_SCHEDULE", "*/1 * * * * *")  # every second, seconds first
        with LocalFunctionsHost(project.directory, project.app_ref, port=0) as running:
            yield running


def calls_of(project: HostProject, name: str) -> list[func.TimerRequest]:
    return [request for called, request in project.calls if called == name]


def test_a_setting_schedule_fires_every_second_with_a_timer_request(
    host: LocalFunctionsHost, project: HostProject
) -> None:
    assert wait_until(lambda: len(calls_of(project, "tick")) >= 2, timeout=5)

    for request in calls_of(project, "tick"):
        assert isinstance(request, func.TimerRequest)
        assert request.past_due is False
        assert isinstance(request, TimerRequest) and "Next" in request.schedule_status


def test_run_on_startup_fires_once_at_start_even_if_the_schedule_is_far_away(
    host: LocalFunctionsHost, project: HostProject
) -> None:
    assert wait_until(lambda: len(calls_of(project, "at_startup")) == 1, timeout=5)
    time.sleep(1.2)
    assert len(calls_of(project, "at_startup")) == 1


def test_a_failing_timer_keeps_its_schedule(host: LocalFunctionsHost, project: HostProject) -> None:
    assert wait_until(lambda: len(calls_of(project, "flaky")) >= 2, timeout=5)


def test_admin_api_fires_a_timer_now(host: LocalFunctionsHost, project: HostProject) -> None:
    assert calls_of(project, "nightly") == []  # its schedule never comes round during a run

    response = httpx.post(f"{host.url}/admin/functions/nightly", json={"input": ""}, timeout=10)

    assert response.status_code == 202
    assert wait_until(lambda: len(calls_of(project, "nightly")) == 1, timeout=5)
    assert isinstance(calls_of(project, "nightly")[0], func.TimerRequest)


def test_a_missing_schedule_setting_fails_the_start_naming_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TICK_SCHEDULE", raising=False)
    project = write_project(tmp_path, "timer_app")
    host = LocalFunctionsHost(project.directory, project.app_ref, port=0)

    with pytest.raises(ValueError, match="TICK_SCHEDULE") as error:
        host.start()
    assert "tick" in str(error.value)
    with pytest.raises(httpx.ConnectError):
        httpx.get(host.url, timeout=2)
