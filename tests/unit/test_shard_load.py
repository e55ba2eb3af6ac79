"""bench/shard_load.py: one shard's records cut into batches as the event source mapping cuts them, the
cost model's plan it replays, and ``iotpipe cost --from-shard-bench`` reading its result."""

from __future__ import annotations

import gzip
import json
import time
from pathlib import Path
from typing import Any

import pytest

from bench.e2e.shard_feed import SEQ_BASE, Record, cut_batches, event_records, packed_records, payload_bytes
from bench.shard_load import plan_for, workload_overrides
from iotpipe.cost import cli as cost
from iotpipe.cost.bench_input import measured_from_shard_bench
from iotpipe.cost.estimate import estimate
from iotpipe.cost.limits import EVENT_ENVELOPE_BYTES
from iotpipe.cost.workload import Workload
from simulator.stream import Produced


def _records(n: int, size: int = 300, every_ms: int = 10) -> list[Record]:
    return [Record(b"x" * size, i * every_ms, 1, "pack-00") for i in range(n)]


def test_batch_size_closes_a_batch_at_that_many_records() -> None:
    # GIVEN 25 small records sent within 250 ms, far under the payload and the window
    # WHEN cut with BatchSize 10
    batches = list(cut_batches(_records(25), batch_size=10, window_s=30))
    # THEN batches of 10, 10 and the run's last 5, closed by BatchSize
    assert [(len(b), why) for b, why in batches] == [(10, "BatchSize"), (10, "BatchSize"), (5, "end")]


def test_the_payload_closes_a_batch_counting_base64_and_the_envelope() -> None:
    # GIVEN records of 300 bytes: 400 in base64, plus the event envelope each
    one = payload_bytes(_records(1)[0])
    assert one == 400 + EVENT_ENVELOPE_BYTES
    # WHEN the payload limit holds exactly 7 of them (and a byte less than 8)
    batches = list(cut_batches(_records(20), batch_size=10_000, window_s=30, payload_limit=8 * one - 1))
    # THEN each batch is 7 records, closed by the payload
    assert [(len(b), why) for b, why in batches] == [(7, "payload"), (7, "payload"), (6, "end")]
    # AND at the real 6 MB limit a batch of 4 MB records takes one record only
    big = [Record(b"x" * (4 << 20), i, 25, "pack-00") for i in range(3)]
    assert [len(b) for b, _ in cut_batches(big, 10_000, 30)] == [1, 1, 1]


def test_the_batching_window_closes_a_batch_by_stream_time() -> None:
    # GIVEN one record every 100 ms for 10 s of stream
    records = _records(100, every_ms=100)
    # WHEN cut with a 2-second batching window
    batches = list(cut_batches(records, batch_size=10_000, window_s=2))
    # THEN each batch holds the records sent within 2 s of its first: 20 records, closed by the window
    assert [(len(b), why) for b, why in batches] == [(20, "window")] * 4 + [(20, "end")]
    for batch, _ in batches:
        assert batch[-1].sent_ms - batch[0].sent_ms < 2000
    # AND a window under a second gathers a second's worth (Lambda polls a shard about once a second)
    assert len(next(iter(cut_batches(records, 10_000, 0)))[0]) == 10


def test_compressed_records_are_gzip_of_the_packed_record_and_the_same_every_run() -> None:
    # GIVEN 50 good readings of one device and one malformed record
    produced = [Produced("dev-a", json.dumps({"t": i}).encode(), "normal", i, i) for i in range(50)]
    produced.insert(30, Produced("dev-a", b"{not json", "invalid_json", 30, 30))
    # WHEN packed 25 per record with --compress, twice
    first = list(packed_records(produced, 25, compress=True))
    second = list(packed_records(produced, 25, compress=True))
    # THEN every record of good readings is gzip of the JSON array, byte for byte the same both times
    assert [r.data for r in first] == [r.data for r in second]
    good = [r for r in first if r.data != b"{not json"]
    assert sum(r.readings for r in good) == 50
    assert json.loads(gzip.decompress(good[0].data)) == [{"t": i} for i in range(25)]
    # AND the malformed record reaches the processor as produced, after the pack it closed
    assert [r.data for r in first].index(b"{not json") == 2
    assert json.loads(gzip.decompress(first[1].data)) == [{"t": i} for i in range(25, 30)]


