"""Select on some folders, report once on others (``iotpipe model evaluate --select-on ... --report-on``).

Every choice — detector family, configuration, threshold, features — is the argmax of F1 on the
select-on files (first in grid order on ties). The candidates are the forest grid of
``model.skab_stream.GRID`` and the PCA T²+Q grid of ``model.pca_tq.PCA_GRID``. Two rules are reported:

- **constrained** (the design's recommendation, the headline): best select-on F1 among configurations
  whose false-alarm rate is <= ``af_far_pct`` on pseudo-devices cut from the label-free anomaly-free
  recording (each calibrated on its own first 400 rows). That rule was chosen after a first look at the
  unconstrained results (see the model card);
- **unconstrained**: best select-on F1.

The report-on files are read only after both selections are fixed, and then scored once per reported
configuration (the two selections, the best of each family, the fixed T²+Q baseline and flag-all);
their labels serve only to count. PCA configurations are scored on them through the Lambda-loadable
scorer (``model.pca_tq.calibrate`` + ``functions.detector.pca_tq.alarms``).
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from functions.detector.pca_tq import alarms
from iotpipe.console import track
from model.pca_tq import BASELINE, PCA_GRID, PcaConfig, calibrate, pca_candidates
from model.skab import TRAIN_ROWS, Candidates, Confusion, SkabFile, find_files, grid_candidates, load_file
from model.skab_stream import GRID, StreamConfig

PSEUDO_DEVICE_ROWS = 1150  # 400 calibration + 750 scored rows, as long as a typical SKAB file


def _log(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def load_recording(path: Path) -> SkabFile:
    """A label-free SKAB-format recording (no ``anomaly`` column): normal throughout, labels all 0."""
    with path.open(newline="") as handle:
        reader = csv.reader(handle, delimiter=";")
        header = next(reader)
        rows = [row for row in reader if row]
    channels = tuple(h for h in header if h not in ("datetime", "anomaly", "changepoint"))
    idx = [header.index(ch) for ch in channels]
    values = np.array([[float(r[i]) for i in idx] for r in rows], dtype=np.float64)
    n = len(values)
    return SkabFile(path, channels, np.arange(n, dtype=np.int64) * 1000, values, np.zeros(n, np.int64))


def pseudo_devices(recording: SkabFile, rows: int = PSEUDO_DEVICE_ROWS) -> list[SkabFile]:
    """Consecutive non-overlapping slices of ``rows`` readings, each one device."""
    return [
        SkabFile(
            recording.path,
            recording.channels,
            recording.epoch_ms[s : s + rows],
            recording.values[s : s + rows],
            recording.labels[s : s + rows],
        )
        for s in range(0, len(recording.values) - rows + 1, rows)
    ]


def summary(c: Confusion) -> dict[str, Any]:
    return {**c.metrics(), "tp": c.tp, "fp": c.fp, "fn": c.fn, "tn": c.tn}


def _confusion(preds: Sequence[np.ndarray], datas: Sequence[SkabFile]) -> Confusion:
    c = Confusion()
    for pred, d in zip(preds, datas, strict=True):
        c.add(d.labels[TRAIN_ROWS:], pred)
    return c


def _false_alarm_pct(preds: Sequence[np.ndarray]) -> float:
    rows = sum(len(p) for p in preds)
    return round(100.0 * sum(int(np.sum(p)) for p in preds) / rows, 2) if rows else 0.0


@dataclass
class Choice:
    label: str
    family: str
    on_select: Confusion  # its confusion on the select-on files
    af_far_pct: float | None


def select(
    cands: Candidates,
    truths_from: Sequence[SkabFile],
    af_far: dict[str, float] | None,
    limit: float | None,
    labels: Sequence[str] | None = None,
) -> Choice | None:
    """Best select-on F1 (first in order on ties), optionally among those with anomaly-free FAR <= limit."""
    best: Choice | None = None
    best_f1 = -1.0
    for label in labels if labels is not None else cands.preds:
        if limit is not None and af_far is not None and af_far[label] > limit:
            continue
        conf = _confusion(cands.preds[label], truths_from)
        f1 = conf.metrics()["f1"]
        if f1 > best_f1:
            family = str(cands.configs[label].get("family", "forest"))
            best = Choice(label, family, conf, None if af_far is None else af_far[label])
            best_f1 = f1
    return best


def _merge(a: Candidates, b: Candidates) -> Candidates:
    return Candidates({**a.configs, **b.configs}, {**a.preds, **b.preds})


def _load(dirs: Sequence[Path], what: str) -> list[SkabFile]:
    files = [p for d in dirs for p in find_files(d)]
    if not files:
        raise SystemExit(f"no SKAB anomaly files under {', '.join(map(str, dirs))} ({what})")
    return [load_file(p) for p in track(files, f"loading {what} files")]


def select_on_report_on(
    select_dirs: Sequence[Path],
    report_dirs: Sequence[Path],
    anomaly_free: Path | None,
    af_far_pct: float = 20.0,
    forest_grid: Sequence[StreamConfig] = GRID,
    pca_grid: Sequence[PcaConfig] = PCA_GRID,
    loader: Callable[[Sequence[Path], str], list[SkabFile]] = _load,
) -> dict[str, Any]:
    t0 = time.perf_counter()
    sel_paths = {p.resolve() for d in select_dirs for p in find_files(d)}
    rep_paths = {p.resolve() for d in report_dirs for p in find_files(d)}
    if sel_paths & rep_paths:
        raise SystemExit("a file is in both the select-on and the report-on folders")
    if anomaly_free is not None and any(
        anomaly_free.resolve().is_relative_to(d.resolve()) for d in report_dirs
    ):
        raise SystemExit("the anomaly-free recording must not be inside a report-on folder")

    # --- selection: select-on files and the label-free recording only ---------------------------------
    sel = loader(select_dirs, "select-on")
    _log(
        f"select-on: {len(sel)} files; grid {len(forest_grid)} forest + {len(pca_grid)} PCA T2+Q configs"
    )
    forest_cfg = {c.label(): c for c in forest_grid}
    pca_cfg = {c.label(): c for c in pca_grid}
    families = {"forest": list(forest_cfg), "pca-t2q": list(pca_cfg)}
    cands = _merge(grid_candidates(sel, forest_grid), pca_candidates(sel, pca_grid))
    af_far: dict[str, float] | None = None
    af_info: dict[str, Any] | None = None
    if anomaly_free is not None:
        devices = pseudo_devices(load_recording(anomaly_free))
        _log(f"anomaly-free: {len(devices)} pseudo-devices of {PSEUDO_DEVICE_ROWS} rows from {anomaly_free}")
        af_cands = _merge(grid_candidates(devices, forest_grid), pca_candidates(devices, pca_grid))
        af_far = {label: _false_alarm_pct(p) for label, p in af_cands.preds.items()}
        af_info = {
            "path": str(anomaly_free),
            "pseudo_devices": len(devices),
            "rows": PSEUDO_DEVICE_ROWS,
            "far_limit_pct": af_far_pct,
        }
    else:
        _log("no anomaly-free recording: the constrained rule is not applied")
    constrained = select(cands, sel, af_far, af_far_pct) if af_far is not None else None
    unconstrained = select(cands, sel, af_far, None)
    per_family = {
        fam: {
            "constrained": select(cands, sel, af_far, af_far_pct, labels) if af_far is not None else None,
            "unconstrained": select(cands, sel, af_far, None, labels),
        }
        for fam, labels in families.items()
        if labels
    }
    baseline_select = _confusion(pca_candidates(sel, [BASELINE]).preds[BASELINE.label()], sel)
    del cands  # nothing below looks at select-on predictions again
    _log(
        f"selected (constrained): {constrained.label if constrained else None}; "
        f"(unconstrained): {unconstrained.label if unconstrained else None}"
    )

    # --- report: the report-on files are read now, scored once per chosen configuration ----------------
    rep = loader(report_dirs, "report-on")
    scored: dict[str, Confusion] = {}

    def report(label: str) -> Confusion:
        if label not in scored:
            if label in pca_cfg or label == BASELINE.label():
                cfg = pca_cfg.get(label, BASELINE)
                preds = [_pca_test_alarms(d, cfg) for d in rep]
            else:
                preds = grid_candidates(rep, [forest_cfg[label]]).preds[label]
            scored[label] = _confusion(preds, rep)
        return scored[label]

    def block(choice: Choice | None) -> dict[str, Any] | None:
        if choice is None:
            return None
        r = report(choice.label)
        s, rf1 = choice.on_select.metrics()["f1"], r.metrics()["f1"]
        cfg = (
            pca_cfg[choice.label].as_dict()
            if choice.label in pca_cfg
            else {"family": "forest", **forest_cfg[choice.label].as_dict()}
        )
        return {
            "selected": choice.label,
            "family": choice.family,
            "config": cfg,
            "select_f1": s,
            "select_on": summary(choice.on_select),
            "af_far_pct": choice.af_far_pct,
            "report": summary(r),
            "gap": round(s - rf1, 4),
        }

    head = block(constrained if constrained is not None else unconstrained)
    flag_all = _confusion([np.ones(len(d.labels) - TRAIN_ROWS, dtype=bool) for d in rep], rep)
    base = report(BASELINE.label())
    result: dict[str, Any] = {
        "dataset": "skab",
        "protocol": "select-on/report-on: every choice made on the select-on folders (+ the label-free "
        "anomaly-free recording for the FAR constraint); report-on scored once; first 400 rows of each "
        "file calibrate",
        "select_on": [str(d) for d in select_dirs],
        "report_on": [str(d) for d in report_dirs],
        "files": {"select_on": len(sel), "report_on": len(rep)},
        "rule": (
            f"max select-on F1 subject to anomaly-free FAR <= {af_far_pct:g} %"
            if af_far is not None
            else "max select-on F1 (no anomaly-free recording given)"
        ),
        "grid_size": {"forest": len(forest_grid), "pca-t2q": len(pca_grid)},
        "anomaly_free": af_info,
        **{k: head[k] for k in ("selected", "family", "config", "select_f1", "af_far_pct", "gap")},
        **{k: head["report"][k] for k in ("f1", "far_pct", "mar_pct")},
        "confusion": {k: head["report"][k] for k in ("tp", "fp", "fn", "tn")},
        "report": head["report"],
        "constrained": block(constrained),
        "unconstrained": block(unconstrained),
        "by_family": {
            fam: {rule: block(c) for rule, c in rules.items()} for fam, rules in per_family.items()
        },
        "flag_all": summary(flag_all),
        "pca_baseline": {
            "config": BASELINE.as_dict(),
            "label": BASELINE.label(),
            "report": summary(base),
            "select_f1": baseline_select.metrics()["f1"],
        },
        "duration_s": round(time.perf_counter() - t0, 1),
    }
    return result


def _pca_test_alarms(d: SkabFile, cfg: PcaConfig) -> np.ndarray:
    """Alarms on the test rows, persistence state carried over from the calibration rows' raw flags."""
    cal = calibrate(d.channels, d.values, cfg)
    cols = [d.channels.index(ch) for ch in cal.channels]
    values = d.values[:, cols]
    return alarms(cal, values)[TRAIN_ROWS:]
