"""The processor's per-device detector: PCA T²+Q where a device is calibrated, the fleet forest elsewhere,
alarm persistence carried across batches, containers and redeliveries."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from functions.core.readings import DeviceInfo, Reading
from functions.detector import pca_tq
from functions.detector.anomaly_detector import EmbeddedDetector
from functions.detector.calibrated import (
    FALLBACK_BAD_CALIBRATION,
    FALLBACK_MISSING_CHANNEL,
    MODEL_VERSION,
    CalibratedDetector,
    RingState,
    fold,
)
from model.pca_tq import PcaConfig, calibrate_columns
from testkit.fakes import InMemoryDeviceRegistry
from testkit.pump_rig import pump_rig

# The rig's hydraulic columns (Current, Pressure, Voltage, Flow) under the names a replayed SKAB device
# carries them in the pipeline (simulator/replay.py SKAB_MAPPING: extra.current, pressure, extra.voltage,
# humidity).
HYD = [2, 3, 6, 7]
NAMES = ("current", "pressure", "voltage", "humidity")
T0 = 1_795_000_000_000


def rig(seed: int = 3, rows: int = 1200) -> tuple[np.ndarray, pca_tq.PcaCalibration]:
    values, _ = pump_rig(seed, rows, slice(700, 900), current_shift=0.08, pressure_shift=0.05)
    hyd = values[:, HYD]
    return hyd, calibrate_columns(NAMES, hyd, PcaConfig())


def readings(
    hyd: np.ndarray, device: DeviceInfo, start: int = 0, drop: tuple[str, ...] = ()
) -> list[Reading]:
    out = []
    for i, row in enumerate(hyd[start:], start=start):
        channels = {"temperature": 20.0, **dict(zip(NAMES, row.tolist(), strict=True))}
        for name in drop:
            channels.pop(name, None)
        out.append(Reading(device.device_id, T0 + i * 1000, channels, "shard-0", str(i), device))
    return out


def device(cal: pca_tq.PcaCalibration | None, device_id: str = "pump-1", state=None) -> DeviceInfo:
    return DeviceInfo(
        device_id=device_id, calibration=cal.to_dict() if cal else None, detector_state=state
    )


def test_a_calibrated_device_gets_the_offline_alarms_scored_whole():
    hyd, cal = rig()
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(readings(hyd, device(cal)))
    expected = pca_tq.alarms(cal, hyd)
    assert [v.is_anomaly for v in verdicts] == expected.tolist()
    assert expected[700:900].mean() > 0.5  # the rig's fault shows
    assert expected[400:700].mean() < 0.2
    assert {v.model_version for v in verdicts} == {MODEL_VERSION}
    flagged = [v for v in verdicts if v.is_anomaly]
    assert all(v.severity_rank >= 1 and v.reason for v in flagged)


@pytest.mark.parametrize("sizes", [(1,), (7,), (30,), (29, 31, 1, 200)])
def test_batches_on_a_warm_container_give_the_same_alarms_as_one_pass(sizes):
    hyd, cal = rig()
    expected = pca_tq.alarms(cal, hyd).tolist()
    detector = CalibratedDetector(EmbeddedDetector())
    stream = readings(hyd, device(cal))
    got, i, j = [], 0, 0
    while i < len(stream):
        n = sizes[j % len(sizes)]
        got += [v.is_anomaly for v in detector.detect(stream[i : i + n])]
        i, j = i + n, j + 1
    assert got == expected


def test_a_cold_container_per_batch_resumes_from_the_state_on_the_device_item():
    """Every batch on a new container: the only memory is what the processor persisted."""
    hyd, cal = rig()
    expected = pca_tq.alarms(cal, hyd).tolist()
    registry = InMemoryDeviceRegistry([device(cal)])
    stream = readings(hyd, device(cal))
    got = []
    writes = 0
    for i in range(0, len(stream), 25):
        info = registry.get_many(["pump-1"])["pump-1"]
        detector = CalibratedDetector(EmbeddedDetector())
        batch = [dataclasses.replace(r, device=info) for r in stream[i : i + 25]]
        got += [v.is_anomaly for v in detector.detect(batch)]
        for device_id, state in detector.drain_states().items():
            writes += registry.save_detector_state(device_id, state)
    assert got == expected
    assert writes >= 1


def test_a_redelivered_batch_does_not_advance_the_ring_twice():
    hyd, cal = rig()
    expected = pca_tq.alarms(cal, hyd).tolist()
    detector = CalibratedDetector(EmbeddedDetector())
    stream = readings(hyd, device(cal))
    got = []
    for i in range(0, len(stream), 10):  # shorter than the ring (n - 1 = 29): a double fold would show
        batch = stream[i : i + 10]
        first = [v.is_anomaly for v in detector.detect(batch)]
        detector.detect(batch)  # redelivered (handed back after detection): scored again, not folded in
        got += first
    assert got == expected


def test_a_newer_state_on_the_item_wins_over_a_stale_in_memory_one():
    """A shard that moved to another container and back: the item's later state is the one to use."""
    hyd, cal = rig()
    expected = pca_tq.alarms(cal, hyd).tolist()
    here, there = CalibratedDetector(EmbeddedDetector()), CalibratedDetector(EmbeddedDetector())
    stream = readings(hyd, device(cal))
    got = [v.is_anomaly for v in here.detect(stream[:890])]
    item = device(cal, state=here.drain_states()["pump-1"])
    moved = [dataclasses.replace(r, device=item) for r in stream[890:905]]
    got += [v.is_anomaly for v in there.detect(moved)]
    item = device(cal, state=there.drain_states()["pump-1"])
    got += [v.is_anomaly for v in here.detect([dataclasses.replace(r, device=item) for r in stream[905:]])]
    assert got == expected


