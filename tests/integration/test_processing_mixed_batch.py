"""End to end through the deployed stack: a mixed batch on the stream -> aggregates and quarantine.

Uses the lead's session fixture ``deployed_stack`` (stack outputs; boto3 pointed at the emulator through
AWS_ENDPOINT_URL). Test data carries a unique suffix so runs never see each other's records. Only the
stack's public surfaces are used: Kinesis in, DynamoDB and S3 out (nothing calls the handler in-process).
"""

from __future__ import annotations

import base64
import gzip
import time
import uuid
from collections import Counter
from collections.abc import Callable
from typing import Any, TypeVar

import boto3
import orjson
import pytest

from tests.integration.polling import wait_for
from tests.integration.streams import put_records

pytestmark = pytest.mark.integration

POLL_TIMEOUT_S = 90.0  # the emulator's ESM polls about every second; a cold Lambda start adds a few
T = TypeVar("T")


def iso(epoch_ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(epoch_ms / 1000)) + f".{epoch_ms % 1000:03d}Z"


def poll[T](what: str, probe: Callable[[], T | None], timeout_s: float = POLL_TIMEOUT_S) -> T:
    """Call ``probe`` until it returns something truthy (bounded), else fail with the last value."""
    last = wait_for(probe, timeout_s)
    if not last:
        pytest.fail(f"timed out after {timeout_s:.0f}s waiting for {what}; last seen: {last!r}")
    return last


def reading(device_id: str, epoch_ms: int, **overrides: Any) -> dict[str, Any]:
    doc = {
        "device_id": device_id,
        "timestamp": iso(epoch_ms),
        "temperature": 21.0,
        "humidity": 40.0,
        "pressure": 1010.0,
    }
    doc.update(overrides)
    return doc


def test_mixed_batch_aggregates_once_and_quarantines_by_reason(deployed_stack: dict[str, str]) -> None:
    ddb = boto3.client("dynamodb")
    kinesis = boto3.client("kinesis")
    s3 = boto3.client("s3")
    suffix = uuid.uuid4().hex[:12]
    device = f"itest-{suffix}"
    ghost = f"itest-ghost-{suffix}"
    marker = f"itest-malformed-{suffix}"
    now_ms = int(time.time() * 1000)
    window_start = (now_ms // 60_000) * 60 - 60  # the previous minute: complete, and well within lateness
    base_ms = window_start * 1000

    # GIVEN a uniquely named registered device
    ddb.put_item(
        TableName=deployed_stack["DevicesTableName"],
        Item={
            "device_id": {"S": device},
            "name": {"S": "integration test device"},
            "site": {"S": "itest-site"},
            "location": {"S": "Lisbon, PT"},
            "timezone": {"S": "UTC"},
            "registered_at": {"S": iso(now_ms)},
        },
    )
    try:
        # AND a mixed batch: 5 good readings, one exact duplicate, and one record per rejection reason
        good = [reading(device, base_ms + 1000 * (i + 1), temperature=20.0 + i) for i in range(5)]
        entries: list[tuple[bytes, str]] = [(orjson.dumps(doc), device) for doc in good]
        entries += [
            (orjson.dumps(good[0]), device),  # duplicate: counted once
            (f"{{{marker} not json".encode(), device),  # malformed_json
            (orjson.dumps(reading(device, base_ms + 7000, temperature="warm")), device),  # schema_invalid
            (orjson.dumps(reading(device, base_ms + 8000, humidity=150.0)), device),  # out_of_range
            (orjson.dumps(reading(device, now_ms + 3_600_000)), device),  # future_timestamp
            (orjson.dumps(reading(device, now_ms - 3_600_000)), device),  # late
            (orjson.dumps(reading(ghost, base_ms + 9000)), ghost),  # unknown_device
        ]
        expected_reasons = {
            "malformed_json": 1,
            "schema_invalid": 1,
            "out_of_range": 1,
            "future_timestamp": 1,
            "late": 1,
            "unknown_device": 1,
        }

        # WHEN it is put on the stream (in order; partial failures re-sent)
        put_records(kinesis, deployed_stack["StreamName"], [(key, data) for data, key in entries])

        # THEN the window's aggregate appears with the 5 good readings, the duplicate counted once
        def aggregate() -> dict[str, Any] | None:
            item = ddb.get_item(
                TableName=deployed_stack["AggregatesTableName"],
                Key={"device_id": {"S": device}, "window_start": {"N": str(window_start)}},
                ConsistentRead=True,
            ).get("Item")
            return item if item and int(item["count"]["N"]) >= 5 else None

        item = poll("the aggregate", aggregate)
        assert int(item["count"]["N"]) == 5
        temperature = item["channels"]["M"]["temperature"]["M"]
        assert int(temperature["count"]["N"]) == 5
        assert float(temperature["mean"]["N"]) == pytest.approx(22.0)
        assert float(temperature["min"]["N"]) == 20.0
        assert float(temperature["max"]["N"]) == 24.0
        assert float(temperature["std"]["N"]) == pytest.approx(2**0.5)
        assert item["site"]["S"] == "itest-site"
        assert item["location"]["S"] == "Lisbon, PT"
        assert int(item["window_end"]["N"]) == window_start + 60

        # AND every rejected record is archived under quarantine/ with its reason and raw bytes
        bucket = deployed_stack["ArchiveBucketName"]
        seen_keys: set[str] = set()
        lines: dict[tuple[str, str], dict[str, Any]] = {}  # (shard, sequence) -> line: dedupes overwrites

        def ours(line: dict[str, Any]) -> bool:
            if line.get("device_id") in (device, ghost):
                return True
            return marker.encode() in base64.b64decode(line.get("raw_b64", ""))

        def quarantined() -> Counter[str] | None:
            paginator = s3.get_paginator("list_objects_v2")
            for page in paginator.paginate(Bucket=bucket, Prefix="quarantine/"):
                for obj in page.get("Contents", []):
                    key = obj["Key"]
                    if key in seen_keys:
                        continue
                    seen_keys.add(key)
                    body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
                    for raw in body.splitlines():
                        line = orjson.loads(raw)
                        if ours(line):
                            lines[(line["shard_id"], line["sequence_number"])] = line
            counts = Counter(line["reason"] for line in lines.values())
            return counts if sum(counts.values()) >= len(expected_reasons) else None

        counts = poll("the quarantined records", quarantined)
        assert dict(counts) == expected_reasons
        malformed = next(line for line in lines.values() if line["reason"] == "malformed_json")
        assert base64.b64decode(malformed["raw_b64"]) == f"{{{marker} not json".encode()
        assert malformed["stage"] == "decode"
        assert (
            next(line for line in lines.values() if line["reason"] == "unknown_device")["stage"] == "enrich"
        )
        for key in seen_keys:
            assert key.startswith("quarantine/dt=")
            assert "/hour=" in key
            assert key.endswith(".jsonl.gz")
    finally:
        ddb.delete_item(TableName=deployed_stack["DevicesTableName"], Key={"device_id": {"S": device}})
        ddb.delete_item(
            TableName=deployed_stack["AggregatesTableName"],
            Key={"device_id": {"S": device}, "window_start": {"N": str(window_start)}},
        )
