"""Failure counters for the live view: sums of the processor's metrics, read from CloudWatch.

The processor publishes ``RecordsRetried`` (readings handed back for redelivery; ministack drops them),
``ArchiveWriteFailures``, ``AlertsFailed`` and ``RecordsRedelivered`` (docs/observability.md). The tables
cannot tell any of these, so the live view reads them here: one GetMetricStatistics per name, summed over
the period. A failure to read them is reported as "unknown" (None), never as zero. Implements
``functions.core.ports.MetricTotals`` (fake: ``testkit.fakes.MemoryTotals``).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any

from functions.adapters.clients import client
from functions.settings import get_settings

FAILURE_METRICS: tuple[str, ...] = (
    "RecordsRetried",
    "ArchiveWriteFailures",
    "AlertsFailed",
    "RecordsRedelivered",
)
# Published per ``Reason`` only: readings the fleet model scored instead of the device's own calibration,
# and readings aggregated although detection failed for them (docs/observability.md).
REASON_METRICS: tuple[str, ...] = ("CalibrationFallbacks", "DetectionFailures")


class CloudWatchTotals:
    def __init__(self, namespace: str | None = None, cloudwatch: Any | None = None) -> None:
        self._namespace = namespace or get_settings().metrics_namespace
        self._client = cloudwatch

    def _sum(
        self, cw: Any, name: str, start: datetime, end: datetime, dims: list[dict[str, str]] | None = None
    ) -> int:
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        points = cw.get_metric_statistics(
            Namespace=self._namespace, MetricName=name, Dimensions=dims or [], StartTime=start,
            EndTime=end, Period=period, Statistics=["Sum"],
        ).get("Datapoints", [])
        return int(sum(p.get("Sum", 0.0) for p in points))

    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        cw = self._client or client("cloudwatch")
        try:
            return {name: self._sum(cw, name, start, end) for name in names}
        except Exception:  # the live view shows "unknown"; the data routes do not depend on metrics
            return None

    def by_reason(self, name: str, start: datetime, end: datetime) -> dict[str, int] | None:
        cw = self._client or client("cloudwatch")
        try:
            out: dict[str, int] = {}
            listed = cw.list_metrics(Namespace=self._namespace, MetricName=name).get("Metrics", [])
            for metric in listed:
                dims = metric.get("Dimensions", [])
                reason = next((d["Value"] for d in dims if d.get("Name") == "Reason"), None)
                if reason and len(dims) == 1:
                    total = self._sum(cw, name, start, end, dims)
                    if total:
                        out[reason] = out.get(reason, 0) + total
            return out
        except Exception:
            return None

    def sums_by(self, name: str, dimension: str, values: Sequence[str], start: datetime,
                end: datetime) -> dict[str, int] | None:
        """One GetMetricData call, a query per dimension value (no ListMetrics: the values are known)."""
        cw = self._client or client("cloudwatch")
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        queries = [{"Id": f"m{i}", "Label": value, "ReturnData": True, "MetricStat": {
            "Metric": {"Namespace": self._namespace, "MetricName": name,
                       "Dimensions": [{"Name": dimension, "Value": value}]},
            "Period": period, "Stat": "Sum"}} for i, value in enumerate(values)]
        try:
            out: dict[str, int] = {}
            for page in cw.get_paginator("get_metric_data").paginate(
                    MetricDataQueries=queries, StartTime=start, EndTime=end):
                for result in page.get("MetricDataResults", []):
                    label = values[int(result["Id"][1:])]
                    out[label] = out.get(label, 0) + int(sum(result.get("Values", [])))
            return {k: v for k, v in out.items() if v}
        except Exception:
            return None

    def peak(self, name: str, start: datetime, end: datetime) -> int | None:
        cw = self._client or client("cloudwatch")
        period = max(60, int((end - start).total_seconds()) // 60 * 60)
        try:
            points = cw.get_metric_statistics(
                Namespace=self._namespace, MetricName=name, StartTime=start, EndTime=end,
                Period=period, Statistics=["Maximum"],
            ).get("Datapoints", [])
            return int(max((p.get("Maximum", 0.0) for p in points), default=0))
        except Exception:
            return None
