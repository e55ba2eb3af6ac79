"""Stage 1: decode (base64 + JSON), size check, schema validation, physical ranges, timestamp sanity.

Pure functions: a ``KinesisRecord`` in, ``Reading``s (not yet enriched) and ``Rejection``s out. Nothing
here raises for bad data: every way a record can be wrong maps to a reason code.

A record's data is either one reading (a JSON object) or a *packed record*: a JSON array of readings
(at most ``max_packed_bytes`` and ``max_packed_readings``, docs/data-model.md). The record is parsed once;
each element of a packed record is then validated on its own and becomes a Reading or a Rejection with
its ``index``. A record that cannot be parsed (or is too large, or an empty array) is one Rejection.
Either form may arrive gzip-compressed (data starting 1f 8b): it is inflated, under a hard cap, by
``functions.processor.gzipped`` and then decoded the same way.

Modules: ``rules`` (bounds and limits), ``shape`` (the schema fast path), ``single`` (one reading
document), ``packed`` (one record: an object or a packed array), ``common`` (the producers' shape in one
call), ``batch`` (many records). The stage's public names are importable from this package.

Speed matters (>= 100k records/s on one core for the whole core): base64 and JSON are C (binascii,
orjson), the schema check is a fastjsonschema-compiled function, timestamps in the common
``YYYY-MM-DDTHH:MM:SS.mmmZ`` shape take a regex fast path with a per-day cache, and a record allocates
only its Reading and its channel dict.
"""

from __future__ import annotations

from functions.core.timestamps import TimestampError, format_ms, format_s
from functions.core.timestamps import parse_ms as parse_timestamp_ms
from functions.processor.decode.batch import decode_batch
from functions.processor.decode.packed import check_packed, decode_items, decode_record
from functions.processor.decode.rules import EXTRA_ABS_MAX, PHYSICAL_BOUNDS, DecodeRules
from functions.processor.decode.shape import certainly_valid_shape
from functions.processor.decode.single import check_document

# format_ms, format_s, TimestampError, parse_timestamp_ms: the time module's, importable from here as before.
__all__ = [
    "EXTRA_ABS_MAX",
    "PHYSICAL_BOUNDS",
    "DecodeRules",
    "TimestampError",
    "certainly_valid_shape",
    "check_document",
    "check_packed",
    "decode_batch",
    "decode_items",
    "decode_record",
    "format_ms",
    "format_s",
    "parse_timestamp_ms",
]
