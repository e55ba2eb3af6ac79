"""Faults inside the processor: a crash after a partial write, then redelivery; DynamoDB throttling.

The deployed function has no fault hook yet (see the report / docs/troubleshooting.md), and the emulator
cannot make DynamoDB fail on cue, so these two run the processor's real ``process_batch`` in-process
with the in-memory adapters that inject the fault (functions/adapters/fakes.py). Everything else is the
production code path: decode, validate, enrich, window, exactly-once writes, archive, accounting.
In every case: nothing lost, nothing counted twice, aggregates equal the reference computed offline
from the simulator's own records.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from functions.adapters.fakes import (
    CrashAfterWrites,
    InMemoryAggregateStore,
    InMemoryArchive,
    InMemoryDeviceRegistry,
    InMemoryMetrics,
)
from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
from functions.processor.testing import make_records
from functions.readings import DeviceInfo
from tests.integration.fault_support import Batch, WindowRef, assert_windows_equal, make_batch, reference

START_MS = 1_795_000_020_000


def _ports(batch: Batch, store: InMemoryAggregateStore, registry: InMemoryDeviceRegistry | None = None
           ) -> ProcessorPorts:
    registry = registry or InMemoryDeviceRegistry([DeviceInfo(device_id=d) for d in batch.device_ids])
    return ProcessorPorts(devices=DeviceCache(registry, ttl_s=300, clock=lambda: 0.0), aggregates=store,
                          archive=InMemoryArchive(), metrics=InMemoryMetrics())


def _records(batch: Batch) -> list[Any]:
    return make_records([data for _, data in batch.payloads()], arrival_s=START_MS / 1000)


def _stored(store: InMemoryAggregateStore) -> WindowRef:
    out: WindowRef = {}
    for (device_id, window), item in store.items.items():
        t = item["channels"]["temperature"]
        out[(device_id, int(window))] = {"count": int(item["count"]), "sum": float(t["sum"]),
                                         "min": float(t["min"]), "max": float(t["max"])}
    return out


def _config() -> ProcessorConfig:
    return ProcessorConfig(sleep=lambda _s: None)  # no real back-off sleeps in tests


NOW_S = START_MS / 1000 + 120  # two minutes after the first reading: nothing is late or in the future


@pytest.mark.parametrize("crash_after", [1, 7, 15])
def test_crash_after_a_partial_write_then_redelivery_counts_everything_once(crash_after: int) -> None:
    # GIVEN a simulator batch of 20 devices with 5 % malformed records
    batch = make_batch(devices=20, count=400, malformed_rate=0.05, seed=11, start_ms=START_MS)
    expected, reasons, duplicates = reference(batch)
    store = InMemoryAggregateStore(crash_after_writes=crash_after)
    ports = _ports(batch, store)
    records = _records(batch)

    # WHEN the function dies after `crash_after` window writes (Lambda killed mid-batch)
    with pytest.raises(CrashAfterWrites):
        process_batch(records, ports, _config(), now_s=NOW_S)
    assert 0 < len(store.items) <= crash_after  # the partial write happened
    # AND Kinesis redelivers the whole batch to a fresh container
    store.crash_after_writes = None
    outcome = process_batch(records, _ports(batch, store), _config(), now_s=NOW_S)

    # THEN the aggregates equal the offline reference: the windows written before the crash were not
    # applied again (their readings are duplicates now), the others were applied once
    assert_windows_equal(_stored(store), expected)
    assert outcome.retry == 0
    assert outcome.failed_sequence_numbers == []
    assert dict(outcome.rejected) == dict(reasons)
    applied_before_crash = sum(w["count"] for w in expected.values()) - outcome.aggregated
    assert outcome.duplicates == duplicates + applied_before_crash
    # AND every record is accounted for exactly once
    assert outcome.aggregated + outcome.duplicates + outcome.quarantined == len(records)


def test_dynamodb_throttling_is_retried_and_nothing_is_lost_or_doubled() -> None:
    # GIVEN a batch, a registry that throttles once and an aggregates table that throttles the first
    # 3 writes and times out after committing the 4th (an ambiguous write)
    batch = make_batch(devices=30, count=600, malformed_rate=0.02, seed=12, start_ms=START_MS)
    expected, reasons, _ = reference(batch)
    registry = InMemoryDeviceRegistry([DeviceInfo(device_id=d) for d in batch.device_ids])
    registry.fail_next = 1
    store = InMemoryAggregateStore(transient_put_failures=3, ambiguous_put_failures=1)
    records = _records(batch)

    # WHEN the batch is processed (the registry failure leaves it all to redelivery)
    first = process_batch(records, _ports(batch, store, registry), _config(), now_s=NOW_S)
    # THEN nothing is applied yet and the first sequence number is reported for retry
    assert first.retry > 0
    assert first.failed_sequence_numbers
    # WHEN Kinesis redelivers from the reported sequence number
    failed = int(first.failed_sequence_numbers[0])
    redelivered = [r for r in records if r.seq >= failed]
    second = process_batch(redelivered, _ports(batch, store, registry), _config(), now_s=NOW_S)

    # THEN the throttled writes were retried inside the handler and everything landed exactly once
    assert second.retry == 0
    assert second.failed_sequence_numbers == []
    assert_windows_equal(_stored(store), expected)
    rejected = Counter(first.rejected) + Counter(second.rejected)
    # Records before the failure point may have been quarantined in the first pass already.
    assert rejected == reasons or dict(second.rejected) == dict(reasons)
