"""SKAB protocol: the split is kept (nothing fitted sees rows >= 400 or any label), features are causal,
and the leave-one-group-out selection never uses the held-out group's labels."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import model.evaluate as evaluate
import model.skab_stream as stream
from model.skab import (
    TRAIN_ROWS,
    Candidates,
    SkabParams,
    grid_candidates,
    leave_one_group_out,
    legacy_scores,
    load_file,
    predict_file,
)
from model.skab_stream import StreamConfig, causal_rolling, hysteresis, score_file

HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
    "Volume Flow RateRMS;anomaly;changepoint"
)
ROWS = 600


def _values(seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    base = np.array([0.027, 0.040, 1.3, 0.3, 79.0, 26.0, 233.0, 32.0])
    noise = np.array([0.001, 0.001, 0.05, 0.05, 0.1, 0.05, 1.0, 0.3])
    values = base + rng.normal(size=(ROWS, 8)) * noise
    labels = np.zeros(ROWS, dtype=np.int64)
    labels[480:560] = 1
    values[480:560, 2] += 0.5  # current jumps
    values[480:560, 3] -= 0.3  # pressure drops
    return values, labels


def _write(path: Path, values: np.ndarray, labels: np.ndarray) -> Path:
    t0 = datetime(2020, 3, 9, 10, 0, 0)
    lines = [HEADER]
    for i, (row, lab) in enumerate(zip(values, labels, strict=True)):
        stamp = (t0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        lines.append(";".join([stamp, *(repr(float(v)) for v in row), f"{float(lab)}", "0.0"]))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def csv_pair(tmp_path: Path) -> tuple[Path, Path]:
    """Two files identical in rows < 400; rows >= 400 and all labels differ wildly in the second."""
    values, labels = _values(1)
    wild = values.copy()
    wild[TRAIN_ROWS:] = wild[TRAIN_ROWS:] * 1000.0 - 5.0
    other_labels = 1 - labels
    return _write(tmp_path / "a" / "0.csv", values, labels), _write(
        tmp_path / "b" / "0.csv", wild, other_labels
    )


CFG = StreamConfig(channels="all", features="mean+res+std", window=30, n_estimators=20)


def test_v2_fit_never_sees_test_rows_or_labels(csv_pair, monkeypatch):
    # GIVEN two CSVs that agree only on their first 400 rows (the training part)
    a, b = (load_file(p) for p in csv_pair)
    seen: list[np.ndarray] = []
    original_fit = stream.IsolationForest.fit

    def spy(self, X, *args, **kwargs):
        seen.append(np.array(X))
        return original_fit(self, X, *args, **kwargs)

    monkeypatch.setattr(stream.IsolationForest, "fit", spy)
    # WHEN the detector is fitted on each
    fa = score_file(a.channels, a.values, CFG)
    fb = score_file(b.channels, b.values, CFG)
    # THEN everything fitted is identical: scaler, linear map, forest, training scores, threshold
    assert np.array_equal(fa.fitted["linear"].mean, fb.fitted["linear"].mean)
    assert np.array_equal(fa.fitted["linear"].scale, fb.fitted["linear"].scale)
    assert np.array_equal(fa.fitted["linear"].coef, fb.fitted["linear"].coef)
    assert fa.fitted["forest"] == fb.fitted["forest"]
    assert np.array_equal(fa.train_scores, fb.train_scores)
    assert fa.threshold(0.95, 1.0) == fb.threshold(0.95, 1.0)
    # AND the forest was fitted on at most 400 rows, equal for both files (no test row reached it)
    assert len(seen) == 2
    assert np.array_equal(seen[0], seen[1])
    assert seen[0].shape[0] <= TRAIN_ROWS
    # AND only the test part is predicted
    assert len(fa.test_scores) == ROWS - TRAIN_ROWS


def test_v1_fit_never_sees_test_rows(csv_pair):
    a, b = (load_file(p) for p in csv_pair)
    params = SkabParams(n_estimators=20)
    train_a, test_a = legacy_scores(a, params)
    train_b, _ = legacy_scores(b, params)
    assert np.array_equal(train_a, train_b)
    assert predict_file(a, params)[2] == predict_file(b, params)[2]
    assert len(test_a) == ROWS - TRAIN_ROWS


def test_predictions_do_not_depend_on_labels(tmp_path):
    values, labels = _values(2)
    files = [
        load_file(_write(tmp_path / "x" / "0.csv", values, labels)),
        load_file(_write(tmp_path / "y" / "0.csv", values, 1 - labels)),
    ]
    cands = grid_candidates(files, [CFG, replace(CFG, quantile=0.99)])
    for preds in cands.preds.values():
        assert np.array_equal(preds[0], preds[1])


def test_features_and_scores_are_causal(csv_pair):
    # A prefix of the stream gives a prefix of the output: no row looks ahead.
    data = load_file(csv_pair[0])
    full = score_file(data.channels, data.values, CFG)
    prefix = score_file(data.channels, data.values[:500], CFG)
    assert np.array_equal(full.test_scores[:100], prefix.test_scores)
    x = np.random.default_rng(0).normal(size=(50, 3))
    m_full, s_full = causal_rolling(x, 7)
    m_pre, s_pre = causal_rolling(x[:20], 7)
    assert np.allclose(m_full[:20], m_pre)
    assert np.allclose(s_full[:20], s_pre)
    assert np.allclose(m_full[10], x[4:11].mean(axis=0))
    assert np.allclose(s_full[10], x[4:11].std(axis=0))


def test_synthetic_anomaly_is_found(csv_pair):
    data = load_file(csv_pair[0])
    # (the configuration both held-out directions selected on the real data)
    cfg = StreamConfig(channels="hydraulic", features="mean", window=10, quantile=0.99, n_estimators=50)
    fs = score_file(data.channels, data.values, cfg)
    pred = fs.predict(cfg.quantile, cfg.factor, cfg.release)
    truth = data.labels[TRAIN_ROWS:]
    assert pred[truth == 1].mean() > 0.8
    # Normal rows, without the ~20 rows after the anomaly for which causal windows and score smoothing
    # hold the alarm (a live detector's lag). A 0.99 in-sample quantile lets through short false bursts.
    normal = np.r_[pred[: 480 - TRAIN_ROWS], pred[560 - TRAIN_ROWS + 30 :]]
    assert normal.mean() < 0.2


def test_hysteresis():
    score = np.array([0.1, 0.6, 0.55, 0.49, 0.3, 0.51, 0.7])
    assert hysteresis(score, on=0.5, off=0.5).tolist() == [0, 1, 1, 0, 0, 1, 1]
    assert hysteresis(score, on=0.58, off=0.5).tolist() == [0, 1, 1, 0, 0, 0, 1]


def test_leave_one_group_out_selects_without_held_out_labels():
    # GIVEN candidate A perfect on group g1 only, and B perfect on group g2 only
    truths = [np.array([1, 1, 0, 0])] * 4
    groups = ["g1", "g1", "g2", "g2"]
    good, bad = np.array([1, 1, 0, 0]), np.array([0, 0, 1, 1])
    cands = Candidates(
        configs={"A": {}, "B": {}},
        preds={"A": [good, good, bad, bad], "B": [bad, bad, good, good]},
    )
    # WHEN each group is held out
    total, results = leave_one_group_out(cands, truths, groups)
    # THEN the candidate chosen for a group is the one that is good on the *other* group
    by_group = {r.group: r for r in results}
    assert by_group["g1"].selected == "B"
    assert by_group["g2"].selected == "A"
    assert total.tp == 0
    assert total.fp == 8
    assert total.fn == 8
    with pytest.raises(ValueError, match="at least two groups"):
        leave_one_group_out(cands, truths, ["g1"] * 4)


def test_evaluate_cli_prints_json_last(tmp_path, monkeypatch, capsys):
    for group, seed in (("valve1", 3), ("valve2", 4)):
        values, labels = _values(seed)
        _write(tmp_path / group / "0.csv", values, labels)
    small = [CFG, replace(CFG, quantile=0.99)]
    monkeypatch.setattr(evaluate, "grid_candidates", lambda datas: grid_candidates(datas, small))
    assert evaluate.main(["--dataset", "skab", "--data-dir", str(tmp_path), "--no-legacy"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    result = json.loads(lines[-1])
    assert set(result["directions"]) == {"valve1", "valve2"}
    conf = result["confusion"]
    assert sum(conf.values()) == 2 * (ROWS - TRAIN_ROWS)
    assert "Conv-AE" in result["leaderboard"]
