"""Which channel values the pipeline can store and aggregate: DynamoDB's number range, decided up front.

A DynamoDB number keeps 38 significant digits and a magnitude of 1e-130 .. 9.99...e125 (or exactly 0).
Every accepted value ``x`` ends up stored as itself (anomaly ``values``, window ``min``/``max``) and inside
window statistics: ``sum`` (n·x at most), ``sumsq`` (n·x² at most), ``mean`` and ``std``. So a value is
accepted only if ``x == 0`` or ``SMALLEST_MAGNITUDE <= |x| <= LARGEST_MAGNITUDE``:

- ``x²`` >= 1e-120, ten orders of magnitude above DynamoDB's 1e-130, so a sum of squares of accepted
  values never underflows (the squares are positive: no cancellation);
- a non-zero ``sum`` of accepted values is at least one unit in the last place of the smallest of them
  (~1e-76), and ``mean``, ``std`` (at least sqrt of a few ulps of x², ~1e-68) stay far above 1e-130;
- ``n·x²`` <= 60,000 · 1e120 = 6e124 for a full 1-minute window at one reading per millisecond (the
  most a window can hold: readings are deduplicated by event time in ms), below 9.99e125;
- ``repr(float)`` has at most 17 significant digits, within DynamoDB's 38.

The physical bounds in ``decode`` (|core| <= 1100, |extra| <= 1e9) already keep the upper side far away;
the lower side is what bites: ``1e-200`` is a "plausible" temperature by range, and ``1e-100`` in an extra
channel squares to 1e-200. Such values are quarantined (``unrepresentable_number``), not flushed to 0:
no sensor resolves anything near 1e-60 of its unit, so such a value is a producer bug or an attack, and
quarantine keeps the raw bytes for inspection, where flushing would silently store a number the device
never sent (and make the archive disagree with the aggregates). Zero itself is exact and accepted.

The same holds for a literal below the smallest float (about 4.9e-324): ``1e-400`` or ``0.000…01`` with
400 zeros. The JSON parser rounds it to 0.0, so the decoded value alone cannot tell it from a real zero;
``underflowed_channels`` reads the record's own text again (only for a reading that has a zero channel,
and only when its text holds a negative exponent or a long run of zeros) and names the channels whose
literal is not zero. Such a reading is quarantined ``unrepresentable_number`` like ``1e-200``.
"""

from __future__ import annotations

import binascii
import json
import math
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from functions.processor.gzipped import inflate, is_gzip

# DynamoDB's number type (developer guide, "Data types").
DYNAMODB_MIN_MAGNITUDE = 1e-130
DYNAMODB_MAX_MAGNITUDE = 9.9999999999999999999999999999999999999e125
DYNAMODB_DIGITS = 38

SMALLEST_MAGNITUDE = 1e-60
LARGEST_MAGNITUDE = 1e60
_INFLATE_CAP = 1_048_576  # MAX_PACKED_BYTES's upper bound (functions/settings.py)


def is_representable(value: float) -> bool:
    """True if ``value`` (a finite float or int) is 0 or within the accepted magnitudes."""
    if value == 0:
        return True
    magnitude = abs(value)
    return SMALLEST_MAGNITUDE <= magnitude <= LARGEST_MAGNITUDE and math.isfinite(magnitude)


def unrepresentable_channels(channels: dict[str, float]) -> list[str]:
    """Names of the channels whose values the pipeline could not store or aggregate (usually none)."""
    return [name for name, value in channels.items() if not is_representable(value)]


class _Underflow(float):
    """0.0 parsed from a literal that is not zero (marks it in the re-parsed document)."""


def _exact_float(text: str) -> float:
    value = float(text)
    if value == 0.0 and Decimal(text) != 0:
        return _Underflow(0.0)
    return value


_LONG_ZEROS = b"0" * 300  # a literal without exponent needs ~323 zeros after the point to underflow


def underflowed_channels(data_b64: str, doc: Mapping[str, Any]) -> list[str]:
    """Channels of the decoded reading ``doc`` whose JSON literal is a non-zero number the parser
    flushed to 0.0, found by reading the record's text (``data_b64``) again (usually none).

    For a packed record the element is the one with ``doc``'s device id and timestamp.
    """
    try:
        raw = binascii.a2b_base64(data_b64)
        if is_gzip(raw):
            # A decoded document came from this data, so it inflates within the decoder's largest cap.
            raw = inflate(raw, _INFLATE_CAP)
    except (binascii.Error, ValueError):  # GzipRefused is a ValueError
        return []
    if b"e-" not in raw and b"E-" not in raw and _LONG_ZEROS not in raw:
        return []
    try:
        parsed = json.loads(raw, parse_float=_exact_float)
    except ValueError:
        return []
    elements = parsed if isinstance(parsed, list) else [parsed]
    names: list[str] = []
    for element in elements:
        if not isinstance(element, dict):
            continue
        if element.get("device_id") != doc.get("device_id") or element.get("timestamp") != doc.get(
            "timestamp"
        ):
            continue
        extra = element.get("extra")
        values = {**(extra if isinstance(extra, dict) else {}), **element}
        names.extend(n for n, v in values.items() if isinstance(v, _Underflow) and n not in names)
    return sorted(names)