def test_the_plan_is_the_cost_model_s() -> None:
    # GIVEN the model's plan for a million devices at 1 Hz
    plan = plan_for(1_000_000, {})
    est = estimate(Workload(devices=1_000_000, rate_hz=1.0))
    # THEN the replayed shard is one of the model's shards, with its batch limits
    assert plan.shards == est.shards
    assert plan.devices_per_shard == round(1_000_000 / est.shards)
    assert (plan.batch_records, plan.batch_limit) == (est.batch_records, est.batch_limit)
    # AND a Workload field set on the command line moves the plan as it moves the model
    assert plan_for(1_000_000, workload_overrides(["shards=500"])).devices_per_shard == 2000
    with pytest.raises(Exception, match="Workload field"):
        workload_overrides(["no_such_field=1"])


def _point(fleet: int, **over: Any) -> dict[str, Any]:
    return {"fleet_devices": fleet, "devices_per_shard": 4167, "readings": 1_000_000, "conserved": True,
            "invocations_per_1000_readings": 0.05, "mean_batch_seconds": 5.1, "s3_puts_per_reading": 0.0001,
            "s3_bytes_per_reading": 39.0, "full_window_item_bytes": 790.0,
            "processor_ms_per_invocation": {"mean": 7000.0},
            "per_1000_readings": {"dynamodb.PutItem.aggregates": 200.0,
                                  "dynamodb.BatchGetItem.aggregates.keys": 200.0},
            "consumed_per_1000_readings": {"PutItem.aggregates": 400.0}, **over}


def _result(tmp_path: Path, *points: dict[str, Any]) -> Path:
    path = tmp_path / "shard-load.json"
    path.write_text("progress line\n" + json.dumps({"bench": "shard_load", "points": list(points)}) + "\n")
    return path


def test_the_parser_takes_the_point_of_the_fleet_size(tmp_path: Path) -> None:
    # GIVEN a run with points for 1,000 and 1,000,000 devices
    path = _result(tmp_path, _point(1000, per_1000_readings={"dynamodb.PutItem.aggregates": 50.0}),
                   _point(1_000_000))
    # WHEN read for 1,000,000 devices
    m = measured_from_shard_bench(path, 1_000_000)
    # THEN that point's counts, per reading
    assert m.ddb_writes_per_reading == pytest.approx(0.2)
    assert m.ddb_reads_per_reading == pytest.approx(0.2)
    assert m.invocations_per_reading == pytest.approx(0.00005)
    assert m.wcu_per_write == pytest.approx(2.0)
    assert (m.s3_puts_per_reading, m.archive_bytes_per_reading, m.item_bytes) == (0.0001, 39.0, 790.0)
    # AND this machine's processor time is reported, not priced as Lambda's
    assert m.processor_ms_per_invocation is None
    assert m.counted is not None
    assert m.counted["processor_ms_per_invocation_this_machine"] == 7000.0
    # AND a fleet size it did not measure is named, with the sizes it did
    with pytest.raises(ValueError, match=r"no point for 10,000 devices \(it measured 1,000, 1,000,000\)"):
        measured_from_shard_bench(path, 10_000)


def test_the_parser_refuses_a_point_that_did_not_conserve(tmp_path: Path) -> None:
    path = _result(tmp_path, _point(1000, conserved=False))
    with pytest.raises(ValueError, match="did not conserve"):
        measured_from_shard_bench(path, 1000)


def test_iotpipe_cost_prices_the_fleet_with_its_point(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture[str]) -> None:
    path = _result(tmp_path, _point(1_000_000))
    assert cost.main(["--devices", "1000000", "--rate", "1", "--json", "--from-shard-bench", str(path)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["source"].startswith("shard-bench:")
    assert doc["counted_calls_per_1000_readings"]["dynamodb.PutItem.aggregates"] == 200.0
    # AND a fleet the run has no point for is a clear error, not the formula
    assert cost.main(["--devices", "5000", "--rate", "1", "--json", "--from-shard-bench", str(path)]) == 2
    assert "no point for 5,000 devices" in capsys.readouterr().err


def test_a_record_arrives_when_it_was_sent() -> None:
    # GIVEN a record sent ten minutes before the replay runs
    sent_ms = int(time.time() * 1000) - 600_000
    # WHEN it becomes an event record
    (event,) = event_records([Record(b"{}", sent_ms, 1, "pack-07")], SEQ_BASE, "shardId-000000000000")
    # THEN its arrival is its send time (the processor judges lateness against it, not the replay's clock)
    assert event["kinesis"]["approximateArrivalTimestamp"] == sent_ms / 1000
    assert event["kinesis"]["partitionKey"] == "pack-07"