def test_uncalibrated_devices_get_exactly_the_fleet_forests_verdicts():
    hyd, cal = rig()
    fleet = readings(hyd[:300], device(None, "sim-1"))
    pump = readings(hyd[:300], device(cal, "pump-1"))
    mixed = sorted(fleet + pump, key=lambda r: (r.device_id, r.epoch_ms))
    alone = EmbeddedDetector().detect(fleet)
    wrapped = CalibratedDetector(EmbeddedDetector()).detect(mixed)
    assert [v for r, v in zip(mixed, wrapped, strict=True) if r.device_id == "sim-1"] == alone


def test_a_reading_missing_a_calibrated_channel_falls_back_to_the_forest_and_is_counted():
    hyd, cal = rig()
    dev = device(cal)
    stream = readings(hyd[:50], dev)
    broken = readings(hyd[:50], dev, drop=("voltage",))
    batch = stream[:20] + broken[20:25] + stream[25:]
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(batch)
    assert len(verdicts) == 50
    versions = [v.model_version for v in verdicts]
    assert versions[20:25] == [EmbeddedDetector().model_version] * 5
    assert set(versions[:20] + versions[25:]) == {MODEL_VERSION}
    assert detector.drain_fallbacks() == {FALLBACK_MISSING_CHANNEL: 5}
    assert detector.drain_fallbacks() == {}


def test_a_calibration_that_does_not_parse_falls_back_to_the_forest():
    hyd, cal = rig()
    bad = DeviceInfo(device_id="pump-1", calibration={**cal.to_dict(), "format": "something-else"})
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(readings(hyd[:10], bad))
    assert {v.model_version for v in verdicts} == {EmbeddedDetector().model_version}
    assert detector.drain_fallbacks()[FALLBACK_BAD_CALIBRATION] == 10


def test_a_recalibration_resets_the_carried_ring():
    hyd, cal = rig()
    detector = CalibratedDetector(EmbeddedDetector())
    detector.detect(readings(hyd[:760], device(cal)))  # inside the fault: the ring is full of flags
    assert RingState.from_dict(detector.drain_states()["pump-1"]).ring != 0
    recal = calibrate_columns(NAMES, hyd[700:], PcaConfig())  # calibrated on the shifted level
    verdicts = detector.detect(readings(hyd[:800], device(recal), start=760))
    assert [v.is_anomaly for v in verdicts] == pca_tq.alarms(recal, hyd[760:800]).tolist()


def test_fold_keeps_the_last_flags_most_recent_lowest():
    history = np.array([True, False, False], dtype=bool)
    ring = fold(history, np.array([True, True]), 3)
    assert ring == 0b011
    assert RingState(ring, 0, 3, "x").history().tolist() == [False, True, True]


# --- through the processor -------------------------------------------------------------------------


def _pump_docs(values: np.ndarray, device_id: str, start: int, stop: int, drop: str = "") -> list[dict]:
    from testkit.events import reading_doc

    docs = []
    for i in range(start, stop):
        cur, pres, volt, flow = values[i].tolist()
        extra = {"current": cur, "voltage": volt}
        extra.pop(drop, None)
        docs.append(reading_doc(device_id, T0 + i * 1000, 20.0, flow, pres, extra=extra))
    return docs


def _pipeline_values() -> np.ndarray:
    hyd, _ = rig()
    hyd = hyd.copy()
    hyd[:, 1] = hyd[:, 1] * 100 + 900  # SKAB_MAPPING: Pressure (bar) -> pressure (hPa)
    return hyd


