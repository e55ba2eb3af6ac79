"""Embedded detector: verdicts, attribution, per-device state, feature builder streaming."""

from __future__ import annotations

import numpy as np
import pytest

from functions.core.readings import DeviceInfo, Reading
from functions.detector.anomaly_detector import EmbeddedDetector, default_artifact_path
from functions.detector.features import FeatureBuilder, FeatureSpec

DEVICE = DeviceInfo("dev-000001", baseline={"temperature": 21.0, "humidity": 45.0, "pressure": 1013.0})


def reading(i: int, temperature: float, humidity: float = 45.0, pressure: float = 1013.0) -> Reading:
    rng = np.random.default_rng(i)
    return Reading(
        device_id=DEVICE.device_id,
        epoch_ms=1_767_225_600_000 + i * 1000,
        channels={
            "temperature": round(temperature + rng.normal() * 0.1, 2),
            "humidity": round(humidity + rng.normal() * 0.5, 1),
            "pressure": round(pressure + rng.normal() * 0.2, 2),
        },
        shard_id="shardId-000000000000",
        sequence_number=str(1000 + i),
        device=DEVICE,
    )


@pytest.fixture(scope="module")
def detector() -> EmbeddedDetector:
    return EmbeddedDetector(default_artifact_path())


def test_spike_is_flagged_with_temperature_as_top_feature(detector):
    # GIVEN a warm device with normal readings, then a +12 °C spike
    normal = [reading(i, 21.0) for i in range(30)]
    assert not any(v.is_anomaly for v in detector.detect(normal))
    # WHEN the spike arrives in the next batch (state carried between invocations)
    verdicts = detector.detect([reading(30, 33.0), reading(31, 21.0)])
    # THEN it is flagged, attributed to temperature, with a readable reason
    spike = verdicts[0]
    assert spike.is_anomaly
    assert spike.severity_rank >= 2
    assert spike.top_feature.startswith("temperature:")
    assert "temperature" in spike.reason
    assert "σ" in spike.reason
    assert spike.score > spike.threshold


def test_verdict_order_follows_input_even_if_unsorted(detector):
    batch = [reading(i, 21.0) for i in range(40, 50)]
    batch[3] = reading(43, 40.0)
    shuffled = batch[::-1]
    verdicts = detector.detect(shuffled)
    flagged = [r.sequence_number for r, v in zip(shuffled, verdicts, strict=True) if v.is_anomaly]
    assert flagged == ["1043"]


def test_empty_batch(detector):
    assert detector.detect([]) == []


def _spec() -> FeatureSpec:
    return FeatureSpec(
        channels=("a", "b"),
        kinds=("raw", "dev", "roc", "wmean", "wstd", "wz", "flat"),
        center=(0.0, 10.0),
        dev_scale=(1.0, 2.0),
        roc_scale=(1.0, 1.0),
        joint_flat=True,
    )


@pytest.mark.parametrize("smooth", [1, 3])
def test_feature_builder_streams_identically_in_any_batching(smooth):
    # GIVEN interleaved readings of three devices with stuck stretches and window boundaries
    rng = np.random.default_rng(0)
    n = 600
    keys = [f"d{i % 3}" for i in range(n)]
    ms = np.array([1_000_000 + (i // 3) * 7000 for i in range(n)], dtype=np.int64)
    values = np.round(rng.normal(size=(n, 2)), 1)
    values[90:150] = values[90]
    spec = FeatureSpec(**{**_spec().to_dict(), "smooth": smooth})
    order = sorted(range(n), key=lambda i: (keys[i], ms[i]))
    # WHEN built in one call vs in time-ordered chunks (each chunk grouped by device)
    whole = FeatureBuilder(spec).transform([keys[i] for i in order], ms[order], values[order])
    chunked = np.empty_like(whole)
    builder = FeatureBuilder(spec)
    position = {row: k for k, row in enumerate(order)}
    for lo in range(0, n, 37):
        rows = sorted(range(lo, min(lo + 37, n)), key=lambda i: (keys[i], ms[i]))
        out = builder.transform([keys[i] for i in rows], ms[rows], values[rows])
        for j, row in enumerate(rows):
            chunked[position[row]] = out[j]
    # THEN the features are the same (state carries across calls); window std is a square root of a
    # difference of running sums, so a zero variance may come out as ~1e-12 in one order (sqrt: ~1e-6).
    assert np.allclose(whole, chunked, rtol=0, atol=1e-5)


def test_stuck_run_length_and_cold_start():
    builder = FeatureBuilder(_spec())
    names = _spec().feature_names
    values = np.array([[1.0, 10.0], [1.0, 10.0], [1.0, 10.0], [2.0, 11.0]])
    ms = np.arange(4, dtype=np.int64) * 1000
    feats = builder.transform(["d"] * 4, ms, values)
    assert feats[:, names.index("all:flat")].tolist() == [0.0, 1.0, 2.0, 0.0]
    assert feats[0, names.index("a:roc")] == 0.0  # cold start: no previous reading
    assert feats[3, names.index("a:roc")] == 1.0


def test_lru_is_bounded():
    builder = FeatureBuilder(_spec(), max_devices=5)
    keys = [f"d{i:02d}" for i in range(20)]
    builder.transform(keys, np.zeros(20, dtype=np.int64), np.ones((20, 2)))
    assert builder.n_devices == 5
