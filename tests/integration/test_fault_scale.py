"""Exactly-once at scale: four shards, concurrent batches of one shard, and resharding mid-run.

Same method as test_fault_pipeline.py: simulator records (device ids prefixed per test), a reference
computed offline from the simulator's own labels (fault_support.reference), and check_pipeline comparing
the aggregates in DynamoDB and the archive lines in S3 with it. Each test also asserts that its fault
happened (records on every shard, a conflict between concurrent writers, the shard list changed and
child shards carried records), so a quiet emulator cannot make it pass vacuously.

What the emulators do (measured; the per-target facts are in targets.py):
- ParallelizationFactor: ministack 1.5.33 and LocalStack 4.14 store it (GetEventSourceMapping returns
  it) and run one batch per shard at a time; ministack's single poller even runs all shards in turn.
  So the concurrent part is proven in-process: the processor's real adapters against the emulator's
  DynamoDB, batches on threads, see test_concurrent_batches_of_one_shard_on_the_real_adapters.
- Resharding: ministack deletes the parent shard and its unread records at SplitShard/MergeShards (AWS
  keeps a closed parent readable for the retention period) and its mapping starts a shard it first sees
  at the shard's end; UpdateShardCount there rebuilds the shards under the same ids, which leaves the
  mapping's positions beyond the new shards' records. So on ministack the test reshards with
  SplitShard/MergeShards after the parent drained and lets the mapping see the children before putting
  more. LocalStack keeps parents; its poller discovers children when a closed parent's iterator ends and
  then re-reads every shard from TRIM_HORIZON (a whole-stream redelivery the watermarks must absorb), so
  there the reshard happens while records are still in flight.
"""

from __future__ import annotations

import base64
import gzip
import json
import threading
import time
import zlib
from collections import Counter
from collections.abc import Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
import pytest

from functions.adapters.aggregates import DynamoAggregateStore
from functions.core.errors import VersionConflict
from functions.core.ports import AggregateItem, WindowKey
from iotpipe.ops.stack import deploy, stack_outputs
from tests.integration.fault_support import (
    Batch,
    assert_windows_equal,
    check_pipeline,
    make_batch,
    prefixed,
    reference,
    register,
    settled,
    stored_windows,
    wait_for,
)
from tests.integration.stacks import delete_stack
from tests.integration.streams import put_records
from tests.integration.targets import TARGET, facts

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SHARDS = 4
PARALLELIZATION = 2


@pytest.fixture(scope="module")
def sharded_stack(emulator_endpoint: str) -> Iterator[dict[str, str]]:
    """The template deployed with ShardCount=4 and ParallelizationFactor=2 (its own stack: the reshard
    test changes its stream)."""
    import uuid

    name = f"sc-{uuid.uuid4().hex[:8]}"
    deploy(name, target=TARGET, quiet=True,
           extra_args=["--param", f"ShardCount={SHARDS}",
                       "--param", f"ParallelizationFactor={PARALLELIZATION}"])
    outputs = stack_outputs(name)
    try:
        yield outputs
    finally:
        delete_stack(name)


def open_shards(stream: str) -> dict[str, dict[str, Any]]:
    """Open shards (no ending sequence number) by id."""
    shards = boto3.client("kinesis").list_shards(StreamName=stream)["Shards"]
    return {s["ShardId"]: s for s in shards if "EndingSequenceNumber" not in s.get("SequenceNumberRange", {})}


def processed_shards(s3: Any, bucket: str, batch: Batch) -> Counter[str]:
    """Processed archive lines of this batch per shard id (the processor writes the shard on each line)."""
    per_shard: Counter[str] = Counter()
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="processed/"):
        for obj in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            for line in body.splitlines():
                doc = json.loads(line)
                if doc.get("device_id", "").startswith(batch.prefix):
                    per_shard[doc["shard_id"]] += 1
    return per_shard


def deduplicated_reasons(s3: Any, bucket: str, batch: Batch) -> Counter[str]:
    """Quarantine reasons of this batch's records, one per (shard_id, sequence_number, index)."""
    raws = {data for _, data in batch.payloads()}
    seen: dict[tuple[str, str, int], str] = {}
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix="quarantine/"):
        for obj in page.get("Contents", []):
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read())
            for line in body.splitlines():
                doc = json.loads(line)
                if base64.b64decode(doc["raw_b64"]) in raws:
                    seen[(doc["shard_id"], doc["sequence_number"], doc.get("index", -1))] = doc["reason"]
    return Counter(seen.values())


