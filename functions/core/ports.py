"""Ports: the small interfaces the pure core calls. Real adapters live in ``functions/adapters`` (boto3),
in-memory fakes in ``testkit``. Errors they raise: ``functions.core.errors``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, TypeVar

from functions.core.readings import DeviceInfo, Reading


class DeviceRegistry(Protocol):
    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        """Registry entries for the ids that exist (unknown ids are simply absent). Raises StoreError."""
        ...


# An aggregate item in Python-native types (ints, floats, str, dict, list); the adapter converts to and
# from DynamoDB's representation. Shape: docs/data-model.md "aggregates table".
AggregateItem = dict[str, Any]
WindowKey = tuple[str, int]  # (device_id, window_start epoch seconds)


class AggregateStore(Protocol):
    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        """Current items for the keys that exist (strongly consistent). Raises StoreError."""
        ...

    def get(self, key: WindowKey) -> AggregateItem | None:
        """Current item (strongly consistent) or None. Raises StoreError."""
        ...

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        """Write ``item`` if the stored version is ``expected_version`` (None: the item must not exist).

        Raises VersionConflict when the condition fails, StoreError otherwise.
        """
        ...


class Archive(Protocol):
    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> None:
        """Write the lines as one gzip JSON-lines object at ``key`` (overwrite). Raises StoreError."""
        ...


class MetricsSink(Protocol):
    def add(self, name: str, value: float, unit: str = "Count", dimensions: Mapping[str, str] | None = None):
        """Record one data point (buffered until flush)."""
        ...

    def flush(self) -> None:
        """Publish buffered points. Never raises: metrics must not fail a batch."""
        ...


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- The anomaly stage's ports (h/core). The processor calls them; functions.detector implements the
# stage (pipeline_stage.handle_verdicts), functions.adapters the store and the alerter. The detector itself
# (Detector, Verdict) is typed in functions.detector.interface, which the processor may import; here only
# what the pipeline reads of a verdict, so the core stays free of the detector.
AnomalyItem = dict[str, Any]  # an anomalies-table item (docs/data-model.md), Python-native types


class AnomalyWriter(Protocol):
    def put_many(self, items: Sequence[AnomalyItem]) -> int:
        """Write the items (idempotent keys); returns how many. Raises StoreError."""
        ...


class AlertSummary(Protocol):
    @property
    def sent(self) -> int: ...
    @property
    def suppressed(self) -> int: ...
    @property
    def failed(self) -> int: ...


class Alerter(Protocol):
    def notify(self, anomalies: Sequence[AnomalyItem], now: float) -> AlertSummary:
        """Alert on stored anomalies (one per device per cooldown); never raises for a failed send."""
        ...


class FlaggedVerdict(Protocol):
    @property
    def is_anomaly(self) -> bool: ...


class AnomalyStageResult(Protocol):
    @property
    def anomalies(self) -> Sequence[AnomalyItem]: ...
    @property
    def alerts_sent(self) -> int: ...
    @property
    def alerts_suppressed(self) -> int: ...
    @property
    def alerts_failed(self) -> int: ...


V_contra = TypeVar("V_contra", bound=FlaggedVerdict, contravariant=True)


class VerdictHandler(Protocol[V_contra]):
    def __call__(
        self,
        readings: Sequence[Reading],
        verdicts: Sequence[V_contra],
        store: AnomalyWriter | None,
        alerter: Alerter | None,
        now: float,
        /,
    ) -> AnomalyStageResult:
        """Turn verdicts into stored anomaly items and alerts (store first, then alert)."""
        ...
