"""Queue triggers: one polling thread per trigger, with the host's delivery rules.

As the host does: messages are base64; each is received invisible while it is processed;
success deletes it; a failure makes it visible again after host.json ``visibilityTimeout``
until its dequeue count reaches ``maxDequeueCount``, when the ORIGINAL message text is copied
to ``<queue>-poison`` and the message deleted. A message that is not valid base64 goes
straight to the poison queue (the function never sees it).
"""

from __future__ import annotations

import base64
import binascii
import concurrent.futures
import logging
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any

from azure.core.exceptions import AzureError
from azure.functions.queue import QueueMessage  # func.QueueMessage lacks dequeue_count & co
from azure.storage.queue import QueueClient
from azure.storage.queue import QueueMessage as StoredMessage

from dev.host.app_loader import LoadedFunction
from dev.host.listener import ListenerThread
from dev.host.worker import API_CALL_REASON, Worker

logger = logging.getLogger("dev.host.queues")


@dataclass(frozen=True)
class QueueListenerOptions:
    max_dequeue_count: int = 5
    retry_visibility: timedelta = timedelta(0)  # host.json visibilityTimeout
    batch_size: int = 16
    poll_interval: float = 2.0  # seconds to wait after finding the queue empty
    # Invisible while processing; the host uses 10 min and renews, a local run needs neither.
    processing_visibility: timedelta = timedelta(minutes=5)


def invoke_queue(worker: Worker, function: LoadedFunction, body: bytes) -> concurrent.futures.Future:
    """Invoke a queue function once with a message that never was in a queue (admin API)."""
    now = datetime.now(timezone.utc)
    message = QueueMessage(
        id=str(uuid.uuid4()),
        body=body,
        pop_receipt="",
        dequeue_count=1,
        insertion_time=now,
        expiration_time=now + timedelta(days=7),
        time_next_visible=now,
    )
    return worker.invoke(function, message, reason=API_CALL_REASON)


class QueueListener(ListenerThread):
    """Polls ``queue`` for ``function`` until stopped."""

    kind = "queue"

    def __init__(
        self,
        function: LoadedFunction,
        queue: QueueClient,
        poison: QueueClient,
        worker: Worker,
        options: QueueListenerOptions,
    ) -> None:
        super().__init__(function.name)
        self.function = function
        self.queue = queue
        self.poison = poison
        self._worker = worker
        self._options = options

    def _describe(self) -> str:
        return f"listening on {self.queue.queue_name!r}"

    def _run(self) -> None:
        storage_ok = True
        while not self._stop.is_set():
            try:
                batch = list(
                    self.queue.receive_messages(
                        messages_per_page=self._options.batch_size,
                        max_messages=self._options.batch_size,
                        visibility_timeout=_seconds(self._options.processing_visibility),
                    )
                )
                storage_ok = True
            except AzureError as exc:
                if storage_ok:  # log once per outage, not once per poll
                    logger.warning(
                        "queue %s: cannot receive (%s); retrying", self.function.name, type(exc).__name__
                    )
                storage_ok = False
                batch = []
            for index, message in enumerate(batch):
                if self._stop.is_set():
                    self._release(batch[index:])
                    return
                self._process(message)
            if not batch:
                self._stop.wait(self._options.poll_interval)

    def _process(self, message: StoredMessage) -> None:
        try:
            body = base64.b64decode("".join(str(message.content).split()), validate=True)
        except (binascii.Error, ValueError):
            logger.warning("queue %s: message %s is not valid base64", self.function.name, message.id)
            self._move_to_poison(message)
            return
        if _dequeue_count(message) > self._options.max_dequeue_count:  # e.g. a crash mid-run earlier
            self._move_to_poison(message)
            return
        try:
            self._worker.invoke(
                self.function,
                _to_function_message(message, body),
                reason=f"New queue message detected on '{self.queue.queue_name}'.",
            ).result()
        except Exception:  # the worker logged the traceback
            self._after_failure(message)
            return
        self._storage_call("delete", self.queue.delete_message, message)

    def _after_failure(self, message: StoredMessage) -> None:
        if _dequeue_count(message) >= self._options.max_dequeue_count:
            self._move_to_poison(message)
        else:
            self._storage_call(
                "retry",
                self.queue.update_message,
                message,
                visibility_timeout=_seconds(self._options.retry_visibility),
            )

    def _move_to_poison(self, message: StoredMessage) -> None:
        logger.warning(
            "queue %s: message %s (dequeue count %d) moved to %r",
            self.function.name,
            message.id,
            message.dequeue_count,
            self.poison.queue_name,
        )
        # Copy first, then delete: a failure in between duplicates rather than loses the message.
        if self._storage_call("poison", self.poison.send_message, message.content):
            self._storage_call("delete", self.queue.delete_message, message)

    def _release(self, messages: list[StoredMessage]) -> None:
        """Make received-but-unprocessed messages visible now, so a restart sees them at once."""
        for message in messages:
            self._storage_call("release", self.queue.update_message, message, visibility_timeout=0)

    def _storage_call(self, what: str, call: Callable[..., object], *args: Any, **kwargs: Any) -> bool:
        try:
            call(*args, **kwargs)
        except AzureError as exc:
            logger.warning("queue %s: %s failed (%s)", self.function.name, what, type(exc).__name__)
            return False
        return True


def _to_function_message(message: StoredMessage, body: bytes) -> QueueMessage:
    return QueueMessage(
        id=message.id,
        body=body,
        pop_receipt=message.pop_receipt,
        dequeue_count=message.dequeue_count,
        expiration_time=message.expires_on,
        insertion_time=message.inserted_on,
        time_next_visible=message.next_visible_on,
    )


def _dequeue_count(message: StoredMessage) -> int:
    return message.dequeue_count or 0  # None only for messages that never were received


def _seconds(delta: timedelta) -> int:
    return int(delta.total_seconds())
