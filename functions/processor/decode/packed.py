"""One Kinesis record decoded: base64, size, gzip, JSON; a packed record (JSON array) judged element by
element."""

from __future__ import annotations

import binascii
from typing import Any

import orjson

from functions.core.readings import Reading
from functions.processor.decode.common import common_reading
from functions.processor.decode.rules import DecodeRules
from functions.processor.decode.single import check_document
from functions.processor.gzipped import GzipRefused, inflate, is_gzip
from functions.processor.records import (
    MALFORMED_JSON,
    OVERSIZED,
    SCHEMA_INVALID,
    STAGE_DECODE,
    STAGE_VALIDATE,
    KinesisRecord,
    Rejection,
)

decode_base64 = binascii.a2b_base64


def decode_items(record: KinesisRecord, rules: DecodeRules, now_ms: int) -> list[Reading | Rejection]:
    """Decode and check one record: one item for a single reading, one per element for a packed record.

    Data starting with the gzip magic (1f 8b) is inflated first (``gzipped.inflate``), then decoded the
    same way. Whole-record rejections (one item, ``index`` None): ``oversized`` (over ``max_record_bytes``
    for an object, over ``max_packed_bytes`` or ``max_packed_readings`` for an array, compressed or
    inflated), ``malformed_json`` (not base64, gzip that does not decompress, not JSON), ``schema_invalid``
    for an empty array. Otherwise each element is checked like a single reading, with its own reason.
    """
    doc = parse_record(record, rules)
    if type(doc) is Rejection:
        return [doc]
    if type(doc) is list:
        return check_packed(doc, record, rules, now_ms)
    return [check_document(doc, record, rules, now_ms)]


def parse_record(record: KinesisRecord, rules: DecodeRules) -> Any:
    """A record's JSON document (base64, then gzip if compressed, then the size cap of an object or an
    array, then JSON), or the ``Rejection`` of the whole record. A JSON document is never a Rejection."""
    # Size first, on the base64 length (4 chars per 3 bytes), before spending time decoding. For a
    # compressed record this is its compressed size; its inflated size is capped by inflate().
    data_b64 = record.data_b64
    limit = max(rules.max_record_bytes, rules.max_packed_bytes)
    if len(data_b64) * 3 // 4 > limit + 2:
        return Rejection(record, OVERSIZED, STAGE_DECODE, f"record larger than {limit} bytes")
    try:
        raw = decode_base64(data_b64, strict_mode=True)
    except (binascii.Error, ValueError):
        return Rejection(record, MALFORMED_JSON, STAGE_DECODE, "data is not valid base64")
    if is_gzip(raw):
        # Then decoded exactly like uncompressed data: element indexes are positions in the inflated array.
        try:
            raw = inflate(raw, limit)
        except GzipRefused as exc:
            return Rejection(record, exc.reason, STAGE_DECODE, exc.detail)
    # JSON may start with whitespace; only an array can be a packed record, and only it gets the larger cap.
    packed = raw[:1] == b"[" or raw.lstrip()[:1] == b"["
    cap = rules.max_packed_bytes if packed else rules.max_record_bytes
    if len(raw) > cap:
        what = "packed record" if packed else "record"
        return Rejection(record, OVERSIZED, STAGE_DECODE, f"{what} larger than {cap} bytes")
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        return Rejection(record, MALFORMED_JSON, STAGE_DECODE, str(exc)[:200])


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
        item = common_reading(doc, record, rules, now_ms, i) or check_document(doc, record, rules, now_ms)
        if type(item) is Reading:
            item.index = i
            out.append(item)
        else:
            out.append(element_rejection(item, doc, i))  # type: ignore[arg-type]
    return out


def element_rejection(rej: Rejection, doc: Any, index: int) -> Rejection:
    return Rejection(
        rej.record, rej.reason, rej.stage, rej.detail, rej.device_id, _element_bytes(doc), index
    )
