"""Train the Isolation Forest on normal readings and export the versioned artifact.

    python -m model.train --source simulator [--devices 40 --duration-s 7200 --seed 7]
    python -m model.train --source csv --csv readings.csv

Steps: readings (normal only) -> split by time (the last ``--holdout`` fraction of every device is held
back) -> fit the feature scales on the training part -> features with the Lambda's ``FeatureBuilder`` ->
IsolationForest (seeded) -> threshold = the (1 - target FAR) quantile of held-back normal scores, computed
with the numpy scorer the Lambda uses -> artifact JSON (canonical bytes, no timestamps: the same command
rebuilds it bit for bit).
"""

from __future__ import annotations

import sys
import time
from enum import StrEnum
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import sklearn
import typer
from sklearn.ensemble import IsolationForest

from functions.detector.envelope import ENVELOPE_MARGIN, Envelope, combine_scores
from functions.detector.features import FeatureBuilder
from functions.detector.iforest import IsolationForestScorer
from iotpipe.console import STDERR, run_app
from model.export import array_sha256, export_forest, write_artifact
from model.features import fit_spec
from model.simdata import ReadingSet, from_csv, from_simulator

MODEL_VERSION = "iforest-v1"
DEFAULT_OUT = Path(__file__).resolve().parent / "artifacts" / f"{MODEL_VERSION}.json"
KINDS = ("dev", "roc", "wz")
# Severity bands: how far a score is over the threshold, as a fraction of the room left up to 1.0.
SEVERITY_STEPS = {"medium": 0.1, "high": 0.2, "critical": 0.35}


