"""Per-device PCA T²+Q detector: scoring (functions/detector/pca_tq.py), calibration and the grid
(model/pca_tq.py)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from functions.detector.pca_tq import PcaCalibration, alarms, exceedance, k_of_n
from model.pca_tq import PCA_GRID, PcaConfig, calibrate, pca_candidates
from model.skab import TRAIN_ROWS, SkabFile
from model.skab_stream import CHANNEL_SETS
from testkit.pump_rig import pump_rig

CHANNELS = CHANNEL_SETS["all"]
ROWS = 1000
FAULT = slice(600, 700)


def _device(seed: int, fault: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """A pump rig whose hydraulic channels move together; the fault (current up while pressure goes up
    too) leaves the normal subspace."""
    return pump_rig(seed, ROWS, FAULT if fault else None, current_shift=0.08, pressure_shift=0.05)


def _file(seed: int, fault: bool = True) -> SkabFile:
    values, labels = _device(seed, fault)
    return SkabFile(
        path=Path(f"{seed}.csv"),
        channels=CHANNELS,
        epoch_ms=np.arange(ROWS, dtype=np.int64) * 1000,
        values=values,
        labels=labels,
    )


CFG = PcaConfig(
    channels="hydraulic", variance=0.8, statistic="t2q", quantile=0.99, factor=1.0, persist_k=5, persist_n=10
)


def _hyd(values: np.ndarray) -> np.ndarray:
    """The hydraulic channels (Current, Pressure, Voltage, Flow), the calibration's column order."""
    return values[:, [2, 3, 6, 7]]


def test_normal_rows_raise_few_alarms_and_the_fault_is_flagged():
    # GIVEN a device calibrated on its first 400 rows
    values, labels = _device(0)
    cal = calibrate(CHANNELS, values, CFG)
    # WHEN its readings are scored by the Lambda-side scorer
    flags = alarms(cal, _hyd(values))
    test, truth = flags[TRAIN_ROWS:], labels[TRAIN_ROWS:].astype(bool)
    # THEN normal test rows are rarely flagged and the fault nearly always
    assert np.mean(test[~truth]) < 0.05
    assert np.mean(test[truth]) > 0.9


def test_k_of_n_needs_k_flags_in_the_last_n_rows():
    flags = np.array([1, 0, 1, 0, 0, 0, 1, 1, 1, 0], dtype=bool)
    assert k_of_n(flags, 3, 5).tolist() == [0, 0, 0, 0, 0, 0, 0, 0, 1, 1]
    assert k_of_n(flags, 2, 3).tolist() == [0, 0, 1, 0, 0, 0, 0, 1, 1, 1]
    assert np.array_equal(k_of_n(flags, 1, 1), flags)


def test_k_of_n_in_batches_equals_one_pass_when_history_is_carried():
    flags = np.random.default_rng(3).random(200) < 0.3
    whole = k_of_n(flags, 15, 30)
    parts = [k_of_n(flags[lo : lo + 37], 15, 30, history=flags[:lo]) for lo in range(0, 200, 37)]
    assert np.array_equal(np.concatenate(parts), whole)


def test_persistence_suppresses_a_short_excursion_but_not_an_extreme_spike():
    values, _ = _device(1, fault=False)
    cfg = PcaConfig(channels="hydraulic", quantile=0.99, factor=1.0, persist_k=15, persist_n=30)
    cal = calibrate(CHANNELS, values, cfg)
    hyd = _hyd(values).copy()
    hyd[700:703, 0] += 0.05  # three rows, a few times the limit: persistence keeps them quiet
    hyd[800, 1] += 5.0  # one row far beyond 8x the limit: alarms at once
    ratio = exceedance(cal, hyd)
    assert 1.0 < ratio[700:703].max() < cal.instant_factor
    assert ratio[800] > cal.instant_factor
    flags = alarms(cal, hyd)
    assert not flags[700:703].any()
    assert flags[800]


def test_calibration_round_trips_through_json_and_scores_the_same():
    values, _ = _device(2)
    cal = calibrate(CHANNELS, values, CFG)
    text = json.dumps(cal.to_dict())
    back = PcaCalibration.from_dict(json.loads(text))
    assert back == cal
    assert np.array_equal(alarms(back, _hyd(values)), alarms(cal, _hyd(values)))
    assert len(text) < 1024  # cheap to store per device
    assert cal.calibration_rows == TRAIN_ROWS
    assert len(cal.eigenvalues) == len(cal.components)


def test_from_dict_refuses_another_format():
    data = calibrate(CHANNELS, _device(2)[0], CFG).to_dict()
    with pytest.raises(ValueError, match="pca-t2q-v1"):
        PcaCalibration.from_dict({**data, "format": "iforest-v1"})


def test_calibration_never_sees_rows_after_the_calibration_period():
    values, _ = _device(4)
    wild = values.copy()
    wild[TRAIN_ROWS:] = wild[TRAIN_ROWS:] * 1000.0 - 5.0
    assert calibrate(CHANNELS, values, CFG) == calibrate(CHANNELS, wild, CFG)


def test_grid_predictions_equal_the_shipped_scorer():
    # GIVEN a few grid configurations, incl. persistence, Q only and all channels
    files = [_file(5), _file(6)]
    grid = [c for c in PCA_GRID if c.factor in (0.75, 2.0) and c.quantile == 0.95 and c.variance == 0.9]
    cands = pca_candidates(files, grid)
    # THEN the fast grid path gives exactly what calibrate + alarms give per file
    for cfg in grid:
        for d, pred in zip(files, cands.preds[cfg.label()], strict=True):
            cal = calibrate(d.channels, d.values, cfg)
            cols = [d.channels.index(c) for c in cal.channels]
            assert np.array_equal(pred, alarms(cal, d.values[:, cols])[TRAIN_ROWS:]), cfg.label()


def test_alarms_in_batches_equal_one_pass_when_raw_flags_are_carried():
    # GIVEN a device with a fault, scored whole and in Kinesis-like batches
    values, _ = _device(7)
    cal = calibrate(CHANNELS, values, CFG)
    hyd = _hyd(values)
    whole = alarms(cal, hyd)
    # WHEN each batch carries the raw flags (exceedance > 1) of the rows before it
    raw = exceedance(cal, hyd) > 1.0
    parts = [alarms(cal, hyd[lo : lo + 64], history=raw[:lo]) for lo in range(0, ROWS, 64)]
    # THEN the verdicts are the same
    assert np.array_equal(np.concatenate(parts), whole)


def test_the_scorer_needs_numpy_only():
    code = (
        "import sys, functions.detector.pca_tq; "
        "bad = [m for m in ('sklearn', 'scipy', 'boto3', 'model') if m in sys.modules]; "
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[2])
