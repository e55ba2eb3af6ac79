"""Per-device PCA monitoring statistics (Hotelling T² and Q/SPE) with k-of-n alarm persistence.

The scoring half of the per-device detector: pure functions over arrays and one small
calibration record (``PcaCalibration``, ~27 floats, under 1 KB as JSON). numpy only, no scikit-learn,
no AWS SDK, so the Lambda can load it. Fitting a calibration is ``functions.detector.pca_fit``; the
processor scores calibrated devices with it (``functions.detector.calibrated``).

For readings x (rows x channels, in ``channels`` order):

    z  = (x - mean) / scale                      per-channel standardisation from the calibration rows
    t  = (z - pca_mean) @ components.T           scores in the principal subspace (k components)
    T² = sum(t² / eigenvalues)                   Hotelling's T²
    Q  = |(z - pca_mean) - t @ components|²      squared prediction error off the subspace

A row is *raw-flagged* when a used statistic exceeds its limit; an *alarm* is raised when at least
``persist_k`` of the last ``persist_n`` rows are raw-flagged (causal), or at once when a used statistic
exceeds ``instant_factor`` times its limit (spikes and out-of-range readings that persistence would
otherwise suppress). Everything at row t depends on rows <= t only, so a stream scored in batches gives
the same alarms as one scored whole, provided the last ``persist_n - 1`` raw flags are carried over.

Dynamic PCA (``lags`` = L > 0): each row is augmented with the L rows before it,
``[x_t, x_{t-1}, ..., x_{t-L}]``, so the subspace also models how channels move together in time (a
valve that sticks breaks the usual lag structure before it breaks any level). ``mean``, ``scale`` and the
components then have ``channels x (L + 1)`` entries, and a stream carries its last L rows as well
(``lag_matrix``'s ``past``). Where fewer than L earlier rows exist (a device's first readings), the
earliest available row stands in for the missing ones.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = "pca-t2q-v1"
STATISTICS: tuple[str, ...] = ("t2", "q", "t2q")  # which statistics raise a flag: T², Q, either
MAX_LAGS = 3  # dynamic PCA's history: more multiplies the fit's width for little (Ku et al. use 1-2)


@dataclass(frozen=True)
class PcaCalibration:
    """One device's calibration: its scaler, principal subspace, limits and alarm rule."""

    channels: tuple[str, ...]
    mean: tuple[float, ...]  # per channel, raw units
    scale: tuple[float, ...]  # per channel, floored standard deviation
    pca_mean: tuple[float, ...]  # mean of the standardised calibration rows (~0)
    components: tuple[tuple[float, ...], ...]  # k x channels, orthonormal rows
    eigenvalues: tuple[float, ...]  # k, variance along each component
    t2_limit: float
    q_limit: float
    statistic: str = "t2q"  # one of STATISTICS
    persist_k: int = 1
    persist_n: int = 1
    instant_factor: float = 8.0
    calibration_rows: int = 400
    lags: int = 0  # dynamic PCA: earlier rows appended to each row (0: static PCA)

    @property
    def width(self) -> int:
        """Length of one (lag-augmented) row: channels x (lags + 1)."""
        return len(self.channels) * (self.lags + 1)

    def __post_init__(self) -> None:
        if not 0 <= self.lags <= MAX_LAGS:
            raise ValueError(f"lags must be in 0..{MAX_LAGS}, not {self.lags}")
        c, k = self.width, len(self.eigenvalues)
        if len(self.mean) != c or len(self.scale) != c or len(self.pca_mean) != c:
            raise ValueError("mean, scale and pca_mean need one value per channel and lag")
        if len(self.components) != k or any(len(row) != c for row in self.components):
            raise ValueError("components must be (len(eigenvalues) x channels x (lags + 1))")
        if self.statistic not in STATISTICS:
            raise ValueError(f"statistic must be one of {STATISTICS}, not {self.statistic!r}")
        if not 1 <= self.persist_k <= self.persist_n:
            raise ValueError("persistence needs 1 <= persist_k <= persist_n")
        if not (self.t2_limit > 0 and self.q_limit > 0 and self.instant_factor > 0):
            raise ValueError("limits and instant_factor must be positive")

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": FORMAT,
            "channels": list(self.channels),
            "mean": list(self.mean),
            "scale": list(self.scale),
            "pca_mean": list(self.pca_mean),
            "components": [list(row) for row in self.components],
            "eigenvalues": list(self.eigenvalues),
            "t2_limit": self.t2_limit,
            "q_limit": self.q_limit,
            "statistic": self.statistic,
            "persist_k": self.persist_k,
            "persist_n": self.persist_n,
            "instant_factor": self.instant_factor,
            "calibration_rows": self.calibration_rows,
            "lags": self.lags,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> PcaCalibration:
        if data.get("format") != FORMAT:
            raise ValueError(f"not a {FORMAT} calibration: format {data.get('format')!r}")
        return cls(
            channels=tuple(str(c) for c in data["channels"]),
            mean=tuple(float(v) for v in data["mean"]),
            scale=tuple(float(v) for v in data["scale"]),
            pca_mean=tuple(float(v) for v in data["pca_mean"]),
            components=tuple(tuple(float(v) for v in row) for row in data["components"]),
            eigenvalues=tuple(float(v) for v in data["eigenvalues"]),
            t2_limit=float(data["t2_limit"]),
            q_limit=float(data["q_limit"]),
            statistic=str(data["statistic"]),
            persist_k=int(data["persist_k"]),
            persist_n=int(data["persist_n"]),
            instant_factor=float(data["instant_factor"]),
            calibration_rows=int(data["calibration_rows"]),
            lags=int(data.get("lags", 0)),  # calibrations written before dynamic PCA have none
        )


