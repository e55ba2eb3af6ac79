"""The one detector interface; backends (embedded numpy model, SageMaker endpoint) implement it."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from functions.core.readings import Reading


@dataclass(frozen=True, slots=True)
class Verdict:
    score: float  # higher = more anomalous
    is_anomaly: bool
    severity: str  # "none" | "low" | "medium" | "high" | "critical"
    severity_rank: int  # 0..4
    top_feature: str  # the feature that contributed most: the reason a person reads
    reason: str
    threshold: float
    model_version: str


class Detector(Protocol):
    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        """One verdict per reading, in order. Readings come sorted by (device_id, epoch_ms)."""
        ...
