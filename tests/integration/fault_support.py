"""Shared helpers for the fault-injection tests: simulator batches and the offline reference.

The reference is computed from the simulator's own records and labels, never from the pipeline's
output: per (device, window) the count and temperature sum/min/max of every valid reading, once.
"""

from __future__ import annotations

import base64
import json
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import orjson

from simulator.config import SimulatorConfig
from simulator.fleet import Device, generate_fleet
from simulator.malformed import expected_outcome
from simulator.stream import Produced, generate_readings
from tests.integration.archive_objects import archived_lines
from tests.integration.polling import wait_for

WindowRef = dict[tuple[str, int], dict[str, float]]


@dataclass
class Batch:
    """Simulator records whose device ids carry a unique prefix (isolation inside a shared stack)."""

    prefix: str
    fleet: list[Device]
    records: list[Produced]

    @property
    def device_ids(self) -> list[str]:
        return [self.prefix + d.device_id for d in self.fleet]

    def payloads(self) -> list[tuple[str, bytes]]:
        """(partition key, data) as a producer sends them."""
        return [(self.prefix + p.device_id, prefixed(p.payload, self.prefix)) for p in self.records]

    def registry_items(self) -> list[dict[str, Any]]:
        items = []
        for d in self.fleet:
            item = d.to_dynamodb_item()
            item["device_id"] = {"S": self.prefix + d.device_id}
            items.append(item)
        return items


def prefixed(payload: bytes, prefix: str) -> bytes:
    return payload.replace(b'"dev-', b'"' + prefix.encode() + b"dev-")


def make_batch(devices: int, count: int, malformed_rate: float, seed: int, start_ms: int | None = None,
               malformed_mix: dict[str, float] | None = None) -> Batch:
    prefix = f"f{uuid.uuid4().hex[:6]}-"
    kwargs: dict[str, Any] = {}
    if malformed_mix is not None:
        kwargs["malformed_mix"] = malformed_mix
    config = SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed, malformed_rate=malformed_rate,
                             count=count, burst=True, **kwargs)
    fleet = generate_fleet(devices, seed)
    # Event times 2-3 minutes old: inside the allowed lateness, windows already closed.
    start = start_ms if start_ms is not None else int((time.time() - 170) * 1000)
    return Batch(prefix, fleet, list(generate_readings(config, fleet, start_ms=start)))


def reference(batch: Batch) -> tuple[WindowRef, Counter[str], int]:
    """(per-window reference, expected quarantine reasons, expected duplicates) from the labels."""
    windows: WindowRef = {}
    reasons: Counter[str] = Counter()
    duplicates = 0
    seen: set[tuple[str, int]] = set()
    for p in batch.records:
        outcome = expected_outcome(p.category, p.kind)
        if outcome != "aggregated":
            if outcome == "duplicate":
                duplicates += 1
            else:
                reasons[outcome] += 1
            continue
        doc = orjson.loads(p.payload)
        key = (batch.prefix + p.device_id, p.event_ms)
        assert key not in seen, "the simulator's valid readings are unique per device and time"
        seen.add(key)
        wkey = (key[0], p.event_ms // 60_000 * 60)
        w = windows.setdefault(wkey, {"count": 0, "sum": 0.0, "min": float("inf"), "max": float("-inf")})
        t = float(doc["temperature"])
        w["count"] += 1
        w["sum"] += t
        w["min"] = min(w["min"], t)
        w["max"] = max(w["max"], t)
    return windows, reasons, duplicates


def register(ddb: Any, table: str, batch: Batch) -> None:
    items = batch.registry_items()
    for start in range(0, len(items), 25):
        chunk = [{"PutRequest": {"Item": i}} for i in items[start : start + 25]]
        ddb.batch_write_item(RequestItems={table: chunk})


def stored_windows(ddb: Any, table: str, device_ids: list[str]) -> WindowRef:
    out: WindowRef = {}
    for device_id in device_ids:
        kwargs: dict[str, Any] = {
            "TableName": table, "KeyConditionExpression": "device_id = :d",
            "ExpressionAttributeValues": {":d": {"S": device_id}}, "ConsistentRead": True,
        }
        while True:
            page = ddb.query(**kwargs)
            for item in page["Items"]:
                temp = item["channels"]["M"]["temperature"]["M"]
                out[(device_id, int(item["window_start"]["N"]))] = {
                    "count": int(item["count"]["N"]), "sum": float(temp["sum"]["N"]),
                    "min": float(temp["min"]["N"]), "max": float(temp["max"]["N"]),
                }
            if "LastEvaluatedKey" not in page:
                break
            kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]
    return out


