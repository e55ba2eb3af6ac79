"""SKAB detector v2: causal window features + linear residuals -> Isolation Forest -> smoothed score.

Everything a deployed detector would need per device is small and numpy-only: the training mean and
spread per channel, one (channels x channels) linear map (each channel predicted from the others), the
exported forest (scored by ``functions.detector.iforest.IsolationForestScorer``), a threshold and a ring
buffer of the last ``window`` rows. Every feature and every smoothed score at row t uses rows <= t only
(causal windows, no look-ahead), so the same numbers come out whether rows arrive one at a time or in a
batch; ``tests/unit/test_model_skab.py`` checks that a prefix of the stream gives a prefix of the
output.

Per file (the benchmark's protocol): every fitted quantity (scaler, linear map, forest, threshold) comes
from the first ``TRAIN_ROWS`` rows only; labels are never read here.

Hyper-parameters are chosen from the small grid ``GRID`` declared below by leave-one-group-out: the
configuration with the best F1 on the other groups is reported on the held-out group (``model.skab``).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from itertools import product
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from functions.detector.iforest import IsolationForestScorer
from model.export import export_forest

TRAIN_ROWS = 400

CHANNEL_SETS: dict[str, tuple[str, ...]] = {
    # Electrical / hydraulic channels: they react within seconds to a valve fault.
    "hydraulic": ("Current", "Pressure", "Voltage", "Volume Flow RateRMS"),
    # Everything, including the slow thermal channels and the vibration RMS.
    "all": (
        "Accelerometer1RMS",
        "Accelerometer2RMS",
        "Current",
        "Pressure",
        "Temperature",
        "Thermocouple",
        "Voltage",
        "Volume Flow RateRMS",
    ),
}
FEATURE_SETS: tuple[str, ...] = ("mean", "mean+res", "mean+res+std")


@dataclass(frozen=True)
class StreamConfig:
    channels: str = "hydraulic"  # key of CHANNEL_SETS
    features: str = "mean+res"  # "mean": rolling means of standardised channels; "+res": and of the
    # linear-model residuals; "+std": and rolling standard deviations of both
    window: int = 30  # rolling window in rows (1 row = 1 s)
    quantile: float = 0.95  # threshold = quantile of smoothed training scores x factor
    factor: float = 1.0
    score_smooth: int = 10  # causal rolling mean of the forest score over this many rows
    release: float = 0.97  # hysteresis: an alarm stays on until the smoothed score < release x threshold
    ridge: float = 1.0  # L2 penalty of the per-channel linear model (standardised units)
    n_estimators: int = 100
    max_samples: int = 256
    seed: int = 0

    def label(self) -> str:
        return f"{self.channels}/{self.features}/w{self.window}/q{self.quantile:g}"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


# The pre-declared selection grid (fixed before any held-out result was looked at): 2 x 3 x 3 x 3 = 54.
# Score smoothing (10 rows), hysteresis (0.97), ridge (1.0) and the forest size are fixed, not tuned.
GRID: tuple[StreamConfig, ...] = tuple(
    StreamConfig(channels=ch, features=fs, window=w, quantile=q)
    for ch, fs, w, q in product(("hydraulic", "all"), FEATURE_SETS, (10, 30, 60), (0.9, 0.95, 0.99))
)


def _floor(spread: np.ndarray, level: np.ndarray) -> np.ndarray:
    # A channel constant in training (SKAB's flow rate often is) gets a small relative spread, as in
    # model/features.py, so any later change is a large but finite deviation.
    return np.maximum(spread, 1e-3 * np.maximum(np.abs(level), 1e-3))


def causal_rolling(x: np.ndarray, window: int) -> tuple[np.ndarray, np.ndarray]:
    """Mean and standard deviation of rows t-window+1 .. t (fewer at the start) for every row t."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim == 1:
        x = x[:, None]
    zeros = np.zeros((1, x.shape[1]))
    cs = np.concatenate([zeros, np.cumsum(x, axis=0)])
    cs2 = np.concatenate([zeros, np.cumsum(x * x, axis=0)])
    idx = np.arange(1, len(x) + 1)
    lo = np.maximum(idx - window, 0)
    n = (idx - lo)[:, None].astype(np.float64)
    mean = (cs[idx] - cs[lo]) / n
    var = np.maximum((cs2[idx] - cs2[lo]) / n - mean * mean, 0.0)
    return mean, np.sqrt(var)


