"""The detector's stage in the processor: verdicts -> anomaly items -> store and alerts, in one call."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from functions.core import anomaly_items
from functions.core.ports import Alerter, AnomalyItem, AnomalyWriter
from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.settings import get_settings


@dataclass(frozen=True)
class StageResult:
    anomalies: list[AnomalyItem]
    alerts_sent: int
    alerts_suppressed: int
    alerts_failed: int = 0


def anomaly_item(reading: Reading, verdict: Verdict, ttl_days: int) -> AnomalyItem:
    """The anomalies-table item of a flagged reading (shape: ``functions.core.anomaly_items``)."""
    device = reading.device
    return anomaly_items.anomaly_item(
        device_id=reading.device_id,
        epoch_ms=reading.epoch_ms,
        sequence_number=reading.sequence_number,
        shard_id=reading.shard_id,
        score=round(verdict.score, 6),
        threshold=round(verdict.threshold, 6),
        severity=verdict.severity,
        severity_rank=verdict.severity_rank,
        top_feature=verdict.top_feature,
        reason=verdict.reason,
        values=reading.channels,
        model_version=verdict.model_version,
        ttl_days=ttl_days,
        site=device.site if device else "",
        location=device.location if device else "",
    )


def handle_verdicts(
    readings: Sequence[Reading],
    verdicts: Sequence[Verdict],
    store: AnomalyWriter | None,
    alerter: Alerter | None,
    now: float,
    ttl_days: int | None = None,
) -> StageResult:
    """Build the anomaly items for flagged readings, persist them, then alert (store first: an alert
    always points at a stored anomaly; a retry after a failed alert rewrites identical items). Without a
    store nothing is kept and nothing alerted (detection only: the verdicts still count as flagged)."""
    if len(readings) != len(verdicts):
        raise ValueError(f"{len(readings)} readings but {len(verdicts)} verdicts")
    ttl = get_settings().anomaly_ttl_days if ttl_days is None else ttl_days
    items = [anomaly_item(r, v, ttl) for r, v in zip(readings, verdicts, strict=True) if v.is_anomaly]
    if not items:
        return StageResult([], 0, 0)
    if store is None:
        return StageResult(items, 0, 0)
    store.put_many(items)
    if alerter is None:
        return StageResult(items, 0, 0)
    outcome = alerter.notify(items, now)
    return StageResult(items, outcome.sent, outcome.suppressed, outcome.failed)
