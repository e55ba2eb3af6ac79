"""The detector's stage in the processor: verdicts -> anomaly items -> store and alerts, in one call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Protocol

from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.settings import get_settings


class _Store(Protocol):
    def put_many(self, items: Sequence[dict[str, Any]]) -> int: ...


class _Alerter(Protocol):
    def notify(self, anomalies: Sequence[dict[str, Any]], now: float) -> Any: ...


@dataclass(frozen=True)
class StageResult:
    anomalies: list[dict[str, Any]]
    alerts_sent: int
    alerts_suppressed: int
    alerts_failed: int = 0


def iso_ms(epoch_ms: int) -> str:
    """``2026-11-21T23:05:16.123Z`` -- millisecond ISO 8601 UTC, the ts_seq prefix (sorts by time)."""
    moment = datetime.fromtimestamp(epoch_ms // 1000, UTC)
    return f"{moment:%Y-%m-%dT%H:%M:%S}.{epoch_ms % 1000:03d}Z"


def anomaly_item(reading: Reading, verdict: Verdict, ttl_days: int) -> dict[str, Any]:
    """The anomalies-table item (docs/data-model.md); a pure function of its inputs (idempotent key)."""
    timestamp = iso_ms(reading.epoch_ms)
    device = reading.device
    return {
        "device_id": reading.device_id,
        "ts_seq": f"{timestamp}#{reading.sequence_number}",
        "day": timestamp[:10],
        "timestamp": timestamp,
        "epoch_ms": reading.epoch_ms,
        # From the reading's time, not the wall clock, so a redelivered record writes the same item.
        "expires_at": reading.epoch_ms // 1000 + ttl_days * 86_400,
        "score": round(verdict.score, 6),
        "threshold": round(verdict.threshold, 6),
        "severity": verdict.severity,
        "severity_rank": verdict.severity_rank,
        "top_feature": verdict.top_feature,
        "reason": verdict.reason,
        "values": dict(reading.channels),
        "site": device.site if device else "",
        "location": device.location if device else "",
        "model_version": verdict.model_version,
        "shard_id": reading.shard_id,
    }


def handle_verdicts(
    readings: Sequence[Reading],
    verdicts: Sequence[Verdict],
    store: _Store,
    alerter: _Alerter,
    now: float,
    ttl_days: int | None = None,
) -> StageResult:
    """Build the anomaly items for flagged readings, persist them, then alert (store first: an alert
    always points at a stored anomaly; a retry after a failed alert rewrites identical items)."""
    if len(readings) != len(verdicts):
        raise ValueError(f"{len(readings)} readings but {len(verdicts)} verdicts")
    ttl = get_settings().anomaly_ttl_days if ttl_days is None else ttl_days
    items = [anomaly_item(r, v, ttl) for r, v in zip(readings, verdicts, strict=True) if v.is_anomaly]
    if not items:
        return StageResult([], 0, 0)
    store.put_many(items)
    outcome = alerter.notify(items, now)
    return StageResult(
        items, int(outcome.sent), int(outcome.suppressed), int(getattr(outcome, "failed", 0))
    )