def wait_applied(outputs: dict[str, str], batch: Batch, entries: Sequence[tuple[str, bytes]],
                 timeout_s: float = 90) -> None:
    """Wait until the valid readings among ``entries`` (a prefix of the batch's payloads) are in the table."""
    sent = set(entries)
    part = Batch(batch.prefix, batch.fleet, [
        p for p in batch.records if (batch.prefix + p.device_id, prefixed(p.payload, batch.prefix)) in sent])
    expected, _, _ = reference(part)
    total = sum(int(w["count"]) for w in expected.values())
    ddb = boto3.client("dynamodb")
    assert wait_for(lambda: settled(ddb, outputs["AggregatesTableName"], batch, total), timeout_s), \
        f"{total} readings not applied in {timeout_s} s"


# ------------------------------------------------------------------------------------------ 4 shards
@pytest.mark.timeout(240)
def test_four_shards_conserve_every_reading(sharded_stack: dict[str, str]) -> None:
    # GIVEN a stream of 4 shards, 40 registered devices and 1,600 records (5 % malformed, every kind)
    assert len(open_shards(sharded_stack["StreamName"])) == SHARDS
    batch = make_batch(devices=40, count=1600, malformed_rate=0.05, seed=41)
    register(boto3.client("dynamodb"), sharded_stack["DevicesTableName"], batch)
    # WHEN they are put with partition key = device id
    put_records(boto3.client("kinesis"), sharded_stack["StreamName"], batch.payloads())
    # THEN produced = aggregated + duplicates + quarantined, aggregates equal the single-pass reference
    check_pipeline(sharded_stack, batch, timeout_s=150)
    # AND the readings really went through all four shards
    per_shard = processed_shards(boto3.client("s3"), sharded_stack["ArchiveBucketName"], batch)
    assert len(per_shard) == SHARDS, f"readings per shard: {dict(per_shard)}"


def test_parallelization_factor_is_stored_as_measured(sharded_stack: dict[str, str]) -> None:
    # GIVEN the mapping deployed with ParallelizationFactor=2 THEN the target returns it (what it does with
    # it is the per-target fact parallelization_honoured, measured in the module docstring)
    lam = boto3.client("lambda")
    mappings = lam.list_event_source_mappings(FunctionName=sharded_stack["ProcessorFunctionName"])
    factors = {m.get("ParallelizationFactor") for m in mappings["EventSourceMappings"]}
    assert factors == {PARALLELIZATION}
    assert facts().parallelization_honoured is (TARGET == "aws")


# ------------------------------------------------------------------------------------------ concurrency
class RacingStore(DynamoAggregateStore):
    """The real aggregates adapter, plus: every delivery's first prefetch waits at a barrier (so all of
    them read the same stored versions before any writes: conflicts are certain, not likely), and
    in-flight puts and version conflicts are counted (the test fails if no race happened)."""

    def __init__(self, parties: int) -> None:
        super().__init__()
        self._barrier = threading.Barrier(parties, timeout=60)
        self._local = threading.local()
        self._lock = threading.Lock()
        self.in_flight = self.peak_in_flight = self.conflicts = 0

    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        found = super().get_many(keys)
        if not getattr(self._local, "waited", False):
            self._local.waited = True
            self._barrier.wait()
        return found

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        with self._lock:
            self.in_flight += 1
            self.peak_in_flight = max(self.peak_in_flight, self.in_flight)
        try:
            super().put(item, expected_version)
        except VersionConflict:
            with self._lock:
                self.conflicts += 1
            raise
        finally:
            with self._lock:
                self.in_flight -= 1


def _split_by_key(records: list[Any], parts: int) -> list[list[Any]]:
    """What ParallelizationFactor does with one shard: batches by partition-key hash, order kept."""
    out: list[list[Any]] = [[] for _ in range(parts)]
    for r in records:
        out[zlib.crc32(r.partition_key.encode()) % parts].append(r)
    return [o for o in out if o]


