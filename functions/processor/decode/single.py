"""One decoded reading document checked: schema, physical ranges, storable numbers, timestamp sanity."""

from __future__ import annotations

from typing import Any

from functions.core.readings import CORE_CHANNELS, Reading
from functions.core.timestamps import TimestampError, parse_ms
from functions.processor.decode.rules import (
    EXTRA_ABS_MAX,
    HUM_HI,
    HUM_LO,
    PHYSICAL_BOUNDS,
    PRES_HI,
    PRES_LO,
    TEMP_HI,
    TEMP_LO,
    DecodeRules,
)
from functions.processor.decode.shape import (
    SchemaError,
    certainly_valid_shape,
    schema_detail,
    validate_reading,
)
from functions.processor.records import (
    FUTURE_TIMESTAMP,
    LATE,
    OUT_OF_RANGE,
    SCHEMA_INVALID,
    STAGE_VALIDATE,
    UNREPRESENTABLE_NUMBER,
    KinesisRecord,
    Rejection,
)
from functions.processor.representable import (
    LARGEST_MAGNITUDE,
    SMALLEST_MAGNITUDE,
    underflowed_channels,
    unrepresentable_channels,
)

_CORE = frozenset(CORE_CHANNELS)


def check_document(doc: Any, record: KinesisRecord, rules: DecodeRules, now_ms: int) -> Reading | Rejection:
    """Schema, physical ranges and timestamp sanity of a decoded document."""
    try:
        if not certainly_valid_shape(doc):
            validate_reading(doc)
    except SchemaError as exc:
        named = doc.get("device_id") if type(doc) is dict else None
        return Rejection(
            record,
            SCHEMA_INVALID,
            STAGE_VALIDATE,
            schema_detail(exc),
            named if isinstance(named, str) else None,
        )
    device_id: str = doc["device_id"]
    try:
        epoch_ms = parse_ms(doc["timestamp"])
    except TimestampError as exc:
        return Rejection(record, SCHEMA_INVALID, STAGE_VALIDATE, str(exc)[:200], device_id)

    temperature = doc["temperature"]
    humidity = doc["humidity"]
    pressure = doc["pressure"]
    if not (
        TEMP_LO <= temperature <= TEMP_HI
        and HUM_LO <= humidity <= HUM_HI
        and PRES_LO <= pressure <= PRES_HI
    ):
        return Rejection(record, OUT_OF_RANGE, STAGE_VALIDATE, _range_detail(doc), device_id)
    # float(): the schema admits JSON integers; the fold and DynamoDB conversion want one numeric type.
    channels = {"temperature": float(temperature), "humidity": float(humidity), "pressure": float(pressure)}
    # The helpers below run only when a document needs them (extra channels, a number in doubt, an event
    # time out of bounds): this is the path of every reading common_reading declines, so the usual
    # document pays no extra calls for them.
    extra = doc.get("extra")
    if extra and (rejection := _add_extra_channels(extra, channels, record, device_id)):
        return rejection
    unstorable = unrepresentable_channels(channels)
    if (unstorable or 0.0 in channels.values()) and (
        rejection := _unrepresentable(unstorable, record, doc, device_id)
    ):
        return rejection
    # Lateness and skew are judged against the record's arrival in Kinesis, not against when this
    # function happens to run: a processor that fell behind (throttling, a blocked shard) must not turn
    # its own backlog into "late" data. Records without an arrival time fall back to processing time.
    ref_ms = record.approximate_arrival_ms or now_ms
    if not ref_ms - rules.allowed_lateness_ms <= epoch_ms <= ref_ms + rules.max_future_skew_ms:
        return _mistimed(epoch_ms, ref_ms, rules, record, device_id)
    # Positional arguments: measurably cheaper than keywords on this per-record path.
    return Reading(
        device_id, epoch_ms, channels, record.shard_id, record.sequence_number, None, doc.get("ground_truth")
    )


def _add_extra_channels(
    extra: dict[str, Any], channels: dict[str, float], record: KinesisRecord, device_id: str
) -> Rejection | None:
    """The ``extra`` channels (schema-valid) added to ``channels``, or why the document is rejected."""
    for name, value in extra.items():
        if name in _CORE:
            return Rejection(
                record,
                SCHEMA_INVALID,
                STAGE_VALIDATE,
                f"extra channel {name!r} shadows a core channel",
                device_id,
            )
        if not -EXTRA_ABS_MAX <= value <= EXTRA_ABS_MAX:
            return Rejection(
                record,
                OUT_OF_RANGE,
                STAGE_VALIDATE,
                f"extra.{name} beyond +-{EXTRA_ABS_MAX:g}",
                device_id,
            )
        channels[name] = float(value)
    return None


def _unrepresentable(
    unstorable: list[str], record: KinesisRecord, doc: dict[str, Any], device_id: str
) -> Rejection | None:
    """The rejection of a document with a channel DynamoDB cannot store with its sum of squares
    (``unstorable``, from ``unrepresentable_channels``) or one whose 0.0 is a literal that underflowed
    (looked up in the raw bytes), or None (a real zero)."""
    if unstorable:
        return Rejection(
            record,
            UNREPRESENTABLE_NUMBER,
            STAGE_VALIDATE,
            f"{', '.join(unstorable)}: non-zero magnitude outside [{SMALLEST_MAGNITUDE:g}, "
            f"{LARGEST_MAGNITUDE:g}] (not storable in DynamoDB with its sum of squares)",
            device_id,
        )
    underflowed = underflowed_channels(record.data_b64, doc)
    if not underflowed:
        return None
    return Rejection(
        record,
        UNREPRESENTABLE_NUMBER,
        STAGE_VALIDATE,
        f"{', '.join(underflowed)}: a non-zero number below the smallest float (parsed as 0); "
        f"non-zero magnitudes below {SMALLEST_MAGNITUDE:g} are not accepted",
        device_id,
    )


def _mistimed(
    epoch_ms: int, ref_ms: int, rules: DecodeRules, record: KinesisRecord, device_id: str
) -> Rejection:
    """The rejection of an event time out of bounds: ahead of ``ref_ms`` (the record's arrival) beyond
    the allowed skew, else behind it beyond the allowed lateness."""
    if epoch_ms > ref_ms + rules.max_future_skew_ms:
        return Rejection(
            record,
            FUTURE_TIMESTAMP,
            STAGE_VALIDATE,
            f"event time {(epoch_ms - ref_ms) // 1000}s ahead",
            device_id,
        )
    return Rejection(
        record, LATE, STAGE_VALIDATE, f"event time {(ref_ms - epoch_ms) // 1000}s old", device_id
    )


def _range_detail(doc: dict[str, Any]) -> str:
    bad = [
        f"{name}={doc[name]!r} not in [{lo:g}, {hi:g}]"
        for name, (lo, hi) in PHYSICAL_BOUNDS.items()
        if not lo <= doc[name] <= hi
    ]
    return "; ".join(bad)[:200]
