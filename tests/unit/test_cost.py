"""The cost model's arithmetic, checked against figures computed by hand (comments show the working)."""

from __future__ import annotations

import base64
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest
import yaml

from iotpipe import cost
from iotpipe.cost import Workload, batch_shape, estimate, measured_from_bench, shards_for
from iotpipe.cost.prices import SECONDS_PER_MONTH
from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]
READINGS_1000_1HZ = 1000 * 730 * 3600  # 2,628,000,000 readings a month
# The hand-computed scenarios below pin the settings they compute with, so they do not move when the
# template's defaults do; test_workload_defaults_follow_the_template covers the defaults themselves.
# They also pin one reading per Kinesis record (the arithmetic is per record); packed records are
# covered by the tests under "packed records" below. And an on-demand aggregates table (billed per
# request, so the arithmetic is per write); provisioned capacity is covered under "capacity mode". And
# plain JSON records with shards sized by the write limits alone; gzip records and the cheapest shard
# count are covered under "cost falls with scale".
SMALL = {"batch_size": 500, "batching_window_s": 10.0, "anomaly_rate": 0.01,
         "archive_ia_min_object_filter": False, "write_concurrency": 16, "readings_per_record": 1,
         "aggregates_billing_mode": "PAY_PER_REQUEST", "compression": "none", "shard_sizing": "write_limits"}


def _line(est: cost.Estimate, component: str, item_prefix: str) -> cost.Line:
    matches = [ln for ln in est.lines if ln.component == component and ln.item.startswith(item_prefix)]
    assert len(matches) == 1, [ln.item for ln in est.lines]
    return matches[0]


def _workload(**kw: object) -> Workload:
    base: dict[str, object] = {"devices": 1000, "rate_hz": 1.0, "alarms": 5, **SMALL}
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


def test_500_record_batch_at_1000_devices_holds_one_reading_per_device() -> None:
    # GIVEN 1000 devices x 1 Hz on 2 shards: 500 records/s per shard, 500 devices per shard
    # WHEN BatchSize 500 with a 10 s window (it fills in 1 s)
    records, seconds, groups = batch_shape(_workload(), shards=2)
    # THEN each batch is 500 records = 1 s of stream, one (device, window) group per reading
    assert records == 500
    assert seconds == pytest.approx(1.0)
    assert groups == pytest.approx(500 * (1 + 0))  # min(max(1, 1), 1 + 1/60) = 1


def test_big_batches_hold_several_readings_per_device() -> None:
    # 500 records/s per shard x 30 s = 15,000, BatchSize 10,000, but the 6 MB payload holds
    # 6,291,456 // (267 base64 + 570 envelope) = 7,516 records = 15.032 s of stream;
    # 15.032 readings per device, spanning 1 + 15.032/60 windows on average.
    w = _workload(batch_size=10_000, batching_window_s=30)
    records, seconds, groups = batch_shape(w, shards=2)
    assert records == 7516
    assert seconds == pytest.approx(15.032)
    assert groups == pytest.approx(500 * (1 + 15.032 / 60))
    assert cost.batch_limit(w, 2) == "payload"
    assert cost.batch_limit(_workload(), 2) == "BatchSize"  # 500 < 5,000 gathered in 10 s


def test_a_window_below_one_second_still_gathers_one_poll_per_second() -> None:
    # 100 devices x 1 Hz, 1 shard, window 0: Lambda polls once a second -> batches of 100
    records, seconds, _ = batch_shape(_workload(devices=100, batching_window_s=0), shards=1)
    assert (records, seconds) == (100, pytest.approx(1.0))


def test_batches_are_capped_by_the_6_mb_invoke_payload() -> None:
    # 2000-byte records: base64 2667 + 570 envelope = 3237 bytes -> 6,291,456 // 3237 = 1943 records
    records, _, _ = batch_shape(
        _workload(devices=100_000, batch_size=10_000, record_bytes=2000, batching_window_s=10), shards=10
    )
    assert records == 1943


