"""The cost model's arithmetic, checked against figures computed by hand (comments show the working)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotpipe import cost
from iotpipe.cost import Workload, batch_shape, estimate, measured_from_bench, shards_for
from iotpipe.prices import SECONDS_PER_MONTH

READINGS_1000_1HZ = 1000 * 730 * 3600  # 2,628,000,000 readings a month


def _line(est: cost.Estimate, component: str, item_prefix: str) -> cost.Line:
    matches = [ln for ln in est.lines if ln.component == component and ln.item.startswith(item_prefix)]
    assert len(matches) == 1, [ln.item for ln in est.lines]
    return matches[0]


def _workload(**kw: object) -> Workload:
    base: dict[str, object] = {"devices": 1000, "rate_hz": 1.0, "alarms": 5}
    base.update(kw)
    return Workload(**base)  # type: ignore[arg-type]


def test_seconds_per_month_is_the_730_hour_month() -> None:
    assert SECONDS_PER_MONTH == 2_628_000


@pytest.mark.parametrize(
    ("readings_per_s", "record_bytes", "shards"),
    [
        (800, 200, 1),  # 800 / (1000 * 0.8) = 1.0
        (801, 200, 2),
        (1000, 200, 2),  # 1.25 -> 2
        (100, 10_000, 2),  # bytes: 1,000,000 / (1,048,576 * 0.8) = 1.19 -> 2
        (0.5, 200, 1),
    ],
)
def test_shards_are_sized_for_80_percent_of_the_write_limits(
    readings_per_s: float, record_bytes: int, shards: int
) -> None:
    assert shards_for(readings_per_s, record_bytes) == shards


def test_template_batch_at_1000_devices_holds_one_reading_per_device() -> None:
    # GIVEN 1000 devices x 1 Hz on 2 shards: 500 records/s per shard, 500 devices per shard
    # WHEN BatchSize 500 with a 10 s window (it fills in 1 s)
    records, seconds, groups = batch_shape(_workload(), shards=2)
    # THEN each batch is 500 records = 1 s of stream, one (device, window) group per reading
    assert records == 500
    assert seconds == pytest.approx(1.0)
    assert groups == pytest.approx(500 * (1 + 0))  # min(max(1, 1), 1 + 1/60) = 1


def test_big_batches_hold_several_readings_per_device() -> None:
    # 500 records/s per shard x 30 s = 15,000 -> capped at BatchSize 10,000 = 20 s of stream;
    # 20 readings per device, spanning 1 + 20/60 windows on average: 500 * 4/3 groups.
    records, seconds, groups = batch_shape(_workload(batch_size=10_000, batching_window_s=30), shards=2)
    assert records == 10_000
    assert seconds == pytest.approx(20.0)
    assert groups == pytest.approx(500 * 4 / 3)


def test_a_window_below_one_second_still_gathers_one_poll_per_second() -> None:
    # 100 devices x 1 Hz, 1 shard, window 0: Lambda polls once a second -> batches of 100
    records, seconds, _ = batch_shape(_workload(devices=100, batching_window_s=0), shards=1)
    assert (records, seconds) == (100, pytest.approx(1.0))


def test_batches_are_capped_by_the_6_mb_invoke_payload() -> None:
    # 2000-byte records: base64 2667 + 250 envelope = 2917 bytes -> 6,291,456 // 2917 = 2156 records
    records, _, _ = batch_shape(
        _workload(devices=100_000, batch_size=10_000, record_bytes=2000, batching_window_s=10), shards=10
    )
    assert records == 2156


def test_kinesis_cost_at_1000_devices_1_hz() -> None:
    est = estimate(_workload())
    assert est.shards == 2
    # 2 shards x 730 h x 0.015 = 21.90
    assert _line(est, "kinesis", "shard-hours").usd == pytest.approx(21.90)
    # 2,628 M records x 1 unit each x 0.014 / M = 36.792
    assert _line(est, "kinesis", "PUT payload").usd == pytest.approx(36.792)


def test_dynamodb_writes_follow_the_one_write_per_window_per_batch_rule() -> None:
    est = estimate(_workload())
    # 500 groups / 500 records x 0.99 valid = 0.99 writes per reading, 1 WRU each (item < 1 KB)
    assert est.ddb_writes_per_reading == pytest.approx(0.99)
    writes = _line(est, "dynamodb", "aggregate writes")
    assert writes.quantity == pytest.approx(READINGS_1000_1HZ * 0.99)
    assert writes.usd == pytest.approx(2_601_720_000 * 0.625 / 1e6)  # 1626.075
    reads = _line(est, "dynamodb", "aggregate prefetch")
    assert reads.usd == pytest.approx(2_601_720_000 * 0.125 / 1e6)  # 325.215


def test_item_over_1_kb_costs_two_write_units() -> None:
    # 2 Hz: 120 readings per window -> 650 + 3.9 * 120 = 1118 bytes -> 2 WRU per write
    est = estimate(_workload(rate_hz=2.0))
    writes = _line(est, "dynamodb", "aggregate writes")
    assert writes.quantity == pytest.approx(2000 * SECONDS_PER_MONTH * est.ddb_writes_per_reading * 2)


def test_processor_duration_and_requests() -> None:
    est = estimate(_workload())
    # per batch: 15 ms + 500 x 20 us (10 ms) + 495 writes x 5 ms (2475) + ceil(4.95) = 5 gets x 8 ms (40)
    #   + ceil(500 x 0.99 x 0.01 / 25) = 1 anomaly batch x 5 ms + S3: (1 + (1 - 0.99^500)) puts x 30 ms
    p_q = 1 - 0.99**500
    expected_ms = 15 + 10 + 2475 + 40 + 5 + (1 + p_q) * 30
    assert est.processor_ms_per_invocation == pytest.approx(expected_ms)
    invocations = READINGS_1000_1HZ / 500  # 5,256,000
    assert _line(est, "lambda", "processor requests").usd == pytest.approx(invocations * 0.2 / 1e6)
    gb_s = invocations * expected_ms / 1000 * 1.0
    assert _line(est, "lambda", "processor duration").usd == pytest.approx(gb_s * 0.0000166667)


def test_s3_puts_one_per_batch_plus_quarantine() -> None:
    est = estimate(_workload())
    p_q = 1 - 0.99**500  # a 500-record batch with 1 % malformed nearly always quarantines one
    puts = READINGS_1000_1HZ / 500 * (1 + p_q)
    assert _line(est, "s3", "PUT").quantity == pytest.approx(puts)
    assert _line(est, "s3", "PUT").usd == pytest.approx(puts / 1000 * 0.005)


def test_small_objects_in_standard_ia_are_billed_at_128_kb() -> None:
    est = estimate(_workload(malformed_rate=0.0))
    # processed objects: 500 x 60 B = 30,000 B < 128 KB -> billed 131,072 B each, for 335 of 365 days
    objects = READINGS_1000_1HZ / 500
    ia_gb = objects * 131_072 * (365 - 30) / (730 / 24) / 1024**3
    assert _line(est, "s3", "Standard-IA").quantity == pytest.approx(ia_gb)
    assert _line(est, "s3", "lifecycle").quantity == pytest.approx(objects)
    # WHEN the lifecycle rule skips objects < 128 KB THEN they stay in Standard and nothing transitions
    kept = estimate(_workload(malformed_rate=0.0, archive_ia_min_object_filter=True))
    assert not [ln for ln in kept.lines if ln.item.startswith(("Standard-IA", "lifecycle"))]
    small = _line(kept, "s3", "Standard storage (small")
    assert small.quantity == pytest.approx(READINGS_1000_1HZ * 60 * 335 / (730 / 24) / 1024**3)


def test_fixed_charges_and_per_million() -> None:
    est = estimate(_workload())
    assert _line(est, "cloudwatch", "alarms").usd == pytest.approx(0.50)
    assert _line(est, "cloudwatch", "dashboard").usd == pytest.approx(3.00)
    assert _line(est, "kms", "customer managed key").usd == pytest.approx(1.00)
    assert est.per_million == pytest.approx(est.total / 2628)
    fixed = sum(ln.usd for ln in est.lines if ln.fixed)
    assert est.variable_per_million == pytest.approx((est.total - fixed) / 2628)


def test_template_defaults_miss_the_target_and_dynamodb_dominates() -> None:
    est = estimate(_workload())
    assert est.per_million > cost.TARGET_USD_PER_MILLION
    assert est.dominant() == "dynamodb"


def test_bigger_batches_cut_writes_per_reading() -> None:
    small = estimate(_workload())
    big = estimate(_workload(batch_size=10_000, batching_window_s=60, shards=4))
    # 250 records/s per shard: 10,000 records = 40 s; (1 + 40/60) / 40 windows per reading x 0.99
    assert big.ddb_writes_per_reading == pytest.approx((1 + 40 / 60) / 40 * 0.99)
    assert big.per_million < small.per_million / 5


def test_from_bench_replaces_the_formula(tmp_path: Path) -> None:
    # GIVEN a bench run that counted 10,000 readings, 40 invocations of 100 ms, 5,000 writes, 80 PUTs
    bench = tmp_path / "e2e.out"
    inputs = {"readings": 10_000, "processor_invocations": 40, "processor_duration_ms": 4000,
              "ddb_writes": 5000, "ddb_reads": 5000, "s3_puts": 80, "s3_bytes": 600_000,
              "kinesis_bytes": 2_000_000, "metric_calls": 40}
    bench.write_text("readable line\n" + json.dumps({"records_per_s": 1.0, "cost_inputs": inputs}) + "\n")
    measured = measured_from_bench(bench)
    assert measured.invocations_per_reading == pytest.approx(0.004)
    assert measured.processor_ms_per_invocation == pytest.approx(100)
    # WHEN costing 1000 devices x 1 Hz with it
    est = estimate(_workload(), measured=measured)
    # THEN 2,628 M x 0.004 invocations x 0.1 s x 1 GB = 1,051,200 GB-s
    assert _line(est, "lambda", "processor duration").quantity == pytest.approx(1_051_200)
    # AND 0.5 writes per reading -> 1,314 M WRU = 821.25 USD
    assert _line(est, "dynamodb", "aggregate writes").usd == pytest.approx(821.25)
    assert _line(est, "s3", "PUT").quantity == pytest.approx(READINGS_1000_1HZ * 0.008)
    assert est.source.startswith("bench:")


def test_count_template_alarms(tmp_path: Path) -> None:
    template = tmp_path / "t.yaml"
    template.write_text("Resources:\n  A:\n    Type: AWS::CloudWatch::Alarm\n  B:\n"
                        "    Type: AWS::CloudWatch::Alarm\n  C:\n    Type: AWS::SNS::Topic\n")
    assert cost.count_template_alarms(template) == 2
    assert cost.count_template_alarms(tmp_path / "missing.yaml") == 5


def test_main_prints_one_json_object_last(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--devices", "1000", "--rate", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    doc = json.loads(out[-1])
    assert doc["usd_per_million_readings"] > 0
    assert doc["target_met"] is False
    assert doc["prices_as_of"] == "2026-11"
    assert {"kinesis", "lambda", "dynamodb", "s3", "cloudwatch", "apigateway"} <= set(
        doc["components_usd_per_month"]
    )
    assert len(doc["what_if"]) == len(cost.WHAT_IF)


def test_main_json_only_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--devices", "10", "--rate", "0.1", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert json.loads(out[0])["devices"] == 10
    assert cost.main(["--devices", "0", "--rate", "1"]) == 2
