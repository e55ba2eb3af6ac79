"""End to end through the deployed stack: a packed Kinesis record (JSON array of readings) with good and
bad elements -> aggregates, per-element quarantine lines and processed lines carrying their index; and
gzip-compressed packed records (the simulator's default) -> aggregates, a corrupt one quarantined.

Same conventions as test_processing_mixed_batch.py: the ``deployed_stack`` fixture, unique names per run,
only the stack's public surfaces (Kinesis in, DynamoDB and S3 out).
"""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any

import boto3
import orjson
import pytest

from simulator.sinks import encode_pack
from tests.integration.streams import put_records
from tests.integration.test_processing_mixed_batch import iso, poll, reading

pytestmark = pytest.mark.integration


def _lines(s3: Any, bucket: str, prefix: str, seen: set[str], keep: Any, into: dict) -> None:
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for obj in page.get("Contents", []):
            key = obj["Key"]
            if key in seen:
                continue
            seen.add(key)
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            for raw in body.splitlines():
                line = orjson.loads(raw)
                if keep(line):  # (shard, sequence, index) dedupes a retried batch's overwrite
                    into[(line["shard_id"], line["sequence_number"], line.get("index"))] = line


def register(ddb: Any, table: str, device: str, name: str, now_ms: int) -> None:
    """Put a device in the registry so its readings are enriched, not quarantined unknown_device."""
    ddb.put_item(TableName=table, Item={
        "device_id": {"S": device}, "name": {"S": name}, "site": {"S": "itest-site"},
        "location": {"S": "Porto, PT"}, "timezone": {"S": "UTC"}, "registered_at": {"S": iso(now_ms)}})


def window_with(ddb: Any, stack: dict[str, str], device: str, window_start: int, count: int
                ) -> Callable[[], dict[str, Any] | None]:
    """A poll for the device's window item once it holds at least ``count`` readings."""
    def aggregate() -> dict[str, Any] | None:
        item = ddb.get_item(
            TableName=stack["AggregatesTableName"],
            Key={"device_id": {"S": device}, "window_start": {"N": str(window_start)}},
            ConsistentRead=True,
        ).get("Item")
        return item if item and int(item["count"]["N"]) >= count else None
    return aggregate


