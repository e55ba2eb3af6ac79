"""Anomalies table adapter (docs/data-model.md): idempotent batched puts, plus an in-memory fake.

Items are keyed ``(device_id, ts_seq)`` where ``ts_seq = "<ISO ms timestamp>#<Kinesis sequence>"`` and
every attribute (``expires_at`` too) is derived from the reading, never from the clock, so a redelivered
batch writes byte-identical items: a plain overwrite is idempotent and BatchWriteItem (which cannot carry
conditions) is safe.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from decimal import Decimal
from typing import Any, Protocol

from functions.adapters.clients import client
from functions.core.errors import TransientStoreError
from functions.settings import get_settings

BATCH_LIMIT = 25  # BatchWriteItem maximum
MAX_ATTEMPTS = 8


class AnomalyStoreError(TransientStoreError):
    """Items still unprocessed after retries (throttling): an outage, the processor hands the batch back."""


class AnomalyStore(Protocol):
    def put_many(self, items: Sequence[dict[str, Any]]) -> int:
        """Write items (idempotently); returns how many were written."""
        ...


def to_dynamo(value: Any) -> Any:
    """Plain Python to what boto3's serializer accepts (floats become Decimal via their repr)."""
    if isinstance(value, bool) or value is None or isinstance(value, str):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, int):
        return value
    if isinstance(value, dict):
        return {k: to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    return value


class DynamoAnomalyStore:
    def __init__(self, table_name: str | None = None, dynamodb: Any = None) -> None:
        self.table_name = table_name or get_settings().anomalies_table
        self._client = dynamodb

    @property
    def client(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def put_many(self, items: Sequence[dict[str, Any]]) -> int:
        from boto3.dynamodb.types import TypeSerializer  # deferred: boto3 only where I/O happens

        serializer = TypeSerializer()
        # The same key twice in one BatchWriteItem is an error; identical content, so keep the last.
        unique = {(i["device_id"], i["ts_seq"]): i for i in items}
        requests = [
            {"PutRequest": {"Item": {k: serializer.serialize(to_dynamo(v)) for k, v in item.items()}}}
            for item in unique.values()
        ]
        for lo in range(0, len(requests), BATCH_LIMIT):
            self._write(requests[lo : lo + BATCH_LIMIT])
        return len(requests)

    def _write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self.table_name: requests}
        for attempt in range(MAX_ATTEMPTS):
            response = self.client.batch_write_item(RequestItems=pending)
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
            time.sleep(min(0.05 * 2**attempt, 1.0))  # throttled: back off, retry the rest only
        raise AnomalyStoreError(f"{len(pending.get(self.table_name, []))} anomaly items unprocessed")


class InMemoryAnomalyStore:
    """Fake with the table's key semantics (overwrite by key), for unit tests and local runs."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], dict[str, Any]] = {}
        self.writes = 0

    def put_many(self, items: Sequence[dict[str, Any]]) -> int:
        for item in items:
            self.items[(item["device_id"], item["ts_seq"])] = dict(item)
            self.writes += 1
        return len(items)