def archived(s3: Any, bucket: str, batch: Batch) -> tuple[Counter[str], int, int]:
    """(quarantine reasons, aggregated lines, duplicate lines) of this batch's records in the archive.

    Quarantined records are recognised by their raw bytes (some carry no device id, or an unknown one);
    processed lines by the batch's device-id prefix.
    """
    reasons: Counter[str] = Counter()
    aggregated = duplicates = 0
    prefix = batch.prefix
    raws = {data for _, data in batch.payloads()}
    # Only the archive's own prefixes: the bucket also holds Athena's results and the compacted files.
    for line in archived_lines(s3, bucket, "quarantine/"):
        if base64.b64decode(line.doc["raw_b64"]) in raws:
            reasons[line.doc["reason"]] += 1
    for line in archived_lines(s3, bucket, "processed/"):
        if line.doc.get("device_id", "").startswith(prefix):
            if line.doc.get("status") == "duplicate":
                duplicates += 1
            else:
                aggregated += 1
    return reasons, aggregated, duplicates


def assert_windows_equal(stored: WindowRef, expected: WindowRef) -> None:
    missing, extra = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    assert (missing, extra) == ([], []), f"windows missing {missing[:5]}, extra {extra[:5]}"
    for key, want in expected.items():
        got = stored[key]
        assert got["count"] == want["count"], f"{key}: count {got['count']} != {want['count']}"
        assert abs(got["sum"] - want["sum"]) <= 1e-9 * max(1.0, abs(want["sum"])), f"{key}: sum"
        assert got["min"] == want["min"], f"{key}: min"
        assert got["max"] == want["max"], f"{key}: max"


def settled(ddb: Any, table: str, batch: Batch, expected_total: int) -> bool:
    stored = stored_windows(ddb, table, batch.device_ids)
    return sum(int(w["count"]) for w in stored.values()) >= expected_total


def check_pipeline(outputs: dict[str, str], batch: Batch, extra_duplicates: int = 0, timeout_s: float = 90,
                   redelivered: bool = False) -> None:
    """Wait (bounded) for the batch to be processed; compare aggregates and archive with the reference."""
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    expected, reasons, duplicates = reference(batch)
    total = sum(int(w["count"]) for w in expected.values())
    wait_for(lambda: settled(ddb, outputs["AggregatesTableName"], batch, total), timeout_s)
    # The archive is written after the window writes of a batch: give the last one a moment.
    want = (dict(reasons), total + duplicates + extra_duplicates)
    got = wait_for(lambda: (lambda a: a if (dict(a[0]), a[1] + a[2]) == want else None)(
        archived(s3, outputs["ArchiveBucketName"], batch)), 20, 2)
    stored = stored_windows(ddb, outputs["AggregatesTableName"], batch.device_ids)
    assert_windows_equal(stored, expected)
    reasons_got, aggregated_lines, duplicate_lines = got or archived(s3, outputs["ArchiveBucketName"], batch)
    assert dict(reasons_got) == dict(reasons)
    # Every record sits in the archive exactly once (keys are per shard and sequence range).
    assert aggregated_lines + duplicate_lines == total + duplicates + extra_duplicates
    if not redelivered:
        assert aggregated_lines == total
        assert duplicate_lines == duplicates + extra_duplicates
    # After a redelivery the same key is rewritten and lines applied by the first attempt are labelled
    # "duplicate" in the current object version (the first version keeps "aggregated"): the split
    # between the two labels is then not checked, only their sum.


FAULTS_VAR = "PROCESSOR_FAULTS"  # testkit/faults.py (read by testkit/fault_handler.py in test stacks)


def _set_environment(lam: Any, function_name: str, variables: dict[str, str]) -> None:
    lam.update_function_configuration(FunctionName=function_name, Environment={"Variables": variables})
    status = wait_for(lambda: lam.get_function_configuration(FunctionName=function_name)
                      .get("LastUpdateStatus") in (None, "Successful"), 30, 0.2)
    assert status, f"{function_name}: configuration update did not complete"


@contextmanager
def processor_faults(function_name: str, spec: str) -> Iterator[None]:
    """Run the block with PROCESSOR_FAULTS=spec on the deployed function (its other variables kept), and
    restore the exact previous environment afterwards, whatever happens. The update recycles the
    function's workers, so the next invocation is a cold start that reads the spec."""
    lam = boto3.client("lambda")
    config = lam.get_function_configuration(FunctionName=function_name)
    original = dict((config.get("Environment") or {}).get("Variables") or {})
    assert FAULTS_VAR not in original, "a previous test left a fault configured"
    _set_environment(lam, function_name, {**original, FAULTS_VAR: spec})
    try:
        yield
    finally:
        _set_environment(lam, function_name, original)


def fault_events(marker: Path) -> list[dict[str, Any]] | None:
    """The faults recorded in a once-marker (one JSON line each), or None if none fired yet."""
    try:
        lines = marker.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        return None
    return [json.loads(line) for line in lines if line.strip()] or None
