"""Device registry adapter (DynamoDB devices table), read with BatchGetItem.

The processor reaches it only through ``functions.processor.enrich.DeviceCache``, which caches results per
container; this adapter is the cache-miss path.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Sequence
from typing import Any

from functions.adapters.clients import client
from functions.core.errors import StoreError, TransientStoreError, translate_client_error
from functions.core.ports import chunked
from functions.core.readings import CORE_CHANNELS, DeviceInfo
from functions.settings import get_settings

BATCH_GET_MAX_KEYS = 100  # DynamoDB BatchGetItem limit
MAX_UNPROCESSED_ROUNDS = 6
_PROJECTION = "#id, #name, site, #loc, latitude, longitude, #model, #tz, baseline"
_NAMES = {"#id": "device_id", "#name": "name", "#loc": "location", "#model": "model", "#tz": "timezone"}


def _s(attr: dict[str, Any] | None, default: str = "") -> str:
    return str(attr["S"]) if attr and "S" in attr else default


def _n(attr: dict[str, Any] | None) -> float | None:
    return float(attr["N"]) if attr and "N" in attr else None


def device_from_item(item: dict[str, Any]) -> DeviceInfo:
    """DeviceInfo from a low-level (AttributeValue) DynamoDB item."""
    baseline: dict[str, float] = {}
    for name, value in (item.get("baseline", {}).get("M") or {}).items():
        number = _n(value)
        if number is not None and (name in CORE_CHANNELS or name.isidentifier()):
            baseline[name] = number
    return DeviceInfo(
        device_id=_s(item.get("device_id")),
        name=_s(item.get("name")),
        site=_s(item.get("site")),
        location=_s(item.get("location")),
        latitude=_n(item.get("latitude")),
        longitude=_n(item.get("longitude")),
        model=_s(item.get("model")),
        timezone=_s(item.get("timezone"), "UTC"),
        baseline=baseline,
    )


class DynamoDeviceRegistry:
    def __init__(
        self,
        table_name: str | None = None,
        dynamodb: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._table = table_name or get_settings().devices_table
        self._client = dynamodb
        self._sleep = sleep

    @property
    def _ddb(self) -> Any:
        if self._client is None:
            self._client = client("dynamodb")
        return self._client

    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        found: dict[str, DeviceInfo] = {}
        for chunk in chunked(sorted(set(device_ids)), BATCH_GET_MAX_KEYS):
            request: dict[str, Any] = {
                self._table: {
                    "Keys": [{"device_id": {"S": d}} for d in chunk],
                    "ProjectionExpression": _PROJECTION,
                    "ExpressionAttributeNames": _NAMES,
                }
            }
            for attempt in range(MAX_UNPROCESSED_ROUNDS):
                try:
                    response = self._ddb.batch_get_item(RequestItems=request)
                except Exception as exc:  # botocore already retried throttling/5xx (adaptive mode)
                    raise translate_client_error(exc, "devices.batch_get_item") from exc
                for item in response.get("Responses", {}).get(self._table, []):
                    info = device_from_item(item)
                    found[info.device_id] = info
                request = response.get("UnprocessedKeys") or {}
                if not request:
                    break
                # UnprocessedKeys means throttling: back off before asking for the rest.
                self._sleep(random.uniform(0, min(1.0, 0.05 * 2**attempt)))
            else:
                raise TransientStoreError("devices.batch_get_item: unprocessed keys remained after retries")
        return found


__all__ = ["DynamoDeviceRegistry", "StoreError", "device_from_item"]
