"""Embedded numpy scorer vs scikit-learn on the same model: throughput, import time, package size.

    python bench/scorer.py [--rows 100000] [--artifact model/artifacts/iforest-v1.json]

Last line: one JSON object (ratios and unit-named figures).
"""

from __future__ import annotations

import importlib.metadata as md
import json
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Annotated

import numpy as np
import typer

from iotpipe.console import run_app

REPO = Path(__file__).resolve().parents[1]
DEFAULT_ARTIFACT = REPO / "model" / "artifacts" / "iforest-v1.json"


def _fit_same_model(artifact: dict, rows: int) -> tuple[object, object, np.ndarray]:
    """A scikit-learn forest and its exported twin, fitted on features shaped like the artifact's."""
    from sklearn.ensemble import IsolationForest

    from functions.detector.iforest import IsolationForestScorer
    from model.export import export_forest

    rng = np.random.default_rng(0)
    center = np.asarray(artifact["normalisation"]["center"])
    scale = np.asarray(artifact["normalisation"]["scale"])
    X = center + scale * rng.standard_t(4, size=(rows, len(center)))
    params = artifact["training"]["params"]
    forest = IsolationForest(
        n_estimators=params["n_estimators"], max_samples=params["max_samples"], random_state=0
    ).fit(X[:20_000])
    return forest, IsolationForestScorer(export_forest(forest)), X


def _best_rates(fns: list, X: np.ndarray, repeat: int) -> list[float]:
    """Best-of-N rows/s for each function, the functions alternating within every round.

    The machine is shared and noisy: alternating puts a slow stretch on both sides of the ratio
    instead of on whichever ran during it.
    """
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeat):
        for i, fn in enumerate(fns):
            t0 = time.process_time()  # CPU time: other processes' load does not count against us
            fn(X)
            times[i].append(time.process_time() - t0)
    return [len(X) / min(t) for t in times]


def _import_s(module: str, repeat: int) -> float:
    code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
    runs = [
        float(
            subprocess.run(
                [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO
            ).stdout
        )
        for _ in range(repeat)
    ]
    return statistics.median(runs)


def _dist_bytes(name: str) -> int:
    dist = md.distribution(name)
    total = 0
    for f in dist.files or []:
        path = Path(dist.locate_file(f))
        if path.is_file():
            total += path.stat().st_size
    return total


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def scorer(
    rows: int = 100_000,
    repeat: int = 5,
    artifact_path: Annotated[Path, typer.Option("--artifact")] = DEFAULT_ARTIFACT,
) -> int:

    artifact = json.loads(artifact_path.read_bytes())
    forest, scorer, X = _fit_same_model(artifact, rows)
    diff = float(np.max(np.abs(scorer.score_samples(X[:5000]) - forest.score_samples(X[:5000]))))
    print(
        f"model: {artifact['training']['params']['n_estimators']} trees, {X.shape[1]} features, "
        f"{rows} rows; max |numpy - sklearn| = {diff:.2e}"
    )
    numpy_rate, sklearn_rate = _best_rates([scorer.score_samples, forest.score_samples], X, repeat)
    print(
        f"throughput: numpy {numpy_rate:,.0f} rows/s, sklearn {sklearn_rate:,.0f} rows/s, "
        f"ratio {numpy_rate / sklearn_rate:.2f} (target >= 1.0)"
    )

    ours_import = _import_s("functions.detector.anomaly_detector", repeat + 2)
    sklearn_import = _import_s("sklearn.ensemble", repeat + 2)
    print(
        f"import: detector {ours_import * 1000:.0f} ms, sklearn.ensemble {sklearn_import * 1000:.0f} ms, "
        f"ratio {ours_import / sklearn_import:.3f} (target <= 0.15)"
    )

    code = sum(p.stat().st_size for p in (REPO / "functions" / "detector").glob("*.py"))
    # readings.py moved to functions/core/ (the pure domain package) with 'One house'
    code += (REPO / "functions" / "core" / "readings.py").stat().st_size + (
        REPO / "functions" / "settings.py"
    ).stat().st_size
    ours_pkg = _dist_bytes("numpy") + code + artifact_path.stat().st_size
    sk_pkg = sum(_dist_bytes(n) for n in ("scikit-learn", "scipy", "numpy", "joblib", "threadpoolctl"))
    print(
        f"package: numpy + detector + artifact {ours_pkg / 1e6:.1f} MB, scikit-learn based "
        f"{sk_pkg / 1e6:.1f} MB, ratio {ours_pkg / sk_pkg:.3f} (target <= 0.3)"
    )
    print(
        json.dumps(
            {
                "rows": rows,
                "max_abs_score_diff": diff,
                "numpy_rows_per_s": round(numpy_rate),
                "sklearn_rows_per_s": round(sklearn_rate),
                "throughput_ratio": round(numpy_rate / sklearn_rate, 3),
                "detector_import_s": round(ours_import, 4),
                "sklearn_ensemble_import_s": round(sklearn_import, 4),
                "import_ratio": round(ours_import / sklearn_import, 3),
                "embedded_package_bytes": ours_pkg,
                "sklearn_package_bytes": sk_pkg,
                "package_ratio": round(ours_pkg / sk_pkg, 3),
            },
            sort_keys=True,
        )
    )
    return 0



def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/scorer.py")


if __name__ == "__main__":
    raise SystemExit(main())