def test_packed_record_aggregates_and_quarantines_each_element(deployed_stack: dict[str, str]) -> None:
    ddb = boto3.client("dynamodb")
    kinesis = boto3.client("kinesis")
    s3 = boto3.client("s3")
    suffix = uuid.uuid4().hex[:12]
    device = f"itest-pk-{suffix}"
    ghost = f"itest-pk-ghost-{suffix}"
    marker = f"itest-pk-malformed-{suffix}"
    now_ms = int(time.time() * 1000)
    window_start = (now_ms // 60_000) * 60 - 60
    base_ms = window_start * 1000
    register(ddb, deployed_stack["DevicesTableName"], device, "packed integration test device", now_ms)
    try:
        # GIVEN one packed record: 4 good readings, a duplicate, and one bad element per reason
        elements: list[Any] = [
            reading(device, base_ms + 1000, temperature=20.0),  # 0 good
            reading(device, base_ms + 2000, temperature=21.0),  # 1 good
            reading(device, base_ms + 7000, temperature="warm"),  # 2 schema_invalid
            reading(device, base_ms + 3000, temperature=22.0),  # 3 good
            reading(device, base_ms + 8000, humidity=150.0),  # 4 out_of_range
            reading(ghost, base_ms + 9000),  # 5 unknown_device
            reading(device, base_ms + 1000, temperature=20.0),  # 6 duplicate of 0
            reading(device, now_ms + 3_600_000),  # 7 future_timestamp
            reading(device, base_ms + 4000, temperature=23.0),  # 8 good
        ]
        data = orjson.dumps(elements)
        # AND a packed record that does not parse (quarantined once, with its raw bytes)
        broken = b'[{"device_id": "' + marker.encode() + b'", "timestamp": '
        expected = {2: "schema_invalid", 4: "out_of_range", 5: "unknown_device", 7: "future_timestamp"}

        # WHEN both are put on the stream
        put_records(kinesis, deployed_stack["StreamName"], [(device, data), (device, broken)])

        # THEN the window holds the 4 good readings, the duplicate counted once
        item = poll("the aggregate", window_with(ddb, deployed_stack, device, window_start, 4))
        assert int(item["count"]["N"]) == 4
        temperature = item["channels"]["M"]["temperature"]["M"]
        assert float(temperature["mean"]["N"]) == pytest.approx(21.5)
        assert float(temperature["min"]["N"]) == 20.0
        assert float(temperature["max"]["N"]) == 23.0
        assert item["location"]["S"] == "Porto, PT"
        assert len(item["watermarks"]["M"]) == 1  # one record: one shard watermark

        # AND each bad element is quarantined on its own: reason, index, its own bytes, the record's seq
        bucket = deployed_stack["ArchiveBucketName"]
        q_seen: set[str] = set()
        quarantined: dict[tuple[str, str, int | None], dict[str, Any]] = {}

        def ours(line: dict[str, Any]) -> bool:
            if line.get("device_id") in (device, ghost):
                return True
            return marker.encode() in base64.b64decode(line.get("raw_b64", ""))

        def quarantine_done() -> Counter[str] | None:
            _lines(s3, bucket, "quarantine/", q_seen, ours, quarantined)
            counts = Counter(line["reason"] for line in quarantined.values())
            return counts if sum(counts.values()) >= len(expected) + 1 else None

        counts = poll("the quarantined elements", quarantine_done)
        assert dict(counts) == {
            "schema_invalid": 1,
            "out_of_range": 1,
            "unknown_device": 1,
            "future_timestamp": 1,
            "malformed_json": 1,
        }
        packed_lines = [line for line in quarantined.values() if "index" in line]
        assert {line["index"]: line["reason"] for line in packed_lines} == expected
        assert len({line["sequence_number"] for line in packed_lines}) == 1
        for line in packed_lines:
            assert base64.b64decode(line["raw_b64"]) == orjson.dumps(elements[line["index"]])
        ghost_line = next(line for line in packed_lines if line["reason"] == "unknown_device")
        assert (ghost_line["stage"], ghost_line["device_id"]) == ("enrich", ghost)
        (malformed,) = [line for line in quarantined.values() if "index" not in line]
        assert malformed["reason"] == "malformed_json"
        assert malformed["stage"] == "decode"
        assert base64.b64decode(malformed["raw_b64"]) == broken

        # AND the processed archive has one line per good element and the duplicate, with its index
        p_seen: set[str] = set()
        processed: dict[tuple[str, str, int | None], dict[str, Any]] = {}

        def processed_done() -> dict | None:
            _lines(s3, bucket, "processed/", p_seen, lambda line: line.get("device_id") == device, processed)
            return processed if len(processed) >= 5 else None

        poll("the processed lines", processed_done)
        statuses = {line["index"]: line["status"] for line in processed.values()}
        aggregated = dict.fromkeys((0, 1, 3, 8), "aggregated")
        assert statuses == {**aggregated, 6: "duplicate"}
    finally:
        ddb.delete_item(TableName=deployed_stack["DevicesTableName"], Key={"device_id": {"S": device}})
        ddb.delete_item(
            TableName=deployed_stack["AggregatesTableName"],
            Key={"device_id": {"S": device}, "window_start": {"N": str(window_start)}},
        )


def test_compressed_packed_records_aggregate_and_a_corrupt_one_is_quarantined(
    deployed_stack: dict[str, str],
) -> None:
    ddb = boto3.client("dynamodb")
    kinesis = boto3.client("kinesis")
    s3 = boto3.client("s3")
    device = f"itest-gz-{uuid.uuid4().hex[:12]}"
    now_ms = int(time.time() * 1000)
    window_start = (now_ms // 60_000) * 60 - 60
    base_ms = window_start * 1000
    register(ddb, deployed_stack["DevicesTableName"], device, "compressed integration test device", now_ms)
    try:
        # GIVEN 30 readings of one device in two packed records, gzip-compressed as the simulator sends
        # them (simulator.sinks.encode_pack), and a compressed record cut short in transit
        docs = [reading(device, base_ms + 1000 * i, temperature=10.0 + i) for i in range(30)]
        payloads = [orjson.dumps(d) for d in docs]
        first, second = encode_pack(payloads[:15], compress=True), encode_pack(payloads[15:], compress=True)
        assert first[:2] == second[:2] == b"\x1f\x8b"
        corrupt = encode_pack([orjson.dumps(reading(device, base_ms + 45_000))] * 2, compress=True)[:-6]

        # WHEN they are put on the stream
        entries = [(device, first), (device, second), (device, corrupt)]
        put_records(kinesis, deployed_stack["StreamName"], entries)

        # THEN the window holds the 30 readings
        item = poll("the aggregate of the compressed records",
                    window_with(ddb, deployed_stack, device, window_start, 30))
        assert int(item["count"]["N"]) == 30
        temperature = item["channels"]["M"]["temperature"]["M"]
        assert float(temperature["min"]["N"]) == 10.0
        assert float(temperature["max"]["N"]) == 39.0

        # AND the processed archive names each reading by (shard, sequence, index in the inflated array)
        bucket = deployed_stack["ArchiveBucketName"]
        p_seen: set[str] = set()
        processed: dict[tuple[str, str, int | None], dict[str, Any]] = {}

        def processed_done() -> dict | None:
            _lines(s3, bucket, "processed/", p_seen, lambda line: line.get("device_id") == device, processed)
            return processed if len(processed) >= 30 else None

        poll("the processed lines", processed_done)
        by_record: dict[str, list[int]] = {}
        for _shard, seq, index in processed:
            by_record.setdefault(seq, []).append(index)  # type: ignore[arg-type]
        assert sorted(sorted(v) for v in by_record.values()) == [list(range(15))] * 2
        assert {line["status"] for line in processed.values()} == {"aggregated"}

        # AND the cut record is quarantined whole, malformed_json at decode, with its compressed bytes
        q_seen: set[str] = set()
        quarantined: dict[tuple[str, str, int | None], dict[str, Any]] = {}

        def ours(line: dict[str, Any]) -> bool:
            return base64.b64decode(line.get("raw_b64", "")) == corrupt

        def quarantine_done() -> dict | None:
            _lines(s3, bucket, "quarantine/", q_seen, ours, quarantined)
            return quarantined or None

        poll("the quarantined record", quarantine_done)
        (line,) = quarantined.values()
        assert (line["reason"], line["stage"], "index" in line) == ("malformed_json", "decode", False)
        assert line["detail"].startswith("gzip data does not decompress")
    finally:
        ddb.delete_item(TableName=deployed_stack["DevicesTableName"], Key={"device_id": {"S": device}})
        ddb.delete_item(
            TableName=deployed_stack["AggregatesTableName"],
            Key={"device_id": {"S": device}, "window_start": {"N": str(window_start)}},
        )
