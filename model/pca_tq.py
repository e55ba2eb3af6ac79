"""Calibration and the selection grid of the per-device PCA T²+Q detector (issue 13).

``calibrate`` fits one device's ``functions.detector.pca_tq.PcaCalibration`` from its first
``TRAIN_ROWS`` readings: per-channel mean and floored standard deviation, an SVD of the standardised
rows keeping the fewest components that explain ``variance`` of it, and T² / Q limits = the ``quantile``
of the calibration rows' statistics x ``factor``. No label is read. The fit itself is
``functions.detector.pca_fit`` (shipped in the processor's bundle, run by the in-stack calibrator);
scoring is the numpy-only code in ``functions.detector.pca_tq``.

``pca_candidates`` predicts every configuration of a grid on many files at once (the subspace is fitted
once per file, channel set and variance; thresholds and persistence are cheap on top), in the
``model.skab.Candidates`` shape the selection code uses. The grid and the recommended rule come from the
design study (``docs/model-card.md``, "Select-on / report-on").
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import numpy as np

from functions.detector import pca_fit
from functions.detector.pca_fit import LIMIT_FLOOR, fit_subspace
from functions.detector.pca_tq import PcaCalibration, k_of_n
from model.skab import TRAIN_ROWS, Candidates, SkabFile
from model.skab_stream import CHANNEL_SETS


@dataclass(frozen=True)
class PcaConfig:
    channels: str = "hydraulic"  # key of model.skab_stream.CHANNEL_SETS
    variance: float = 0.8  # keep the fewest components explaining at least this share of variance
    statistic: str = "t2q"  # "t2", "q" or "t2q" (either)
    quantile: float = 0.95  # limit = this quantile of the calibration rows' statistic x factor
    factor: float = 0.75
    persist_k: int = 15  # alarm when >= k of the last n rows are flagged (1 of 1: no persistence)
    persist_n: int = 30
    instant_factor: float = 8.0  # a single row above this many times a limit alarms at once
    lags: int = 0  # dynamic PCA: each row augmented with this many earlier rows
    limits: str = "in-sample"  # or "crossfit": out-of-fold limits (functions.detector.pca_fit)

    def label(self) -> str:
        base = (
            f"pca/{self.channels}/v{self.variance:g}/{self.statistic}/q{self.quantile:g}x{self.factor:g}"
            f"/{self.persist_k}of{self.persist_n}"
        )
        if self.lags or self.limits != "in-sample":
            base = base.replace("pca/", f"{'dpca' if self.lags else 'pca'}{self.lags or ''}/", 1)
            base += "/cv" if self.limits == "crossfit" else ""
        return base

    def as_dict(self) -> dict[str, Any]:
        return {"family": "pca-t2q", **asdict(self)}


# The design study's grid (2 x 3 x 3 x 4 x 6 x 4 = 1728); the 8x instant limit is fixed, not tuned.
PCA_QUANTILES: tuple[float, ...] = (0.9, 0.95, 0.99, 1.0)
PCA_FACTORS: tuple[float, ...] = (0.75, 1.0, 1.25, 1.5, 2.0, 3.0)
PCA_PERSIST: tuple[tuple[int, int], ...] = ((1, 1), (5, 10), (15, 30), (30, 60))
PCA_GRID: tuple[PcaConfig, ...] = tuple(
    PcaConfig(channels=ch, variance=v, statistic=st, quantile=q, factor=f, persist_k=k, persist_n=n)
    for ch, v, st, q, f, (k, n) in product(
        ("hydraulic", "all"), (0.8, 0.9, 0.95), ("t2", "q", "t2q"), PCA_QUANTILES, PCA_FACTORS, PCA_PERSIST
    )
)

# The fixed T²+Q baseline the evaluator reports next to the selection (chooses nothing): all 8 channels,
# raw readings, 90 % variance, T² or Q above its calibration q0.99, no persistence.
BASELINE = PcaConfig(
    channels="all", variance=0.9, statistic="t2q", quantile=0.99, factor=1.0, persist_k=1, persist_n=1
)


def channel_columns(channels: Sequence[str], channel_set: str) -> list[int]:
    return [list(channels).index(ch) for ch in CHANNEL_SETS[channel_set]]


def calibrate(
    channels: Sequence[str], values: np.ndarray, cfg: PcaConfig, rows: int = TRAIN_ROWS
) -> PcaCalibration:
    """One device's calibration from its first ``rows`` readings (``values`` columns in ``channels``)."""
    cols = channel_columns(channels, cfg.channels)
    return calibrate_columns(CHANNEL_SETS[cfg.channels], np.asarray(values)[:, cols], cfg, rows)