@pytest.mark.timeout(240)
def test_concurrent_batches_of_one_shard_on_the_real_adapters(deployed_stack: dict[str, str]) -> None:
    """ParallelizationFactor > 1 is not honoured by either emulator (module docstring), so the processor's
    part is proven here: process_batch with the real adapters against the emulator's DynamoDB and S3,
    deliveries on threads. A parent shard's records are split by key into 3 concurrent batches, each
    delivered twice at the same time (at-least-once), and the readings that moved to two child shards
    (a split mid-run) run concurrently with their parent, so a child may be applied before its parent:
    per-shard watermarks make that order irrelevant to the result."""
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.adapters.metrics import NullMetrics
    from functions.processor.enrich import DeviceCache
    from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
    from functions.processor.records import KinesisRecord
    from testkit.events import SEQ_BASE, kinesis_event_record

    # GIVEN 12 registered devices and 720 records; the first half on the parent shard, the rest on two
    # children (by device), every device's readings in order on one shard at a time
    batch = make_batch(devices=12, count=720, malformed_rate=0.05, seed=43)
    register(boto3.client("dynamodb"), deployed_stack["DevicesTableName"], batch)
    entries = batch.payloads()
    half = len(entries) // 2
    parent, children = "shardId-000000000000", ("shardId-000000000001", "shardId-000000000002")

    def record(i: int, key: str, data: bytes) -> KinesisRecord:
        shard = parent if i < half else children[zlib.crc32(key.encode()) % 2]
        event_record = kinesis_event_record(data, SEQ_BASE + i, shard, time.time(), key)
        return KinesisRecord.from_event_record(event_record)

    records = [record(i, key, data) for i, (key, data) in enumerate(entries)]
    by_shard: dict[str, list[KinesisRecord]] = {}
    for r in records:
        by_shard.setdefault(r.shard_id, []).append(r)
    # (records, first copy?) per delivery: each parent batch twice, each child batch once
    deliveries = [(part, copy == 0) for part in _split_by_key(by_shard[parent], 3) for copy in range(2)]
    deliveries += [(part, True) for shard in children for part in _split_by_key(by_shard[shard], 2)]
    store = RacingStore(parties=len(deliveries))
    ports = ProcessorPorts(devices=DeviceCache(DynamoDeviceRegistry(), ttl_s=60), aggregates=store,
                           archive=S3Archive(), metrics=NullMetrics())
    config = ProcessorConfig(write_concurrency=4)

    # WHEN every delivery runs at the same time
    with ThreadPoolExecutor(max_workers=len(deliveries)) as pool:
        outcomes = list(pool.map(lambda d: process_batch(d[0], ports, config), deliveries))

    # THEN the race happened: writers overlapped and lost conditional writes to each other
    assert store.peak_in_flight >= 2, "no two writes were in flight together"
    assert store.conflicts > 0, "no version conflict"
    assert sum(o.write_conflicts for o in outcomes) > 0
    # AND the table equals the single-pass reference: nothing lost, nothing counted twice
    expected, reasons, _duplicates = reference(batch)
    stored = stored_windows(boto3.client("dynamodb"), deployed_stack["AggregatesTableName"], batch.device_ids)
    assert_windows_equal(stored, expected)
    total = sum(int(w["count"]) for w in expected.values())
    assert sum(o.aggregated for o in outcomes) == total
    # AND every delivery accounts for each of its readings once; the second copies only as redelivered or
    # duplicate
    for o in outcomes:
        assert o.retry == 0, o.errors
        assert not o.failed_sequence_numbers
        assert o.records_in == o.aggregated + o.duplicates + o.redelivered + o.quarantined
    # AND quarantine decisions do not depend on the race (each copy quarantines the same records)
    firsts = [o for o, (_, first) in zip(outcomes, deliveries, strict=True) if first]
    assert Counter(r for o in firsts for r in o.rejected.elements()) == reasons
    # AND the archive is written once per key: of the two copies' conditional puts of a key, one kept
    # what the other wrote (S3's If-None-Match, on the emulator's S3)
    twice = [o for o, (part, first) in zip(outcomes, deliveries, strict=True)
             if first and part[0].shard_id == parent]
    keys = [k for o in twice for k in o.archived_keys]
    assert keys
    assert sum(o.archive_kept for o in outcomes) == len(keys)


