"""Training-only part of feature engineering: fitting the per-channel scales of a FeatureSpec.

Building features is not here: training calls ``functions.detector.features.FeatureBuilder``, the code the
Lambda runs. This module only estimates the numbers the spec carries (baseline centre, deviation spread,
reading-to-reading spread) from normal training data.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from functions.detector.features import FeatureSpec


def _floor(spread: np.ndarray, level: np.ndarray) -> np.ndarray:
    # A channel that never moved in training (SKAB's flow rate is constant for minutes) has spread 0;
    # a relative floor keeps the normalised features finite without drowning real deviations.
    return np.maximum(spread, 1e-3 * np.maximum(np.abs(level), 1e-3))


def fit_spec(
    channels: Sequence[str],
    keys: Sequence[str],
    values: np.ndarray,
    baselines: np.ndarray | None = None,
    *,
    kinds: Sequence[str],
    window_s: int = 60,
    smooth: int = 1,
    smooth_stat: str = "median",
    max_gap_s: float = 300.0,
    flat_cap: int = 60,
    joint_flat: bool = False,
) -> FeatureSpec:
    """Estimate centre and spreads from time-ordered rows grouped by device (``keys``)."""
    values = np.asarray(values, dtype=np.float64)
    center = values.mean(axis=0)
    base = center if baselines is None else np.asarray(baselines, dtype=np.float64)
    deviation = values - base
    same_device = np.asarray([a == b for a, b in zip(keys[1:], keys[:-1], strict=True)], dtype=bool)
    diffs = np.diff(values, axis=0)[same_device] if len(values) > 1 else np.zeros((0, len(channels)))
    dev_scale = _floor(deviation.std(axis=0), center)
    roc_scale = _floor(diffs.std(axis=0) if len(diffs) else np.zeros(len(channels)), center)
    return FeatureSpec(
        channels=tuple(channels),
        kinds=tuple(kinds),
        center=tuple(float(v) for v in center),
        dev_scale=tuple(float(v) for v in dev_scale),
        roc_scale=tuple(float(v) for v in roc_scale),
        window_s=window_s,
        smooth=smooth,
        smooth_stat=smooth_stat,
        max_gap_s=max_gap_s,
        flat_cap=flat_cap,
        joint_flat=joint_flat,
    )
