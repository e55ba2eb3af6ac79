"""Stage 1: decode (base64 + JSON), size check, schema validation, physical ranges, timestamp sanity.

Pure functions: a ``KinesisRecord`` in, ``Reading``s (not yet enriched) and ``Rejection``s out. Nothing
here raises for bad data: every way a record can be wrong maps to a reason code.

A record's data is either one reading (a JSON object) or a *packed record*: a JSON array of readings
(at most ``max_packed_bytes`` and ``max_packed_readings``, docs/data-model.md). The record is parsed once;
each element of a packed record is then validated on its own and becomes a Reading or a Rejection with
its ``index``. A record that cannot be parsed (or is too large, or an empty array) is one Rejection.

Speed matters (>= 100k records/s on one core for the whole core): base64 and JSON are C (binascii,
orjson), the schema check is a fastjsonschema-compiled function, timestamps in the common
``YYYY-MM-DDTHH:MM:SS.mmmZ`` shape take a regex fast path with a per-day cache, and a record allocates
only its Reading and its channel dict.
"""

from __future__ import annotations

import binascii
import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import fastjsonschema
import orjson

from functions.core.readings import CORE_CHANNELS, Reading
from functions.core.timestamps import TimestampError, cached_second_ms, parse_ms, second_ms
from functions.core.timestamps import format_ms as format_ms  # re-exported: callers import it from here
from functions.core.timestamps import format_s as format_s
from functions.processor.records import (
    FUTURE_TIMESTAMP,
    LATE,
    MALFORMED_JSON,
    OUT_OF_RANGE,
    OVERSIZED,
    SCHEMA_INVALID,
    STAGE_DECODE,
    STAGE_VALIDATE,
    UNREPRESENTABLE_NUMBER,
    KinesisRecord,
    Rejection,
)
from functions.processor.representable import (
    LARGEST_MAGNITUDE,
    SMALLEST_MAGNITUDE,
    unrepresentable_channels,
)
from functions.schemas import compiled_validator
from functions.settings import ProcessorSettings, default

# Physical plausibility bounds (inclusive). Values outside cannot come from a working sensor, so they are
# quarantined as ``out_of_range`` instead of polluting window statistics. Plausible-but-unusual values
# (a simulated "out_of_range" anomaly, a heat wave) stay inside these bounds and reach the detector.
# - temperature: air temperatures recorded on Earth span -89.2..+56.7 degC; sensors in sun-heated
#   enclosures read higher, so -90..+100 degC.
# - humidity: relative humidity is 0..100 %RH by definition.
# - pressure: 300..1100 hPa is the range of common barometric sensors (BME280/BMP388), roughly
#   +9000 m to -500 m altitude.
# - extra channels: unknown physics; only |value| <= 1e9 so sums of squares stay finite.
PHYSICAL_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (-90.0, 100.0),
    "humidity": (0.0, 100.0),
    "pressure": (300.0, 1100.0),
}
EXTRA_ABS_MAX = 1e9
# Physical bounds are the first filter; representable.py's magnitudes are the storage one, and every value
# inside the physical bounds must be within them on the large side (only tiny magnitudes can then fail).
assert max(EXTRA_ABS_MAX, *(abs(b) for pair in PHYSICAL_BOUNDS.values() for b in pair)) <= LARGEST_MAGNITUDE

# The one time module (functions.core.timestamps) owns timestamp parsing and formatting; the decode
# stage's public name for the parser stays (format_ms, format_s, TimestampError are re-exported above).
parse_timestamp_ms = parse_ms


@dataclass(frozen=True, slots=True)
class DecodeRules:
    """The settings the decode stage needs, precomputed in the units it uses (defaults: the settings')."""

    max_record_bytes: int = default("max_record_bytes")  # a record holding one reading (JSON object)
    allowed_lateness_ms: int = default("allowed_lateness_s") * 1000
    max_future_skew_ms: int = default("max_future_skew_s") * 1000
    max_packed_bytes: int = default("max_packed_bytes")  # a packed record (JSON array of readings)
    max_packed_readings: int = default("max_packed_readings")

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> DecodeRules:
        return cls(
            max_record_bytes=settings.max_record_bytes,
            allowed_lateness_ms=settings.allowed_lateness_s * 1000,
            max_future_skew_ms=settings.max_future_skew_s * 1000,
            max_packed_bytes=settings.max_packed_bytes,
            max_packed_readings=settings.max_packed_readings,
        )


