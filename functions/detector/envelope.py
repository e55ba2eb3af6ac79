"""The training envelope: a guard for readings beyond anything the forest saw.

An Isolation Forest cannot rank a point beyond the training range above the most extreme training
point: every split threshold lies inside the range, so a value 20 σ out lands in the same leaf as the
4 σ training extreme and gets the same score. Single-reading anomalies (spikes, out-of-range values, a
sensor reading 0.0) are exactly such points. The envelope records each feature's training min and max;
a reading further than ``margin`` training standard deviations outside it gets an envelope score above
the threshold that grows with the excess, and the verdict uses the larger of the two scores.

Only level-type features are guarded (``columns``), not rate of change: the reading *after* a spike
jumps back just as far, and guarding the jump would flag that healthy reading too.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

ENVELOPE_MARGIN = 0.5  # in training standard deviations of the feature
_HALF_EXCESS = 5.0  # an excess of this many σ puts the envelope score half-way from threshold to 1


@dataclass(frozen=True)
class Envelope:
    low: np.ndarray
    high: np.ndarray
    scale: np.ndarray
    columns: np.ndarray  # indices of the guarded features
    margin: float = ENVELOPE_MARGIN

    def excess(self, feats: np.ndarray) -> np.ndarray:
        """Largest distance outside the envelope over the guarded features, in σ (0 when inside)."""
        cols = self.columns
        f = feats[:, cols]
        below = (self.low[cols] - f) / self.scale[cols]
        above = (f - self.high[cols]) / self.scale[cols]
        return np.maximum(np.maximum(below, above).max(axis=1) - self.margin, 0.0)

    def to_dict(self) -> dict[str, Any]:
        return {
            "low": self.low.tolist(),
            "high": self.high.tolist(),
            "columns": self.columns.tolist(),
            "margin": self.margin,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any], scale: np.ndarray) -> Envelope:
        return cls(
            np.asarray(data["low"], dtype=np.float64),
            np.asarray(data["high"], dtype=np.float64),
            scale,
            np.asarray(data["columns"], dtype=np.intp),
            float(data["margin"]),
        )


def combine_scores(forest: np.ndarray, excess: np.ndarray, threshold: float) -> np.ndarray:
    """Verdict score: the forest's, or for a reading outside the envelope at least threshold + growth."""
    guard = np.where(excess > 0, threshold + (1.0 - threshold) * excess / (excess + _HALF_EXCESS), 0.0)
    return np.maximum(forest, guard)
