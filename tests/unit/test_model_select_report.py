"""`evaluate --select-on ... --report-on ...`: every choice is made without the report-on files' labels,
the report-on files are scored with it, and the CLI prints the JSON line."""

from __future__ import annotations

import json
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np
import pytest

import model.evaluate as evaluate
import model.select_report as select_report
from model.pca_tq import PCA_GRID
from model.select_report import select_on_report_on
from model.skab_stream import StreamConfig
from testkit.pump_rig import pump_rig

HEADER = (
    "datetime;Accelerometer1RMS;Accelerometer2RMS;Current;Pressure;Temperature;Thermocouple;Voltage;"
    "Volume Flow RateRMS"
)
ROWS = 700
FOREST = (StreamConfig(channels="hydraulic", features="mean", window=10, quantile=0.99, n_estimators=10),)
PCA = tuple(c for c in PCA_GRID if c.variance == 0.8 and c.quantile in (0.95, 0.99) and c.factor <= 1.5)


def _values(seed: int, onset: int, shift: float) -> tuple[np.ndarray, np.ndarray]:
    return pump_rig(seed, ROWS, slice(onset, onset + 120), current_shift=shift, pressure_shift=shift / 2)


def _write(path: Path, values: np.ndarray, labels: np.ndarray | None) -> Path:
    t0 = datetime(2020, 3, 9, 10, 0, 0)
    head = HEADER if labels is None else HEADER + ";anomaly;changepoint"
    lines = [head]
    for i, row in enumerate(values):
        stamp = (t0 + timedelta(seconds=i)).strftime("%Y-%m-%d %H:%M:%S")
        cells = [stamp, *(repr(float(v)) for v in row)]
        if labels is not None:
            cells += [f"{float(labels[i])}", "0.0"]
        lines.append(";".join(cells))
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    for i in range(3):
        _write(tmp_path / "sel" / f"{i}.csv", *_values(i, 450 + 20 * i, 0.05 + 0.02 * i))
    for i in range(2):
        _write(tmp_path / "rep" / f"{i}.csv", *_values(10 + i, 500, 0.04 + 0.04 * i))
    normal, _ = _values(20, 0, 0.0)
    free = np.concatenate([normal, _values(21, 0, 0.0)[0][:500]])  # 1200 rows: one pseudo-device
    _write(tmp_path / "anomaly-free" / "anomaly-free.csv", free, None)
    return tmp_path / "sel", tmp_path / "rep", tmp_path / "anomaly-free" / "anomaly-free.csv"


def _choices(r: dict) -> tuple:
    return (
        r["selected"],
        r["select_f1"],
        r["constrained"]["selected"],
        r["unconstrained"]["selected"],
        r["unconstrained"]["select_f1"],
        {f: {k: (b or {}).get("selected") for k, b in rules.items()} for f, rules in r["by_family"].items()},
    )


def test_selection_never_reads_the_report_on_labels(folders, tmp_path):
    sel, rep, free = folders
    # GIVEN the same select-on folder, and report-on files whose labels are flipped and shuffled
    before = select_on_report_on([sel], [rep], free, 20.0, FOREST, PCA)
    rng = np.random.default_rng(0)
    for i in range(2):
        values, labels = _values(10 + i, 500, 0.04 + 0.04 * i)
        _write(rep / f"{i}.csv", values, rng.permutation(1 - labels))
    # WHEN the evaluation runs again
    after = select_on_report_on([sel], [rep], free, 20.0, FOREST, PCA)
    # THEN every choice is unchanged; only the report-on figures move
    assert _choices(after) == _choices(before)
    assert after["report"] != before["report"]
    assert after["gap"] == round(after["select_f1"] - after["f1"], 4)


def test_report_on_files_are_loaded_only_after_the_selection(folders, monkeypatch):
    sel, rep, free = folders
    calls: list[str] = []
    original_grid = select_report.pca_candidates

    def load_spy(dirs, what):
        calls.append(what)
        return select_report._load(dirs, what)

    def grid_spy(datas, grid):
        calls.append("grid")
        return original_grid(datas, grid)

    monkeypatch.setattr(select_report, "pca_candidates", grid_spy)
    select_on_report_on([sel], [rep], free, 20.0, FOREST, PCA, loader=load_spy)
    # THEN the report-on files are read once, after every grid prediction (the selection) is done
    assert calls.count("report-on") == 1
    assert calls.index("report-on") > max(i for i, c in enumerate(calls) if c == "grid")


def test_the_same_file_cannot_be_in_both_sets(folders):
    sel, _, free = folders
    with pytest.raises(SystemExit, match="both"):
        select_on_report_on([sel], [sel], free, 20.0, FOREST, PCA)


def test_cli_prints_the_report_as_its_last_json_line(folders, capsys, monkeypatch):
    sel, rep, free = folders
    monkeypatch.setattr(evaluate, "select_on_report_on", _small)
    status = evaluate.main(["--select-on", str(sel), "--report-on", str(rep), "--no-forest"])
    assert status == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    for key in (
        "f1",
        "far_pct",
        "mar_pct",
        "confusion",
        "flag_all",
        "pca_baseline",
        "selected",
        "select_f1",
        "gap",
        "constrained",
        "unconstrained",
    ):
        assert key in out, key
    assert set(out["confusion"]) == {"tp", "fp", "fn", "tn"}
    assert out["flag_all"]["far_pct"] == 100.0
    assert out["anomaly_free"]["path"] == str(free)  # found beside the select-on folder
    assert out["grid_size"] == {"forest": 0, "pca-t2q": len(PCA)}


def _small(select_dirs, report_dirs, anomaly_free, af_far_pct=20.0, forest_grid=FOREST):
    return select_on_report_on(select_dirs, report_dirs, anomaly_free, af_far_pct, forest_grid, PCA)


def test_cli_needs_both_sets_or_a_dataset(folders, tmp_path, capsys):
    sel, _, _ = folders
    assert evaluate.main(["--select-on", str(sel)]) == 2
    # No mode given: the leave-one-family-out protocol, which says which data folder is missing.
    assert evaluate.main(["--skab-dir", str(tmp_path / "none"), "--tep-dir", str(tmp_path)]) == 2
    assert "no such folder" in capsys.readouterr().err


def test_multi_value_flags_are_expanded():
    assert evaluate._expand_multi(["--select-on", "a", "b", "--report-on", "c", "--no-forest"]) == [
        "--select-on",
        "a",
        "--select-on",
        "b",
        "--report-on",
        "c",
        "--no-forest",
    ]
