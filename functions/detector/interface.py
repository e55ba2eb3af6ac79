"""The one detector interface; backends (embedded numpy model, SageMaker endpoint) implement it.

``StatefulDetector`` is what a detector that carries state between batches adds (the per-device one,
``functions.detector.calibrated.CalibratedDetector``): the processor's anomaly stage drains its counters and
persists its states after each batch. ``ScoringEndpoint`` is the remote scorer the SageMaker backend calls
(``functions.adapters.sagemaker``, or a fake in tests)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

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


@runtime_checkable
class StatefulDetector(Detector, Protocol):
    """A detector with per-device state and counters the processor collects after each batch."""

    def drain_states(self) -> dict[str, dict[str, Any]]:
        """Device id -> carried state changed since the last call, to persist (``detector_state``)."""
        ...

    def mark_persisted(self, device_id: str, state: Mapping[str, Any]) -> None:
        """``state`` is now what the device's item holds (written by the caller)."""
        ...

    def drain_fallbacks(self) -> Mapping[str, int]:
        """Readings of calibrated devices the fleet model scored instead since the last call, by reason."""
        ...

    def drain_backend_failures(self) -> Mapping[str, int]:
        """Failed calls to the scoring backend since the last call, by the failure policy applied."""
        ...


@runtime_checkable
class FailureCountingDetector(Detector, Protocol):
    """A fleet backend whose calls can fail under a policy (the SageMaker one): it counts them."""

    def drain_failures(self) -> dict[str, int]:
        """Failures since the last call, by the policy that handled them."""
        ...


class ScoringEndpoint(Protocol):
    """A remote scorer: a JSON request body in, the response body out."""

    def invoke(self, body: str) -> bytes:
        """The endpoint's answer to ``body``. Raises on any failure (the caller applies its policy)."""
        ...