def _progress(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _round(value: float, digits: int = 12) -> float:
    # Metrics are summaries, not model parameters: rounding keeps the artifact readable and stable.
    return float(round(value, digits))


def split_by_time(data: ReadingSet, holdout: float) -> tuple[ReadingSet, ReadingSet]:
    """The last ``holdout`` fraction of the time range is held back (every device continues into it)."""
    lo, hi = int(data.epoch_ms.min()), int(data.epoch_ms.max())
    cut = lo + (1.0 - holdout) * (hi - lo)
    train = data.epoch_ms < cut
    return data.take(train), data.take(~train)


def train(
    data: ReadingSet,
    *,
    source: str,
    seed: int,
    n_estimators: int,
    max_samples: int,
    target_far: float,
    holdout: float,
    source_params: dict[str, Any],
) -> dict[str, Any]:
    normal = data.take(np.array([label == "normal" for label in data.labels], dtype=bool))
    fit_part, held = split_by_time(normal, holdout)
    _progress(f"rows: {len(normal)} normal ({len(fit_part)} train, {len(held)} held back)")
    # Device baselines from the registry; rows of devices without one fall back to the fleet centre.
    centre = fit_part.values.mean(axis=0)
    base_fit = np.where(np.isnan(fit_part.baselines), centre, fit_part.baselines)
    base_held = np.where(np.isnan(held.baselines), centre, held.baselines)
    spec = fit_spec(
        data.channels, fit_part.keys, fit_part.values, base_fit, kinds=KINDS, window_s=60, joint_flat=True
    )
    builder = FeatureBuilder(spec)
    t0 = time.perf_counter()
    x_fit = builder.transform(fit_part.keys, fit_part.epoch_ms, fit_part.values, base_fit)
    # Held-back rows continue each device's stream, exactly as a warm Lambda container would see them.
    x_held = builder.transform(held.keys, held.epoch_ms, held.values, base_held)
    _progress(f"features: {x_fit.shape[1]} columns in {time.perf_counter() - t0:.1f}s")

    t0 = time.perf_counter()
    forest = IsolationForest(
        n_estimators=n_estimators, max_samples=min(max_samples, len(x_fit)), random_state=seed
    ).fit(x_fit)
    _progress(f"forest: {n_estimators} trees in {time.perf_counter() - t0:.1f}s")
    exported = export_forest(forest)
    scorer = IsolationForestScorer(exported)
    center = x_fit.mean(axis=0)
    scale = np.maximum(x_fit.std(axis=0), 1e-6)
    guarded = np.array([i for i, name in enumerate(spec.feature_names) if not name.endswith(":roc")])
    envelope = Envelope(x_fit.min(axis=0), x_fit.max(axis=0), scale, guarded, ENVELOPE_MARGIN)
    held_if = scorer.anomaly_score(x_held)
    threshold = float(np.quantile(held_if, 1.0 - target_far))
    held_scores = combine_scores(held_if, envelope.excess(x_held), threshold)
    fit_scores = combine_scores(scorer.anomaly_score(x_fit), envelope.excess(x_fit), threshold)
    room = 1.0 - threshold
    cuts = {name: threshold + step * room for name, step in SEVERITY_STEPS.items()}
    return {
        "format": "iotpipe-iforest",
        "format_version": 1,
        "model_version": MODEL_VERSION,
        "feature_spec": spec.to_dict(),
        "feature_names": spec.feature_names,
        "normalisation": {"center": center.tolist(), "scale": scale.tolist()},
        "envelope": envelope.to_dict(),
        "threshold": threshold,
        "severity_cuts": cuts,
        "forest": exported,
        "training": {
            "source": source,
            "source_params": source_params,
            "seed": seed,
            "rows_train": len(fit_part),
            "rows_holdout": len(held),
            "devices": len(set(normal.keys)),
            "data_sha256": array_sha256(
                np.frombuffer("\n".join(normal.keys).encode(), dtype=np.uint8), normal.epoch_ms, normal.values
            ),
            "sklearn_version": sklearn.__version__,
            "params": {
                "n_estimators": n_estimators,
                "max_samples": int(forest.max_samples_),
                "target_far": target_far,
                "holdout": holdout,
            },
        },
        "validation": {
            "holdout_far": _round(float(np.mean(held_scores > threshold))),
            "holdout_far_forest_only": _round(float(np.mean(held_if > threshold))),
            "train_far": _round(float(np.mean(fit_scores > threshold))),
            "holdout_score_p50": _round(float(np.median(held_scores))),
            "holdout_score_max": _round(float(held_scores.max())),
        },
    }


class Source(StrEnum):
    simulator = "simulator"
    csv = "csv"


app = typer.Typer(add_completion=False, help=__doc__.split("\n")[0])


@app.command(name="train")
def train_command(
    source: Source = Source.simulator,
    csv: Annotated[Path | None, typer.Option(help="CSV of normal readings (with --source csv)")] = None,
    devices: int = 40,
    duration_s: float = 7200.0,
    rate_hz: float = 1.0,
    seed: int = 7,
    trees: int = 100,
    max_samples: int = 256,
    target_far: Annotated[float, typer.Option(help="false-alarm rate on held-back data")] = 0.001,
    holdout: float = 0.25,
    out: Path = DEFAULT_OUT,
) -> int:
    t0 = time.perf_counter()
    if source is Source.csv:
        if csv is None:
            raise SystemExit("--source csv needs --csv PATH")
        _progress(f"reading {csv} ...")
        data = from_csv(csv)
        params: dict[str, Any] = {"file": csv.name}
    else:
        _progress(f"simulating {devices} devices x {duration_s:.0f}s at {rate_hz} Hz ...")
        data = from_simulator(devices, duration_s, seed, anomaly_rate=0.0, rate_hz=rate_hz)
        params = {"devices": devices, "duration_s": duration_s, "rate_hz": rate_hz}
    # Features, the forest and the threshold take a while on a full run: a spinner on stderr.
    with STDERR.status(f"training {trees} trees on {len(data.labels):,} readings ...", spinner="dots"):
        artifact = train(
            data,
            source=source.value,
            seed=seed,
            n_estimators=trees,
            max_samples=max_samples,
            target_far=target_far,
            holdout=holdout,
            source_params=params,
        )
    digest = write_artifact(artifact, out)
    print(
        f"wrote {out} sha256={digest} threshold={artifact['threshold']:.6f} "
        f"holdout_far={artifact['validation']['holdout_far']} in {time.perf_counter() - t0:.1f}s"
    )
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="python -m model.train")


if __name__ == "__main__":
    raise SystemExit(main())