def calibrate_columns(
    names: Sequence[str], values: np.ndarray, cfg: PcaConfig, rows: int = TRAIN_ROWS
) -> PcaCalibration:
    """As ``calibrate``, on every column of ``values``, named ``names``: the channel names the
    calibration will look up in readings (the pipeline's names, e.g. ``current`` for an extra channel),
    whatever ``cfg.channels`` says. The arithmetic is the same, so the verdicts are too: it is
    ``functions.detector.pca_fit.calibrate_columns``, the one fit the in-stack calibrator runs too."""
    return pca_fit.calibrate_columns(names, values, cfg, rows)


def pca_candidates(datas: Sequence[SkabFile], grid: Iterable[PcaConfig] = PCA_GRID) -> Candidates:
    """Test-part (rows >= TRAIN_ROWS) alarms of every grid configuration on every file.

    Same numbers as ``calibrate`` + ``functions.detector.pca_tq.alarms`` per configuration (a unit test
    checks it), computed with one subspace fit per file, channel set and variance.
    """
    grid = tuple(grid)
    stats: dict[tuple[str, float], list[tuple[np.ndarray, np.ndarray]]] = {}
    for ch, var in dict.fromkeys((c.channels, c.variance) for c in grid):
        per_file = []
        for d in datas:
            v = d.values[:, channel_columns(d.channels, ch)]
            t2, q = fit_subspace(v[:TRAIN_ROWS], var).statistics(v)
            per_file.append((t2, q))
        stats[(ch, var)] = per_file
    ratio_cache: dict[tuple[str, float, str, float], list[np.ndarray]] = {}
    configs: dict[str, dict[str, Any]] = {}
    preds: dict[str, list[np.ndarray]] = {}
    for cfg in grid:
        key = (cfg.channels, cfg.variance, cfg.statistic, cfg.quantile)
        if key not in ratio_cache:
            ratio_cache[key] = [_unit_ratio(t2, q, cfg) for t2, q in stats[(cfg.channels, cfg.variance)]]
        label = cfg.label()
        configs[label] = cfg.as_dict()
        preds[label] = [_alarms(r, cfg)[TRAIN_ROWS:] for r in ratio_cache[key]]
    return Candidates(configs, preds)


def _unit_ratio(t2: np.ndarray, q: np.ndarray, cfg: PcaConfig) -> np.ndarray:
    """Largest used statistic over its calibration quantile (the limit before ``factor``)."""
    parts = []
    if cfg.statistic in ("t2", "t2q"):
        parts.append(t2 / max(float(np.quantile(t2[:TRAIN_ROWS], cfg.quantile)), LIMIT_FLOOR))
    if cfg.statistic in ("q", "t2q"):
        parts.append(q / max(float(np.quantile(q[:TRAIN_ROWS], cfg.quantile)), LIMIT_FLOOR))
    return np.max(np.stack(parts), axis=0)


def _alarms(unit_ratio: np.ndarray, cfg: PcaConfig) -> np.ndarray:
    raw = unit_ratio > cfg.factor
    return k_of_n(raw, cfg.persist_k, cfg.persist_n) | (unit_ratio > cfg.instant_factor * cfg.factor)
