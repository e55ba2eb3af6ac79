"""DynamoDB adapters of the read-side stores (low-level client, shared via ``adapters.clients``).

ClientError codes become domain errors here (throttles -> StoreThrottled, anything else -> StoreError),
so routes never see botocore. Every read is bounded: one Query/Scan per call, ``Limit`` set, and the
count helpers stop after a fixed number of pages.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from functions.adapters.clients import client
from functions.api.stores.ports import Item, Key, Slice, StoreError, StoreThrottled
from functions.settings import get_settings

THROTTLE_CODES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)
MAX_COUNT_PAGES = 10
BY_DAY_INDEX = "by-day"
# Watermarks and version are write-side bookkeeping: don't ship them over the wire.
_AGGREGATE_PROJECTION = "device_id, window_start, window_end, #c, channels, site, #l, anomaly_count"


def _plain(value: Any) -> Any:
    """AttributeValue-deserialised values with Decimals turned into int/float and sets into lists."""
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, list | set | frozenset):
        return [_plain(v) for v in value]
    return value


class _Dynamo:
    def __init__(self, table: str, dynamodb: Any | None = None) -> None:
        from boto3.dynamodb.types import TypeDeserializer, TypeSerializer  # deferred: fakes need no boto3

        self.table = table
        self._client = dynamodb
        self._ser = TypeSerializer()
        self._de = TypeDeserializer()

    @property
    def ddb(self) -> Any:
        return self._client or client("dynamodb")

    def call(self, operation: str, **kwargs: Any) -> dict[str, Any]:
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return getattr(self.ddb, operation)(TableName=self.table, **kwargs)
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code", "")
            if code in THROTTLE_CODES:
                raise StoreThrottled(code) from exc
            raise StoreError(code or "ClientError") from exc
        except BotoCoreError as exc:
            raise StoreError(type(exc).__name__) from exc

    def item(self, raw: dict[str, Any]) -> Item:
        return {k: _plain(self._de.deserialize(v)) for k, v in raw.items()}

    def key_out(self, raw: dict[str, Any] | None) -> Key | None:
        return self.item(raw) if raw else None

    def key_in(self, key: Key | None) -> dict[str, Any]:
        return {"ExclusiveStartKey": {k: self._ser.serialize(v) for k, v in key.items()}} if key else {}

    def slice(self, response: dict[str, Any]) -> Slice:
        return Slice(
            [self.item(i) for i in response.get("Items", [])], self.key_out(response.get("LastEvaluatedKey"))
        )


class DynamoDeviceStore(_Dynamo):
    def __init__(self, table: str | None = None, dynamodb: Any | None = None) -> None:
        super().__init__(table or get_settings().devices_table, dynamodb)

    def get(self, device_id: str) -> Item | None:
        raw = self.call("get_item", Key={"device_id": {"S": device_id}}).get("Item")
        return self.item(raw) if raw else None

    def scan(self, limit: int, start_key: Key | None) -> Slice:
        return self.slice(self.call("scan", Limit=limit, **self.key_in(start_key)))

    def count(self, max_items: int) -> tuple[int, bool]:
        total, start = 0, None
        for _ in range(MAX_COUNT_PAGES):
            response = self.call("scan", Select="COUNT", Limit=max_items - total, **self.key_in(start))
            total += int(response.get("Count", 0))
            start = self.key_out(response.get("LastEvaluatedKey"))
            if start is None or total >= max_items:
                break
        return total, start is not None


class DynamoAggregateStore(_Dynamo):
    def __init__(self, table: str | None = None, dynamodb: Any | None = None) -> None:
        super().__init__(table or get_settings().aggregates_table, dynamodb)

    def _query(self, device_id: str, start_s: int, end_s: int, **kwargs: Any) -> dict[str, Any]:
        return self.call(
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
        return self.slice(
            self._query(
                device_id,
                start_s,
                end_s,
                Limit=limit,
                ProjectionExpression=_AGGREGATE_PROJECTION,
                ExpressionAttributeNames={"#c": "count", "#l": "location"},
                **self.key_in(start_key),
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
                **self.key_in(start),
            )
            items = response.get("Items", [])
            windows += len(items)
            readings += sum(int(i.get("count", {}).get("N", "0")) for i in items)
            start = self.key_out(response.get("LastEvaluatedKey"))
            if start is None:
                break
        return windows, readings


class DynamoAnomalyStore(_Dynamo):
    def __init__(self, table: str | None = None, dynamodb: Any | None = None) -> None:
        super().__init__(table or get_settings().anomalies_table, dynamodb)

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
        return self.slice(
            self.call(
                "query",
                KeyConditionExpression="#h = :h AND ts_seq BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#h": hash_name},
                ExpressionAttributeValues=values,
                ScanIndexForward=False,  # newest first
                Limit=limit,
                **extra,
                **kwargs,
                **self.key_in(start_key),
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
            response = self.call(
                "query",
                IndexName=BY_DAY_INDEX,
                Select="COUNT",
                KeyConditionExpression="#d = :d AND ts_seq BETWEEN :lo AND :hi",
                ExpressionAttributeNames={"#d": "day"},
                ExpressionAttributeValues={":d": {"S": day}, ":lo": {"S": lo}, ":hi": {"S": hi}},
                **self.key_in(start),
            )
            total += int(response.get("Count", 0))
            start = self.key_out(response.get("LastEvaluatedKey"))
            if start is None or total >= max_items:
                break
        return min(total, max_items)
