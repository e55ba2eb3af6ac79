"""Anomalies table adapter: the one reader and writer of the flagged readings (docs/data-model.md).

The detector stage writes with ``put_many`` (idempotent batched puts: every attribute is derived from the
reading, see ``functions.core.anomaly_items``, so a redelivered batch writes byte-identical items and
BatchWriteItem, which cannot carry conditions, is safe). The API reads with ``query_device`` /
``query_day`` (the ``by-day`` index) / ``count_day``, newest first.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from functions.adapters import codec
from functions.adapters.client_errors import translate_client_error
from functions.adapters.dynamo_table import MAX_COUNT_PAGES, DynamoTable
from functions.core.errors import TransientStoreError
from functions.core.ports import AnomalyItem, Key, Slice
from functions.core.retry import Backoff
from functions.settings import get_settings

BATCH_LIMIT = 25  # BatchWriteItem maximum
MAX_ATTEMPTS = 8
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0
BY_DAY_INDEX = "by-day"


class AnomalyStoreError(TransientStoreError):
    """Items still unprocessed after retries (throttling): an outage, the processor hands the batch back."""


class DynamoAnomalyStore(DynamoTable):
    kind = "anomalies"

    def __init__(
        self,
        table_name: str | None = None,
        dynamodb: Any = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(table_name or get_settings().anomalies_table, dynamodb)
        self._backoff = Backoff(MAX_ATTEMPTS, BACKOFF_BASE_S, BACKOFF_CAP_S, sleep)

    # --- detector stage: writes --------------------------------------------------------------------

    def put_many(self, items: Sequence[AnomalyItem]) -> int:
        # The same key twice in one BatchWriteItem is an error; identical content, so keep the last.
        unique = {(i["device_id"], i["ts_seq"]): i for i in items}
        requests = [{"PutRequest": {"Item": codec.to_item(item)}} for item in unique.values()]
        for lo in range(0, len(requests), BATCH_LIMIT):
            self._write(requests[lo : lo + BATCH_LIMIT])
        return len(requests)

    def _write(self, requests: list[dict[str, Any]]) -> None:
        pending = {self._table: requests}
        # UnprocessedItems means throttling: back off (full jitter, before each attempt but the first) and
        # resend the rest only. A stateful loop (what is left), so attempts() rather than call().
        for _ in self._backoff.attempts():
            try:
                response = self._ddb.batch_write_item(RequestItems=pending)
            except Exception as exc:
                raise translate_client_error(exc, "anomalies.batch_write_item") from exc
            pending = response.get("UnprocessedItems") or {}
            if not pending:
                return
        raise AnomalyStoreError(f"{len(pending.get(self._table, []))} anomaly items unprocessed")

    # --- API: reads --------------------------------------------------------------------------------

    def _query(
        self,
        hash_name: str,
        hash_value: str,
        lo: str,
        hi: str,
        min_rank: int,
        limit: int,
        start_key: Key | None,
        **kwargs: Any,
    ) -> Slice:
        values: dict[str, Any] = {":h": {"S": hash_value}, ":lo": {"S": lo}, ":hi": {"S": hi}}
        extra: dict[str, Any] = {}
        if min_rank > 1:
            values[":r"] = {"N": str(min_rank)}
            extra["FilterExpression"] = "severity_rank >= :r"
        return self._slice(
            self._call(
                "query",
                KeyConditionExpression="#h = :h AND ts_seq BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#h": hash_name},
                ExpressionAttributeValues=values,
                ScanIndexForward=False,  # newest first
                Limit=limit,
                **extra,
                **kwargs,
                **self._key_in(start_key),
            )
        )

    def query_device(
        self, device_id: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        return self._query("device_id", device_id, lo, hi, min_rank, limit, start_key)

    def query_day(
        self, day: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        return self._query("day", day, lo, hi, min_rank, limit, start_key, IndexName=BY_DAY_INDEX)

    def count_day(self, day: str, lo: str, hi: str, max_items: int) -> int:
        total, start = 0, None
        for _ in range(MAX_COUNT_PAGES):
            response = self._call(
                "query",
                IndexName=BY_DAY_INDEX,
                Select="COUNT",
                KeyConditionExpression="#d = :d AND ts_seq BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#d": "day"},
                ExpressionAttributeValues={":d": {"S": day}, ":lo": {"S": lo}, ":hi": {"S": hi}},
                **self._key_in(start),
            )
            total += int(response.get("Count", 0))
            start = self._key_out(response.get("LastEvaluatedKey"))
            if start is None or total >= max_items:
                break
        return min(total, max_items)
