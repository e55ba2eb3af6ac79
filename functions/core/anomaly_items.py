"""The anomalies-table item: the one place its shape is written.

The item is the API shape of ``functions/schemas/anomaly.schema.json`` plus the table's own attributes
(``STORAGE_ATTRIBUTES``: the key, the by-day index key, the TTL and the source shard). The detector
stage, the seed data and the tests build items with :func:`anomaly_item`; the API turns a stored item
back into the schema's shape with :func:`api_fields`. ``tests/unit/test_anomaly_items.py`` checks that
every built item, projected, validates against the schema and that nothing else is stored.

Every attribute (``expires_at`` too) is derived from the reading, never from the clock, so a redelivered
batch writes byte-identical items (a plain overwrite is idempotent).
"""

from __future__ import annotations

from collections.abc import Mapping
from functools import cache
from typing import Any

from functions.core.timestamps import format_ms
from functions.schemas import load_schema

SEVERITY_RANK: dict[str, int] = {"low": 1, "medium": 2, "high": 3, "critical": 4}
# Attributes of the table item that are not part of the API shape.
STORAGE_ATTRIBUTES: tuple[str, ...] = ("ts_seq", "day", "expires_at", "shard_id")
# API fields the table does not store: derived from the key on the way out.
DERIVED_FIELDS: tuple[str, ...] = ("sequence_number",)


@cache
def schema_fields() -> tuple[str, ...]:
    """The API shape's properties, in schema order (anomaly.schema.json)."""
    return tuple(load_schema("anomaly")["properties"])


def anomaly_item(
    *,
    device_id: str,
    epoch_ms: int,
    sequence_number: str,
    shard_id: str,
    score: float,
    threshold: float,
    severity: str,
    top_feature: str,
    reason: str,
    values: Mapping[str, float],
    model_version: str,
    ttl_days: int,
    site: str = "",
    location: str = "",
    severity_rank: int | None = None,
) -> dict[str, Any]:
    """The anomalies-table item (docs/data-model.md); a pure function of its inputs (idempotent key)."""
    timestamp = format_ms(epoch_ms)
    return {
        "device_id": device_id,
        "ts_seq": f"{timestamp}#{sequence_number}",
        "day": timestamp[:10],
        "timestamp": timestamp,
        "epoch_ms": epoch_ms,
        # From the reading's time, not the wall clock, so a redelivered record writes the same item.
        "expires_at": epoch_ms // 1000 + ttl_days * 86_400,
        "score": score,
        "threshold": threshold,
        "severity": severity,
        "severity_rank": SEVERITY_RANK[severity] if severity_rank is None else severity_rank,
        "top_feature": top_feature,
        "reason": reason,
        "values": dict(values),
        "site": site,
        "location": location,
        "model_version": model_version,
        "shard_id": shard_id,
    }


def api_fields(item: Mapping[str, Any]) -> dict[str, Any]:
    """A stored item in the schema's shape: its properties only, ``sequence_number`` from the key."""
    fields = {k: item[k] for k in schema_fields() if k in item}
    _, _, seq = str(item.get("ts_seq", "")).partition("#")
    fields.setdefault("sequence_number", seq if seq.isdigit() else None)
    fields.setdefault("severity_rank", SEVERITY_RANK.get(str(item.get("severity"))))
    return fields