_TEMP_LO, _TEMP_HI = PHYSICAL_BOUNDS["temperature"]
_HUM_LO, _HUM_HI = PHYSICAL_BOUNDS["humidity"]
_PRES_LO, _PRES_HI = PHYSICAL_BOUNDS["pressure"]
_TINY = SMALLEST_MAGNITUDE
# What the fast path's tiny-magnitude check relies on:
assert _PRES_LO >= _TINY
assert _HUM_LO >= 0.0
_CORE = frozenset(CORE_CHANNELS)
_validate_reading = compiled_validator("reading")
_SchemaError = fastjsonschema.JsonSchemaValueException
_b64decode = binascii.a2b_base64


# Fast path for the schema check. The compiled validator costs ~4 us per reading, about half of the
# whole per-record budget; this hand-written check costs well under 1 us. It only ever answers "certainly
# valid"; anything else (extra keys, unusual types, any doubt) goes to the compiled schema, which stays
# the authority and produces the error message. tests/unit/test_schemas_fast_path.py checks with
# hypothesis that every document this accepts is also accepted by the compiled reading.schema.json.
_DEVICE_ID_OK = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII).fullmatch
_CHANNEL_NAME_OK = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}", re.ASCII).fullmatch
_MAX_EPOCH_MS = 32_503_680_000_000  # the schema's maximum (year 3000)


def certainly_valid_shape(doc: Any) -> bool:
    """True only if ``doc`` certainly satisfies reading.schema.json (False means: ask the schema)."""
    if type(doc) is not dict:
        return False
    n = len(doc)
    if n < 5 or n > 7:
        return False
    device_id = doc.get("device_id")
    if type(device_id) is not str or _DEVICE_ID_OK(device_id) is None:
        return False
    ts = doc.get("timestamp")
    tt = type(ts)
    if tt is str:
        if not 20 <= len(ts) <= 40:
            return False
    elif tt is not int or not 0 <= ts <= _MAX_EPOCH_MS:
        return False
    t = type(doc.get("temperature"))
    h = type(doc.get("humidity"))
    p = type(doc.get("pressure"))
    if (
        (t is not float and t is not int)
        or (h is not float and h is not int)
        or (p is not float and p is not int)
    ):
        return False
    if n == 5:
        return True
    extra_count = 0
    if "extra" in doc:
        extra_count = 1
        extra = doc["extra"]
        if type(extra) is not dict or len(extra) > 16:
            return False
        for name, value in extra.items():
            tv = type(value)
            if (tv is not float and tv is not int) or _CHANNEL_NAME_OK(name) is None:
                return False
    if "ground_truth" in doc:
        extra_count += 1
        gt = doc["ground_truth"]
        if type(gt) is not str or len(gt) > 32:
            return False
    return n == 5 + extra_count


def _schema_detail(exc: _SchemaError) -> str:
    # fastjsonschema messages name the path and the rule ("data.humidity must be number"), never the value.
    return exc.message[:200]


