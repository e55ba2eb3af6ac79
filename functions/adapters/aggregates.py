"""Aggregates table adapter: strongly consistent reads and version-conditional puts.

The exactly-once logic (watermarks, merge, retry on conflict) is in ``functions.processor.exactly_once``;
this adapter only converts items between Python-native values and DynamoDB AttributeValues and turns
``ClientError`` codes into ``VersionConflict`` / ``StoreError``. Item shape: docs/data-model.md.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from decimal import Decimal
from typing import Any

from functions.adapters.clients import client
from functions.core.errors import TransientStoreError, translate_client_error
from functions.core.ports import AggregateItem, WindowKey, chunked
from functions.settings import get_settings

BATCH_GET_MAX_KEYS = 100
MAX_UNPROCESSED_ROUNDS = 6


def _num(value: int | float) -> dict[str, str]:
    # repr() of a float is its shortest round-trip form, so float(Decimal(repr(x))) == x exactly.
    return {"N": str(value) if isinstance(value, int) else repr(float(value))}


def to_attribute(value: Any) -> dict[str, Any]:
    """Python value -> DynamoDB AttributeValue (bool, int, float, str, dict, list, set of numbers)."""
    if isinstance(value, bool):
        return {"BOOL": value}
    if isinstance(value, int | float):
        return _num(value)
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, dict):
        return {"M": {str(k): to_attribute(v) for k, v in value.items()}}
    if isinstance(value, set | frozenset):
        return {"NS": [str(v) for v in sorted(value)]}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    if value is None:
        return {"NULL": True}
    raise TypeError(f"cannot store {type(value).__name__}")


def _parse_number(text: str) -> int | float:
    d = Decimal(text)
    return int(d) if d == d.to_integral_value() and "." not in text and "e" not in text.lower() else float(d)


def from_attribute(attr: dict[str, Any]) -> Any:
    ((kind, value),) = attr.items()
    if kind == "N":
        return _parse_number(value)
    if kind == "S":
        return value
    if kind == "M":
        return {k: from_attribute(v) for k, v in value.items()}
    if kind == "L":
        return [from_attribute(v) for v in value]
    if kind == "NS":
        return sorted(_parse_number(v) for v in value)
    if kind == "BOOL":
        return bool(value)
    if kind == "NULL":
        return None
    if kind == "SS":
        return sorted(value)
    raise TypeError(f"unsupported attribute type {kind}")


def item_to_dynamo(item: AggregateItem) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, value in item.items():
        if name == "seen_offsets_ms":
            if value:  # a number set cannot be empty
                out[name] = {"NS": [str(int(v)) for v in sorted(value)]}
            continue
        out[name] = to_attribute(value)
    return out


def item_from_dynamo(attrs: dict[str, Any]) -> AggregateItem:
    item = {name: from_attribute(value) for name, value in attrs.items()}
    item["seen_offsets_ms"] = [int(v) for v in item.get("seen_offsets_ms", [])]
    item["watermarks"] = {k: str(v) for k, v in (item.get("watermarks") or {}).items()}
    return item


def _key(key: WindowKey) -> dict[str, Any]:
    return {"device_id": {"S": key[0]}, "window_start": {"N": str(int(key[1]))}}


class DynamoAggregateStore:
    def __init__(
        self,
        table_name: str | None = None,
        dynamodb: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table_name or get_settings().aggregates_table
        self._client = dynamodb
        self._sleep = sleep

    @property
    def _ddb(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        found: dict[WindowKey, AggregateItem] = {}
        for chunk in chunked(list(dict.fromkeys(keys)), BATCH_GET_MAX_KEYS):
            request: dict[str, Any] = {
                self._table: {"Keys": [_key(k) for k in chunk], "ConsistentRead": True}
            }
            for attempt in range(MAX_UNPROCESSED_ROUNDS):
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
                self._sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
            else:
                raise TransientStoreError(
                    "aggregates.batch_get_item: unprocessed keys remained after retries"
                )
        return found

    def get(self, key: WindowKey) -> AggregateItem | None:
        try:
            response = self._ddb.get_item(TableName=self._table, Key=_key(key), ConsistentRead=True)
        except Exception as exc:
            raise translate_client_error(exc, "aggregates.get_item") from exc
        attrs = response.get("Item")
        return item_from_dynamo(attrs) if attrs else None

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        kwargs: dict[str, Any] = {"TableName": self._table, "Item": item_to_dynamo(item)}
        if expected_version is None:
            kwargs["ConditionExpression"] = "attribute_not_exists(device_id)"
        else:
            kwargs["ConditionExpression"] = "#v = :v"
            kwargs["ExpressionAttributeNames"] = {"#v": "version"}
            kwargs["ExpressionAttributeValues"] = {":v": {"N": str(int(expected_version))}}
        try:
            self._ddb.put_item(**kwargs)
        except Exception as exc:
            raise translate_client_error(exc, "aggregates.put_item") from exc