def test_event_envelope_matches_a_kinesis_event_record() -> None:
    # A Kinesis event record as Lambda delivers it (documented shape), with this stack's names and a
    # 200-byte reading; the envelope is everything but the base64 data, compact JSON.
    reading = json.dumps({"device_id": "dev-000001", "timestamp": "2026-11-18T11:06:40.123Z",
                          "temperature": 21.5, "humidity": 45.0, "pressure": 1013.25,
                          "ground_truth": "normal", "pad": "x" * 48}, separators=(",", ":")).encode()
    assert len(reading) == 200
    seq = "49590338271490256608559692538361571095921575989136588898"
    data = base64.b64encode(reading).decode()
    record = {
        "kinesis": {"kinesisSchemaVersion": "1.0", "partitionKey": "dev-000001", "sequenceNumber": seq,
                    "data": data, "approximateArrivalTimestamp": 1795000000.123},
        "eventSource": "aws:kinesis", "eventVersion": "1.0", "eventID": f"shardId-000000000001:{seq}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::123456789012:role/iotpipe-ProcessorRole-AbCdEfGhIjKl",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:123456789012:stream/iotpipe-readings",
    }
    size = len(json.dumps(record, separators=(",", ":"))) + 1  # + the comma between records
    assert size == pytest.approx(cost.EVENT_ENVELOPE_BYTES + len(data), abs=25)  # ~0.84 KB per record
    assert cost.payload_cap(200) == pytest.approx(6 * 1024 * 1024 / size, rel=0.01)


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
    # 5 Hz: 300 readings per window, 200 ms apart (2-byte varints) -> 666 + 2 * 300 = 1266 bytes -> 2 WRU
    est = estimate(_workload(rate_hz=5.0))
    writes = _line(est, "dynamodb", "aggregate writes")
    assert writes.quantity == pytest.approx(5000 * SECONDS_PER_MONTH * est.ddb_writes_per_reading * 2)
    # 2 Hz: 120 readings -> 666 + 2 * 120 = 906 bytes -> 1 WRU (1,134 B, 2 WRU, with the number set)
    est = estimate(_workload(rate_hz=2.0))
    writes = _line(est, "dynamodb", "aggregate writes")
    assert writes.quantity == pytest.approx(2000 * SECONDS_PER_MONTH * est.ddb_writes_per_reading)


def test_processor_duration_and_requests() -> None:
    est = estimate(_workload())
    # per batch of 500 (one reading per device, 1 % flagged):
    #   495 window writes on 16 threads: ceil(495 / 16) = 31 rounds x 5 ms = 155 ms
    #   ceil(4.95) = 5 prefetch gets x 8 ms = 40; 4.95 anomalies -> 1 BatchWriteItem x 5 ms
    #   flagged devices 500 x 0.0099 = 4.95; alerts capped by the cooldown: 1000 x 2,628,000 / 300
    #   = 8,760,000 a month over 5,256,000 batches = 1.6667 per batch; cooldown updates 4.95 + (4.95 -
    #   1.6667) = 8.2333 x 5 ms; publishes 1.6667 x 15 ms; S3 (1 + p_q) x 30 ms
    #   SDK CPU 1 ms for every call; overhead 15 ms; compute 500 x 20 us = 10 ms
    p_q = 1 - 0.99**500
    alerts = 1000 * 2_628_000 / 300 / 5_256_000
    cooldown = 4.95 + (4.95 - alerts)
    calls = 495 + 5 + 1 + cooldown + alerts + (1 + p_q)
    expected_ms = 15 + 10 + calls * 1.0 + 31 * 5 + 5 * 8 + (1 + cooldown) * 5 + alerts * 15 + (1 + p_q) * 30
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


def test_window_writes_overlap_on_the_thread_pool() -> None:
    one = estimate(_workload(write_concurrency=1))
    sixteen = estimate(_workload())
    # 495 writes x 5 ms sequentially vs 31 rounds x 5 ms: 2475 - 155 = 2320 ms less per batch
    assert one.processor_ms_per_invocation - sixteen.processor_ms_per_invocation == pytest.approx(2320)


def test_alert_cooldown_writes_and_publishes() -> None:
    est = estimate(_workload())
    alerts = 1000 * 2_628_000 / 300  # one per device per 300 s cooldown
    flagged = 5_256_000 * 500 * 0.0099  # batches x devices x P(device flagged in a batch)
    assert _line(est, "sns", "alert publishes").quantity == pytest.approx(alerts)
    assert _line(est, "dynamodb", "alert cooldown").quantity == pytest.approx(flagged + flagged - alerts)


def test_template_defaults_at_1000_devices_unpacked() -> None:
    # The template as it is (BatchSize 10,000, window 60 s, 0.2 % flagged) with one reading per Kinesis
    # record: the 6 MB payload holds 7,516 records, 7.5 s of a 1,000-record/s stream; the write limits
    # need 2 shards, a batch spanning the 60 s window 8 (60,000 / 7,516); the cheapest between is chosen
    est = estimate(Workload(devices=1000, rate_hz=1.0, readings_per_record=1,
                            aggregates_billing_mode="PAY_PER_REQUEST"))
    assert est.shard_choice["write_limits"] == 2
    assert est.shard_choice["batching_window"] == 8
    assert 2 < est.shards < 8
    assert est.batch_limit == "payload"
    assert est.batch_records == 7516
    assert est.dominant() == "dynamodb"
    assert est.per_million < cost.TARGET_USD_PER_MILLION
    # with the template's provisioned aggregates table: cheaper still, but above the gzip packed figure
    provisioned = estimate(Workload(devices=1000, rate_hz=1.0, readings_per_record=1))
    assert provisioned.per_million < est.per_million
    assert provisioned.per_million > estimate(Workload(devices=1000, rate_hz=1.0)).per_million


