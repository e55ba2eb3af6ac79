"""The shipped operating point of the per-device PCA T²+Q detector: one artifact, chosen by the
selection code, used by every calibration (CLI and pipeline).

``choose`` runs the PCA T²+Q family's selection of ``model.select_report`` (best summed F1 on the
select-on files among configurations whose false-alarm rate on the label-free anomaly-free pseudo-devices
is <= ``af_far_pct``; first in grid order on ties). Selecting on *both* shared SKAB folders is what ships
(``model/artifacts/pca-tq-v1.json``): it is not a held-out figure (the held-out ones are in the model
card, select-on/report-on). A unit test recomputes the choice on the shared data and compares it with
the shipped file, so the Lambda's detector is the evaluated one.

The artifact holds the operating point only (statistic, quantile, factor, k/n, instant factor, variance,
channel set and calibration rows); each device's numbers are fitted from its own first readings
(``model.pca_tq.calibrate_columns``).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from model.pca_tq import PCA_GRID, PcaConfig, pca_candidates
from model.select_report import (
    PSEUDO_DEVICE_ROWS,
    _false_alarm_pct,
    _load,
    load_recording,
    pseudo_devices,
    select,
    summary,
)
from model.skab import TRAIN_ROWS
from model.skab_stream import CHANNEL_SETS

FORMAT = "pca-tq-operating-point-v1"
ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "pca-tq-v1.json"
AF_FAR_PCT = 20.0


def choose(
    select_dirs: Sequence[Path], anomaly_free: Path, af_far_pct: float = AF_FAR_PCT
) -> dict[str, Any]:
    """The artifact: the constrained PCA T²+Q selection on ``select_dirs``."""
    files = _load(select_dirs, "select-on")
    cands = pca_candidates(files, PCA_GRID)
    devices = pseudo_devices(load_recording(anomaly_free))
    af_far = {label: _false_alarm_pct(p) for label, p in pca_candidates(devices, PCA_GRID).preds.items()}
    choice = select(cands, files, af_far, af_far_pct)
    if choice is None:
        raise SystemExit(f"no PCA T2+Q configuration has anomaly-free FAR <= {af_far_pct:g} %")
    config = cands.configs[choice.label]
    return {
        "format": FORMAT,
        "label": choice.label,
        "config": config,
        "channels": list(CHANNEL_SETS[str(config["channels"])]),
        "calibration_rows": TRAIN_ROWS,
        "rule": f"max select-on F1 over model.pca_tq.PCA_GRID, anomaly-free FAR <= {af_far_pct:g} %",
        "select_on": sorted(Path(d).name for d in select_dirs),
        "files": len(files),
        "anomaly_free": {"file": Path(anomaly_free).name, "pseudo_devices": len(devices),
                         "rows": PSEUDO_DEVICE_ROWS, "far_pct": choice.af_far_pct},
        "select_on_score": summary(choice.on_select),
    }


def load(path: Path = ARTIFACT) -> dict[str, Any]:
    data: dict[str, Any] = json.loads(path.read_text())
    if data.get("format") != FORMAT:
        raise ValueError(f"{path}: not a {FORMAT} artifact")
    return data


def config(artifact: dict[str, Any] | None = None) -> PcaConfig:
    """The shipped ``PcaConfig``."""
    data = artifact if artifact is not None else load()
    fields = {k: v for k, v in data["config"].items() if k != "family"}
    return PcaConfig(**fields)


def write(artifact: dict[str, Any], path: Path = ARTIFACT) -> None:
    path.write_text(json.dumps(artifact, indent=2, sort_keys=True) + "\n")
