"""The shipped operating point of the per-device PCA T²+Q detector: one artifact, chosen by the
leave-one-family-out evaluation's rule, used by every calibration (CLI, in-stack calibrator, Lambda).

``choose`` applies ``model.generalization``'s rule to every selectable family at once (SKAB valve, the
TEP fault groups, the simulator's anomaly kinds): that is what ships (``model/artifacts/pca-tq-v2.json``).
It is not a held-out figure; the held-out ones are the leave-one-family-out report (``iotpipe model
evaluate``, docs/model-card.md). A unit test recomputes the choice on the shared data and compares it with
the shipped file, so the Lambda's detector is the evaluated one.

The artifact holds the operating point only (lags, target false-alarm rate, persistence, instant factor,
variance, limits rule, channel set and calibration rows); each device's numbers are fitted from its own
first readings (``functions.detector.pca_fit.calibrate_columns``).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from model import generalization as g
from model.pca_tq import PcaConfig
from model.skab import TRAIN_ROWS
from model.skab_stream import CHANNEL_SETS

FORMAT = "pca-tq-operating-point-v2"
ARTIFACT = Path(__file__).resolve().parent / "artifacts" / "pca-tq-v2.json"


def choose(src: g.Sources) -> dict[str, Any]:
    """The artifact: the rule's choice on every selectable family, with that choice's figures."""
    label, cfg, scores, families = g.shipped_choice(src)
    names = g.selectable(families)
    return {
        "format": FORMAT,
        "label": label,
        "config": cfg.as_dict(),
        # The calibrated channels under their SKAB names (the calibrator maps them to the pipeline's):
        # "all" of a SKAB pump's; a device of another kind is calibrated with --mapping.
        "channels": list(CHANNEL_SETS[cfg.channels]),
        "calibration_rows": TRAIN_ROWS,
        "rule": "model.generalization.choose over every selectable family (not held out)",
        "candidates": len(g.CANDIDATES),
        "families": names,
        "per_family_f1": {n: scores.f1(label, n) for n in names},
        "normal_far_pct": scores.normal_far[label],
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