def test_template_defaults_at_1000_devices_packed() -> None:
    # The default workload packs 25 readings per record (the simulator's default SIM_PACK) and gzips it:
    # 25 x 201 + 1 = 5,026 JSON bytes x 0.169 = 849 bytes; an event record is 1,133 base64 + 570 bytes, so
    # 6 MB holds 3,694 records = 92,350 readings; one shard carries 1,000 readings/s, so the 60 s window
    # (60,000 readings) closes each batch: a batch spans a minute of every device, ~2 writes per window
    w = Workload(devices=1000, rate_hz=1.0)
    assert (w.readings_per_record, w.compression, w.batching_window_s) == (25, "gzip", 60.0)
    est = estimate(w)
    assert est.shards == 1
    assert est.batch_limit == "window"
    assert est.batch_records == 60_000
    assert est.batch_seconds == pytest.approx(60.0)
    assert est.ddb_writes_per_reading == pytest.approx(2 / 60 * 0.99, rel=1e-3)
    assert est.dominant() == "dynamodb"
    assert est.per_million <= cost.HALVING_TARGET_USD_PER_MILLION
    assert est.per_million < estimate(replace(w, compression="none")).per_million
    assert est.per_million < estimate(replace(w, readings_per_record=1)).per_million * 0.8


def test_bigger_batches_cut_writes_per_reading() -> None:
    small = estimate(_workload())
    big = estimate(_workload(batch_size=10_000, batching_window_s=60, shards=4))
    # 250 records/s per shard: the 7,516-record payload cap = 30.064 s; 250 devices x (1 + 30.064/60)
    # windows over 7,516 records x 0.99 valid
    assert big.ddb_writes_per_reading == pytest.approx(250 * (1 + 30.064 / 60) / 7516 * 0.99)
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
    assert doc["target_met"] is True  # gzip packed 25 readings per record: 0.044 USD/M
    assert doc["readings_per_record"] == 25
    assert doc["payload_cap_readings"] == 92_350  # gzip packed: 3,694 records of 25
    assert doc["prices_as_of"] == "2026-11"
    assert doc["defaults_from"] == "cloudformation/template.yaml"
    assert doc["write_concurrency"] == cost.WRITE_CONCURRENCY
    assert doc["flagged_share"] == pytest.approx(0.002)
    assert {"kinesis", "lambda", "dynamodb", "s3", "cloudwatch", "apigateway"} <= set(
        doc["components_usd_per_month"]
    )
    scenarios = cost.what_if_scenarios(Workload(devices=1000, rate_hz=1.0))
    assert len(doc["what_if"]) == len(scenarios)
    # the what-ifs are changes from the configured workload: the first is the workload itself
    assert doc["what_if"][0]["change"] == {}
    assert doc["what_if"][0]["usd_per_million_readings"] == doc["usd_per_million_readings"]
    assert doc["what_if"][-1]["target_met"] is True  # 4 shards, 60 s, aggregates 30 d without PITR


