"""The one metrics sink: EMF on AWS, PutMetricData where the target does not parse EMF, or nothing.

``get_metrics_sink()`` picks the implementation from ``settings.metrics_sink``. Every sink buffers points
with ``add`` and publishes on ``flush``; ``flush`` never raises (a batch whose data is stored must not
fail over a metric). Count-unit points with the same name and dimensions are summed; other units keep
every value (EMF value arrays / PutMetricData Values+Counts), so percentiles stay meaningful.

EMF documents are built by Powertools Metrics (``EphemeralMetrics``: no state shared between sinks), one
per dimension set, so one flush carries several (``RecordsRejected`` per ``Reason``). The buffer in front
of it stays: it sums Count points per batch (Powertools would append every value) and groups by
dimension set, and PutMetricData, which Powertools does not do, shares it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TextIO

import orjson
from aws_lambda_powertools.metrics import EphemeralMetrics

from functions.adapters.clients import client
from functions.settings import CommonSettings, get_settings

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
            for dims, metrics in by_dims.items():
                stream.write(orjson.dumps(self._document(dims, metrics)).decode() + "\n")
            stream.flush()
        except Exception:
            logger.exception("EMF flush failed")

    def _document(self, dims: DimKey, metrics: list[tuple[str, str, list[float]]]) -> dict[str, Any]:
        # service="": Powertools would otherwise add POWERTOOLS_SERVICE_NAME (set by the template) as a
        # dimension, which changes every metric's identity (dashboards and alarms use none or Reason).
        emf = EphemeralMetrics(namespace=self.namespace, service="")
        for key, dim_value in dims:
            emf.add_dimension(name=key, value=dim_value)
        for name, unit, values in metrics:
            for value in values:
                emf.add_metric(name=name, unit=unit, value=value)
        # A property, not a dimension: searchable in Logs Insights.
        emf.add_metadata(key="service", value=self.service)
        return dict(emf.serialize_metric_set())


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


def get_metrics_sink(
    service: str = "processor", settings: CommonSettings | None = None, cloudwatch: Any | None = None
) -> MetricsSinkImpl:
    """The sink ``settings`` choose (None: the process's); ``cloudwatch``: its client (None: the shared)."""
    settings = settings or get_settings()
    if settings.metrics_sink == "emf":
        return EmfMetrics(settings.metrics_namespace, service=service)
    if settings.metrics_sink == "cloudwatch":
        return CloudWatchMetrics(settings.metrics_namespace, cloudwatch)
    return NullMetrics()
