"""A synthetic SKAB-like pump rig for the detector tests: eight channels whose hydraulic ones move
together with one load factor, and a fault that shifts current and pressure off that subspace."""

from __future__ import annotations

import numpy as np

# SKAB's column order (model/skab_stream.py CHANNEL_SETS["all"]).
BASE = np.array([0.027, 0.040, 1.3, 0.3, 79.0, 26.0, 233.0, 32.0])
GAIN = np.array([0.0, 0.0, 0.05, -0.03, 0.0, 0.0, 1.0, 0.3])
NOISE = np.array([0.001, 0.001, 0.01, 0.01, 0.05, 0.05, 0.2, 0.05])


def pump_rig(
    seed: int, rows: int, fault: slice | None = None, current_shift: float = 0.0, pressure_shift: float = 0.0
) -> tuple[np.ndarray, np.ndarray]:
    """(values rows x 8, labels): normal rows, and within ``fault`` current and pressure shifted."""
    rng = np.random.default_rng(seed)
    load = rng.normal(size=rows)
    values = BASE + load[:, None] * GAIN + rng.normal(size=(rows, 8)) * NOISE
    labels = np.zeros(rows, dtype=np.int64)
    if fault is not None:
        labels[fault] = 1
        values[fault, 2] += current_shift
        values[fault, 3] += pressure_shift
    return values, labels