@dataclass(frozen=True)
class LinearStandardiser:
    """Per-channel standardisation by the training part, and residuals of predicting each channel from
    the others (ridge regression on the standardised training part): an embeddable linear layer."""

    mean: np.ndarray
    scale: np.ndarray
    coef: np.ndarray  # (channels x channels), zero diagonal: z_hat = z @ coef

    @classmethod
    def fit(cls, train: np.ndarray, ridge: float) -> LinearStandardiser:
        mean = train.mean(axis=0)
        scale = _floor(train.std(axis=0), mean)
        z = (train - mean) / scale
        c = z.shape[1]
        coef = np.zeros((c, c))
        for j in range(c):
            others = [i for i in range(c) if i != j]
            if not others:
                continue
            a = z[:, others]
            w = np.linalg.solve(a.T @ a + ridge * np.eye(len(others)), a.T @ z[:, j])
            coef[others, j] = w
        return cls(mean=mean, scale=scale, coef=coef)

    def transform(self, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        z = (values - self.mean) / self.scale
        return z, z - z @ self.coef


def build_features(values: np.ndarray, lin: LinearStandardiser, cfg: StreamConfig) -> np.ndarray:
    """Causal feature matrix for the whole stream (row t depends on rows <= t only)."""
    z, res = lin.transform(values)
    z_mean, z_std = causal_rolling(z, cfg.window)
    cols = [z_mean]
    if "res" in cfg.features:
        r_mean, r_std = causal_rolling(res, cfg.window)
        cols.append(r_mean)
    if "std" in cfg.features:
        cols.append(z_std)
        if "res" in cfg.features:
            cols.append(r_std)
    return np.concatenate(cols, axis=1)


def hysteresis(score: np.ndarray, on: float, off: float) -> np.ndarray:
    """1 from the first row above ``on`` until the first row below ``off`` (off <= on), and so on."""
    out = np.zeros(len(score), dtype=np.int64)
    active = False
    for i, s in enumerate(score):
        active = s > on if not active else s >= off
        out[i] = active
    return out


@dataclass
class FileScores:
    """What a fitted per-file detector produced; predictions for any threshold follow from it."""

    test_scores: np.ndarray  # smoothed forest score per test row
    train_scores: np.ndarray  # smoothed forest score per training row used for the threshold
    fitted: dict[str, Any]  # everything learnt from the training part (for inspection and tests)

    def threshold(self, quantile: float, factor: float) -> float:
        return float(np.quantile(self.train_scores, quantile)) * factor

    def predict(self, quantile: float, factor: float, release: float) -> np.ndarray:
        thr = self.threshold(quantile, factor)
        return hysteresis(self.test_scores, thr, thr * release)


def score_file(channels: tuple[str, ...], values: np.ndarray, cfg: StreamConfig) -> FileScores:
    """Fit on ``values[:TRAIN_ROWS]`` only; score every row of the stream, return the test part's scores."""
    wanted = CHANNEL_SETS[cfg.channels]
    keep = [channels.index(ch) for ch in wanted if ch in channels]
    if not keep:
        raise ValueError(f"none of the channels {wanted} present")
    values = np.asarray(values, dtype=np.float64)[:, keep]
    train = values[:TRAIN_ROWS]
    lin = LinearStandardiser.fit(train, cfg.ridge)
    # Features of the training part are computed from the training part alone; the test part continues
    # the same stream (its first windows reach back into the training rows, as a live detector's would).
    train_x = build_features(train, lin, cfg)
    all_x = build_features(values, lin, cfg)
    warm = min(cfg.window - 1, len(train_x) // 2)  # rows whose window is still filling
    fit_x = train_x[warm:]
    forest = IsolationForest(
        n_estimators=cfg.n_estimators,
        max_samples=min(cfg.max_samples, len(fit_x)),
        random_state=cfg.seed,
    ).fit(fit_x)
    exported = export_forest(forest)
    scorer = IsolationForestScorer(exported)
    raw = scorer.anomaly_score(all_x)
    smooth, _ = causal_rolling(raw, cfg.score_smooth)
    smooth = smooth[:, 0]
    # Training scores for the threshold: the same smoothing, from training rows only, after warm-up.
    train_smooth, _ = causal_rolling(scorer.anomaly_score(train_x), cfg.score_smooth)
    train_smooth = train_smooth[warm + cfg.score_smooth - 1 :, 0]
    fitted = {"linear": lin, "forest": exported, "fit_rows": len(fit_x)}
    return FileScores(test_scores=smooth[TRAIN_ROWS:], train_scores=train_smooth, fitted=fitted)