def lag_matrix(values: np.ndarray, lags: int, past: np.ndarray | None = None) -> np.ndarray:
    """Rows ``[x_t, x_{t-1}, ..., x_{t-lags}]`` of ``values`` (rows x channels); ``past`` holds the rows
    that came before ``values`` (oldest first; only the last ``lags`` matter). Missing history: the
    earliest available row repeated."""
    x = np.asarray(values, dtype=np.float64)
    if lags <= 0:
        return x
    head = np.zeros((0, x.shape[1])) if past is None else np.asarray(past, dtype=np.float64)[-lags:]
    full = np.concatenate([head, x]) if len(head) else x
    if len(full) == 0:
        return np.zeros((0, x.shape[1] * (lags + 1)))
    pad = lags - len(head)
    if pad > 0:
        full = np.concatenate([np.repeat(full[:1], pad, axis=0), full])
    n = len(x)
    return np.hstack([full[lags - j : lags - j + n] for j in range(lags + 1)])


def statistics(
    cal: PcaCalibration, values: np.ndarray, past: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """(T², Q) per row of ``values`` (rows x channels, in ``cal.channels`` order; ``past``: the rows
    before them, for dynamic PCA)."""
    x = lag_matrix(values, cal.lags, past)
    z = (x - np.asarray(cal.mean)) / np.asarray(cal.scale) - np.asarray(cal.pca_mean)
    p = np.asarray(cal.components, dtype=np.float64).reshape(len(cal.eigenvalues), cal.width)
    t = z @ p.T
    t2 = np.sum(t * t / np.asarray(cal.eigenvalues), axis=1)
    q = np.sum((z - t @ p) ** 2, axis=1)
    return t2, q


def exceedance(cal: PcaCalibration, values: np.ndarray, past: np.ndarray | None = None) -> np.ndarray:
    """Per row, the largest used statistic divided by its limit (> 1: raw flag)."""
    t2, q = statistics(cal, values, past)
    ratios = []
    if cal.statistic in ("t2", "t2q"):
        ratios.append(t2 / cal.t2_limit)
    if cal.statistic in ("q", "t2q"):
        ratios.append(q / cal.q_limit)
    return np.max(np.stack(ratios), axis=0)


def k_of_n(flags: np.ndarray, k: int, n: int, history: np.ndarray | None = None) -> np.ndarray:
    """Causal persistence: True at row t when >= k of the raw flags in rows t-n+1..t are set.

    ``history`` is the raw flags that came before ``flags`` (a stream's carried state; only its last
    n - 1 entries matter).
    """
    f = np.asarray(flags, dtype=bool)
    if n <= 1:
        return f.copy()
    past = np.zeros(0, dtype=bool) if history is None else np.asarray(history, dtype=bool)[-(n - 1) :]
    full = np.concatenate([past, f]).astype(np.int64)
    cs = np.concatenate([[0], np.cumsum(full)])
    end = np.arange(len(past) + 1, len(full) + 1)
    counts = cs[end] - cs[np.maximum(end - n, 0)]
    return counts >= k


def alarms(
    cal: PcaCalibration, values: np.ndarray, history: np.ndarray | None = None, past: np.ndarray | None = None
) -> np.ndarray:
    """The detector's verdict per row: k-of-n persistence of raw flags, or an instant alarm."""
    ratio = exceedance(cal, values, past)
    persistent = k_of_n(ratio > 1.0, cal.persist_k, cal.persist_n, history)
    return persistent | (ratio > cal.instant_factor)
