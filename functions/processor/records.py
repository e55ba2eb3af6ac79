"""What enters the processor (Kinesis records) and what it rejects (reason + stage + raw bytes)."""

from __future__ import annotations

import binascii
from dataclasses import dataclass
from typing import Any

# Reason codes (docs/data-model.md). "duplicate" is deliberately not a quarantine reason.
MALFORMED_JSON = "malformed_json"
SCHEMA_INVALID = "schema_invalid"
OUT_OF_RANGE = "out_of_range"
FUTURE_TIMESTAMP = "future_timestamp"
LATE = "late"
UNKNOWN_DEVICE = "unknown_device"
OVERSIZED = "oversized"
# A value DynamoDB cannot store, or whose window statistics it cannot store (processor/representable.py).
UNREPRESENTABLE_NUMBER = "unrepresentable_number"
# The table refused this reading's window item (deterministically: a retry would fail the same way), so
# the window's new readings are quarantined instead of failing their batch (stage aggregate).
STORAGE_REJECTED = "storage_rejected"
# No longer produced (a reading the detector fails on, or whose anomaly item is refused, is aggregated
# and counted in DetectionFailures instead); kept in the data model because archived quarantine lines
# written earlier carry it (with stage detect or anomaly_store).
DETECTION_FAILED = "detection_failed"
REASONS: tuple[str, ...] = (
    MALFORMED_JSON,
    SCHEMA_INVALID,
    OUT_OF_RANGE,
    FUTURE_TIMESTAMP,
    LATE,
    UNKNOWN_DEVICE,
    OVERSIZED,
    UNREPRESENTABLE_NUMBER,
    DETECTION_FAILED,
    STORAGE_REJECTED,
)

# Stages that can reject a record.
STAGE_DECODE = "decode"
STAGE_VALIDATE = "validate"
STAGE_ENRICH = "enrich"
STAGE_DETECT = "detect"
STAGE_ANOMALY_STORE = "anomaly_store"
STAGE_AGGREGATE = "aggregate"


@dataclass(frozen=True, slots=True)
class KinesisRecord:
    """One record of a Kinesis event, still encoded: decoding is a stage that may reject it."""

    shard_id: str
    sequence_number: str  # decimal string, up to 128 digits; compare as int within one shard
    data_b64: str  # exactly as delivered, so a rejected record keeps its raw bytes for free
    approximate_arrival_ms: int
    partition_key: str = ""

    @property
    def seq(self) -> int:
        return int(self.sequence_number)

    # Parsed by hand rather than with Powertools' ``KinesisStreamEvent`` data classes: those are lazy
    # wrappers over the same dict (a property call and a wrapper object per field), measured at 2.6-3.0 us
    # per record against 2.1-2.3 us for this (5,000-record event, CPython 3.12): +0.5 us on a core that
    # spends ~6 us per one-reading record (bench/processor.py), ~8 % for nothing the processor uses, since
    # it needs a frozen, slotted value (sortable, hashable, passed through every stage) either way. The
    # field names are those of the Lambda Kinesis event, which the data classes document.
    @classmethod
    def from_event(cls, event: dict[str, Any]) -> list[KinesisRecord]:
        """Every record of a Lambda Kinesis event (``{"Records": [...]}``), in delivery order."""
        return [cls.from_event_record(r) for r in event.get("Records") or ()]

    @classmethod
    def from_event_record(cls, record: dict[str, Any]) -> KinesisRecord:
        """From one element of a Lambda Kinesis event's ``Records``.

        The shard id is the part of ``eventID`` before ':' ("shardId-000000000000:4954...").
        """
        kinesis = record.get("kinesis") or {}
        event_id = str(record.get("eventID") or "")
        shard_id = event_id.split(":", 1)[0] if ":" in event_id else "shardId-unknown"
        arrival = kinesis.get("approximateArrivalTimestamp") or 0
        return cls(
            shard_id=shard_id,
            sequence_number=str(kinesis.get("sequenceNumber") or "0"),
            data_b64=str(kinesis.get("data") or ""),
            approximate_arrival_ms=int(float(arrival) * 1000),
            partition_key=str(kinesis.get("partitionKey") or ""),
        )


@dataclass(frozen=True, slots=True)
class Rejection:
    """A quarantined item: its raw bytes, a reason code and the stage.

    For a whole record (an unpacked reading, or a record that cannot be parsed at all) ``raw`` is None
    and the raw bytes are the record's data as received. For one element of a packed record (a JSON
    array of readings) ``index`` is its position in the array and ``raw`` the element re-serialised with
    orjson; the other elements of the record are judged on their own.
    """

    record: KinesisRecord
    reason: str
    stage: str
    detail: str
    device_id: str | None = None
    raw: bytes | None = None
    index: int | None = None

    @property
    def raw_b64(self) -> str:
        """The quarantined bytes, base64 (the record's data exactly as delivered, or the element)."""
        if self.raw is None:
            return self.record.data_b64
        return binascii.b2a_base64(self.raw, newline=False).decode("ascii")