def test_the_processor_scores_a_calibrated_device_per_device_and_persists_its_ring():
    from functions.processor.ingestion_processor import process_batch
    from testkit.events import make_records
    from testkit.fakes import InMemoryAnomalyStore
    from testkit.processor import fake_ports

    values = _pipeline_values()
    cal = calibrate_columns(NAMES, values, PcaConfig())
    expected = pca_tq.alarms(cal, values)
    ports = fake_ports(("pump-1", "sim-1"), detector=CalibratedDetector(EmbeddedDetector()))
    ports.anomaly_store = InMemoryAnomalyStore()
    registry = ports.detector_state
    registry.put(device(cal))
    seq = 0
    for start in range(0, 1200, 100):  # twelve batches, each on a cold container
        ports.detector = CalibratedDetector(EmbeddedDetector())
        ports.devices.invalidate()
        docs = _pump_docs(values, "pump-1", start, start + 100)
        now = T0 / 1000 + start + 110
        records = make_records(docs, first_seq=10**20 + seq, arrival_s=now)
        outcome = process_batch(records, ports, now_s=now)
        seq += 100
        assert outcome.aggregated == 100
    stored = {i["epoch_ms"]: i for i in ports.anomaly_store.items.values()}
    assert sorted(stored) == [T0 + i * 1000 for i in np.flatnonzero(expected)]
    assert {i["model_version"] for i in stored.values()} == {MODEL_VERSION}
    assert registry.items["pump-1"]["detector_state"]["ts"] == T0 + 1199 * 1000
    assert 1 <= registry.state_writes <= 12


def test_the_processor_counts_readings_that_lack_a_calibrated_channel():
    from functions.processor.ingestion_processor import process_batch
    from testkit.events import make_records
    from testkit.processor import fake_ports

    values = _pipeline_values()
    cal = calibrate_columns(NAMES, values, PcaConfig())
    ports = fake_ports(("pump-1",), detector=CalibratedDetector(EmbeddedDetector()))
    ports.detector_state.put(device(cal))
    docs = _pump_docs(values, "pump-1", 0, 30) + _pump_docs(values, "pump-1", 30, 40, drop="voltage")
    outcome = process_batch(make_records(docs, arrival_s=T0 / 1000 + 100), ports, now_s=T0 / 1000 + 100)
    assert outcome.aggregated == 40  # nothing lost
    assert outcome.calibration_fallbacks == {FALLBACK_MISSING_CHANNEL: 10}
    assert ports.metrics.total("CalibrationFallbacks", Reason=FALLBACK_MISSING_CHANNEL) == 10


def _dynamic_rig() -> tuple[np.ndarray, pca_tq.PcaCalibration]:
    hyd, _ = rig()
    cfg = PcaConfig(channels="all", variance=0.9, quantile=0.99, factor=1.0, persist_k=3, persist_n=5,
                    lags=2, limits="crossfit")
    return hyd, calibrate_columns(NAMES, hyd[:400], cfg, 400)


@pytest.mark.parametrize("size", [1, 7, 200])
def test_dynamic_pca_in_batches_gives_the_alarms_of_one_pass(size):
    # GIVEN a dynamic-PCA calibration (each row augmented with the two readings before it)
    hyd, cal = _dynamic_rig()
    assert cal.lags == 2
    assert len(cal.mean) == 3 * len(NAMES)
    expected = pca_tq.alarms(cal, hyd).tolist()
    # WHEN the stream arrives in batches on one container
    detector = CalibratedDetector(EmbeddedDetector())
    stream = readings(hyd, device(cal))
    got = []
    for i in range(0, len(stream), size):
        got += [v.is_anomaly for v in detector.detect(stream[i : i + size])]
    # THEN the lag history carried between batches gives exactly the whole-stream verdicts
    assert got == expected
    assert np.mean(expected[700:900]) > np.mean(expected[400:700])


def test_dynamic_pca_resumes_its_lag_history_from_the_device_item_on_a_cold_container():
    hyd, cal = _dynamic_rig()
    expected = pca_tq.alarms(cal, hyd).tolist()
    registry = InMemoryDeviceRegistry([device(cal)])
    stream = readings(hyd, device(cal))
    got = []
    for i in range(0, len(stream), 25):
        info = registry.get_many(["pump-1"])["pump-1"]
        detector = CalibratedDetector(EmbeddedDetector())  # new container: only the item remembers
        got += [v.is_anomaly for v in detector.detect([dataclasses.replace(r, device=info)
                                                       for r in stream[i : i + 25]])]
        for device_id, state in detector.drain_states().items():
            assert len(state["past"]) == 2  # the last two readings travel with the state
            registry.save_detector_state(device_id, state)
    assert got == expected


