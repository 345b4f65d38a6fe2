"""The local Functions host feeds queue triggers from Azurite with the host's delivery rules."""

from __future__ import annotations

import base64
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import azure.functions as func
import httpx
import pytest
from azure.storage.queue import QueueClient, TextBase64DecodePolicy, TextBase64EncodePolicy

from dev.host import LocalFunctionsHost
from tests.integration.hostapps import HostProject, wait_until, write_project

pytestmark = pytest.mark.integration


@dataclass
class QueueHost:
    host: LocalFunctionsHost
    project: HostProject
    in_queue: str
    fail_queue: str
    connection_string: str

    def client(self, name: str, **policies: Any) -> QueueClient:
        return QueueClient.from_connection_string(self.connection_string, name, **policies)

    def send(self, name: str, text: str) -> None:
        """Enqueue as an app does for the host's default base64 encoding."""
        self.client(name, message_encode_policy=TextBase64EncodePolicy()).send_message(text)

    def calls_of(self, function: str) -> list[tuple[func.QueueMessage, float]]:
        return [(message, at) for name, message, at in self.project.calls if name == function]

    def message_count(self, name: str) -> int:
        """Visible and invisible messages alike."""
        return self.client(name).get_queue_properties().approximate_message_count or 0


def start_queue_host(
    tmp_path: Path,
    storage_env: dict[str, str],
    unique_prefix: str,
    monkeypatch: pytest.MonkeyPatch,
    queues: dict[str, Any],
) -> QueueHost:
    in_queue, fail_queue = f"{unique_prefix}-in", f"{unique_prefix}-fail"
    monkeypatch.setenv("IN_QUEUE", in_queue)
    monkeypatch.setenv("FAIL_QUEUE", fail_queue.upper())  # the host lower-cases queue names
    project = write_project(tmp_path, "queue_app", host_json={"extensions": {"queues": queues}})
    host = LocalFunctionsHost(project.directory, project.app_ref, port=0, poll_interval=0.1).start()
    return QueueHost(host, project, in_queue, fail_queue, storage_env["AzureWebJobsStorage"])


@pytest.fixture
def queue_host(
    tmp_path: Path, storage_env: dict[str, str], unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> Iterator[QueueHost]:
    running = start_queue_host(
        tmp_path,
        storage_env,
        unique_prefix,
        monkeypatch,
        {"maxDequeueCount": 3, "visibilityTimeout": "00:00:00"},
    )
    yield running
    running.host.stop()


def test_trigger_and_poison_queues_are_created_at_start(queue_host: QueueHost) -> None:
    for name in (
        queue_host.in_queue,
        f"{queue_host.in_queue}-poison",
        queue_host.fail_queue,
        f"{queue_host.fail_queue}-poison",
    ):
        assert queue_host.message_count(name) == 0  # raises ResourceNotFoundError if missing


def test_a_base64_message_reaches_the_function_once_and_is_deleted(queue_host: QueueHost) -> None:
    queue_host.send(queue_host.in_queue, "visit 42 ✓")

    assert wait_until(lambda: len(queue_host.calls_of("consume")) == 1)
    message, _ = queue_host.calls_of("consume")[0]
    assert isinstance(message, func.QueueMessage)
    assert message.get_body() == "visit 42 ✓".encode()
    assert message.dequeue_count == 1
    assert message.id and message.pop_receipt and message.insertion_time and message.expiration_time
    assert wait_until(lambda: queue_host.message_count(queue_host.in_queue) == 0)


def test_a_message_that_always_fails_ends_in_the_poison_queue_after_max_dequeue_count(
    queue_host: QueueHost,
) -> None:
    original = '{"visit_id": "v-1", "kind": "reminder"}'
    queue_host.send(queue_host.fail_queue, original)
    poison = f"{queue_host.fail_queue}-poison"

    assert wait_until(lambda: queue_host.message_count(poison) == 1, timeout=15)
    assert [m.dequeue_count for m, _ in queue_host.calls_of("always_fails")] == [1, 2, 3]
    assert all(m.get_body() == original.encode() for m, _ in queue_host.calls_of("always_fails"))
    # copied to poison first, deleted from the queue second: wait for the delete too
    assert wait_until(lambda: queue_host.message_count(queue_host.fail_queue) == 0)

    raw = [m.content for m in queue_host.client(poison).peek_messages()]
    assert raw == [base64.b64encode(original.encode()).decode()]  # the original text, untouched
    decoded = queue_host.client(poison, message_decode_policy=TextBase64DecodePolicy()).peek_messages()
    assert [m.content for m in decoded] == [original]


def test_a_message_that_is_not_base64_goes_to_poison_without_calling_the_function(
    queue_host: QueueHost,
) -> None:
    queue_host.client(queue_host.in_queue).send_message("not base64 at all!")  # no encode policy
    poison = f"{queue_host.in_queue}-poison"

    assert wait_until(lambda: queue_host.message_count(poison) == 1)
    assert [m.content for m in queue_host.client(poison).peek_messages()] == ["not base64 at all!"]
    assert queue_host.calls_of("consume") == []
    assert wait_until(lambda: queue_host.message_count(queue_host.in_queue) == 0)


def test_admin_api_runs_a_queue_function_with_the_input_as_body(queue_host: QueueHost) -> None:
    response = httpx.post(
        f"{queue_host.host.url}/admin/functions/consume", json={"input": "by hand"}, timeout=10
    )

    assert response.status_code == 202
    assert wait_until(lambda: len(queue_host.calls_of("consume")) == 1)
    message, _ = queue_host.calls_of("consume")[0]
    assert message.get_body() == b"by hand"
    assert message.dequeue_count == 1


def test_a_failed_message_stays_invisible_for_the_host_json_visibility_timeout(
    tmp_path: Path, storage_env: dict[str, str], unique_prefix: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    running = start_queue_host(
        tmp_path,
        storage_env,
        unique_prefix,
        monkeypatch,
        {"maxDequeueCount": 2, "visibilityTimeout": "00:00:02"},
    )
    try:
        running.send(running.fail_queue, "retry me later")
        assert wait_until(lambda: running.message_count(f"{running.fail_queue}-poison") == 1, timeout=15)
    finally:
        running.host.stop()

    (first, at_first), (second, at_second) = running.calls_of("always_fails")
    assert (first.dequeue_count, second.dequeue_count) == (1, 2)
    assert at_second - at_first >= 1.9
