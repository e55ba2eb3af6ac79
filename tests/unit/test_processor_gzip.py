"""Compressed records (the gzip of a reading or of a packed record): decoded like their JSON, and hostile
gzip (corrupt, truncated, trailing bytes, a bomb) quarantined whole with a reason, never inflated past
the cap (docs/data-model.md#compressed-records)."""

from __future__ import annotations

import base64
import gzip
import random
import tracemalloc
import zlib
from collections.abc import Callable
from typing import Any

import orjson
import pytest

from functions.core.readings import Reading
from functions.processor.decode import DecodeRules, decode_batch, decode_items
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.processor.records import KinesisRecord, Rejection
from testkit.events import packed, reading_doc
from testkit.processor import fake_ports

NOW_S = 1_795_000_300.0
NOW_MS = int(NOW_S * 1000)
WINDOW = (NOW_MS // 60_000) * 60
RULES = DecodeRules()
SHARD = "shardId-000000000000"

Decode = Callable[[KinesisRecord, DecodeRules], list[Reading | Rejection]]


def one(data: bytes, seq: int = 500) -> KinesisRecord:
    return KinesisRecord(SHARD, str(seq), base64.b64encode(data).decode(), NOW_MS, "pk")


def gz(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


def by_items(record: KinesisRecord, rules: DecodeRules) -> list[Reading | Rejection]:
    return decode_items(record, rules, NOW_MS)


def by_batch(record: KinesisRecord, rules: DecodeRules) -> list[Reading | Rejection]:
    readings, rejections = decode_batch([record], rules, NOW_MS)
    return [*readings, *rejections]


# Both decoders: decode_batch (the processor's) has its own inline path and must agree with decode_items.
DECODERS = pytest.mark.parametrize("decode", [by_items, by_batch], ids=["decode_items", "decode_batch"])


def elements() -> list[Any]:
    t = WINDOW * 1000
    return [
        reading_doc("dev-1", t + 1000, temperature=20.0),  # 0 good
        reading_doc("dev-2", t + 2000, temperature=22.0),  # 1 good
        reading_doc("dev-1", t + 3000, humidity=150.0),  # 2 out_of_range
        reading_doc("dev-3", t + 4000, temperature=24.0),  # 3 good
    ]


@DECODERS
def test_gzip_packed_record_decodes_like_its_json(decode: Decode) -> None:
    # GIVEN a packed record with one bad element, plain and gzip-compressed
    docs = elements()
    plain = decode(one(packed(docs)), RULES)
    # WHEN the compressed one is decoded
    items = decode(one(gz(packed(docs))), RULES)
    # THEN it gives the plain record's items: indexes in the inflated array, only element 2 quarantined
    def view(i: Reading | Rejection) -> Any:  # a rejection's record differs: its data is compressed
        return i if isinstance(i, Reading) else (i.reason, i.stage, i.detail, i.device_id, i.raw, i.index)

    assert [view(i) for i in items] == [view(i) for i in plain]
    readings = [i for i in items if isinstance(i, Reading)]
    assert [(r.device_id, r.index, r.channels["temperature"]) for r in readings] == [
        ("dev-1", 0, 20.0), ("dev-2", 1, 22.0), ("dev-3", 3, 24.0)]
    (rejection,) = [i for i in items if isinstance(i, Rejection)]
    assert (rejection.reason, rejection.index, rejection.device_id) == ("out_of_range", 2, "dev-1")
    # AND the quarantined element keeps its own bytes (re-serialised, as for a plain packed record)
    assert base64.b64decode(rejection.raw_b64) == orjson.dumps(docs[2])


@DECODERS
def test_gzip_single_object_is_one_reading(decode: Decode) -> None:
    doc = reading_doc("dev-1", WINDOW * 1000 + 1000, temperature=19.5)
    (item,) = decode(one(gz(orjson.dumps(doc))), RULES)
    assert isinstance(item, Reading)
    assert (item.device_id, item.index, item.channels["temperature"]) == ("dev-1", None, 19.5)


def _corrupt() -> bytes:
    data = bytearray(gz(packed(elements())))
    data[len(data) // 2] ^= 0xFF  # a deflate body byte: bad data or a CRC mismatch
    return bytes(data)


@DECODERS
@pytest.mark.parametrize(
    ("data", "detail"),
    [
        (_corrupt(), "gzip data does not decompress: "),
        (gz(packed(elements()))[:-9], "gzip data does not decompress: truncated"),
        (gz(packed(elements())) + b"junk", "gzip data does not decompress: 4 bytes after the end"),
        (b"\x1f\x8b\x08\x00garbage", "gzip data does not decompress: "),
        (gz(b"not json at all"), "invalid literal"),
        (gz(gz(packed(elements()))), "line 1 column 1"),  # compressed twice: never inflated twice
        (gz(b""), "empty document"),
    ],
    ids=["corrupt", "truncated", "trailing", "bad-header", "not-json", "gzip-of-gzip", "empty"],
)
def test_unreadable_gzip_is_malformed_json_with_its_raw_bytes(
    decode: Decode, data: bytes, detail: str
) -> None:
    (item,) = decode(one(data), RULES)
    assert isinstance(item, Rejection)
    assert (item.reason, item.stage, item.index) == ("malformed_json", "decode", None)
    assert detail in item.detail
    assert base64.b64decode(item.raw_b64) == data  # the record as received, compressed


def _bomb(size: int) -> bytes:
    """The gzip of ``size`` bytes of spaces inside a JSON array, built without holding them in memory."""
    deflater = zlib.compressobj(9, zlib.DEFLATED, 31)
    chunk = b" " * (1 << 20)
    parts = [deflater.compress(b"[")]
    parts += [deflater.compress(chunk) for _ in range(size >> 20)]
    parts.append(deflater.compress(b"]") + deflater.flush())
    return b"".join(parts)


@DECODERS
def test_gzip_bomb_is_oversized_and_never_inflated_past_the_cap(decode: Decode) -> None:
    # GIVEN 64 KB of gzip that inflates to 64 MiB
    bomb = _bomb(64 << 20)
    assert len(bomb) < 100_000
    # WHEN decoded with the default 1 MiB cap
    tracemalloc.start()
    try:
        (item,) = decode(one(bomb), RULES)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    # THEN it is oversized, quarantined whole with its compressed bytes
    assert isinstance(item, Rejection)
    assert (item.reason, item.stage, item.index) == ("oversized", "decode", None)
    assert item.detail == f"gzip record inflates past {RULES.max_packed_bytes} bytes"
    assert base64.b64decode(item.raw_b64) == bomb
    # AND decompression stopped at the cap: a few MiB at most were ever allocated, not 64
    assert peak < 4 * RULES.max_packed_bytes


@DECODERS
def test_size_limits_apply_to_the_compressed_and_the_inflated_record(decode: Decode) -> None:
    doc = reading_doc("dev-1", WINDOW * 1000 + 1000)
    # An object inflating past max_record_bytes (8 KiB) is oversized like its plain JSON
    padded = orjson.dumps(doc)[:-1] + b" " * 9000 + b"}"
    (item,) = decode(one(gz(padded)), RULES)
    assert isinstance(item, Rejection)
    assert (item.reason, item.detail) == ("oversized", "record larger than 8192 bytes")
    # An array inflating past max_packed_bytes too (it inflates within the record cap, then is checked)
    rules = DecodeRules(max_packed_bytes=10_000)
    big = packed([doc] * 100)
    assert len(big) > 10_000 > len(gz(big))
    (item,) = decode(one(gz(big)), rules)
    assert isinstance(item, Rejection)
    assert item.reason == "oversized"
    assert item.detail == "gzip record inflates past 10000 bytes"
    # And the compressed size itself is checked first, before any decoding
    noise = gz(random.Random(1).randbytes(12_000))  # incompressible: > 10,000 bytes compressed
    assert len(noise) > 10_000
    (item,) = decode(one(noise), DecodeRules(max_record_bytes=8192, max_packed_bytes=8192))
    assert isinstance(item, Rejection)
    assert (item.reason, item.detail) == ("oversized", "record larger than 8192 bytes")


@DECODERS
def test_underflowed_literal_inside_gzip_is_still_found(decode: Decode) -> None:
    # 1e-400 parses to 0.0: the decoder reads the record's text again to tell it from a real zero,
    # which for a compressed record means inflating it again
    t = WINDOW * 1000
    tiny = orjson.dumps(reading_doc("dev-1", t + 1000)).replace(b":21.5", b":1e-400")
    assert b'"temperature":1e-400' in tiny
    items = decode(one(gz(packed([tiny, reading_doc("dev-2", t + 2000)]))), RULES)
    assert sorted((type(i).__name__, i.index) for i in items) == [("Reading", 1), ("Rejection", 0)]
    (rejection,) = [i for i in items if isinstance(i, Rejection)]
    assert rejection.reason == "unrepresentable_number"


def test_compressed_packed_batch_aggregates_like_the_plain_one() -> None:
    # GIVEN the same readings as plain packed records and as compressed ones
    t = WINDOW * 1000
    docs = [reading_doc(f"dev-{i % 3 + 1}", t + 1000 * i, temperature=20.0 + i) for i in range(30)]
    plain = [one(packed(docs[i : i + 10]), 700 + i) for i in range(0, 30, 10)]
    compressed = [one(gz(packed(docs[i : i + 10])), 700 + i) for i in range(0, 30, 10)]
    outs = []
    for records in (plain, compressed):
        ports = fake_ports(("dev-1", "dev-2", "dev-3"))
        out = process_batch(records, ports, ProcessorConfig(sleep=lambda _: None), now_s=NOW_S)
        outs.append((out, ports))
    (p_out, p_ports), (c_out, c_ports) = outs
    # THEN the same readings are aggregated, under the same exactly-once keys (shard, sequence, index)
    assert c_out.aggregated == p_out.aggregated == 30
    assert c_out.records_in == 30
    assert c_out.kinesis_records_in == 3
    assert c_out.dispositions == p_out.dispositions
    assert (SHARD, "710", 9) in c_out.dispositions
    assert c_ports.aggregates.items == p_ports.aggregates.items