# --- per-device isolation: parameters that parse but cannot be used -------------------------------


@pytest.mark.parametrize(
    ("change", "why"),
    [
        ({"eigenvalues": [1e-320, 1.0]}, "eigenvalues[0]"),  # T² overflows to infinity
        ({"components": [[1e300, 0.0, 0.0, 0.0], [0.0, 1.0, 0.0, 0.0]]}, "row[0]"),
        ({"mean": [float("nan"), 0.0, 0.0, 0.0]}, "mean[0] is not finite"),  # scores NaN
        ({"scale": [0.0, 1.0, 1.0, 1.0]}, "scale[0]"),  # division by zero
        ({"instant_factor": 1e40}, "instant_factor"),
        ({"persist_n": 100_000, "persist_k": 3}, "persist_n"),  # the ring would not fit an item
        ({"t2_limit": 1e-12}, "t2_limit"),  # the fit of constant rows: every reading critical
        ({"mean": ["nan", 0.0, 0.0, 0.0]}, "mean[0] is not a number"),
        ({"lags": 1}, "mean has 4 values for 8 dimensions"),
        ({"lags": 7}, "lags 7 not in [0, 3]"),
    ],
)
def test_absurd_parameters_are_refused_and_the_fleet_model_scores_the_device(change, why):
    from functions.detector.calibration_check import problems

    hyd, cal = rig()
    record = cal.to_dict()
    k = len(record["eigenvalues"])
    if "eigenvalues" in change:
        change = {**change, "eigenvalues": change["eigenvalues"][:1] + record["eigenvalues"][1:]}
    if "components" in change:
        rows = [list(r) for r in record["components"]]
        rows[0][0] = 1e300
        change = {"components": rows}
    record.update(change)
    assert why in (problems(record) or ""), problems(record)
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(readings(hyd[:10], DeviceInfo(device_id="pump-1", calibration=record)))
    assert len(verdicts) == 10
    assert k >= 1
    assert {v.model_version for v in verdicts} == {EmbeddedDetector().model_version}
    assert all(np.isfinite(v.score) for v in verdicts)
    assert detector.drain_fallbacks() == {FALLBACK_BAD_CALIBRATION: 10}


def test_the_checked_calibration_of_a_real_fit_is_the_fit():
    from functions.detector.calibration_check import check

    _, cal = rig()
    assert check(cal.to_dict()) == cal
    lagged = {**cal.to_dict(), "lags": 0}
    assert check(lagged) == cal


@pytest.mark.parametrize(
    ("faults", "reason"), [(("item",), "unreadable_item"), (("calibration",), "unreadable_calibration")]
)
def test_a_device_whose_item_did_not_read_is_scored_by_the_fleet_model_and_counted(faults, reason):
    hyd, _cal = rig()
    info = DeviceInfo(device_id="pump-1", calibration=None, faults=faults)
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(readings(hyd[:6], info))
    assert {v.model_version for v in verdicts} == {EmbeddedDetector().model_version}
    assert detector.drain_fallbacks() == {reason: 6}


def test_scoring_that_raises_or_is_not_finite_falls_back_per_device(monkeypatch):
    from functions.detector import calibrated

    hyd, cal = rig()
    good, broken = device(cal, "pump-1"), device(cal, "pump-2")
    batch = readings(hyd[:5], good) + readings(hyd[:5], broken)

    def statistics(c, values, past=None):
        t2, q = pca_tq.statistics(c, values, past)
        if len(values) and values[0][0] == hyd[0][0] and statistics.calls == 1:
            t2 = t2.copy()
            t2[0] = np.inf
        statistics.calls += 1
        return t2, q

    statistics.calls = 0
    monkeypatch.setattr(calibrated, "statistics", statistics)
    detector = CalibratedDetector(EmbeddedDetector())
    verdicts = detector.detect(batch)
    assert len(verdicts) == 10
    assert [v.model_version for v in verdicts].count(MODEL_VERSION) == 9
    assert detector.drain_fallbacks() == {"nonfinite_score": 1}

    def boom(c, values):
        raise FloatingPointError("bad device")

    monkeypatch.setattr(calibrated, "statistics", boom)
    verdicts = detector.detect(batch)
    assert {v.model_version for v in verdicts} == {EmbeddedDetector().model_version}
    assert detector.drain_fallbacks() == {"scoring_error": 10}
