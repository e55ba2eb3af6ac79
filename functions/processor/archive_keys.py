"""Stage 5 helpers: the processor's readings and rejections as archive lines (pure).

The contract (prefixes, keys, line types and their bytes) is ``functions.core.archive_lines``; this module
only maps the processor's own types (``Reading`` + the detector's ``Verdict``, ``Rejection``) onto it.
"""

from __future__ import annotations

from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX, archive_key
from functions.core.archive_lines import ProcessedLine, QuarantinedLine
from functions.core.readings import Reading
from functions.detector.interface import Verdict
from functions.processor.records import Rejection

__all__ = ["PROCESSED_PREFIX", "QUARANTINE_PREFIX", "archive_key", "processed_line", "quarantine_line"]


def processed_line(reading: Reading, status: str, verdict: Verdict | None = None) -> bytes:
    """One processed reading (status "aggregated" or "duplicate").

    With the detector's ``verdict`` (detection ran on this reading) the line records ``anomaly``,
    ``anomaly_score`` and ``severity``; without one (detector disabled, a duplicate, a reading an earlier
    delivery applied) the three are absent. ``ground_truth`` is the simulator's label, carried as sent.
    """
    if verdict is None:
        return ProcessedLine.of(reading, status).encode()
    line = ProcessedLine.of(reading, status, verdict.is_anomaly, float(verdict.score), verdict.severity)
    return line.encode()


def quarantine_line(rejection: Rejection) -> bytes:
    """One quarantined item (quarantined.schema.json): raw bytes, reason, stage, detail.

    Raw bytes are the record's data as received, or for one element of a packed record the element
    re-serialised with orjson, with its ``index`` in the array.
    """
    record = rejection.record
    return QuarantinedLine(
        reason=rejection.reason,
        stage=rejection.stage,
        detail=rejection.detail[:512],  # the schema's maxLength: a parser's message can quote a whole record
        shard_id=record.shard_id,
        sequence_number=record.sequence_number,
        approximate_arrival_ms=record.approximate_arrival_ms,
        raw_b64=rejection.raw_b64,
        device_id=rejection.device_id,
        index=rejection.index,
    ).encode()
