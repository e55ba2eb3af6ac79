"""Aggregates table adapter: the one reader and writer of the 1-minute windows.

The processor writes through ``get_many`` / ``get`` (strongly consistent) and version-conditional
``put``; the exactly-once logic (watermarks, merge, retry on conflict) is in
``functions.processor.exactly_once``. The API reads through ``query`` / ``totals`` (bounded: one Query
per call, ``Limit`` set, the totals stop after a fixed number of pages). Item shape: docs/data-model.md.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from functions.adapters import codec
from functions.adapters.client_errors import translate_client_error
from functions.adapters.dynamo_table import MAX_COUNT_PAGES, DynamoTable
from functions.adapters.offset_set import pack_offsets, unpack_offsets
from functions.core.errors import TransientStoreError
from functions.core.ports import AggregateItem, Key, Slice, WindowKey, chunked
from functions.core.retry import Backoff
from functions.settings import get_settings

BATCH_GET_MAX_KEYS = 100
MAX_UNPROCESSED_ROUNDS = 6
UNPROCESSED_BACKOFF_BASE_S = 0.05
UNPROCESSED_BACKOFF_CAP_S = 1.0
# Watermarks and version are write-side bookkeeping: the API does not ship them over the wire.
_READ_PROJECTION = "device_id, window_start, window_end, #c, channels, site, #l, anomaly_count"


def item_to_dynamo(item: AggregateItem) -> dict[str, Any]:
    """An aggregate item in AttributeValues; ``seen_offsets_ms`` is packed into one Binary value
    (functions/adapters/offset_set.py; omitted when empty, as DynamoDB has no empty binary)."""
    out: dict[str, Any] = {}
    for name, value in item.items():
        if name == "seen_offsets_ms":
            if value:
                out[name] = {"B": pack_offsets(int(v) for v in value)}
            continue
        out[name] = codec.to_attribute(value)
    return out


def item_from_dynamo(attrs: dict[str, Any]) -> AggregateItem:
    offsets = attrs.get("seen_offsets_ms")
    item = codec.from_item({k: v for k, v in attrs.items() if k != "seen_offsets_ms"})
    if offsets and "B" in offsets:
        item["seen_offsets_ms"] = unpack_offsets(bytes(offsets["B"]))
    else:  # an item written before the binary encoding: a number set
        item["seen_offsets_ms"] = sorted(int(v) for v in (offsets or {}).get("NS", []))
    item["watermarks"] = {k: str(v) for k, v in (item.get("watermarks") or {}).items()}
    return item


def _key(key: WindowKey) -> dict[str, Any]:
    return {"device_id": {"S": key[0]}, "window_start": {"N": str(int(key[1]))}}


class DynamoAggregateStore(DynamoTable):
    kind = "aggregates"

    def __init__(
        self,
        table_name: str | None = None,
        dynamodb: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(table_name or get_settings().aggregates_table, dynamodb)
        self._backoff = Backoff(
            MAX_UNPROCESSED_ROUNDS, UNPROCESSED_BACKOFF_BASE_S, UNPROCESSED_BACKOFF_CAP_S, sleep
        )

    # --- processor: exactly-once writes ----------------------------------------------------------

    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        found: dict[WindowKey, AggregateItem] = {}
        for chunk in chunked(list(dict.fromkeys(keys)), BATCH_GET_MAX_KEYS):
            request: dict[str, Any] = {
                self._table: {"Keys": [_key(k) for k in chunk], "ConsistentRead": True}
            }
            # UnprocessedKeys means throttling: back off (before each round but the first) and ask for the
            # rest. A stateful loop (what was found, what is left), so attempts() rather than call().
            for _ in self._backoff.attempts():
                try:
                    response = self._ddb.batch_get_item(RequestItems=request)
                except Exception as exc:
                    raise translate_client_error(exc, "aggregates.batch_get_item") from exc
                for attrs in response.get("Responses", {}).get(self._table, []):
                    item = item_from_dynamo(attrs)
                    found[(item["device_id"], int(item["window_start"]))] = item
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
            else:
                raise TransientStoreError(
                    "aggregates.batch_get_item: unprocessed keys remained after retries"
                )
        return found

    def get(self, key: WindowKey) -> AggregateItem | None:
        attrs = self._call("get_item", Key=_key(key), ConsistentRead=True).get("Item")
        return item_from_dynamo(attrs) if attrs else None

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        kwargs: dict[str, Any] = {"Item": item_to_dynamo(item)}
        if expected_version is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(device_id)"
        else:
            kwargs["ConditionExpression"] = "#v = :v"
            kwargs["ExpressionAttributeNames"] = {"#v": "version"}
            kwargs["ExpressionAttributeValues"] = {":v": {"N": str(int(expected_version))}}
        self._call("put_item", **kwargs)

    # --- API: reads --------------------------------------------------------------------------------

    def _query(self, device_id: str, start_s: int, end_s: int, **kwargs: Any) -> dict[str, Any]:
        return self._call(
            "query",
            KeyConditionExpression="device_id = :d AND window_start BETWEEN :lo AND :hi",
            ExpressionAttributeValues={
                ":d": {"S": device_id},
                ":lo": {"N": str(start_s)},
                ":hi": {"N": str(end_s)},
            },
            ScanIndexForward=True,
            **kwargs,
        )

    def query(self, device_id: str, start_s: int, end_s: int, limit: int, start_key: Key | None) -> Slice:
        return self._slice(
            self._query(
                device_id,
                start_s,
                end_s,
                Limit=limit,
                ProjectionExpression=_READ_PROJECTION,
                ExpressionAttributeNames={"#c": "count", "#l": "location"},
                **self._key_in(start_key),
            )
        )

    def totals(self, device_id: str, start_s: int, end_s: int) -> tuple[int, int]:
        windows = readings = 0
        start = None
        for _ in range(MAX_COUNT_PAGES):
            response = self._query(
                device_id,
                start_s,
                end_s,
                ProjectionExpression="#c",
                ExpressionAttributeNames={"#c": "count"},
                **self._key_in(start),
            )
            items = response.get("Items", [])
            windows += len(items)
            readings += sum(int(i.get("count", {}).get("N", "0")) for i in items)
            start = self._key_out(response.get("LastEvaluatedKey"))
            if start is None:
                break
        return windows, readings
