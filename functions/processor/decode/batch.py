"""Many Kinesis records decoded at once: the per-record checks with one Python call per common reading."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson

from functions.core.readings import Reading
from functions.processor.decode.common import common_reading
from functions.processor.decode.packed import check_packed, decode_base64, element_rejection, parse_record
from functions.processor.decode.rules import DecodeRules
from functions.processor.decode.single import check_document
from functions.processor.records import KinesisRecord, Rejection


def decode_batch(
    records: Iterable[KinesisRecord], rules: DecodeRules, now_ms: int
) -> tuple[list[Reading], list[Rejection]]:
    """``decode_items`` over many records: (readings, rejections), each in input order, the elements of
    a packed record in array order (so readings are in (sequence number, index) order).

    Same results as ``decode_items`` per record, with one Python call per well-formed reading instead
    of four: decode inline, try ``common_reading``, and only if that declines run ``check_document``
    (``parse_record`` parses a record when base64 or JSON failed, to produce the rejection, when the
    record is large, or when it is compressed, to inflate it).
    """
    readings: list[Reading] = []
    rejections: list[Rejection] = []
    add_reading = readings.append
    loads = orjson.loads
    b64decode = decode_base64
    # base64 of at most this many characters decodes to at most max_record_bytes (<= max_packed_bytes
    # too), so every size check of parse_record passes. Larger records go through parse_record.
    max_b64 = min(rules.max_record_bytes, rules.max_packed_bytes) * 4 // 3
    for record in records:
        data_b64 = record.data_b64
        doc: Any
        if len(data_b64) <= max_b64:
            try:
                doc = loads(b64decode(data_b64, strict_mode=True))
            except ValueError:
                # binascii.Error or orjson.JSONDecodeError: parse_record says which. A compressed record
                # lands here too (orjson refuses the gzip magic at its first byte) and parse_record
                # inflates it, so uncompressed records pay nothing for compression's existence.
                doc = parse_record(record, rules)
        else:
            doc = parse_record(record, rules)
        if type(doc) is list:
            if 0 < len(doc) <= rules.max_packed_readings:
                _decode_packed(doc, record, rules, now_ms, readings, rejections)
            else:
                _sort_items(check_packed(doc, record, rules, now_ms), readings, rejections)
        elif type(doc) is Rejection:
            rejections.append(doc)
        else:
            out = common_reading(doc, record, rules, now_ms) or check_document(doc, record, rules, now_ms)
            if type(out) is Reading:
                add_reading(out)
            else:
                rejections.append(out)  # type: ignore[arg-type]
    return readings, rejections


def _decode_packed(
    doc: list[Any],
    record: KinesisRecord,
    rules: DecodeRules,
    now_ms: int,
    readings: list[Reading],
    rejections: list[Rejection],
) -> None:
    """The elements of a packed record (a JSON array within size), appended in array order: the same
    per-element checks as ``check_packed``, inline. One call per record, not per reading."""
    add_reading = readings.append
    for i, element in enumerate(doc):
        out = common_reading(element, record, rules, now_ms, i)
        if out is not None:
            add_reading(out)
            continue
        checked = check_document(element, record, rules, now_ms)
        if type(checked) is Reading:
            checked.index = i
            add_reading(checked)
        else:
            rejections.append(element_rejection(checked, element, i))  # type: ignore[arg-type]


def _sort_items(
    items: list[Reading | Rejection], readings: list[Reading], rejections: list[Rejection]
) -> None:
    """``decode_items``' or ``check_packed``'s results appended to readings or rejections, in order."""
    for item in items:
        if type(item) is Reading:
            readings.append(item)
        else:
            rejections.append(item)  # type: ignore[arg-type]
