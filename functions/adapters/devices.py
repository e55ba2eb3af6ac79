"""Devices table adapter: the one reader and writer of the device registry.

The processor reads it through ``get_many`` (BatchGetItem, behind ``functions.processor.enrich.DeviceCache``,
which caches per container) and writes one attribute, the per-device detector's carried alarm state
(``save_detector_state``, a conditional UpdateItem); calibration writes ``calibration``
(``save_calibration``); the API reads through ``get`` / ``scan`` / ``count`` (items as stored).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.adapters import codec
from functions.adapters.client_errors import translate_client_error
from functions.adapters.dynamo_table import MAX_COUNT_PAGES, DynamoTable
from functions.core.errors import TransientStoreError, VersionConflict
from functions.core.ports import Item, Key, Slice, chunked
from functions.core.readings import CORE_CHANNELS, DeviceInfo
from functions.core.retry import Backoff
from functions.settings import get_settings

BATCH_GET_MAX_KEYS = 100  # DynamoDB BatchGetItem limit
MAX_UNPROCESSED_ROUNDS = 6
UNPROCESSED_BACKOFF_BASE_S = 0.05
UNPROCESSED_BACKOFF_CAP_S = 1.0
_PROJECTION = (
    "#id, #name, site, #loc, latitude, longitude, #model, #tz, baseline, calibration, detector_state"
)
_NAMES = {"#id": "device_id", "#name": "name", "#loc": "location", "#model": "model", "#tz": "timezone"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def device_from_item(attrs: dict[str, Any]) -> DeviceInfo:
    """DeviceInfo from a low-level (AttributeValue) DynamoDB item."""
    item = codec.from_item(attrs)
    baseline: dict[str, float] = {}
    raw_baseline = item.get("baseline")
    for name, value in (raw_baseline if isinstance(raw_baseline, dict) else {}).items():
        number = _number(value)
        if number is not None and (name in CORE_CHANNELS or name.isidentifier()):
            baseline[name] = number

    def text(name: str, default: str = "") -> str:
        value = item.get(name)
        return value if isinstance(value, str) else default

    def mapping(name: str) -> dict[str, Any] | None:
        value = item.get(name)
        return value if isinstance(value, dict) else None

    return DeviceInfo(
        device_id=text("device_id"),
        name=text("name"),
        site=text("site"),
        location=text("location"),
        latitude=_number(item.get("latitude")),
        longitude=_number(item.get("longitude")),
        model=text("model"),
        timezone=text("timezone", "UTC"),
        baseline=baseline,
        calibration=mapping("calibration"),
        detector_state=mapping("detector_state"),
    )


class DynamoDeviceRegistry(DynamoTable):
    kind = "devices"

    def __init__(
        self,
        table_name: str | None = None,
        dynamodb: Any | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        super().__init__(table_name or get_settings().devices_table, dynamodb)
        self._backoff = Backoff(
            MAX_UNPROCESSED_ROUNDS, UNPROCESSED_BACKOFF_BASE_S, UNPROCESSED_BACKOFF_CAP_S, sleep
        )

    # --- processor: enrichment -------------------------------------------------------------------

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
            # UnprocessedKeys means throttling: back off (before each round but the first) and ask for the
            # rest. A stateful loop (what was found, what is left), so attempts() rather than call().
            for _ in self._backoff.attempts():
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
            else:
                raise TransientStoreError("devices.batch_get_item: unprocessed keys remained after retries")
        return found

    # --- processor: the per-device detector's carried state ---------------------------------------

    def save_detector_state(self, device_id: str, state: Mapping[str, Any]) -> bool:
        # Conditional on the timestamp so that a slower, older writer (a redelivered batch, a second
        # container during a shard hand-over) never rolls the state back; and on the item existing, so a
        # deleted device is not resurrected as a bare state item.
        try:
            self._call(
                "update_item",
                Key={"device_id": {"S": device_id}},
                UpdateExpression="SET detector_state = :s",
                ConditionExpression=(
                    "attribute_exists(device_id) AND "
                    "(attribute_not_exists(detector_state) OR detector_state.ts < :ts)"
                ),
                ExpressionAttributeValues=codec.to_item({":s": dict(state), ":ts": int(state["ts"])}),
            )
        except VersionConflict:
            return False
        return True

    # --- calibration -------------------------------------------------------------------------------

    def save_calibration(self, device_id: str, calibration: Mapping[str, Any]) -> None:
        # A new calibration invalidates the carried flags (they were raised against the old limits).
        self._call(
            "update_item",
            Key={"device_id": {"S": device_id}},
            UpdateExpression="SET calibration = :c REMOVE detector_state, calibration_request",
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeValues=codec.to_item({":c": dict(calibration)}),
        )

    # --- API: reads as stored ----------------------------------------------------------------------

    def get(self, device_id: str) -> Item | None:
        raw = self._call("get_item", Key={"device_id": {"S": device_id}}).get("Item")
        return codec.from_item(raw) if raw else None

    def scan(self, limit: int, start_key: Key | None) -> Slice:
        return self._slice(self._call("scan", Limit=limit, **self._key_in(start_key)))

    def count(self, max_items: int) -> tuple[int, bool]:
        total, start = 0, None
        for _ in range(MAX_COUNT_PAGES):
            response = self._call("scan", Select="COUNT", Limit=max_items - total, **self._key_in(start))
            total += int(response.get("Count", 0))
            start = self._key_out(response.get("LastEvaluatedKey"))
            if start is None or total >= max_items:
                break
        return total, start is not None
