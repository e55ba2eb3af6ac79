"""Stage 5 helpers: deterministic archive keys and the JSON lines written under them (pure).

Keys depend only on the shard and the sequence range of the records they hold, and the gzip bytes are
deterministic (mtime 0, sorted keys), so a retried batch overwrites the same object with the same bytes.
Partitions (dt=/hour=) are those of the batch's arrival: the approximate arrival time of its first record.
"""

from __future__ import annotations

from typing import Any

import orjson

from functions.core.readings import Reading
from functions.core.timestamps import format_ms
from functions.detector.interface import Verdict
from functions.processor.records import Rejection

PROCESSED_PREFIX = "processed"
QUARANTINE_PREFIX = "quarantine"


def archive_key(prefix: str, shard_id: str, first_seq: str, last_seq: str, arrival_ms: int) -> str:
    """``<prefix>/dt=YYYY-MM-DD/hour=HH/<shardId>-<firstSeq>-<lastSeq>.jsonl.gz``."""
    stamp = format_ms(arrival_ms)  # YYYY-MM-DDTHH:...
    return f"{prefix}/dt={stamp[:10]}/hour={stamp[11:13]}/{shard_id}-{first_seq}-{last_seq}.jsonl.gz"


def processed_line(reading: Reading, status: str, verdict: Verdict | None = None) -> bytes:
    """One processed reading (status "aggregated" or "duplicate").

    With the detector's ``verdict`` (detection ran on this reading) the line records ``anomaly``,
    ``anomaly_score`` and ``severity``; without one (detector disabled, a duplicate, a reading an earlier
    delivery applied) the three are absent. ``ground_truth`` is the simulator's label, carried as sent.
    """
    device = reading.device
    doc: dict[str, Any] = {
        "device_id": reading.device_id,
        "timestamp": format_ms(reading.epoch_ms),
        "epoch_ms": reading.epoch_ms,
        "channels": reading.channels,
        "site": device.site if device else "",
        "location": device.location if device else "",
        "shard_id": reading.shard_id,
        "sequence_number": reading.sequence_number,
        "status": status,
    }
    if verdict is not None:
        doc["anomaly"] = verdict.is_anomaly
        doc["anomaly_score"] = float(verdict.score)
        doc["severity"] = verdict.severity
    if reading.ground_truth is not None:
        doc["ground_truth"] = reading.ground_truth
    if reading.index is not None:  # an element of a packed record: (sequence_number, index) names it
        doc["index"] = reading.index
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)


def quarantine_line(rejection: Rejection) -> bytes:
    """One quarantined item (quarantined.schema.json): raw bytes, reason, stage, detail.

    Raw bytes are the record's data as received, or for one element of a packed record the element
    re-serialised with orjson, with its ``index`` in the array.
    """
    record = rejection.record
    doc: dict[str, Any] = {
        "reason": rejection.reason,
        "stage": rejection.stage,
        "detail": rejection.detail[:512],
        "shard_id": record.shard_id,
        "sequence_number": record.sequence_number,
        "approximate_arrival": format_ms(record.approximate_arrival_ms),
        "raw_b64": rejection.raw_b64,
    }
    if rejection.device_id is not None:
        doc["device_id"] = rejection.device_id
    if rejection.index is not None:  # an element of a packed record, re-serialised in raw_b64
        doc["index"] = rejection.index
    return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