def test_main_json_only_and_bad_input(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--devices", "10", "--rate", "0.1", "--json"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1
    assert json.loads(out[0])["devices"] == 10
    assert cost.main(["--devices", "0", "--rate", "1"]) == 2


# ------------------------------------------------------------------------------------------ template
def _cfn_yaml(path: Path) -> dict:
    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor("!", lambda loader, suffix, node: None)
    return yaml.load(path.read_text(), Loader=Loader)  # noqa: S506 - SafeLoader subclass


def test_workload_defaults_follow_the_template() -> None:
    params = _cfn_yaml(cost.TEMPLATE)["Parameters"]
    w = Workload(devices=1, rate_hz=1.0)
    assert cost.DEFAULTS_FROM == "cloudformation/template.yaml"
    assert w.batch_size == params["BatchSize"]["Default"]
    assert w.batching_window_s == params["BatchingWindowSeconds"]["Default"]
    assert w.alert_cooldown_s == params["AlertCooldownSeconds"]["Default"]
    assert w.anomaly_ttl_days == params["AnomalyTtlDays"]["Default"]
    assert w.aggregates_retention_days == params["AggregatesTtlDays"]["Default"]
    assert w.archive_ia_after_days == params["ArchiveTransitionDays"]["Default"]
    assert w.archive_expire_days == params["ArchiveExpirationDays"]["Default"]
    assert w.log_retention_days == params["LogRetentionDays"]["Default"]
    text = cost.TEMPLATE.read_text()
    assert w.alarms == len(re.findall(r"Type: AWS::CloudWatch::Alarm\n", text))
    assert w.archive_ia_min_object_filter is ("ObjectSizeGreaterThan: 131072" in text)


def test_template_defaults_read_a_changed_template(tmp_path: Path) -> None:
    # GIVEN the template with other defaults, another memory size, PITR on aggregates, no size filter
    text = cost.TEMPLATE.read_text()
    changed = (
        text.replace("  BatchSize:\n    Type: Number\n    Default: 10000",
                     "  BatchSize:\n    Type: Number\n    Default: 1234")
        .replace("  BatchingWindowSeconds:\n    Type: Number\n    Default: 60",
                 "  BatchingWindowSeconds:\n    Type: Number\n    Default: 7")
        .replace("  AggregatesTtlDays:\n    Type: Number\n    Default: 30",
                 "  AggregatesTtlDays:\n    Type: Number\n    Default: 45")
        .replace("      MemorySize: 1024\n", "      MemorySize: 2048\n", 1)
        .replace("            ObjectSizeGreaterThan: 131072\n", "")
    )
    on = "  AggregatesPointInTimeRecovery:\n    Type: String\n    Default: disabled"
    assert on in changed
    changed = changed.replace(on, on.replace("disabled", "enabled"))
    assert changed.count("Default: 1234") == 1
    assert "Default: 7\n" in changed
    assert "Default: 45" in changed
    path = tmp_path / "template.yaml"
    path.write_text(changed)
    # WHEN the defaults are read THEN they follow it
    d = cost.template_defaults(path)
    assert (d["batch_size"], d["batching_window_s"], d["aggregates_retention_days"]) == (1234, 7.0, 45.0)
    assert d["processor_memory_mb"] == 2048
    assert d["aggregates_pitr"] is True
    assert d["anomalies_pitr"] is True
    assert d["archive_ia_min_object_filter"] is False
    assert d["alarms"] == cost.template_defaults(cost.TEMPLATE)["alarms"]


def test_unreadable_template_falls_back_and_says_so(tmp_path: Path) -> None:
    defaults, source = cost.load_defaults(tmp_path / "missing.yaml")
    assert defaults == cost.FALLBACK_DEFAULTS
    assert source.startswith("built-in fallback")
    # the fallback mirrors the template as it is today
    assert cost.template_defaults(ROOT / "cloudformation" / "template.yaml") == cost.FALLBACK_DEFAULTS


def test_write_concurrency_is_the_templates(tmp_path: Path) -> None:
    # GIVEN the template: ProcessorWriteConcurrency (1..64) reaches the processor as WRITE_CONCURRENCY
    doc = load_template(cost.TEMPLATE)
    param = doc["Parameters"]["ProcessorWriteConcurrency"]
    assert (param["MinValue"], param["MaxValue"]) == (1, 64)
    env = doc["Resources"]["ProcessorFunction"]["Properties"]["Environment"]["Variables"]
    assert env["WRITE_CONCURRENCY"] == {"Ref": "ProcessorWriteConcurrency"}
    # THEN the model costs the template's default: 16 writer threads, the figure the durations above use
    assert param["Default"] == 16
    assert cost.WRITE_CONCURRENCY == 16
    assert Workload(devices=1, rate_hz=1.0).write_concurrency == 16
    # AND it is read from the template, not from function source: a changed default moves it
    text = cost.TEMPLATE.read_text()
    declared = "  ProcessorWriteConcurrency:\n    Type: Number\n    Default: 16\n"
    assert text.count(declared) == 1
    changed = tmp_path / "changed.yaml"
    changed.write_text(text.replace(declared, declared.replace("16", "8")))
    assert cost.template_defaults(changed)["write_concurrency"] == 8
    # AND a processor that does not receive the parameter is not costed with it (the fallback says why)
    without = tmp_path / "without.yaml"
    without.write_text(text.replace("          WRITE_CONCURRENCY: !Ref ProcessorWriteConcurrency\n", ""))
    with pytest.raises(KeyError, match="WRITE_CONCURRENCY"):
        cost.template_defaults(without)
    defaults, source = cost.load_defaults(without)
    assert source.startswith("built-in fallback (KeyError")
    assert defaults["write_concurrency"] == cost.FALLBACK_DEFAULTS["write_concurrency"]


def test_flagged_share_is_the_detectors_false_alarm_rate_plus_true_anomalies() -> None:
    artifact = json.loads((ROOT / "model" / "artifacts" / "iforest-v1.json").read_text())
    # at least the false-alarm rate measured for the shipped model (0.103 % held out)
    assert artifact["validation"]["holdout_far"] <= cost.DETECTOR_FALSE_ALARM_RATE
    assert pytest.approx(0.002) == cost.FLAGGED_SHARE
    assert Workload(devices=1, rate_hz=1.0).anomaly_rate == cost.FLAGGED_SHARE
    # 2,628 M readings x 0.99 valid x 0.2 % x 2 WRU (table + GSI) = 10,406,880 WRU
    est = estimate(Workload(devices=1000, rate_hz=1.0))
    assert _line(est, "dynamodb", "anomaly writes").quantity == pytest.approx(10_406_880)


def test_aggregates_ttl_bounds_storage() -> None:
    # 1000 devices: 43.8 M windows a month of (666 + 2 x 60 + 100) = 886 bytes, kept 90 + 2 days
    est = estimate(_workload(anomaly_rate=0.0, aggregates_retention_days=90, aggregates_pitr=True))
    windows = 1000 * 2_628_000 / 60
    gb = windows * 886 * 92 / (730 / 24) / 1024**3
    assert _line(est, "dynamodb", "storage").quantity == pytest.approx(gb)
    assert _line(est, "dynamodb", "point-in-time").quantity == pytest.approx(gb)
    lean = estimate(_workload(anomaly_rate=0.0, aggregates_retention_days=30, aggregates_pitr=False))
    assert _line(lean, "dynamodb", "storage").quantity == pytest.approx(gb * 32 / 92)
    assert not [ln for ln in lean.lines if ln.item.startswith("point-in-time")]


# ------------------------------------------------------------------------------------------ packed records
def test_packed_record_size_and_shards() -> None:
    # 25 readings of 200 bytes in a JSON array: 25 x 201 + 1 = 5,026 bytes
    assert cost.kinesis_record_bytes(200, 25) == 5026
    assert cost.kinesis_record_bytes(200, 1) == 200
    # 1,000 readings/s packed 25: 40 records/s and 201,040 B/s -> 1 shard (was 2 unpacked)
    assert shards_for(1000, 200, 25) == 1
    assert shards_for(1000, 200, 1) == 2
    # bytes decide for fat readings: 4,000 readings/s x 2,001 B = 8 MB/s / (1 MiB x 0.8) = 9.5 -> 10
    assert shards_for(4000, 2000, 25) == 10


def test_packed_payload_cap_counts_records_then_readings() -> None:
    # 5,026-byte records: base64 6,702 + 570 = 7,272 -> 6,291,456 // 7,272 = 865 records = 21,625 readings
    assert cost.payload_cap(200, 25) == 865
    records, seconds, _ = batch_shape(_workload(readings_per_record=25, batch_size=10_000,
                                                batching_window_s=60), shards=1)
    assert (records, seconds) == (21_625, pytest.approx(21.625))
    # BatchSize counts Kinesis records: 500 records x 25 = 12,500 readings, but 10 s x 1,000/s closes first
    w = _workload(readings_per_record=25)
    assert cost.batch_limit(w, 1) == "window"
    assert batch_shape(w, shards=1)[0] == 10_000


def test_packed_kinesis_put_units_are_per_record() -> None:
    est = estimate(_workload(readings_per_record=25))
    # 2,628 M readings / 25 = 105.12 M records x 1 unit (5 KB < 25 KB) x 0.014 / M = 1.47168
    assert _line(est, "kinesis", "PUT payload").quantity == pytest.approx(READINGS_1000_1HZ / 25)
    assert _line(est, "kinesis", "PUT payload").usd == pytest.approx(1.47168)
    # 2,000-byte readings packed 25: 50,026-byte records = 3 units of 25 KB (25,600 B) each
    fat = estimate(_workload(readings_per_record=25, record_bytes=2000))
    assert _line(fat, "kinesis", "PUT payload").quantity == pytest.approx(READINGS_1000_1HZ / 25 * 2)


def test_readings_per_record_flag_and_what_if(capsys: pytest.CaptureFixture[str]) -> None:
    assert cost.main(["--devices", "1000", "--rate", "1", "--readings-per-record", "1", "--json",
                      "--aggregates-billing-mode", "PAY_PER_REQUEST"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["readings_per_record"] == 1
    assert doc["what_if"][1]["change"] == {"readings_per_record": 25}
    # packing 25 per record (and gzipping them) is cheaper than one reading per record
    assert doc["what_if"][1]["usd_per_million_readings"] < doc["usd_per_million_readings"] * 0.8


def test_athena_is_priced_per_tb_of_archive_a_query_reads() -> None:
    # GIVEN 1,000 devices x 1 Hz, every archived reading 55.9 B (measured, docs/scalability-and-cost.md)
    w = Workload(devices=1000, rate_hz=1, archive_bytes_per_reading=55.9, malformed_rate=0.0)
    # THEN without queries there is no Athena line, and the JSON still says what a one-day query costs
    assert not [line for line in estimate(w).lines if line.component == "athena"]
    day_bytes = 1000 * 86_400 * 55.9
    facts = cost.to_json(estimate(w))["athena"]
    assert facts["bytes_scanned_per_day_query"] == pytest.approx(day_bytes, rel=1e-6)
    assert facts["usd_per_day_query"] == pytest.approx(day_bytes / 1e12 * 5.0, abs=1e-4)
    # AND 20 queries a day over 7 days each cost 20 x 30.4 x 7 days of archive at $5/TB
    est = estimate(replace(w, athena_queries_per_day=20, athena_days_per_query=7))
    line = _line(est, "athena", "queries over 7 day(s)")
    assert line.quantity == pytest.approx(20 * 730 / 24 * 7 * day_bytes / 1e12, rel=1e-6)
    assert line.usd == pytest.approx(line.quantity * 5.0)
    # AND a tiny query is billed Athena's 10 MB minimum
    tiny = estimate(replace(w, devices=1, athena_queries_per_day=1, athena_days_per_query=0.001))
    assert _line(tiny, "athena", "queries").quantity == pytest.approx(730 / 24 * 10e6 / 1e12)


def test_the_athena_results_lifecycle_rule_does_not_hide_the_archive_rules() -> None:
    facts = cost.to_json(estimate(Workload(devices=1000, rate_hz=1)))
    assert facts["defaults_from"] == "cloudformation/template.yaml"


# ---- capacity mode: the aggregates table PROVISIONED with target-tracking auto scaling (the template's)

def _provisioned(**kw: object) -> Workload:
    settings: dict[str, object] = {
        "aggregates_billing_mode": "PROVISIONED", "aggregates_autoscaling": True,
        "aggregates_target_utilization": 0.70, "aggregates_min_wcu": 10, "aggregates_min_rcu": 10,
        "aggregates_max_units": 40_000, "scaling_policies": 2}
    return _workload(**{**settings, **kw})


def test_provisioned_capacity_is_consumed_units_over_the_target_utilisation() -> None:
    # GIVEN the same fleet costed on-demand (per write) and provisioned (per capacity-hour)
    on_demand = estimate(_workload())
    provisioned = estimate(_provisioned())
    wru = _line(on_demand, "dynamodb", "aggregate writes").quantity
    rru = (_line(on_demand, "dynamodb", "aggregate prefetch").quantity
           + _line(on_demand, "dynamodb", "query API reads").quantity)
    # THEN auto scaling keeps consumed/s / 0.70 units all month: WCU-hours and USD at 0.00065 per WCU-hour
    wcu = wru / 2_628_000 / 0.70
    assert _line(provisioned, "dynamodb", "aggregates WCU").quantity == pytest.approx(wcu * 730)
    assert _line(provisioned, "dynamodb", "aggregates WCU").usd == pytest.approx(wcu * 730 * 0.00065)
    assert _line(provisioned, "dynamodb", "aggregates RCU").usd == pytest.approx(rru / 2_628_000 / 0.7 * 730
                                                                               * 0.00013)
    # AND the per-request lines are gone, the policies' 8 alarms are billed, the consumed units reported
    assert not [ln for ln in provisioned.lines if ln.item.startswith("aggregate writes")]
    assert _line(provisioned, "cloudwatch", "auto scaling alarms").usd == pytest.approx(0.80)
    plan = cost.capacity(provisioned)
    assert plan["aggregates_wcu_provisioned"] == pytest.approx(wcu, abs=0.05)
    assert plan["aggregates_wru_per_s"] == pytest.approx(wru / 2_628_000, abs=0.05)
    assert plan["aggregates_capacity_short"] is False


def test_template_defaults_at_1000_devices_provisioned() -> None:
    # The template as it is: 0.033 writes/reading x 2,628 M = 86.7 M writes of 1 WCU a month = 33.0 WCU/s,
    # / 0.70 = 47.1 WCU x 730 h x 0.00065 = 22.37 USD (on-demand: 86.7 M x 0.625 / M = 54.20 USD)
    est = estimate(Workload(devices=1000, rate_hz=1.0))
    assert est.workload.aggregates_billing_mode == "PROVISIONED"
    assert _line(est, "dynamodb", "aggregates WCU").usd == pytest.approx(22.37, abs=0.01)
    on_demand = estimate(Workload(devices=1000, rate_hz=1.0, aggregates_billing_mode="PAY_PER_REQUEST"))
    assert _line(on_demand, "dynamodb", "aggregate writes").usd == pytest.approx(54.20, abs=0.01)
    assert est.per_million < on_demand.per_million - 0.01  # 0.0439 against 0.0582


def test_provisioned_never_goes_below_the_minimum_and_fixed_capacity_can_fall_short() -> None:
    # GIVEN 10 devices (0.6 writes/s): auto scaling stays at the 10-WCU floor = 10 x 730 x 0.00065 = 4.745 USD
    tiny = estimate(_provisioned(devices=10))
    assert _line(tiny, "dynamodb", "aggregates WCU").usd == pytest.approx(4.745)
    # AND a fixed capacity (auto scaling off) bills the minimum whatever the load, and says it is short
    fixed = estimate(_provisioned(aggregates_autoscaling=False))
    assert _line(fixed, "dynamodb", "aggregates WCU").usd == pytest.approx(4.745)
    assert _line(fixed, "dynamodb", "aggregates WCU").fixed is True
    assert cost.capacity(fixed)["aggregates_capacity_short"] is True


def test_capacity_mode_is_read_from_the_template(tmp_path: Path) -> None:
    # GIVEN the template as it is
    d = cost.template_defaults(cost.TEMPLATE)
    assert (d["aggregates_billing_mode"], d["aggregates_min_wcu"], d["aggregates_min_rcu"]) == (
        "PROVISIONED", 10, 10)
    assert (d["aggregates_max_units"], d["aggregates_target_utilization"]) == (40_000, 0.70)
    assert (d["aggregates_autoscaling"], d["scaling_policies"]) == (True, 2)
    # WHEN its defaults change: on-demand, or provisioned without auto scaling, other capacities
    text = (ROOT / "cloudformation" / "template.yaml").read_text()
    on_demand = tmp_path / "on_demand.yaml"
    on_demand.write_text(text.replace("    Default: PROVISIONED\n", "    Default: PAY_PER_REQUEST\n", 1))
    fixed = tmp_path / "fixed.yaml"
    scaling = "  AggregatesCapacityScaling:\n    Type: String\n    Default: "
    assert scaling + "enabled" in text
    fixed.write_text(text.replace(scaling + "enabled", scaling + "disabled", 1)
                     .replace("    Default: 70\n", "    Default: 50\n", 1))
    # THEN the model follows
    od = cost.template_defaults(on_demand)
    assert (od["aggregates_billing_mode"], od["aggregates_autoscaling"], od["scaling_policies"]) == (
        "PAY_PER_REQUEST", False, 0)
    fx = cost.template_defaults(fixed)
    assert (fx["aggregates_billing_mode"], fx["aggregates_autoscaling"]) == ("PROVISIONED", False)
    assert fx["aggregates_target_utilization"] == 0.50


def test_from_calls_takes_the_counted_dynamodb_figures(tmp_path: Path,
                                                       capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN a bench/calls.py run that counted 70 window writes of 2 WCU each and 70 prefetch rows per 1,000
    calls = tmp_path / "calls.json"
    calls.write_text(json.dumps({
        "batch_seconds": 21.62, "readings": 48_000, "mean_item_bytes": 900.0,
        "full_window_item_bytes": 1100.0,
        "per_1000_readings": {"dynamodb.PutItem.aggregates": 70.0,
                              "dynamodb.BatchGetItem.aggregates.keys": 70.0, "s3.PutObject": 0.5},
        "consumed_per_1000_readings": {"PutItem.aggregates": 140.0}}) + "\n")
    measured = cost.measured_from_calls(calls)
    assert (measured.ddb_writes_per_reading, measured.wcu_per_write) == (0.070, 2.0)
    assert measured.item_bytes == 1100.0  # a whole window's item, not the run's mean
    # WHEN costing on-demand with it
    est = estimate(_workload(), measured=measured)
    # THEN 2,628 M x 0.070 x 2 WRU = 367.92 M WRU x 0.625 / M = 229.95 USD
    assert _line(est, "dynamodb", "aggregate writes").usd == pytest.approx(229.95)
    # AND the JSON carries the counted calls as they were counted
    assert cost.main(["--devices", "1000", "--rate", "1", "--json", "--from-calls", str(calls)]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert doc["counted_calls_per_1000_readings"]["dynamodb.PutItem.aggregates"] == 70.0
    assert doc["source"].startswith("calls:")
    assert doc["halving_target_usd_per_million_readings"] == 0.05
    assert doc["halving_target_met"] is (doc["usd_per_million_readings"] <= 0.05)


def test_json_says_what_stands_in_the_way_of_the_halving_target(capsys: pytest.CaptureFixture[str]) -> None:
    # GIVEN the template's defaults at 1,000 x 1 Hz
    assert cost.main(["--devices", "1000", "--rate", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    floor = doc["halving_floor"]
    # THEN the aggregates' provisioned WCU + RCU are 22.37 + 4.60 USD, and without them the rest of the
    # bill is (115.48 - 26.97) / 2,628 M readings = 0.0337 USD per million
    assert floor["aggregates_throughput_usd_per_month"] == pytest.approx(26.97, abs=0.01)
    assert floor["usd_per_million_without_aggregates_throughput"] == pytest.approx(0.0337, abs=0.0001)
    # AND 13.18 USD of it is the aggregates' (30-day TTL, no PITR) and anomalies' storage + the
    # anomalies' PITR: 0.0050 per million
    assert floor["dynamodb_storage_and_pitr_usd_per_million"] == pytest.approx(0.0050, abs=0.0001)
    # AND the whole bill meets the target: 0.0439 USD per million
    assert doc["usd_per_million_readings"] <= doc["halving_target_usd_per_million_readings"]
    assert doc["halving_target_met"] is True


def test_the_compactor_is_priced_and_a_compacted_query_scans_what_was_measured(
        capsys: pytest.CaptureFixture[str]) -> None:
    from dataclasses import replace

    from iotpipe.cost.estimate import estimate
    from iotpipe.cost.traffic import monthly_traffic
    from iotpipe.cost.workload import Measured, Workload

    # GIVEN 1,000 devices x 1 Hz (2,628 M readings a month) with the compactor (the template's default)
    w = Workload(devices=1000, rate_hz=1.0)
    with_compactor = estimate(w)
    without = estimate(replace(w, archive_compaction=False))
    lines = {ln.item: ln for ln in with_compactor.lines if "compact" in ln.item}
    # THEN its Lambda time is 10.4 s per million readings at 1 GB, it GETs each processed object once,
    # and the Parquet copy (13.8 B/reading) is kept as long as the archive
    assert lines["compactor (hourly, DuckDB)"].quantity == pytest.approx(2628 * 10.4, rel=1e-3)
    processed_objects = monthly_traffic(w, Measured(source="formula")).invocations  # one per batch
    assert lines["GET (compactor reads each processed object)"].quantity == pytest.approx(processed_objects)
    parquet_gb = sum(ln.quantity for item, ln in lines.items() if item.startswith("compacted Parquet"))
    assert parquet_gb == pytest.approx(2.628e9 * 13.8 / 2**30 * 365 / 30.4167, rel=0.02)
    assert with_compactor.total - without.total == pytest.approx(sum(ln.usd for ln in lines.values()))
    assert 4 < with_compactor.total - without.total < 8  # ~5.9 USD a month, mostly the Parquet storage
    # AND a day's query over processed_compacted scans 1.34 B per reading instead of the whole JSON
    assert cost.main(["--devices", "1000", "--rate", "1", "--json", "--athena-queries-per-day", "10",
                      "--athena-table", "processed_compacted"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    athena = doc["athena"]
    assert athena["table"] == "processed_compacted"
    per_day = 2.628e9 / 30.4167 * 1.34
    assert athena["compacted_bytes_scanned_per_day_query"] == pytest.approx(per_day, rel=0.01)
    assert athena["bytes_scanned_per_day_query"] == athena["compacted_bytes_scanned_per_day_query"]
    json_day = json.loads(_json_run(capsys))["athena"]["bytes_scanned_per_day_query"]
    assert json_day > 40 * athena["bytes_scanned_per_day_query"]
    # AND a table that does not exist is refused
    assert cost.main(["--athena-table", "processed_parquet"]) == 2


def _json_run(capsys: pytest.CaptureFixture[str]) -> str:
    assert cost.main(["--devices", "1000", "--rate", "1", "--json"]) == 0
    return capsys.readouterr().out.strip().splitlines()[-1]


def test_the_calibrator_schedule_comes_from_the_template_and_its_scans_are_priced() -> None:
    from iotpipe.cost.template_facts import rate_seconds, template_defaults

    # GIVEN the template's CalibrationSchedule (rate(2 minutes)) and 1,000 devices of 400 B (+100 overhead)
    assert template_defaults()["calibration_every_s"] == 120.0
    assert rate_seconds("rate(1 hour)") == 3600.0
    with pytest.raises(ValueError, match="only rate"):
        rate_seconds("cron(0 * * * ? *)")
    est = estimate(_workload())
    # THEN each of the 21,900 runs a month scans 500,000 B = 123 started 4-KB units at 0.5 RRU each
    scans = _line(est, "dynamodb", "calibrator's registry scans")
    assert scans.quantity == pytest.approx(SECONDS_PER_MONTH / 120 * 0.5 * 123)
    # AND a run is 100 ms + 30 ms per 200-item page (5 pages) at 512 MB
    runs = _line(est, "lambda", "calibrator (scheduled)")
    assert runs.quantity == pytest.approx(SECONDS_PER_MONTH / 120 * 0.25 * 0.5)


def test_the_standard_ia_table_class_trades_storage_for_throughput() -> None:
    # GIVEN the same fleet with the aggregates table in each class (no anomalies: storage is the aggregates')
    std = estimate(_workload(anomaly_rate=0.0, aggregates_billing_mode="PROVISIONED", aggregates_pitr=True))
    ia = estimate(_workload(anomaly_rate=0.0, aggregates_billing_mode="PROVISIONED", aggregates_pitr=True,
                            aggregates_table_class="STANDARD_INFREQUENT_ACCESS"))
    # THEN storage is 0.10 instead of 0.25 USD per GB-month, PITR unchanged, throughput 25 % dearer
    assert _line(ia, "dynamodb", "storage").usd == pytest.approx(_line(std, "dynamodb", "storage").usd * 0.4)
    pitr = _line(std, "dynamodb", "point-in-time").usd
    assert _line(ia, "dynamodb", "point-in-time").usd == pytest.approx(pitr)
    for item in ("aggregates WCU", "aggregates RCU"):
        assert _line(ia, "dynamodb", item).usd == pytest.approx(_line(std, "dynamodb", item).usd * 1.25)
    # AND on-demand, each aggregate request is 25 % dearer too
    std, ia = (estimate(_workload(anomaly_rate=0.0, aggregates_table_class=c))
               for c in ("STANDARD", "STANDARD_INFREQUENT_ACCESS"))
    assert _line(ia, "dynamodb", "aggregate writes").usd == pytest.approx(
        _line(std, "dynamodb", "aggregate writes").usd * 1.25)
    # AND the template's table is Standard (no TableClass), so the what-if offers Standard-IA
    from iotpipe.cost.template_facts import template_defaults

    assert template_defaults()["aggregates_table_class"] == "STANDARD"
