"""Failure counters for the live view: sums of the processor's metrics, read from CloudWatch.

The processor publishes ``RecordsRetried`` (readings handed back for redelivery; ministack drops them),
``ArchiveWriteFailures``, ``AlertsFailed`` and ``RecordsRedelivered`` (docs/observability.md). The tables
cannot tell any of these, so the live view reads them here: one GetMetricStatistics per name, summed over
the period. A failure to read them is reported as "unknown" (None), never as zero.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Protocol

from functions.adapters.clients import client
from functions.settings import get_settings

FAILURE_METRICS: tuple[str, ...] = (
    "RecordsRetried",
    "ArchiveWriteFailures",
    "AlertsFailed",
    "RecordsRedelivered",
)


class MetricTotals(Protocol):
    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        """Sum of each metric (no dimensions) over [start, end), or None if they cannot be read."""
        ...


class CloudWatchTotals:
    def __init__(self, namespace: str | None = None, cloudwatch: Any | None = None) -> None:
        self._namespace = namespace or get_settings().metrics_namespace
        self._client = cloudwatch

    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        cw = self._client or client("cloudwatch")
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        try:
            out: dict[str, int] = {}
            for name in names:
                points = cw.get_metric_statistics(
                    Namespace=self._namespace, MetricName=name, StartTime=start, EndTime=end,
                    Period=period, Statistics=["Sum"],
                ).get("Datapoints", [])
                out[name] = int(sum(p.get("Sum", 0.0) for p in points))
            return out
        except Exception:  # the live view shows "unknown"; the data routes do not depend on metrics
            return None


class MemoryTotals:
    """Fake: fixed totals (or None, to model CloudWatch being unreachable)."""

    def __init__(self, totals: dict[str, int] | None = None) -> None:
        self.totals = totals

    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        if self.totals is None:
            return None
        return {name: int(self.totals.get(name, 0)) for name in names}
