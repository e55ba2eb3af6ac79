"""Per-device PCA monitoring statistics (Hotelling T² and Q/SPE) with k-of-n alarm persistence.

The scoring half of the per-device detector of issue 13: pure functions over arrays and one small
calibration record (``PcaCalibration``, ~27 floats, under 1 KB as JSON). numpy only, no scikit-learn,
no AWS SDK, so the Lambda can load it. Fitting a calibration lives in ``model.pca_tq``; nothing here is
wired into the processor yet.

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
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

FORMAT = "pca-t2q-v1"
STATISTICS: tuple[str, ...] = ("t2", "q", "t2q")  # which statistics raise a flag: T², Q, either


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

    def __post_init__(self) -> None:
        c, k = len(self.channels), len(self.eigenvalues)
        if len(self.mean) != c or len(self.scale) != c or len(self.pca_mean) != c:
            raise ValueError("mean, scale and pca_mean need one value per channel")
        if len(self.components) != k or any(len(row) != c for row in self.components):
            raise ValueError("components must be (len(eigenvalues) x channels)")
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
        )


def statistics(cal: PcaCalibration, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(T², Q) per row of ``values`` (rows x channels, in ``cal.channels`` order)."""
    x = np.asarray(values, dtype=np.float64)
    z = (x - np.asarray(cal.mean)) / np.asarray(cal.scale) - np.asarray(cal.pca_mean)
    p = np.asarray(cal.components, dtype=np.float64).reshape(len(cal.eigenvalues), len(cal.channels))
    t = z @ p.T
    t2 = np.sum(t * t / np.asarray(cal.eigenvalues), axis=1)
    q = np.sum((z - t @ p) ** 2, axis=1)
    return t2, q


def exceedance(cal: PcaCalibration, values: np.ndarray) -> np.ndarray:
    """Per row, the largest used statistic divided by its limit (> 1: raw flag)."""
    t2, q = statistics(cal, values)
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


def alarms(cal: PcaCalibration, values: np.ndarray, history: np.ndarray | None = None) -> np.ndarray:
    """The detector's verdict per row: k-of-n persistence of raw flags, or an instant alarm."""
    ratio = exceedance(cal, values)
    persistent = k_of_n(ratio > 1.0, cal.persist_k, cal.persist_n, history)
    return persistent | (ratio > cal.instant_factor)
