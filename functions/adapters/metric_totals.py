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
