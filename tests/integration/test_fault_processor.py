"""Faults inside the processor: a crash after a partial write, then redelivery; DynamoDB throttling.

Twice each:
- on the emulator: the deployed processor gets ``PROCESSOR_FAULTS`` (the test-only hook in
  ``functions/processor/faults.py``) through UpdateFunctionConfiguration, simulator records go onto the
  real stream, the event source mapping drives the function, and the aggregates in the real table are
  compared with the reference. The crash escapes the handler, so the mapping retries the batch (ministack:
  about every second, in a fresh worker); a once-marker makes only the first attempt fail.
- in-process: the processor's real ``process_batch`` with in-memory adapters that inject the fault
  (functions/adapters/fakes.py), for several crash points, the registry failing too and ambiguous writes,
  in milliseconds.
In every case: nothing lost, nothing counted twice, aggregates equal the reference computed offline
from the simulator's own records.
"""

from __future__ import annotations

import os
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import boto3
import pytest

from functions.core.readings import DeviceInfo
from functions.processor.enrich import DeviceCache
from functions.processor.ingestion_processor import ProcessorConfig, ProcessorPorts, process_batch
from testkit.events import make_records
from testkit.fakes import (
    CrashAfterWrites,
    InMemoryAggregateStore,
    InMemoryArchive,
    InMemoryDeviceRegistry,
    InMemoryMetrics,
)
from tests.integration.fault_support import (
    Batch,
    WindowRef,
    assert_windows_equal,
    check_pipeline,
    fault_events,
    make_batch,
    processor_faults,
    reference,
    register,
    settled,
    wait_for,
)
from tests.integration.streams import put_records

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
    # applied again (their readings are counted as redelivered: the first delivery counted them), the
    # others were applied once; producer duplicates stay duplicates
    assert_windows_equal(_stored(store), expected)
    assert outcome.retry == 0
    assert outcome.failed_sequence_numbers == []
    assert dict(outcome.rejected) == dict(reasons)
    applied_before_crash = sum(w["count"] for w in expected.values()) - outcome.aggregated
    assert applied_before_crash > 0
    assert outcome.redelivered == applied_before_crash
    assert outcome.duplicates == duplicates
    # AND every record is accounted for exactly once
    assert outcome.aggregated + outcome.redelivered + outcome.duplicates + outcome.quarantined == len(records)


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
    # AND every bad record was quarantined exactly once across the two passes: those before the reported
    # failure point in the first, the rest in the redelivery (quarantining one again is double counting)
    assert Counter(first.rejected) + Counter(second.rejected) == reasons


# --- on the emulator -------------------------------------------------------------------------------------

# The fault hook records each fault it injects as a file in a marker directory of the test's: visible
# here when the functions run as processes on this host (the embedded emulator; LocalStack through
# ../shared/localstack-host, where scripts/test-localstack.sh sets IOTPIPE_FUNCTIONS_ON_HOST=1), not when
# LocalStack runs them in containers (docker compose). Without the markers the tests cannot show the
# fault happened (nor count how often: the marker is also what limits it to one invocation, and in a
# container it is that container's own), so there they are skipped with that reason instead of passing
# vacuously. Under scripts/test-localstack.sh without Docker they run: the harness's functions are host
# processes.
SHARED_DISK = (os.environ.get("IOTPIPE_TARGET", "embedded") == "embedded"
               or os.environ.get("IOTPIPE_FUNCTIONS_ON_HOST") == "1")
NEEDS_SHARED_DISK = pytest.mark.skipif(
    not SHARED_DISK, reason="the functions run in containers (Docker): the fault markers they write, which "
    "prove the fault happened and how often, are not visible to the test (IOTPIPE_FUNCTIONS_ON_HOST unset)")


def _run_with_faults(stack: dict[str, str], batch: Batch, tmp_path: Path, faults: str) -> list[dict]:
    """Register the batch's devices, configure the fault (once, for this batch's devices only), put the
    records and wait (bounded) until the fault fired and every valid reading is counted. Returns the
    recorded fault events. The function's configuration is restored on the way out, whatever happens."""
    token = uuid.uuid4().hex[:12]
    register(boto3.client("dynamodb"), stack["DevicesTableName"], batch)
    spec = f"{faults};once_key={token};device_prefix={batch.prefix};marker_dir={tmp_path}"
    expected, _, _ = reference(batch)
    total = sum(int(w["count"]) for w in expected.values())
    with processor_faults(stack["ProcessorFunctionName"], spec):
        put_records(boto3.client("kinesis"), stack["StreamName"], batch.payloads())
        events = wait_for(lambda: fault_events(tmp_path / token), 60, 0.5)
        assert events, "the injected fault never fired"
        # The batch gets through with the fault still configured: once means the retry does not fail again.
        wait_for(lambda: settled(boto3.client("dynamodb"), stack["AggregatesTableName"], batch, total), 60)
    return fault_events(tmp_path / token) or events


@NEEDS_SHARED_DISK
@pytest.mark.timeout(120)
def test_on_the_emulator_a_crash_after_a_partial_write_is_retried_and_counted_once(
    deployed_stack: dict[str, str], tmp_path: Path,
) -> None:
    # GIVEN 20 devices, 400 simulator records (5 % malformed), and a processor that crashes once, in the
    # first invocation that writes their windows, after 3 window writes are committed
    batch = make_batch(devices=20, count=400, malformed_rate=0.05, seed=31)
    # WHEN the records are put on the stream
    events = _run_with_faults(deployed_stack, batch, tmp_path, "crash_after_writes=3")
    # THEN the crash happened after a real partial write, exactly once
    assert [(e["fault"], e["committed_writes"]) for e in events] == [("crash_after_writes", 3)]
    # AND the mapping retried the batch: the aggregates equal the offline reference (the 3 windows written
    # before the crash were not applied again, the others were applied once), and every record is archived
    # once (as aggregated or, for those applied before the crash, duplicate)
    check_pipeline(deployed_stack, batch, timeout_s=30, redelivered=True)


@NEEDS_SHARED_DISK
@pytest.mark.timeout(120)
def test_on_the_emulator_throttled_writes_are_retried_and_nothing_is_lost_or_doubled(
    deployed_stack: dict[str, str], tmp_path: Path,
) -> None:
    # GIVEN 30 devices, 600 simulator records, and a processor whose first 5 aggregate writes for them are
    # rejected with ProvisionedThroughputExceededException (once)
    batch = make_batch(devices=30, count=600, malformed_rate=0.02, seed=32)
    # WHEN the records are put on the stream
    events = _run_with_faults(deployed_stack, batch, tmp_path, "throttle_writes=5")
    # THEN all 5 throttles happened, in one invocation
    assert [e["fault"] for e in events] == ["throttle_writes"] * 5
    assert len({e["pid"] for e in events}) == 1
    # AND they were retried inside that invocation: aggregates equal the reference and the archive holds
    # every record once, labelled as on a fault-free run (no redelivery was needed)
    check_pipeline(deployed_stack, batch, timeout_s=30)
