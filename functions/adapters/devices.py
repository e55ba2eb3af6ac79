"""Devices table adapter: the one reader and writer of the device registry.

The processor reads it through ``get_many`` (BatchGetItem, behind ``functions.processor.enrich.DeviceCache``,
which caches per container) and writes one attribute, the per-device detector's carried alarm state
(``save_detector_state``, a conditional UpdateItem); calibration writes ``calibration``
(``save_calibration``); the API reads through ``get`` / ``scan`` / ``count`` (items as stored); the ingest
authorizer reads one attribute, the device's credential hash (``credential_hash``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from functions.adapters import codec
from functions.adapters.client_errors import translate_client_error
from functions.adapters.dynamo_table import MAX_COUNT_PAGES, DynamoTable
from functions.core.errors import StoreError, TransientStoreError, VersionConflict, is_item_error
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
BASELINE_ABS_MAX = 1e12  # readings are at most 1e9 in magnitude; a baseline beyond is not about them
CREDENTIAL_HASH_ATTRIBUTE = "credential_hash"  # functions.auth.device_credentials: what it holds
_NAMES = {"#id": "device_id", "#name": "name", "#loc": "location", "#model": "model", "#tz": "timezone"}


def _number(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and not isinstance(value, bool) else None


def _decode_attributes(attrs: Mapping[str, Any]) -> tuple[dict[str, Any], tuple[str, ...]]:
    """The item's attributes decoded one by one, and the names of those that did not decode.

    Per attribute, so that one value boto3's deserialiser refuses (ministack answers 1e40 as the
    41-digit "1000...0", which ``DYNAMODB_CONTEXT`` traps as ``Rounded``) costs that attribute only.
    """
    item: dict[str, Any] = {}
    faults: list[str] = []
    for name, value in attrs.items():
        try:
            item[name] = codec.from_attribute(value)
        except Exception:  # any decode error: the attribute is unusable, the rest of the item is not
            faults.append(name)
    return item, tuple(sorted(faults))


def unreadable_device(device_id: str) -> DeviceInfo:
    """A registered device whose item could not be read: its readings flow, the fleet model scores them."""
    return DeviceInfo(device_id=device_id, faults=("item",))


def device_from_item(attrs: dict[str, Any]) -> DeviceInfo:
    """DeviceInfo from a low-level (AttributeValue) DynamoDB item; parts that do not decode or have the
    wrong shape are left out and named in ``faults``."""
    item, decode_faults = _decode_attributes(attrs)
    faults = set(decode_faults)
    baseline: dict[str, float] = {}
    raw_baseline = item.get("baseline")
    for name, value in (raw_baseline if isinstance(raw_baseline, dict) else {}).items():
        number = _number(value)
        if number is None or not abs(number) <= BASELINE_ABS_MAX:  # NaN compares false: refused too
            faults.add("baseline")
        elif name in CORE_CHANNELS or name.isidentifier():
            baseline[name] = number

    def text(name: str, default: str = "") -> str:
        value = item.get(name)
        return value if isinstance(value, str) else default

    def mapping(name: str) -> dict[str, Any] | None:
        value = item.get(name)
        if value is not None and not isinstance(value, dict):
            faults.add(name)
        return value if isinstance(value, dict) else None

    calibration, detector_state = mapping("calibration"), mapping("detector_state")
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
        calibration=calibration,
        detector_state=detector_state,
        faults=tuple(sorted(faults)),
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
            try:
                found.update(self._get_chunk(chunk))
            except StoreError as exc:
                if exc.transient or not is_item_error(exc):
                    raise  # the registry is down, throttled or missing: an outage, the batch goes back
                # The service refused the batch for something in it: read the keys one by one, so that
                # one item it cannot serve costs that device only.
                found.update(self._get_each(chunk))
        return found

    def _get_each(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        found: dict[str, DeviceInfo] = {}
        for device_id in device_ids:
            try:
                raw = self._call(
                    "get_item",
                    Key={"device_id": {"S": device_id}},
                    ProjectionExpression=_PROJECTION,
                    ExpressionAttributeNames=_NAMES,
                ).get("Item")
            except StoreError as exc:
                if exc.transient or not is_item_error(exc):
                    raise
                found[device_id] = unreadable_device(device_id)
                continue
            if raw:
                found[device_id] = device_from_item(raw)
        return found

    def _get_chunk(self, chunk: Sequence[str]) -> dict[str, DeviceInfo]:
        found: dict[str, DeviceInfo] = {}
        if chunk:
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
                    info = device_from_item(item)  # decoded item by item: never fails the batch
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
            UpdateExpression=(
                "SET calibration = :c REMOVE detector_state, calibration_request, calibration_refused"
            ),
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeValues=codec.to_item({":c": dict(calibration)}),
        )

    def refuse_calibration(self, device_id: str, refusal: Mapping[str, Any]) -> None:
        # The request goes (the scheduled run would refuse it again every time); the reason stays on the
        # item where `GET /devices/{id}` and the registry show it. A new request replaces it.
        self._call(
            "update_item",
            Key={"device_id": {"S": device_id}},
            UpdateExpression="SET calibration_refused = :r REMOVE calibration_request",
            ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeValues=codec.to_item({":r": dict(refusal)}),
        )

    # --- API and calibrator: reads as stored ------------------------------------------------------
    # Attribute by attribute, like the processor's read: an attribute that does not decode is left out of
    # its item, so one device's broken calibration cannot fail a device listing, /stats or a calibrator
    # run (none of them shows or needs the attribute; the calibrator then sees no calibration).

    def get(self, device_id: str) -> Item | None:
        raw = self._call("get_item", Key={"device_id": {"S": device_id}}).get("Item")
        return _decode_attributes(raw)[0] if raw else None

    def scan(self, limit: int, start_key: Key | None) -> Slice:
        response = self._call("scan", Limit=limit, **self._key_in(start_key))
        return Slice(
            [_decode_attributes(i)[0] for i in response.get("Items", [])],
            self._key_out(response.get("LastEvaluatedKey")),
        )

    def count(self, max_items: int) -> tuple[int, bool]:
        total, start = 0, None
        for _ in range(MAX_COUNT_PAGES):
            response = self._call("scan", Select="COUNT", Limit=max_items - total, **self._key_in(start))
            total += int(response.get("Count", 0))
            start = self._key_out(response.get("LastEvaluatedKey"))
            if start is None or total >= max_items:
                break
        return total, start is not None

    # --- the ingest authorizer: the device's credential hash ----------------------------------------

    def credential_hash(self, device_id: str) -> str | None:
        # Projected: the authorizer runs per request and needs this one attribute (never the item).
        raw = self._call(
            "get_item", Key={"device_id": {"S": device_id}}, ProjectionExpression=CREDENTIAL_HASH_ATTRIBUTE
        ).get("Item") or {}
        value = raw.get(CREDENTIAL_HASH_ATTRIBUTE, {}).get("S")
        return value if isinstance(value, str) and value.startswith("sha256:") else None
