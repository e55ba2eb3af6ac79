"""Fitting one device's PCA T²+Q calibration: the one implementation, numpy only.

Used by the in-stack calibrator (``functions.calibrator``) and by the offline tools (``model.pca_tq``
delegates here, so the CLI, the evaluation and the Lambda fit the same numbers):

1. the rows lag-augmented when the operating point asks for dynamic PCA (``lags``), then per-column
   mean and floored standard deviation;
2. an SVD of the standardised rows, keeping the fewest components that explain ``variance`` of it;
3. T² / Q limits = the ``quantile`` of the calibration rows' statistics x ``factor``. With
   ``limits="crossfit"`` the statistics are out-of-fold: the rows are cut in two halves in time, each
   half is scored by a subspace fitted on the other, and the quantile is taken over both. In-sample
   statistics are biased low (the subspace was fitted to exactly those rows: with 52 channels and 500
   rows, a 99 % in-sample limit let 23-28 % of normal TEP rows through, the cross-fitted one 2-5 %),
   so ``quantile`` = 1 - the target false-alarm rate only holds for cross-fitted limits;
4. the alarm rule (statistic, k-of-n persistence, instant factor) copied from the operating point.

No label is read. Scoring is ``functions.detector.pca_tq``. ``OperatingPoint`` reads the shipped
artifact (``model/artifacts/pca-tq-v2.json``, copied into the bundle by ``scripts/build.py`` as
``functions/detector/artifacts/pca-tq-v2.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from functions.detector.pca_tq import PcaCalibration, lag_matrix

LIMIT_FLOOR = 1e-12
OPERATING_POINT_FORMATS = ("pca-tq-operating-point-v1", "pca-tq-operating-point-v2")
ARTIFACT_NAME = "pca-tq-v2.json"
LIMITS = ("in-sample", "crossfit")


def artifact_path() -> Path:
    """The bundled copy (the Lambda), else the repository's ``model/artifacts`` (tests, the CLI)."""
    bundled = Path(__file__).resolve().parent / "artifacts" / ARTIFACT_NAME
    if bundled.exists():
        return bundled
    return Path(__file__).resolve().parents[2] / "model" / "artifacts" / ARTIFACT_NAME


class FitConfig(Protocol):
    """What a fit needs of an operating point (``model.pca_tq.PcaConfig`` and ``OperatingPoint`` have it)."""

    @property
    def variance(self) -> float: ...
    @property
    def statistic(self) -> str: ...
    @property
    def quantile(self) -> float: ...
    @property
    def factor(self) -> float: ...
    @property
    def persist_k(self) -> int: ...
    @property
    def persist_n(self) -> int: ...
    @property
    def instant_factor(self) -> float: ...
    @property
    def lags(self) -> int: ...
    @property
    def limits(self) -> str: ...


@dataclass(frozen=True)
class OperatingPoint:
    """The shipped operating point as the calibrator reads it (the artifact's ``config`` + provenance)."""

    label: str
    channels: tuple[str, ...]  # the operating point's source columns (SKAB names)
    calibration_rows: int
    variance: float
    statistic: str
    quantile: float
    factor: float
    persist_k: int
    persist_n: int
    instant_factor: float
    lags: int = 0
    limits: str = "in-sample"

    @classmethod
    def from_artifact(cls, data: Mapping[str, Any]) -> OperatingPoint:
        if data.get("format") not in OPERATING_POINT_FORMATS:
            raise ValueError(f"not an operating point ({', '.join(OPERATING_POINT_FORMATS)})")
        cfg = data["config"]
        return cls(
            label=str(data["label"]),
            channels=tuple(str(c) for c in data["channels"]),
            calibration_rows=int(data["calibration_rows"]),
            variance=float(cfg["variance"]),
            statistic=str(cfg["statistic"]),
            quantile=float(cfg["quantile"]),
            factor=float(cfg["factor"]),
            persist_k=int(cfg["persist_k"]),
            persist_n=int(cfg["persist_n"]),
            instant_factor=float(cfg["instant_factor"]),
            lags=int(cfg.get("lags", 0)),
            limits=str(cfg.get("limits", "in-sample")),
        )


def load_operating_point(path: Path | None = None) -> OperatingPoint:
    """The artifact shipped in the bundle (or at ``path``)."""
    return OperatingPoint.from_artifact(json.loads((path or artifact_path()).read_text()))


