"""Faults observed through the deployed pipeline: a malformed flood, duplicated producer sends, and the
emulator restarted mid-run with its state kept.

Each test sends simulator records (device ids prefixed per test, so tests sharing the session's stack do
not see each other's data), waits for the pipeline, and compares the aggregates in DynamoDB and the
quarantine/duplicate lines in S3 with a reference computed offline from the simulator's own labels:
nothing lost, nothing counted twice.
"""

from __future__ import annotations

import tempfile
import uuid
from pathlib import Path

import boto3
import pytest

from iotpipe.local.emulator import Emulator, free_port
from iotpipe.ops.stack import deploy, stack_outputs
from tests.integration.fault_support import (
    check_pipeline,
    make_batch,
    register,
    stored_windows,
    wait_for,
)
from tests.integration.streams import put_records

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(150)
def test_a_flood_of_50_percent_malformed_records(deployed_stack: dict[str, str]) -> None:
    # GIVEN 30 registered devices and 1,200 records of which half are malformed (every kind)
    batch = make_batch(devices=30, count=1200, malformed_rate=0.5, seed=21)
    register(boto3.client("dynamodb"), deployed_stack["DevicesTableName"], batch)
    # WHEN they are put on the stream
    put_records(boto3.client("kinesis"), deployed_stack["StreamName"], batch.payloads())
    # THEN the good half is aggregated exactly, every bad record is quarantined with its expected reason
    check_pipeline(deployed_stack, batch)


@pytest.mark.timeout(150)
def test_duplicated_producer_sends_are_counted_once(deployed_stack: dict[str, str]) -> None:
    # GIVEN 20 registered devices and 600 records (plus the simulator's own duplicate resends)
    batch = make_batch(devices=20, count=600, malformed_rate=0.05, seed=22,
                       malformed_mix={"duplicate": 1.0})
    register(boto3.client("dynamodb"), deployed_stack["DevicesTableName"], batch)
    entries = batch.payloads()
    # WHEN a producer that lost the responses sends everything again (new sequence numbers)
    kinesis = boto3.client("kinesis")
    put_records(kinesis, deployed_stack["StreamName"], entries)
    put_records(kinesis, deployed_stack["StreamName"], entries)
    # THEN every reading is aggregated once and every resend is recorded as a duplicate
    check_pipeline(deployed_stack, batch, extra_duplicates=len(entries))


# Whatever the target, this test starts an embedded emulator of its own (LocalStack keeps state across a
# restart only with PERSISTENCE, a Pro feature): under make test-localstack it runs the same scenario.
@pytest.mark.timeout(240)
def test_emulator_restart_mid_run_keeps_state_and_loses_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN an emulator of its own that persists its state, with the stack deployed
    state = Path(tempfile.mkdtemp(prefix="iotpipe-restart-"))
    port = free_port()
    emulator = Emulator(port=port, state_dir=state, persist=True).start()
    for key, value in emulator.client_env().items():
        monkeypatch.setenv(key, value)
    try:
        stack = f"rs-{uuid.uuid4().hex[:8]}"
        deploy(stack, "embedded", quiet=True)
        outputs = stack_outputs(stack)
        batch = make_batch(devices=20, count=800, malformed_rate=0.05, seed=23)
        register(boto3.client("dynamodb"), outputs["DevicesTableName"], batch)
        entries = batch.payloads()
        half = len(entries) // 2
        put_records(boto3.client("kinesis"), outputs["StreamName"], entries[:half])
        # Let the processor apply part of the first half, then stop the emulator mid-run. Without this
        # progress the restart would come before anything was processed and prove nothing about state.
        before = wait_for(lambda: stored_windows(boto3.client("dynamodb"), outputs["AggregatesTableName"],
                                                 batch.device_ids), 60, 0.5)
        assert before, "the processor applied nothing of the first half in 60 s: no run to interrupt"

        # WHEN the emulator is stopped and started again on the same state directory and port
        emulator.stop()
        emulator = Emulator(port=port, state_dir=state, persist=True).start()
        # THEN the windows applied before the restart are still there (counts only grow from here)
        after = stored_windows(boto3.client("dynamodb"), outputs["AggregatesTableName"], batch.device_ids)
        lost = {k: (w["count"], after.get(k, {}).get("count", 0)) for k, w in before.items()
                if after.get(k, {}).get("count", 0) < w["count"]}
        assert not lost, f"windows lost or shrunk by the restart (before, after): {list(lost.items())[:5]}"
        # AND the producer continues with the second half
        put_records(boto3.client("kinesis"), outputs["StreamName"], entries[half:])

        # AND the aggregates equal the reference: records redelivered after the restart were not
        # applied twice, and none of the first half was lost
        check_pipeline(outputs, batch, timeout_s=120, redelivered=True)
    finally:
        emulator.stop()
