"""The fast path for the shape producers send: a Reading in one call, or None (the full checks decide)."""

from __future__ import annotations

from typing import Any

from functions.core.readings import Reading
from functions.core.timestamps import TimestampError, cached_second_ms, second_ms
from functions.processor.decode.rules import (
    HUM_HI,
    HUM_LO,
    PRES_HI,
    PRES_LO,
    TEMP_HI,
    TEMP_LO,
    TINY,
    DecodeRules,
)
from functions.processor.decode.shape import DEVICE_ID_OK
from functions.processor.records import KinesisRecord

# For common_reading, the fast path of decode_batch.
# "000".."999" -> int: one dict lookup replaces isdigit() + isascii() + int() for the milliseconds.
_FRAC_MS: dict[str, int] = {f"{i:03d}": i for i in range(1000)}
# Device ids that already passed DEVICE_ID_OK: a fleet is a few thousand ids, a set hit beats the regex.
_GOOD_DEVICE_IDS: set[str] = set()
_GOOD_DEVICE_IDS_MAX = 100_000


def common_reading(
    doc: Any, record: KinesisRecord, rules: DecodeRules, now_ms: int, index: int | None = None
) -> Reading | None:
    """The Reading for a document in the shape producers send, or None (then ``check_document`` decides).

    Accepts only what ``check_document`` would turn into a Reading, with the same values: exactly the
    five required keys (plus ``ground_truth``), float channels within bounds, a device id matching the
    schema, a 'YYYY-MM-DDTHH:MM:SS.mmmZ' timestamp within lateness and skew. Every condition is
    narrower than ``certainly_valid_shape``'s, and the compiled schema stays the authority for the rest.

    One call per reading: each check is inline (a helper runs only on a cache miss), so a declined
    document costs no more than the conditions it failed.
    """
    if type(doc) is not dict:
        return None
    # With len(doc) equal to the number of keys read below and every value of the right type (a
    # missing key reads as None), the key set is exact without comparing sets.
    # ground_truth reads as None when absent (n == 5); present with n == 5, a required key is missing,
    # which the type checks below decline.
    n = len(doc)
    ground_truth = doc.get("ground_truth")
    if n != 5 and (n != 6 or type(ground_truth) is not str or len(ground_truth) > 32):
        return None
    device_id = doc.get("device_id")
    if type(device_id) is not str or (device_id not in _GOOD_DEVICE_IDS and not _admit_device_id(device_id)):
        return None
    # parse_timestamp_ms's first fast path, with the millisecond digits looked up instead of checked.
    ts = doc.get("timestamp")
    if (
        type(ts) is not str
        or len(ts) != 24
        or ts[23] != "Z"
        or ts[19] != "."
        or (frac := _FRAC_MS.get(ts[20:23])) is None
    ):
        return None
    prefix = ts[:19]
    second = cached_second_ms(prefix)
    if second is None and (second := _new_second_ms(prefix)) is None:
        return None
    epoch_ms = second + frac
    temperature = doc.get("temperature")
    humidity = doc.get("humidity")
    pressure = doc.get("pressure")
    # Tiny magnitudes (representable.py): only temperature and humidity can be near 0 within their
    # bounds (pressure >= 300); anything in doubt goes to check_document, which quarantines it. Exact
    # zeros too: a literal like 1e-400 parses to 0.0, and check_document tells it from a real zero.
    if not (
        type(temperature) is float
        and type(humidity) is float
        and type(pressure) is float
        and TEMP_LO <= temperature <= TEMP_HI
        and HUM_LO <= humidity <= HUM_HI
        and PRES_LO <= pressure <= PRES_HI
        and not -TINY < temperature < TINY
        and humidity >= TINY
    ):
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


def _admit_device_id(device_id: str) -> bool:
    """True if ``device_id`` matches the schema; remembers it (a cache miss of ``common_reading``)."""
    if DEVICE_ID_OK(device_id) is None:
        return False
    if len(_GOOD_DEVICE_IDS) >= _GOOD_DEVICE_IDS_MAX:
        _GOOD_DEVICE_IDS.clear()
    _GOOD_DEVICE_IDS.add(device_id)
    return True


def _new_second_ms(prefix: str) -> int | None:
    """Epoch ms of a 'YYYY-MM-DDTHH:MM:SS' second not cached yet (validated, then cached), or None."""
    try:
        return second_ms(prefix)
    except TimestampError:
        return None
