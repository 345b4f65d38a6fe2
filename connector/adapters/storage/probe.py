"""Is the stamp's storage reachable? One cheap call per service, no retries (health must answer fast)."""

from __future__ import annotations

from azure.core.exceptions import AzureError
from azure.data.tables import TableServiceClient
from azure.storage.queue import QueueServiceClient

from connector import telemetry


class StorageProbe:
    def __init__(self, tables: TableServiceClient, queues: QueueServiceClient):
        self._tables = tables
        self._queues = queues

    def tables_reachable(self) -> bool:
        try:
            with telemetry.span("table list", service="Azure Table Storage", operation="list"):
                next(iter(self._tables.list_tables(results_per_page=1, retry_total=0).by_page()), None)
        except AzureError:
            return False
        return True

    def queues_reachable(self) -> bool:
        try:
            with telemetry.span("queue list", service="Azure Queue Storage", operation="list"):
                next(iter(self._queues.list_queues(results_per_page=1, retry_total=0).by_page()), None)
        except AzureError:
            return False
        return True
