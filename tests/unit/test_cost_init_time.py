"""Cold starts in the bill: the init phase priced per function (iotpipe/cost/init_time.py)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from iotpipe.cost import Workload, estimate
from iotpipe.cost.cli import main
from iotpipe.cost.init_time import INIT_MS, cold_starts, random_arrivals
from iotpipe.cost.prices import DEFAULT_PRICES, SECONDS_PER_MONTH

ROOT = Path(__file__).resolve().parents[2]


def _init(est_items: list, function: str):  # type: ignore[no-untyped-def]
    lines = [ln for ln in est_items if ln.item == f"{function} init (cold starts)"]
    assert len(lines) == 1, [ln.item for ln in est_items]
    return lines[0]


def test_the_processor_restarts_once_per_shard_per_environment_lifetime() -> None:
    # GIVEN 4 shards (one always-busy environment each, replaced every 2 h: 365 times in 730 h)
    est = estimate(Workload(devices=1000, rate_hz=1.0, shards=4))
    line = _init(est.lines, "processor")
    # THEN 4 x 365 cold starts of the measured init at 1 GB, priced at Lambda's GB-s price
    gb_s = 4 * 365 * INIT_MS["processor"] / 1000 * 1024 / 1024
    assert line.component == "lambda"
    assert line.unit == "GB-s"
    assert line.quantity == pytest.approx(gb_s)
    assert line.usd == pytest.approx(gb_s * DEFAULT_PRICES.lambda_gb_second)
    assert not line.fixed  # more shards, more readings: it grows with the fleet


def test_a_quiet_api_starts_cold_on_nearly_every_request_a_busy_one_only_when_recycled() -> None:
    # GIVEN one request a day: every gap is longer than the 10-minute idle reclaim
    quiet = random_arrivals(SECONDS_PER_MONTH / 86_400, 60.0)
    assert quiet == pytest.approx(30.42 * math.exp(-600 / 86_400), rel=0.001)
    # GIVEN 10,000 a day (one every 8.6 s): one environment stays warm and is replaced every 2 h
    busy = random_arrivals(10_000 * SECONDS_PER_MONTH / 86_400, 60.0)
    assert busy == pytest.approx(365, rel=0.01)
    # GIVEN a request every 10 minutes on average: e^-1 of the gaps are longer than the reclaim, and an
    # environment rarely lives 2 h (a call in each of twelve 10-minute windows: (1 - e^-1)^12)
    per_month = SECONDS_PER_MONTH / 600
    expected = per_month / math.e + 365 * (1 - 1 / math.e) ** 12
    assert random_arrivals(per_month, 60.0) == pytest.approx(expected)


def test_scheduled_functions_start_cold_on_every_run_when_runs_are_far_apart() -> None:
    # GIVEN the hourly compactor and a calibrator every 2 h (both longer apart than the idle reclaim)
    starts = {c.function: c.per_month for c in cold_starts(
        Workload(devices=1000, rate_hz=1.0, calibration_every_s=7200.0, archive_compaction=True), shards=1)}
    # THEN one cold start per run
    assert starts["compactor"] == pytest.approx(730)
    assert starts["calibrator"] == pytest.approx(365)


def test_ingest_and_its_authorizer_are_priced_only_when_devices_post_to_the_api() -> None:
    plain = {c.function for c in cold_starts(Workload(devices=1000, rate_hz=1.0), shards=1)}
    assert "ingest" not in plain
    assert "authorizer" not in plain
    posting = {c.function: c for c in cold_starts(Workload(devices=1000, rate_hz=1.0, ingest_via_api=True),
                                                  shards=1)}
    # 10 POSTs a second keep one environment warm: recycled every 2 h
    assert posting["ingest"].per_month == pytest.approx(365, rel=0.01)
    assert posting["authorizer"].memory_mb == 256


def test_json_reports_each_functions_cold_starts(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--devices", "1000", "--rate", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    api = doc["init"]["api"]
    assert api["init_ms"] == INIT_MS["api"]
    assert api["cold_starts_per_month"] == pytest.approx(365, rel=0.01)
    gb_s = api["cold_starts_per_month"] * INIT_MS["api"] / 1000 * 512 / 1024
    assert api["usd_per_month"] == pytest.approx(gb_s * DEFAULT_PRICES.lambda_gb_second, abs=1e-4)
    assert any(item["item"] == "api init (cold starts)" for item in doc["items"])


def test_init_durations_are_the_benchs_measurements() -> None:
    # GIVEN the bench result the module names as its source THEN its figures are those medians
    source = ROOT / "bench" / "results" / "import-times-2026-12-07.json"
    measured = json.loads(source.read_text())["functions"]
    assert {name: measured[name]["after_pyc_ms"]["median"] for name in INIT_MS} == INIT_MS
