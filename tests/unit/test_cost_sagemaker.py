"""iotpipe cost --detector sagemaker: the serverless endpoint priced from its GB-seconds and bytes."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from iotpipe.cost.cli import main
from iotpipe.cost.estimate import estimate
from iotpipe.cost.prices import DEFAULT_PRICES, GB
from iotpipe.cost.workload import Workload


def test_the_embedded_default_has_no_sagemaker_line() -> None:
    est = estimate(Workload(devices=1000, rate_hz=1))
    assert est.workload.detector_backend == "embedded"  # the template's DetectorBackend default
    assert "sagemaker" not in est.by_component()


def test_the_sagemaker_backend_prices_compute_and_data_at_1000_devices_1hz() -> None:
    embedded = estimate(Workload(devices=1000, rate_hz=1))
    w = replace(Workload(devices=1000, rate_hz=1), detector_backend="sagemaker")
    est = estimate(w)
    lines = {line.item: line for line in est.lines if line.component == "sagemaker"}
    # The request bytes: every valid reading's features once, priced per GB in
    scored = est.readings_per_month * (1 - w.malformed_rate)
    data_in = lines["data processed in (features)"]
    assert data_in.quantity == pytest.approx(scored * w.sagemaker_request_bytes_per_reading / GB)
    assert data_in.usd == pytest.approx(data_in.quantity * DEFAULT_PRICES.sagemaker_data_in_per_gb)
    # GB-seconds at the endpoint's memory (2 GB by default: twice the 1 GB figure)
    compute = lines[f"serverless inference ({w.sagemaker_memory_mb} MB)"]
    half = estimate(replace(w, sagemaker_memory_mb=1024)).lines
    assert compute.quantity == pytest.approx(2 * next(x.quantity for x in half if x.component == "sagemaker"
                                                      and x.unit == "GB-s"))
    # AND the processor waits for the endpoint: its own duration grows
    assert est.processor_ms_per_invocation > embedded.processor_ms_per_invocation
    assert est.total > embedded.total


def test_the_cli_flag(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--devices", "1000", "--rate", "1", "--detector", "sagemaker", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out.splitlines()[-1])
    assert doc["detector_backend"] == "sagemaker"
    assert doc["components_usd_per_month"]["sagemaker"] > 0
    assert main(["--devices", "1000", "--rate", "1", "--detector", "gpu"]) == 2
