"""A typed table: rows are pydantic models, writes are conditional, errors are ours.

Repositories build on :class:`ModelTable` and expose domain verbs; nothing outside this
package sees ``upsert_entity`` or an Azure exception.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Generic, TypeVar

from azure.core import MatchConditions
from azure.core.exceptions import (
    AzureError,
    HttpResponseError,
    ResourceExistsError,
    ResourceModifiedError,
    ResourceNotFoundError,
)
from azure.data.tables import TableClient, TableTransactionError, UpdateMode
from pydantic import BaseModel

from connector import telemetry
from connector.adapters.storage.entities import from_entity, to_entity
from connector.errors import ConcurrencyConflict, Conflict, UpstreamUnavailable
from connector.services.ports import Versioned

M = TypeVar("M", bound=BaseModel)

# Table Storage refuses these in PartitionKey and RowKey.
_FORBIDDEN_KEY_CHARS = set("/\\#?") | {chr(c) for c in range(0x20)} | {chr(c) for c in range(0x7F, 0xA0)}
MAX_TRANSACTION = 100


def check_key(value: str) -> str:
    if not value or len(value) > 512 or any(ch in _FORBIDDEN_KEY_CHARS for ch in value):
        raise ValueError("a table key must be 1-512 characters without / \\ # ? or control characters")
    return value


class StorageUnavailable(UpstreamUnavailable):
    """Table or queue storage did not answer as it should (retry later)."""


class ModelTable(Generic[M]):
    def __init__(self, client: TableClient, model: type[M], keys: Callable[[M], tuple[str, str]]):
        self._client = client
        self._model = model
        self._keys = keys

    @property
    def name(self) -> str:
        return self._client.table_name

    def _traced(self, operation: str):
        """One span per call: the table and the operation, never a key (keys hold phone numbers
        and launch states) or a row."""
        name = self.name
        return telemetry.span(f"table {operation} {name}", service="Azure Table Storage", table=name,
                              operation=operation)

    def create_if_missing(self) -> None:
        try:
            with self._traced("create"):
                self._client.create_table()
        except ResourceExistsError:
            pass

    def _entity(self, item: M) -> dict:
        partition_key, row_key = self._keys(item)
        return to_entity(item, check_key(partition_key), check_key(row_key))

    def _versioned(self, entity) -> Versioned[M]:
        return Versioned(from_entity(self._model, entity), entity.metadata["etag"])

    def get(self, partition_key: str, row_key: str) -> Versioned[M] | None:
        try:
            with self._traced("get"):
                try:
                    entity = self._client.get_entity(check_key(partition_key), check_key(row_key))
                except ResourceNotFoundError:
                    return None  # an answer, not a failed call
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be read") from exc
        return self._versioned(entity)

    def insert(self, item: M) -> str:
        """Insert a new row; :class:`Conflict` if its key exists. Returns the new ETag."""
        try:
            with self._traced("insert"):
                return self._client.create_entity(self._entity(item))["etag"]
        except ResourceExistsError as exc:
            raise Conflict(f"{self._model.__name__} already exists") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be written") from exc

    def try_insert(self, item: M) -> bool:
        """Claim a key: True if this call created the row, False if it was already there."""
        try:
            self.insert(item)
        except Conflict:
            return False
        return True

    def replace(self, item: M, etag: str) -> str:
        """Replace a row only if nobody changed it since it was read with ``etag``."""
        try:
            with self._traced("replace"):
                return self._client.update_entity(
                    self._entity(item), mode=UpdateMode.REPLACE, etag=etag,
                    match_condition=MatchConditions.IfNotModified,
                )["etag"]
        except (ResourceModifiedError, ResourceNotFoundError) as exc:
            raise ConcurrencyConflict(
                f"{self._model.__name__} changed or vanished since it was read; read it again"
            ) from exc
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be written") from exc

    def upsert(self, item: M) -> str:
        """Write unconditionally: only for rows with a single writer (seeds, idempotent facts)."""
        try:
            with self._traced("upsert"):
                return self._client.upsert_entity(self._entity(item), mode=UpdateMode.REPLACE)["etag"]
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be written") from exc

    def delete(self, partition_key: str, row_key: str, etag: str | None = None) -> None:
        kwargs = {"etag": etag, "match_condition": MatchConditions.IfNotModified} if etag else {}
        try:
            with self._traced("delete"):
                self._client.delete_entity(check_key(partition_key), check_key(row_key), **kwargs)
        except ResourceModifiedError as exc:
            raise ConcurrencyConflict(f"{self._model.__name__} changed since it was read") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be written") from exc

    def query(self, filter_: str, parameters: dict[str, str]) -> Iterator[Versioned[M]]:
        """Rows matching an OData filter with ``@name`` parameters (values are never spliced in)."""
        try:
            with self._traced("query"):  # a leaf span, never current: safe across the yields
                for entity in self._client.query_entities(filter_, parameters=parameters):
                    yield self._versioned(entity)
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be read") from exc

    def partition(self, partition_key: str) -> Iterator[Versioned[M]]:
        try:
            with self._traced("query"):
                entities = self._client.query_entities(
                    "PartitionKey eq @pk", parameters={"pk": check_key(partition_key)}
                )
                for entity in entities:
                    yield self._versioned(entity)
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be read") from exc

    def query_pages(self, filter_: str, parameters: dict, *, page_size: int = 1000) -> Iterator[list[Versioned[M]]]:
        """Like :meth:`query`, a page at a time: a caller deleting what it read holds one page, not
        the table (continuation is by key, so deleting rows already read moves nothing)."""
        try:
            with self._traced("query"):
                pages = self._client.query_entities(filter_, parameters=parameters, results_per_page=page_size)
                for page in pages.by_page():
                    yield [self._versioned(entity) for entity in page]
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} could not be read") from exc

    def delete_unchanged(self, rows: Sequence[Versioned[M]]) -> tuple[int, int]:
        """Delete rows only if unchanged since read (their ETag); returns (deleted, kept).

        Rows of a partition go 100 to a transaction; a transaction is all-or-nothing, so one row
        changed (412) or already gone (404) fails its chunk, which is then deleted row by row.
        A row already gone counts as deleted: a concurrent run took it (the SDK reports a 404 on
        a single delete as done)."""
        by_partition: dict[str, list[tuple[str, str]]] = {}
        for row in rows:
            partition_key, row_key = self._keys(row.item)
            by_partition.setdefault(partition_key, []).append((row_key, row.etag))
        deleted = kept = 0
        for partition_key, members in by_partition.items():
            for start in range(0, len(members), MAX_TRANSACTION):
                chunk = members[start : start + MAX_TRANSACTION]
                if self._delete_chunk(partition_key, chunk):
                    deleted += len(chunk)
                    continue
                for row_key, etag in chunk:
                    try:
                        self.delete(partition_key, row_key, etag)
                        deleted += 1
                    except ConcurrencyConflict:
                        kept += 1
        return deleted, kept

    def _delete_chunk(self, partition_key: str, chunk: list[tuple[str, str]]) -> bool:
        """One transaction of conditional deletes; False when a row in it changed or vanished."""
        operations = [("delete", {"PartitionKey": partition_key, "RowKey": row_key},
                       {"etag": etag, "match_condition": MatchConditions.IfNotModified}) for row_key, etag in chunk]
        try:
            with self._traced("transaction"):
                self._client.submit_transaction(operations)
        except TableTransactionError as exc:
            if exc.status_code in (404, 412):
                return False
            raise StorageUnavailable(f"table {self.name} refused a transaction") from exc
        except AzureError as exc:
            raise StorageUnavailable(f"table {self.name} refused a transaction") from exc
        return True

    def insert_batch(self, items: Iterable[M]) -> int:
        """Insert rows of ONE partition atomically, up to 100 per transaction (the service's limit).

        Each chunk of 100 is all-or-nothing; a key that exists fails its whole chunk with
        :class:`Conflict`.
        """
        entities = [self._entity(item) for item in items]
        if len({e["PartitionKey"] for e in entities}) > 1:
            raise ValueError("a transaction may only touch one partition")
        for start in range(0, len(entities), MAX_TRANSACTION):
            chunk = entities[start : start + MAX_TRANSACTION]
            try:
                with self._traced("transaction"):
                    self._client.submit_transaction([("create", e) for e in chunk])
            except TableTransactionError as exc:
                if exc.status_code == 409:
                    raise Conflict(f"a {self._model.__name__} in the batch already exists") from exc
                raise StorageUnavailable(f"table {self.name} refused a transaction") from exc
            except HttpResponseError as exc:
                raise StorageUnavailable(f"table {self.name} refused a transaction") from exc
        return len(entities)