# ------------------------------------------------------------------------------------------ resharding
def _split(kinesis: Any, stream: str) -> str:
    """Split the open shard with the widest hash range in two; the parent's id."""
    shards = open_shards(stream)
    sid, shard = max(shards.items(), key=lambda kv: int(kv[1]["HashKeyRange"]["EndingHashKey"])
                     - int(kv[1]["HashKeyRange"]["StartingHashKey"]))
    lo, hi = int(shard["HashKeyRange"]["StartingHashKey"]), int(shard["HashKeyRange"]["EndingHashKey"])
    kinesis.split_shard(StreamName=stream, ShardToSplit=sid, NewStartingHashKey=str((lo + hi + 1) // 2))
    return sid


def _merge(kinesis: Any, stream: str, among: set[str]) -> tuple[str, str]:
    """Merge two adjacent open shards among ``among`` (the children of the split)."""
    shards = sorted(((sid, s) for sid, s in open_shards(stream).items() if sid in among),
                    key=lambda kv: int(kv[1]["HashKeyRange"]["StartingHashKey"]))
    (a, sa), (b, sb) = shards[0], shards[1]
    assert int(sa["HashKeyRange"]["EndingHashKey"]) + 1 == int(sb["HashKeyRange"]["StartingHashKey"])
    kinesis.merge_shards(StreamName=stream, ShardToMerge=a, AdjacentShardToMerge=b)
    return a, b


def _wait_active(kinesis: Any, stream: str) -> None:
    assert wait_for(lambda: kinesis.describe_stream_summary(StreamName=stream)["StreamDescriptionSummary"][
        "StreamStatus"] == "ACTIVE", 60, 0.5)


@pytest.mark.timeout(300)
def test_resharding_mid_run_split_then_merge(sharded_stack: dict[str, str]) -> None:
    # GIVEN the 4-shard stream and 1,500 records of 30 devices (5 % malformed), in three parts whose
    # event times share windows, so windows receive records from parents and from children
    stream = sharded_stack["StreamName"]
    kinesis = boto3.client("kinesis")
    batch = make_batch(devices=30, count=1500, malformed_rate=0.05, seed=44)
    register(boto3.client("dynamodb"), sharded_stack["DevicesTableName"], batch)
    entries = batch.payloads()
    third = len(entries) // 3
    parts = [entries[:third], entries[third:2 * third], entries[2 * third:]]
    keep_parent = facts().reshard_keeps_parent
    before = set(open_shards(stream))

    # WHEN part 1 is put and a shard is split (mid-run where the target keeps parents; after the mapping
    # drained it on ministack, which deletes the parent with its records)
    put_records(kinesis, stream, parts[0])
    if not keep_parent:
        wait_applied(sharded_stack, batch, parts[0])
    split_parent = _split(kinesis, stream)
    _wait_active(kinesis, stream)
    after_split = set(open_shards(stream))
    # THEN the shard list changed: the parent closed, two children opened
    assert split_parent not in after_split
    assert len(after_split) == len(before) + 1
    split_children = after_split - before
    assert len(split_children) == 2
    if not keep_parent:
        time.sleep(2.5)  # ministack's mapping starts a new shard at its end when it first sees it (~1 s)

    # WHEN part 2 is put and the two children are merged again
    put_records(kinesis, stream, parts[1])
    if not keep_parent:
        wait_applied(sharded_stack, batch, parts[0] + parts[1])
    merged = _merge(kinesis, stream, split_children)
    _wait_active(kinesis, stream)
    after_merge = set(open_shards(stream))
    assert not set(merged) & after_merge
    assert len(after_merge) == len(before)
    merge_child = (after_merge - after_split).pop()
    if not keep_parent:
        time.sleep(2.5)
    # AND part 3 goes to the merged shard and the rest
    put_records(kinesis, stream, parts[2])

    # THEN every reading is aggregated exactly once and every record is archived with its outcome
    if keep_parent:
        # LocalStack re-read the whole stream after the reshard, in other batch boundaries, so archive
        # objects (keyed per shard and sequence range) overlap: count lines as readers do, deduplicated on
        # (shard_id, sequence_number, index) (docs/processing.md). The table must be exact regardless.
        expected, reasons, _ = reference(batch)
        total = sum(int(w["count"]) for w in expected.values())
        ddb = boto3.client("dynamodb")
        assert wait_for(lambda: settled(ddb, sharded_stack["AggregatesTableName"], batch, total), 180)
        time.sleep(5)  # the redelivery's last batches
        assert_windows_equal(stored_windows(ddb, sharded_stack["AggregatesTableName"], batch.device_ids),
                             expected)
        assert deduplicated_reasons(boto3.client("s3"), sharded_stack["ArchiveBucketName"], batch) == reasons
    else:
        check_pipeline(sharded_stack, batch, timeout_s=180)
    # AND the split's children and the merge's child really carried readings of this batch
    per_shard = processed_shards(boto3.client("s3"), sharded_stack["ArchiveBucketName"], batch)
    assert split_children & set(per_shard), f"no readings on the split's children: {dict(per_shard)}"
    assert merge_child in per_shard, f"no readings on the merged shard: {dict(per_shard)}"
    assert split_parent in per_shard