@dataclass(frozen=True)
class Subspace:
    """Scaler and principal subspace fitted on calibration rows (``calibrate_columns`` freezes them)."""

    mean: np.ndarray
    scale: np.ndarray
    pca_mean: np.ndarray
    components: np.ndarray  # k x channels
    eigenvalues: np.ndarray  # k

    def statistics(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (values - self.mean) / self.scale - self.pca_mean
        t = z @ self.components.T
        return np.sum(t * t / self.eigenvalues, axis=1), np.sum((z - t @ self.components) ** 2, axis=1)


def floor_scale(spread: np.ndarray, level: np.ndarray) -> np.ndarray:
    # SKAB's flow rate is often constant through calibration (std 0): floor at 0.1 % of the level.
    return np.maximum(spread, 1e-3 * np.maximum(np.abs(level), 1e-3))


def fit_subspace(calibration: np.ndarray, variance: float) -> Subspace:
    if calibration.ndim != 2 or calibration.shape[0] < 2:
        raise ValueError("calibration needs at least two rows of readings")
    mean = calibration.mean(axis=0)
    scale = floor_scale(calibration.std(axis=0), mean)
    z = (calibration - mean) / scale
    pca_mean = z.mean(axis=0)
    _, s, vt = np.linalg.svd(z - pca_mean, full_matrices=False)
    lam = s * s / (len(z) - 1)
    total = float(lam.sum())
    k = int(np.searchsorted(np.cumsum(lam) / total, variance) + 1) if total > 0 else 1
    c = calibration.shape[1]
    k = max(1, min(k, c - 1)) if c > 1 else 1
    return Subspace(mean, scale, pca_mean, vt[:k], np.maximum(lam[:k], 1e-9))


def calibrate_columns(names: Sequence[str], values: np.ndarray, cfg: FitConfig, rows: int) -> PcaCalibration:
    """The calibration of the first ``rows`` rows of ``values`` (every column, named ``names``: the
    channel names the calibration will look up in readings)."""
    raw = np.asarray(values, dtype=np.float64)[:rows]
    if raw.ndim != 2 or raw.shape[1] != len(names):
        raise ValueError(f"{raw.shape[1] if raw.ndim == 2 else 0} columns but {len(names)} channel names")
    lags = int(cfg.lags)
    if cfg.limits not in LIMITS:
        raise ValueError(f"limits must be one of {LIMITS}, not {cfg.limits!r}")
    # A lag-augmented row needs ``lags`` real rows before it: the first ones are not calibration rows.
    cal = lag_matrix(raw, lags)[lags:]
    sub = fit_subspace(cal, cfg.variance)
    t2, q = crossfit_statistics(cal, cfg.variance) if cfg.limits == "crossfit" else sub.statistics(cal)
    return PcaCalibration(
        channels=tuple(names),
        mean=tuple(float(v) for v in sub.mean),
        scale=tuple(float(v) for v in sub.scale),
        pca_mean=tuple(float(v) for v in sub.pca_mean),
        components=tuple(tuple(float(v) for v in row) for row in sub.components),
        eigenvalues=tuple(float(v) for v in sub.eigenvalues),
        t2_limit=max(float(np.quantile(t2, cfg.quantile)) * cfg.factor, LIMIT_FLOOR),
        q_limit=max(float(np.quantile(q, cfg.quantile)) * cfg.factor, LIMIT_FLOOR),
        statistic=cfg.statistic,
        persist_k=cfg.persist_k,
        persist_n=cfg.persist_n,
        instant_factor=cfg.instant_factor,
        calibration_rows=len(raw),
        lags=lags,
    )


def crossfit_statistics(cal: np.ndarray, variance: float) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold (T², Q) of every calibration row: the two halves in time, each scored by a subspace
    fitted on the other (time order, not shuffled: a device that drifts during calibration then gets
    limits wide enough for its drift)."""
    half = len(cal) // 2
    if half < 2 or len(cal) - half < 2:
        raise ValueError("cross-fitted limits need at least four calibration rows")
    first, second = cal[:half], cal[half:]
    t2a, qa = fit_subspace(second, variance).statistics(first)
    t2b, qb = fit_subspace(first, variance).statistics(second)
    return np.concatenate([t2a, t2b]), np.concatenate([qa, qb])
