"""Packed Kinesis records (a JSON array of readings): decode, accounting, archive, exactly-once.

A packed record is parsed once; each element is validated, enriched, windowed and archived on its own,
with its own disposition. Watermarks stay per Kinesis record: redelivery scenarios with packed records
give the same aggregates as a single pass, and the same statistics as the unpacked readings.
"""

from __future__ import annotations

import base64
import gzip
from typing import Any

import orjson
import pytest

from functions.core.readings import Reading
from functions.processor.decode import DecodeRules, decode_batch, decode_items
from functions.processor.ingestion_processor import ProcessorConfig, process_batch
from functions.processor.records import KinesisRecord, Rejection
from functions.schemas import is_valid
from testkit.events import make_records, pack_payloads, packed, reading_doc
from testkit.fakes import CrashAfterWrites
from testkit.processor import fake_ports

NOW_S = 1_795_000_300.0
NOW_MS = int(NOW_S * 1000)
WINDOW = (NOW_MS // 60_000) * 60
CONFIG = ProcessorConfig(sleep=lambda _: None)
DEVICES = ("dev-1", "dev-2", "dev-3")
RULES = DecodeRules()
SHARD = "shardId-000000000000"


def one(data: bytes, seq: int = 500) -> KinesisRecord:
    return KinesisRecord(SHARD, str(seq), base64.b64encode(data).decode(), NOW_MS, "pk")


def mixed_pack() -> tuple[bytes, list[Any]]:
    t = WINDOW * 1000
    elements: list[Any] = [
        reading_doc("dev-1", t + 1000, temperature=20.0),  # 0 good
        reading_doc("dev-1", t + 2000, temperature=22.0, humidity=150.0),  # 1 out_of_range
        {"device_id": "dev-1", "timestamp": "2026-01-01T00:00:00Z"},  # 2 schema_invalid
        reading_doc("ghost", t + 3000),  # 3 unknown_device
        reading_doc("dev-2", t + 4000, temperature=30.0),  # 4 good
        "not a reading",  # 5 schema_invalid
        reading_doc("dev-1", t + 1000, temperature=20.0),  # 6 duplicate of 0
        reading_doc("dev-1", NOW_MS + 3_600_000),  # 7 future_timestamp
    ]
    return packed(elements), elements


# ------------------------------------------------------------------------------------------ decode
def test_packed_record_decodes_each_element_with_its_index() -> None:
    data, elements = mixed_pack()
    items = decode_items(one(data), RULES, NOW_MS)
    assert len(items) == len(elements)
    readings = [i for i in items if isinstance(i, Reading)]
    rejections = [i for i in items if isinstance(i, Rejection)]
    assert [r.index for r in readings] == [0, 3, 4, 6]  # 3 (ghost) is rejected later, at enrichment
    assert {r.index: r.reason for r in rejections} == {
        1: "out_of_range",
        2: "schema_invalid",
        5: "schema_invalid",
        7: "future_timestamp",
    }
    for rej in rejections:
        assert rej.record.sequence_number == "500"
        assert base64.b64decode(rej.raw_b64) == orjson.dumps(elements[rej.index])  # type: ignore[index]


def test_decode_batch_fast_path_matches_decode_items() -> None:
    data, _ = mixed_pack()
    records = [one(data, 1), one(orjson.dumps(reading_doc("dev-1", NOW_MS - 5000)), 2), one(data, 3)]
    readings, rejections = decode_batch(records, RULES, NOW_MS)
    slow = [i for r in records for i in decode_items(r, RULES, NOW_MS)]
    assert readings == [i for i in slow if isinstance(i, Reading)]
    assert rejections == [i for i in slow if isinstance(i, Rejection)]
    # records in order, elements in array order: (sequence number, index)
    assert [r.sequence_number for r in readings] == ["1"] * 4 + ["2"] + ["3"] * 4
    assert [r.index for r in readings] == [0, 3, 4, 6, None, 0, 3, 4, 6]


@pytest.mark.parametrize(
    ("data", "reason", "stage"),
    [
        (b"[", "malformed_json", "decode"),
        (b"[{}, ", "malformed_json", "decode"),
        (b"[]", "schema_invalid", "validate"),
        (b"  [ ]  ", "schema_invalid", "validate"),
    ],
)
def test_whole_record_rejections_keep_the_raw_bytes(data: bytes, reason: str, stage: str) -> None:
    (item,) = decode_items(one(data), RULES, NOW_MS)
    assert isinstance(item, Rejection)
    assert (item.reason, item.stage, item.index) == (reason, stage, None)
    assert base64.b64decode(item.raw_b64) == data


def test_packed_size_and_count_limits() -> None:
    doc = reading_doc("dev-1", NOW_MS - 5000)
    # More than max_record_bytes but under max_packed_bytes: fine for an array ...
    big = packed([reading_doc("dev-1", NOW_MS - 5000 + i) for i in range(100)])
    assert 8192 < len(big) < 65_536
    items = decode_items(one(big), RULES, NOW_MS)
    assert len(items) == 100
    assert all(isinstance(i, Reading) for i in items)
    readings, rejections = decode_batch([one(big)], RULES, NOW_MS)
    assert len(readings) == 100
    assert not rejections
    # ... but an object of that size is oversized, as before
    padded = orjson.dumps(doc)[:-1] + b" " * 9000 + b"}"
    (item,) = decode_items(one(padded), RULES, NOW_MS)
    assert isinstance(item, Rejection)
    assert item.reason == "oversized"
    # Over max_packed_bytes, or over max_packed_readings: the whole record is oversized
    huge = packed([doc] * 600)
    assert len(huge) > 65_536
    (item,) = decode_items(one(huge), DecodeRules(max_packed_bytes=65_536, max_packed_readings=1000), NOW_MS)
    assert isinstance(item, Rejection)
    assert (item.reason, item.index) == ("oversized", None)
    assert "larger than 65536 bytes" in item.detail
    rules = DecodeRules(max_packed_readings=10)
    for decode in (
        lambda r: decode_items(r, rules, NOW_MS),
        lambda r: [x for part in decode_batch([r], rules, NOW_MS) for x in part],
    ):
        # parsed already, so each element is quarantined on its own: 11 readings count as 11
        items = decode(one(packed([doc] * 11)))
        assert [(i.reason, i.index) for i in items] == [("oversized", n) for n in range(11)]
        assert all(isinstance(i, Rejection) and orjson.loads(i.raw) == doc for i in items)


# ------------------------------------------------------------------------------------------ batch
def test_packed_batch_accounting_archive_and_metrics() -> None:
    data, elements = mixed_pack()
    single = orjson.dumps(reading_doc("dev-3", WINDOW * 1000 + 9000))
    records = [one(data, 700), one(single, 701), one(b"{broken", 702)]
    ports = fake_ports(DEVICES)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    # THEN conservation holds in readings: 8 elements + 1 single reading + 1 unparseable record
    assert out.records_in == 10
    assert out.kinesis_records_in == 3
    assert out.aggregated == 3  # elements 0 and 4, the single reading
    assert out.duplicates == 1  # element 6
    assert dict(out.rejected) == {
        "out_of_range": 1,
        "schema_invalid": 2,
        "unknown_device": 1,
        "future_timestamp": 1,
        "malformed_json": 1,
    }
    assert out.dispositions[(SHARD, "700", 3)] == "quarantined:unknown_device"
    assert out.dispositions[(SHARD, "701", None)] == "aggregated"
    assert out.dispositions[(SHARD, "702", None)] == "quarantined:malformed_json"
    m = ports.metrics
    assert m.total("RecordsIn") == 10
    assert m.total("KinesisRecordsIn") == 3
    # AND the aggregates hold the good readings once
    assert ports.aggregates.items[("dev-1", WINDOW)]["count"] == 1
    assert ports.aggregates.items[("dev-2", WINDOW)]["count"] == 1
    # AND the archive holds one line per reading; elements carry their index and own raw bytes
    processed = [orjson.loads(x) for x in ports.archive.lines("processed/")]
    quarantined = [orjson.loads(x) for x in ports.archive.lines("quarantine/")]
    assert len(processed) + len(quarantined) == 10
    assert sorted((p["sequence_number"], p.get("index", -1)) for p in processed) == [
        ("700", 0),
        ("700", 4),
        ("700", 6),
        ("701", -1),
    ]
    for line in quarantined:
        assert is_valid("quarantined", line), line
        if line["sequence_number"] == "700":
            raw = base64.b64decode(line["raw_b64"])
            assert raw == orjson.dumps(elements[line["index"]])
        else:
            assert "index" not in line
            assert base64.b64decode(line["raw_b64"]) == b"{broken"
    ghost = next(q for q in quarantined if q["reason"] == "unknown_device")
    assert (ghost["index"], ghost["stage"], ghost["device_id"]) == (3, "enrich", "ghost")
    # AND the archive keys are per record range, as for unpacked records
    (key,) = [k for k in ports.archive.objects if k.startswith("processed/")]
    assert key.endswith(f"{SHARD}-700-702.jsonl.gz")
    assert gzip.decompress(ports.archive.objects[key]).count(b"\n") == 4


def test_registry_outage_retries_every_reading_of_the_records() -> None:
    data, _ = mixed_pack()
    ports = fake_ports(DEVICES)
    ports.devices._registry.fail_next = 1
    out = process_batch([one(data, 700)], ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == [{"itemIdentifier": "700"}]
    assert out.retry == 8  # the whole record comes back: its rejected elements too
    assert out.records_in == 8


# ------------------------------------------------------------------------------------------ exactly once
def stream_payloads(n: int = 90) -> list[dict[str, Any]]:
    start = NOW_MS - 200_000
    return [
        reading_doc(
            DEVICES[i % 3],
            start + (i // 3) * 2000 + i % 3,
            temperature=15 + (i * 7) % 11,
            humidity=40 + i % 5,
        )
        for i in range(n)
    ]


def packed_stream(pack: int = 7, n: int = 90, first_seq: int = 1000) -> list[KinesisRecord]:
    """n readings packed ``pack`` per record (records span devices and windows), plus single readings."""
    payloads = stream_payloads(n)
    datas: list[bytes] = []
    for i, data in enumerate(pack_payloads(payloads, pack)):
        datas.append(data)
        if i % 3 == 1:  # mix in an unpacked record now and then (a different reading each time)
            datas.append(orjson.dumps(reading_doc("dev-1", NOW_MS - 250_000 + i * 7)))
    return make_records(datas, shard_id=SHARD, first_seq=first_seq, arrival_s=NOW_S)


def normalized(items: dict, watermarks: bool = True) -> dict:
    out: dict[Any, Any] = {}
    for key, item in items.items():
        item = dict(item)
        item.pop("version")
        item.pop("updated_at")
        if not watermarks:
            item.pop("watermarks")
        item["channels"] = {
            name: {k: round(v, 6) if isinstance(v, float) else v for k, v in stats.items()}
            for name, stats in item["channels"].items()
        }
        out[key] = item
    return out


def once(records: list[KinesisRecord]) -> dict:
    ports = fake_ports(DEVICES)
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    return normalized(ports.aggregates.items)


def test_packed_equals_unpacked_statistics() -> None:
    payloads = stream_payloads()
    unpacked = make_records(payloads, first_seq=1000, arrival_s=NOW_S)
    packed_records = make_records(pack_payloads(payloads, 25), first_seq=1000, arrival_s=NOW_S)
    a, b = fake_ports(DEVICES), fake_ports(DEVICES)
    out_a = process_batch(unpacked, a, CONFIG, now_s=NOW_S)
    out_b = process_batch(packed_records, b, CONFIG, now_s=NOW_S)
    assert (out_b.records_in, out_b.kinesis_records_in, out_b.aggregated) == (90, 4, 90)
    assert out_a.aggregated == out_b.aggregated
    unpacked_items = normalized(a.aggregates.items, watermarks=False)
    assert unpacked_items == normalized(b.aggregates.items, watermarks=False)


def test_same_packed_batch_twice_counts_once() -> None:
    records = packed_stream()
    ports = fake_ports(DEVICES)
    first = process_batch(records, ports, CONFIG, now_s=NOW_S)
    writes = ports.aggregates.puts
    again = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert again.redelivered == first.records_in == again.records_in
    assert again.aggregated == 0
    assert ports.aggregates.puts == writes
    assert normalized(ports.aggregates.items) == once(records)


def test_overlapping_packed_batches() -> None:
    records = packed_stream()
    ports = fake_ports(DEVICES)
    a = process_batch(records[:12], ports, CONFIG, now_s=NOW_S)
    b = process_batch(records[6:], ports, CONFIG, now_s=NOW_S)
    overlap = process_batch(records[6:12], fake_ports(DEVICES), CONFIG, now_s=NOW_S).records_in
    assert b.redelivered == overlap
    assert a.aggregated + b.aggregated == once_count(records)
    assert normalized(ports.aggregates.items) == once(records)


def once_count(records: list[KinesisRecord]) -> int:
    return process_batch(records, fake_ports(DEVICES), CONFIG, now_s=NOW_S).aggregated


def test_bisected_packed_halves_after_a_failed_whole() -> None:
    records = packed_stream()
    ports = fake_ports(DEVICES)
    ports.aggregates.crash_after_writes = 2
    with pytest.raises(CrashAfterWrites):
        process_batch(records, ports, CONFIG, now_s=NOW_S)
    ports.aggregates.crash_after_writes = None
    half = len(records) // 2
    process_batch(records[:half], ports, CONFIG, now_s=NOW_S)
    process_batch(records[half:], ports, CONFIG, now_s=NOW_S)
    process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert normalized(ports.aggregates.items) == once(records)


@pytest.mark.parametrize("crash_after", [0, 1, 3, 5, 6])
def test_crash_after_partial_write_of_packed_records_then_retry(crash_after: int) -> None:
    # GIVEN packed records whose readings span several windows, and a function that dies after N writes
    records = packed_stream()
    ports = fake_ports(DEVICES)
    ports.aggregates.crash_after_writes = crash_after
    with pytest.raises(CrashAfterWrites):
        process_batch(records, ports, CONFIG, now_s=NOW_S)
    ports.aggregates.crash_after_writes = None
    # WHEN the whole batch is retried / THEN exactly what was missing is applied
    out = process_batch(records, ports, CONFIG, now_s=NOW_S)
    assert out.batch_item_failures() == []
    assert normalized(ports.aggregates.items) == once(records)


def test_reported_failure_then_redelivery_of_packed_records() -> None:
    records = packed_stream()
    ports = fake_ports(DEVICES)
    config = ProcessorConfig(sleep=lambda _: None, max_write_attempts=1)
    ports.aggregates.outage_after_attempts = 2  # writes fail for good after 2 windows
    out = process_batch(records, ports, config, now_s=NOW_S)
    (failure,) = out.batch_item_failures()
    ports.aggregates.outage_after_attempts = None
    rest = [r for r in records if int(r.sequence_number) >= int(failure["itemIdentifier"])]
    again = process_batch(rest, ports, CONFIG, now_s=NOW_S)
    assert again.batch_item_failures() == []
    assert normalized(ports.aggregates.items) == once(records)
    assert out.aggregated + out.duplicates + out.retry == out.records_in
    # every reading of the retried records comes back: those the first invocation put in the table
    # (and counted) are redelivered now, the rest are counted now
    assert out.retry + again.redelivered == again.records_in
    assert out.aggregated + again.aggregated == sum(i["count"] for i in ports.aggregates.items.values())
