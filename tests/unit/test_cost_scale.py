"""Cost falls with scale: per-reading cost flat or falling from 1,000 to 1,000,000 devices, inside the
default quotas below 100,000 devices, and the increases named above."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from iotpipe import cost
from iotpipe.cost import Workload, estimate
from iotpipe.cost.quotas import quota_plan
from iotpipe.cost.scale import fleet_sweep, window_tradeoff
from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def test_a_reading_costs_no_more_at_a_million_devices_than_at_a_thousand() -> None:
    # GIVEN the template's defaults at 1 Hz
    small = estimate(Workload(devices=1_000, rate_hz=1.0))
    large = estimate(Workload(devices=1_000_000, rate_hz=1.0))
    # THEN 1,000 devices meet the 0.05 USD per million goal, and a million devices cost no more a reading
    assert small.per_million <= 0.05
    assert large.per_million <= small.per_million
    # AND the window writes per reading do not grow with the fleet: a batch spans the window at both
    assert large.ddb_writes_per_reading == pytest.approx(small.ddb_writes_per_reading, rel=0.05)
    assert large.batch_seconds == pytest.approx(60.0)


def test_shards_are_added_so_a_batch_spans_the_batching_window() -> None:
    # The write limits alone would give a million devices 50 shards whose 6 MB batches span ~4 s each
    est = estimate(Workload(devices=1_000_000, rate_hz=1.0))
    assert est.shard_choice["write_limits"] == 50
    assert est.shards > 10 * est.shard_choice["write_limits"]
    narrow = estimate(Workload(devices=1_000_000, rate_hz=1.0, shard_sizing="write_limits"))
    assert narrow.shards == 50
    assert narrow.batch_seconds < 10
    assert narrow.ddb_writes_per_reading > 5 * est.ddb_writes_per_reading
    assert narrow.per_million > 2 * est.per_million  # with the capacity those writes need, bought


@pytest.mark.parametrize("devices", [1_000, 10_000, 30_000, 60_000, 99_999])
def test_no_default_quota_is_exceeded_below_100000_devices(devices: int) -> None:
    plan = quota_plan(estimate(Workload(devices=devices, rate_hz=1.0)))
    assert plan["increases"] == []
    assert all(v < 1.0 for v in plan["hard_limits_used"].values())


def test_a_million_devices_name_each_increase_to_request() -> None:
    est = estimate(Workload(devices=1_000_000, rate_hz=1.0))
    plan = quota_plan(est)
    asked = {i["quota"]: i["to"] for i in plan["increases"]}
    assert asked["Kinesis Data Streams: Shards per Region"] >= est.shards > 500
    assert asked["Amazon DynamoDB: Table-level write throughput limit"] > 40_000
    # AND the plan is priced with the capacity it needs (not a throttled table's)
    assert est.aggregates is not None
    assert not est.aggregates.short
    assert est.workload.aggregates_max_units > 40_000


def test_mqtt_fleets_name_the_iot_core_publish_quota() -> None:
    # 30,000 devices publishing once a second each is above IoT Core's 20,000 publishes/s default
    plan = quota_plan(estimate(Workload(devices=30_000, rate_hz=1.0, mqtt_ingest="basic-ingest",
                                        readings_per_record=1)))
    names = {i["resource"] for i in plan["increases"]}
    assert "IoT Core inbound publishes per second" in names


def test_longer_batching_windows_trade_latency_for_cost() -> None:
    rows = window_tradeoff(Workload(devices=10_000, rate_hz=1.0), windows=(1, 10, 60))
    costs = [r["usd_per_million_readings"] for r in rows]
    latencies = [r["latency_s"]["max"] for r in rows]
    assert costs == sorted(costs, reverse=True)
    assert latencies == sorted(latencies)
    assert rows[0]["ddb_writes_per_reading"] > 0.9  # a 1 s batch holds one reading per device


def test_template_keeps_aggregates_30_days_without_pitr_and_the_registry_with_it() -> None:
    doc = load_template(ROOT / "cloudformation" / "template.yaml")
    assert doc["Parameters"]["AggregatesTtlDays"]["Default"] == 30
    assert doc["Parameters"]["AggregatesPointInTimeRecovery"]["Default"] == "disabled"
    devices = doc["Resources"]["DevicesTable"]["Properties"]["PointInTimeRecoverySpecification"]
    assert devices["PointInTimeRecoveryEnabled"] is True
    d = cost.template_defaults()
    assert (d["aggregates_retention_days"], d["aggregates_pitr"]) == (30.0, False)


def test_sweep_prints_every_fleet_and_writes_the_plot(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plot = tmp_path / "cost.png"
    assert cost.main(["--devices", "1000", "--rate", "1", "--sweep", "--plot", str(plot)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert [r["devices"] for r in doc["fleet_sweep"]] == [1_000, 10_000, 100_000, 1_000_000]
    per_m = [r["usd_per_million_readings"] for r in doc["fleet_sweep"]]
    assert per_m[-1] <= per_m[0]
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_measured_points_are_costed_beside_the_model() -> None:
    w = Workload(devices=1_000, rate_hz=1.0)
    measured = cost.Measured(source="calls:test", ddb_writes_per_reading=0.05, ddb_reads_per_reading=0.05)
    rows = fleet_sweep(w, [1_000, 10_000], lambda n: measured if n == 1_000 else None)
    assert rows[0]["measured_ddb_writes_per_reading"] == pytest.approx(0.05)
    assert rows[0]["measured_usd_per_million_readings"] > rows[0]["usd_per_million_readings"]
    assert "measured_usd_per_million_readings" not in rows[1]
