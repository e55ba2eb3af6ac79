"""The one metrics sink: EMF on AWS, PutMetricData where the target does not parse EMF, or nothing.

``get_metrics_sink()`` picks the implementation from ``settings.metrics_sink``. Every sink buffers points
with ``add`` and publishes on ``flush``; ``flush`` never raises (a batch whose data is stored must not
fail over a metric). Count-unit points with the same name and dimensions are summed; other units keep
every value (EMF value arrays / PutMetricData Values+Counts), so percentiles stay meaningful.

EMF is written by hand (one JSON line per dimension set, stdout): it lets one flush carry several
dimension sets (``RecordsRejected`` per ``Reason``) without Powertools' single-metric context managers.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson

from functions.adapters.clients import client
from functions.settings import get_settings

logger = logging.getLogger(__name__)

PUT_METRIC_DATA_MAX = 500  # per request (the API allows 1000; stay well inside it for emulators)

DimKey = tuple[tuple[str, str], ...]


class _Buffer:
    def __init__(self) -> None:
        # (name, unit, dims) -> list of values (Count: a single running sum)
        self.points: dict[tuple[str, str, DimKey], list[float]] = {}

    def add(
        self, name: str, value: float, unit: str = "Count", dimensions: Mapping[str, str] | None = None
    ) -> None:
        dims: DimKey = tuple(sorted((dimensions or {}).items()))
        key = (name, unit, dims)
        values = self.points.get(key)
        if values is None:
            self.points[key] = [float(value)]
        elif unit == "Count":
            values[0] += float(value)
        else:
            values.append(float(value))

    def drain(self) -> dict[tuple[str, str, DimKey], list[float]]:
        points, self.points = self.points, {}
        return points


class NullMetrics(_Buffer):
    def flush(self) -> None:
        self.drain()


class EmfMetrics(_Buffer):
    """CloudWatch Embedded Metric Format lines on stdout (CloudWatch Logs turns them into metrics)."""

    def __init__(self, namespace: str, stream: TextIO | None = None, service: str = "processor") -> None:
        super().__init__()
        self.namespace = namespace
        self.service = service
        self._stream = stream

    def flush(self) -> None:
        try:
            by_dims: dict[DimKey, list[tuple[str, str, list[float]]]] = {}
            for (name, unit, dims), values in self.drain().items():
                by_dims.setdefault(dims, []).append((name, unit, values))
            stream = self._stream or sys.stdout
            now_ms = int(time.time() * 1000)
            for dims, metrics in by_dims.items():
                doc: dict[str, Any] = {
                    "_aws": {
                        "Timestamp": now_ms,
                        "CloudWatchMetrics": [
                            {
                                "Namespace": self.namespace,
                                "Dimensions": [[k for k, _ in dims]],
                                "Metrics": [{"Name": n, "Unit": u} for n, u, _ in metrics],
                            }
                        ],
                    },
                    "service": self.service,  # a property, not a dimension: searchable in Logs Insights
                }
                doc.update(dict(dims))
                for name, _, values in metrics:
                    doc[name] = values[0] if len(values) == 1 else values
                stream.write(orjson.dumps(doc).decode() + "\n")
            stream.flush()
        except Exception:
            logger.exception("EMF flush failed")


class CloudWatchMetrics(_Buffer):
    """PutMetricData (for ministack / LocalStack, which do not parse EMF)."""

    def __init__(self, namespace: str, cloudwatch: Any | None = None) -> None:
        super().__init__()
        self.namespace = namespace
        self._client = cloudwatch

    def flush(self) -> None:
        points = self.drain()
        if not points:
            return
        now = datetime.now(tz=UTC)
        data: list[dict[str, Any]] = []
        for (name, unit, dims), values in points.items():
            datum: dict[str, Any] = {"MetricName": name, "Unit": unit, "Timestamp": now}
            if dims:
                datum["Dimensions"] = [{"Name": k, "Value": v} for k, v in dims]
            if len(values) == 1:
                datum["Value"] = values[0]
            else:
                datum["Values"] = values
                datum["Counts"] = [1.0] * len(values)
            data.append(datum)
        try:
            cw = self._client or client("cloudwatch")
            for start in range(0, len(data), PUT_METRIC_DATA_MAX):
                cw.put_metric_data(
                    Namespace=self.namespace, MetricData=data[start : start + PUT_METRIC_DATA_MAX]
                )
        except Exception as exc:  # never fail the batch for metrics; the log line keeps the numbers
            logger.warning("PutMetricData failed: %r", exc)


MetricsSinkImpl = NullMetrics | EmfMetrics | CloudWatchMetrics


def get_metrics_sink(service: str = "processor") -> MetricsSinkImpl:
    settings = get_settings()
    if settings.metrics_sink == "emf":
        return EmfMetrics(settings.metrics_namespace, service=service)
    if settings.metrics_sink == "cloudwatch":
        return CloudWatchMetrics(settings.metrics_namespace)
    return NullMetrics()
