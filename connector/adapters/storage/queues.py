"""Storage Queue sender: typed messages in the encoding the Functions host reads.

The host decodes queue messages as base64 by default, so messages are encoded with
``TextBase64EncodePolicy``; the body is the model's JSON (ids only, never PHI).
"""

from __future__ import annotations

from datetime import timedelta

from azure.core.exceptions import AzureError, ResourceExistsError
from azure.storage.queue import QueueClient, TextBase64EncodePolicy
from pydantic import BaseModel

from connector import telemetry
from connector.adapters.storage.tables import StorageUnavailable

MAX_VISIBILITY_DELAY = timedelta(days=7)  # the service's limit


class StorageQueue:
    def __init__(self, client: QueueClient):
        self._client = client

    @classmethod
    def from_service(cls, service, name: str) -> "StorageQueue":
        return cls(service.get_queue_client(name, message_encode_policy=TextBase64EncodePolicy()))

    @property
    def name(self) -> str:
        return self._client.queue_name

    def _traced(self, operation: str):
        """One span per call: the queue and the operation, never the message."""
        name = self.name
        return telemetry.span(f"queue {operation} {name}", service="Azure Queue Storage", queue=name,
                              operation=operation)

    def create_if_missing(self) -> None:
        try:
            with self._traced("create"):
                self._client.create_queue()
        except ResourceExistsError:
            pass

    def send(self, message: BaseModel, *, delay: timedelta = timedelta(0)) -> str:
        """Enqueue ``message``, invisible until ``delay`` has passed. Returns the message id."""
        if not timedelta(0) <= delay <= MAX_VISIBILITY_DELAY:
            raise ValueError("a queue message can be delayed by 0 to 7 days")
        try:
            with self._traced("send"):
                sent = self._client.send_message(
                    message.model_dump_json(), visibility_timeout=int(delay.total_seconds())
                )
        except AzureError as exc:
            raise StorageUnavailable(f"queue {self.name} could not be written") from exc
        return sent.id
