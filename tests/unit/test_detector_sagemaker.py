"""SageMaker backend with a fake endpoint (testkit): success, and each failure policy on timeout/error.
The adapter's own request and error mapping: tests/unit/test_aws_adapters.py."""

from __future__ import annotations

import json
import threading

import numpy as np
import pytest

from functions.core.readings import DeviceInfo, Reading
from functions.detector.anomaly_detector import (
    DetectorUnavailable,
    EmbeddedDetector,
    SageMakerDetector,
    default_artifact_path,
)
from functions.detector.calibrated import CalibratedDetector
from testkit.fakes import FakeScoringEndpoint

DEVICE = DeviceInfo("dev-9", baseline={"temperature": 20.0, "humidity": 50.0, "pressure": 1010.0})


def readings(n: int = 5) -> list[Reading]:
    return [
        Reading(
            "dev-9",
            1_767_225_600_000 + i * 1000,
            {"temperature": 20.0 + 0.01 * i, "humidity": 50.0, "pressure": 1010.0},
            "shardId-0",
            str(i),
            DEVICE,
        )
        for i in range(n)
    ]


@pytest.fixture(scope="module")
def artifact():
    import json as _json

    return _json.loads(default_artifact_path().read_bytes())


def make(artifact, fake, policy="fallback", timeout=1.0) -> SageMakerDetector:
    return SageMakerDetector("ep", timeout, policy, EmbeddedDetector(artifact), runtime=fake)


def test_scores_come_from_the_endpoint(artifact):
    fake = FakeScoringEndpoint()
    detector = make(artifact, fake)
    verdicts = detector.detect(readings())
    assert len(fake.bodies) == 1
    request = json.loads(fake.bodies[0])
    assert request["feature_names"] == detector.embedded.model.spec.feature_names
    assert len(request["features"]) == 5
    assert all(v.is_anomaly and v.score == pytest.approx(0.9) for v in verdicts)


def test_timeout_with_fallback_scores_embedded(artifact):
    hang = threading.Event()
    detector = make(artifact, FakeScoringEndpoint(hang=hang), "fallback", timeout=0.05)
    verdicts = detector.detect(readings())
    hang.set()
    assert detector.failures == 1
    assert not any(v.is_anomaly for v in verdicts)  # normal readings, scored locally
    assert all(0 < v.score < 1 for v in verdicts)


def test_error_with_skip_keeps_records_unscored(artifact):
    verdicts = make(artifact, FakeScoringEndpoint(error=RuntimeError("boom")), "skip").detect(readings(3))
    assert len(verdicts) == 3
    assert all(v.severity == "none" and "not scored" in v.reason for v in verdicts)


def test_timeout_with_fail_raises(artifact):
    hang = threading.Event()
    detector = make(artifact, FakeScoringEndpoint(hang=hang), "fail", timeout=0.05)
    with pytest.raises(DetectorUnavailable):
        detector.detect(readings())
    hang.set()


def test_bad_response_shape_is_a_failure(artifact):
    verdicts = make(artifact, FakeScoringEndpoint(scores=[0.1]), "skip").detect(readings(4))
    assert all(v.severity == "none" for v in verdicts)


def test_get_detector_chooses_backend_by_settings(monkeypatch):
    from functions.detector import anomaly_detector
    from functions.settings import get_settings

    monkeypatch.setenv("DETECTOR_BACKEND", "sagemaker")
    monkeypatch.setenv("SAGEMAKER_ENDPOINT", "my-endpoint")
    get_settings.cache_clear()
    anomaly_detector.get_detector.cache_clear()
    try:
        detector = anomaly_detector.get_detector()
        # Calibrated devices are scored per device; the backend chosen is the fleet fallback.
        assert isinstance(detector, CalibratedDetector)
        assert isinstance(detector.fallback, SageMakerDetector)
        assert detector.fallback.endpoint == "my-endpoint"
    finally:
        get_settings.cache_clear()
        anomaly_detector.get_detector.cache_clear()


def test_a_batch_over_the_request_size_limit_is_sent_in_several_calls_in_order(artifact) -> None:
    # GIVEN an endpoint that scores each row by its position in the whole batch (its first feature here)
    from functions.detector.anomaly_detector import JSON_BYTES_PER_VALUE, MAX_REQUEST_BYTES

    fake = FakeScoringEndpoint(score_of=lambda row: row[0])
    detector = make(artifact, fake, policy="fail", timeout=30)
    width = len(detector.embedded.model.spec.feature_names)
    n = 3 * MAX_REQUEST_BYTES // (JSON_BYTES_PER_VALUE * width) + 7
    feats = np.zeros((n, width))
    feats[:, 0] = np.arange(n)
    # WHEN the detector asks for the scores of a batch larger than one request may carry
    scores = detector._invoke(feats)
    # THEN it made several calls, each under the limit, and the scores come back in the batch's order
    assert len(fake.bodies) == 4
    assert all(len(body) < MAX_REQUEST_BYTES for body in fake.bodies)
    assert scores.tolist() == list(range(n))


@pytest.mark.parametrize("policy", ["fallback", "skip", "fail"])
def test_the_processor_counts_endpoint_failures_by_policy_and_loses_nothing(artifact, policy) -> None:
    from functions.processor.ingestion_processor import process_batch
    from testkit.events import make_records
    from testkit.processor import fake_ports

    # GIVEN the processor with the SageMaker backend behind the per-device detector, the endpoint failing
    broken = FakeScoringEndpoint(error=ConnectionError("endpoint down"))
    detector = CalibratedDetector(make(artifact, broken, policy=policy))
    ports = fake_ports(("dev-1", "dev-2"), detector=detector)
    now = 1_795_000_100.0
    docs = [{"device_id": f"dev-{1 + i % 2}", "timestamp": int((now - 60 + i) * 1000), "temperature": 21.0,
             "humidity": 40.0, "pressure": 1000.0} for i in range(20)]
    # WHEN a batch is processed
    outcome = process_batch(make_records(docs, arrival_s=now), ports, now_s=now)
    # THEN the failure is counted under the policy that handled it, in the outcome and the metric
    assert outcome.detector_backend_failures == {policy: 1}
    assert ports.metrics.total("DetectorBackendFailures", Policy=policy) == 1
    # AND no reading is lost: aggregated (fallback, skip) or handed back for redelivery (fail)
    if policy == "fail":
        assert (outcome.aggregated, outcome.retry) == (0, 20)
    else:
        assert (outcome.aggregated, outcome.retry) == (20, 0)