def decode_items(record: KinesisRecord, rules: DecodeRules, now_ms: int) -> list[Reading | Rejection]:
    """Decode and check one record: one item for a single reading, one per element for a packed record.

    Whole-record rejections (one item, ``index`` None): ``oversized`` (over ``max_record_bytes`` for an
    object, over ``max_packed_bytes`` or ``max_packed_readings`` for an array), ``malformed_json`` (not
    base64, not JSON), ``schema_invalid`` for an empty array. Otherwise each element is checked like a
    single reading, with its own reason.
    """
    # Size first, on the base64 length (4 chars per 3 bytes), before spending time decoding.
    data_b64 = record.data_b64
    limit = max(rules.max_record_bytes, rules.max_packed_bytes)
    if len(data_b64) * 3 // 4 > limit + 2:
        return [Rejection(record, OVERSIZED, STAGE_DECODE, f"record larger than {limit} bytes")]
    try:
        raw = _b64decode(data_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        return [Rejection(record, MALFORMED_JSON, STAGE_DECODE, "data is not valid base64")]
    # JSON may start with whitespace; only an array can be a packed record, and only it gets the larger cap.
    packed = raw[:1] == b"[" or raw.lstrip()[:1] == b"["
    cap = rules.max_packed_bytes if packed else rules.max_record_bytes
    if len(raw) > cap:
        what = "packed record" if packed else "record"
        return [Rejection(record, OVERSIZED, STAGE_DECODE, f"{what} larger than {cap} bytes")]
    try:
        doc: Any = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return [Rejection(record, MALFORMED_JSON, STAGE_DECODE, str(exc)[:200])]
    if type(doc) is list:
        return check_packed(doc, record, rules, now_ms)
    return [check_document(doc, record, rules, now_ms)]


def decode_record(record: KinesisRecord, rules: DecodeRules, now_ms: int) -> Reading | Rejection:
    """Decode and check a record holding one reading: the first (for such a record, the only) item of
    ``decode_items``. Packed records have one item per element: use ``decode_items`` for those."""
    return decode_items(record, rules, now_ms)[0]


def _element_bytes(doc: Any) -> bytes:
    try:
        return orjson.dumps(doc)
    except (TypeError, orjson.JSONEncodeError):  # cannot happen for what orjson.loads built; be safe
        return repr(doc).encode()


def check_packed(
    docs: list[Any], record: KinesisRecord, rules: DecodeRules, now_ms: int
) -> list[Reading | Rejection]:
    """Each element of a parsed packed record checked on its own (Reading or Rejection with its index)."""
    if not docs:
        return [Rejection(record, SCHEMA_INVALID, STAGE_VALIDATE, "packed record is an empty array")]
    if len(docs) > rules.max_packed_readings:
        # Parsed already, so each element is quarantined on its own (raw bytes and index): a record of 600
        # readings counts as 600 quarantined readings, not 1, and conservation in readings holds.
        detail = f"packed record holds {len(docs)} readings, more than {rules.max_packed_readings}"
        return [
            Rejection(
                record,
                OVERSIZED,
                STAGE_DECODE,
                detail,
                doc.get("device_id") if type(doc) is dict and type(doc.get("device_id")) is str else None,
                _element_bytes(doc),
                i,
            )
            for i, doc in enumerate(docs)
        ]
    out: list[Reading | Rejection] = []
    for i, doc in enumerate(docs):
        item = _common_reading(doc, record, rules, now_ms, i) or check_document(doc, record, rules, now_ms)
        if type(item) is Reading:
            item.index = i
            out.append(item)
        else:
            out.append(_element_rejection(item, doc, i))  # type: ignore[arg-type]
    return out


def _element_rejection(rej: Rejection, doc: Any, index: int) -> Rejection:
    return Rejection(
        rej.record, rej.reason, rej.stage, rej.detail, rej.device_id, _element_bytes(doc), index
    )


def check_document(doc: Any, record: KinesisRecord, rules: DecodeRules, now_ms: int) -> Reading | Rejection:
    """Schema, physical ranges and timestamp sanity of a decoded document."""
    try:
        if not certainly_valid_shape(doc):
            _validate_reading(doc)
    except _SchemaError as exc:
        device_id = doc.get("device_id") if type(doc) is dict else None
        return Rejection(
            record,
            SCHEMA_INVALID,
            STAGE_VALIDATE,
            _schema_detail(exc),
            device_id if isinstance(device_id, str) else None,
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
        _TEMP_LO <= temperature <= _TEMP_HI
        and _HUM_LO <= humidity <= _HUM_HI
        and _PRES_LO <= pressure <= _PRES_HI
    ):
        return Rejection(record, OUT_OF_RANGE, STAGE_VALIDATE, _range_detail(doc), device_id)
    # float(): the schema admits JSON integers; the fold and DynamoDB conversion want one numeric type.
    channels = {"temperature": float(temperature), "humidity": float(humidity), "pressure": float(pressure)}
    extra = doc.get("extra")
    if extra:
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
    unstorable = unrepresentable_channels(channels)
    if unstorable:
        return Rejection(
            record,
            UNREPRESENTABLE_NUMBER,
            STAGE_VALIDATE,
            f"{', '.join(unstorable)}: non-zero magnitude outside [{SMALLEST_MAGNITUDE:g}, "
            f"{LARGEST_MAGNITUDE:g}] (not storable in DynamoDB with its sum of squares)",
            device_id,
        )

    # Lateness and skew are judged against the record's arrival in Kinesis, not against when this
    # function happens to run: a processor that fell behind (throttling, a blocked shard) must not turn
    # its own backlog into "late" data. Records without an arrival time fall back to processing time.
    ref_ms = record.approximate_arrival_ms or now_ms
    if epoch_ms > ref_ms + rules.max_future_skew_ms:
        return Rejection(
            record,
            FUTURE_TIMESTAMP,
            STAGE_VALIDATE,
            f"event time {(epoch_ms - ref_ms) // 1000}s ahead",
            device_id,
        )
    if epoch_ms < ref_ms - rules.allowed_lateness_ms:
        return Rejection(
            record, LATE, STAGE_VALIDATE, f"event time {(ref_ms - epoch_ms) // 1000}s old", device_id
        )

    # Positional arguments: measurably cheaper than keywords on this per-record path.
    return Reading(
        device_id, epoch_ms, channels, record.shard_id, record.sequence_number, None, doc.get("ground_truth")
    )


# For _common_reading, the fast path of decode_batch.
# "000".."999" -> int: one dict lookup replaces isdigit() + isascii() + int() for the milliseconds.
_FRAC_MS: dict[str, int] = {f"{i:03d}": i for i in range(1000)}
# Device ids that already passed _DEVICE_ID_OK: a fleet is a few thousand ids, a set hit beats the regex.
_GOOD_DEVICE_IDS: set[str] = set()
_GOOD_DEVICE_IDS_MAX = 100_000


def decode_batch(
    records: Iterable[KinesisRecord], rules: DecodeRules, now_ms: int
) -> tuple[list[Reading], list[Rejection]]:
    """``decode_items`` over many records: (readings, rejections), each in input order, the elements of
    a packed record in array order (so readings are in (sequence number, index) order).

    Same results as ``decode_items`` per record, with one Python call per well-formed reading instead
    of four: decode inline, try ``_common_reading``, and only if that declines run ``check_document``
    (or ``decode_items`` when base64 or JSON failed or the record is large, to produce the rejection).
    """
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    add_reading = readings.append
    loads = orjson.loads
    b64decode = _b64decode
    # base64 of at most this many characters decodes to at most max_record_bytes (<= max_packed_bytes
    # too), so every size check of decode_items passes. Larger records go through decode_items.
    max_b64 = min(rules.max_record_bytes, rules.max_packed_bytes) * 4 // 3
    for record in records:
        data_b64 = record.data_b64
        out: Reading | Rejection | None = None
        if len(data_b64) <= max_b64:
            try:
                doc = loads(b64decode(data_b64, strict_mode=True))
            except ValueError:  # binascii.Error, orjson.JSONDecodeError: decode_items says which
                items = decode_items(record, rules, now_ms)
            else:
                if type(doc) is not list:
                    out = _common_reading(doc, record, rules, now_ms) or check_document(
                        doc, record, rules, now_ms
                    )
                    if type(out) is Reading:
                        add_reading(out)
                    else:
                        rejections.append(out)  # type: ignore[arg-type]
                    continue
                if 0 < len(doc) <= rules.max_packed_readings:
                    # A packed record: the same per-element checks as check_packed, inline.
                    for i, element in enumerate(doc):
                        out = _common_reading(element, record, rules, now_ms, i)
                        if out is not None:
                            add_reading(out)
                            continue
                        out = check_document(element, record, rules, now_ms)
                        if type(out) is Reading:
                            out.index = i
                            add_reading(out)
                        else:
                            rejections.append(_element_rejection(out, element, i))  # type: ignore[arg-type]
                    continue
                items = check_packed(doc, record, rules, now_ms)
        else:
            items = decode_items(record, rules, now_ms)
        for item in items:
            if type(item) is Reading:
                add_reading(item)
            else:
                rejections.append(item)  # type: ignore[arg-type]
    return readings, rejections


def _common_reading(
    doc: Any, record: KinesisRecord, rules: DecodeRules, now_ms: int, index: int | None = None
) -> Reading | None:
    """The Reading for a document in the shape producers send, or None (then ``check_document`` decides).

    Accepts only what ``check_document`` would turn into a Reading, with the same values: exactly the
    five required keys (plus ``ground_truth``), float channels within bounds, a device id matching the
    schema, a 'YYYY-MM-DDTHH:MM:SS.mmmZ' timestamp within lateness and skew. Every condition is
    narrower than ``certainly_valid_shape``'s, and the compiled schema stays the authority for the rest.
    """
    if type(doc) is not dict:
        return None
    # With len(doc) equal to the number of keys read below and every value of the right type (a
    # missing key reads as None), the key set is exact without comparing sets.
    n = len(doc)
    if n == 6:
        ground_truth = doc.get("ground_truth")
        if type(ground_truth) is not str or len(ground_truth) > 32:
            return None
    elif n == 5:
        ground_truth = None
    else:
        return None
    device_id = doc.get("device_id")
    if type(device_id) is not str:
        return None
    if device_id not in _GOOD_DEVICE_IDS:
        if _DEVICE_ID_OK(device_id) is None:
            return None
        if len(_GOOD_DEVICE_IDS) >= _GOOD_DEVICE_IDS_MAX:
            _GOOD_DEVICE_IDS.clear()
        _GOOD_DEVICE_IDS.add(device_id)
    # parse_timestamp_ms's first fast path, with the millisecond digits looked up instead of checked.
    ts = doc.get("timestamp")
    if type(ts) is not str or len(ts) != 24 or ts[23] != "Z" or ts[19] != ".":
        return None
    frac = _FRAC_MS.get(ts[20:23])
    if frac is None:
        return None
    prefix = ts[:19]
    second = cached_second_ms(prefix)
    if second is None:
        try:
            second = second_ms(prefix)  # validates and caches a second not seen yet
        except TimestampError:
            return None
    epoch_ms = second + frac
    temperature = doc.get("temperature")
    humidity = doc.get("humidity")
    pressure = doc.get("pressure")
    if not (
        type(temperature) is float
        and type(humidity) is float
        and type(pressure) is float
        and _TEMP_LO <= temperature <= _TEMP_HI
        and _HUM_LO <= humidity <= _HUM_HI
        and _PRES_LO <= pressure <= _PRES_HI
    ):
        return None
    # Tiny magnitudes (representable.py): only temperature and humidity can be near 0 within their
    # bounds (pressure >= 300); anything in doubt goes to check_document, which quarantines it.
    if (-_TINY < temperature < _TINY and temperature != 0.0) or (humidity < _TINY and humidity != 0.0):
        return None
    ref_ms = record.approximate_arrival_ms or now_ms
    if not ref_ms - rules.allowed_lateness_ms <= epoch_ms <= ref_ms + rules.max_future_skew_ms:
        return None
    return Reading(
        device_id,
        epoch_ms,
        {"temperature": temperature, "humidity": humidity, "pressure": pressure},
        record.shard_id,
        record.sequence_number,
        None,
        ground_truth,
        index,
    )


def _range_detail(doc: dict[str, Any]) -> str:
    bad = [
        f"{name}={doc[name]!r} not in [{lo:g}, {hi:g}]"
        for name, (lo, hi) in PHYSICAL_BOUNDS.items()
        if not lo <= doc[name] <= hi
    ]
    return "; ".join(bad)[:200]
