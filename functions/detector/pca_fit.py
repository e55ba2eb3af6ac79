"""Fitting one device's PCA T²+Q calibration: the one implementation, numpy only (issue 13).

Used by the in-stack calibrator (``functions.calibrator``) and by the offline tools (``model.pca_tq``
delegates here, so the CLI, the evaluation and the Lambda fit the same numbers):

1. per-channel mean and floored standard deviation of the calibration rows;
2. an SVD of the standardised rows, keeping the fewest components that explain ``variance`` of it;
3. T² / Q limits = the ``quantile`` of the calibration rows' statistics x ``factor``;
4. the alarm rule (statistic, k-of-n persistence, instant factor) copied from the operating point.

No label is read. Scoring is ``functions.detector.pca_tq``. ``OperatingPoint`` reads the shipped
artifact (``model/artifacts/pca-tq-v1.json``, copied into the bundle by ``scripts/build.py`` as
``functions/detector/artifacts/pca-tq-v1.json``).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from functions.detector.pca_tq import PcaCalibration

LIMIT_FLOOR = 1e-12
OPERATING_POINT_FORMAT = "pca-tq-operating-point-v1"
ARTIFACT_NAME = "pca-tq-v1.json"


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

    @classmethod
    def from_artifact(cls, data: Mapping[str, Any]) -> OperatingPoint:
        if data.get("format") != OPERATING_POINT_FORMAT:
            raise ValueError(f"not a {OPERATING_POINT_FORMAT} artifact")
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
    cal = np.asarray(values, dtype=np.float64)[:rows]
    if cal.shape[1] != len(names):
        raise ValueError(f"{cal.shape[1]} columns but {len(names)} channel names")
    sub = fit_subspace(cal, cfg.variance)
    t2, q = sub.statistics(cal)
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
        calibration_rows=len(cal),
    )
