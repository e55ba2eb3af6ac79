"""The processor's batch as data: what every stage takes and returns, in one module below all of them.

- ``ProcessorPorts`` (what a batch talks to) and ``ProcessorConfig`` (how it runs): built by the handler
  (``wiring.build_ports``) or a tool (``iotpipe rebuild``), fakes in tests;
- ``ItemKey``: one input reading, (shard, sequence number, index in a packed record or None). Stages key
  what they decide about a reading by it (applied, flagged, its verdict), so a result means the same
  reading wherever it travels, unlike the identity of one Python object;
- ``FailPoints``: per shard, the earliest failed sequence number (Lambda resumes there), computed from
  what the stages return as failed (``fail_points``);
- the dispositions (every input reading ends in exactly one) and ``COUNTS``: the one table that names
  each count of the outcome, its metric and its place in the summary line.

Stages import this module; nothing here imports a stage or the orchestrator (``.importlinter``).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol

from functions.core.ports import (
    AggregateStore,
    Alerter,
    AnomalyWriter,
    Archive,
    DetectorStateWriter,
    MetricsSink,
    VerdictHandler,
)
from functions.core.readings import Reading
from functions.detector.interface import Detector, Verdict
from functions.processor.decode import DecodeRules
from functions.processor.enrich import DeviceCache

# (shard_id, sequence_number, index within a packed record or None): one input reading (or unparseable record)
ItemKey = tuple[str, str, int | None]


def item_key(r: Reading) -> ItemKey:
    return (r.shard_id, r.sequence_number, r.index)


class Sequenced(Protocol):
    """Anything placed in a shard: a Kinesis record or a reading decoded from one."""

    @property
    def shard_id(self) -> str: ...

    @property
    def sequence_number(self) -> str: ...


FailPoints = dict[str, int]  # shard -> the earliest failed sequence number (int): Lambda resumes there


def fail_points(items: Iterable[Sequenced], into: FailPoints | None = None) -> FailPoints:
    """Per shard, the lowest sequence number among ``items`` (merged into a copy of ``into``)."""
    failed_at: FailPoints = dict(into or {})
    for item in items:
        seq = int(item.sequence_number)
        current = failed_at.get(item.shard_id)
        if current is None or seq < current:
            failed_at[item.shard_id] = seq
    return failed_at


def before_fail_point(failed_at: FailPoints, shard_id: str, seq: str | int) -> bool:
    """True when this sequence number of the shard is done (its shard has no failure at or before it)."""
    fail = failed_at.get(shard_id)
    return fail is None or int(seq) < fail


# The maximum read-merge-write attempts per window (exactly_once.apply_group): botocore already retries
# each call; this bounds lost races and errors that outlived those retries, so a batch finishes in time.
MAX_WRITE_ATTEMPTS = 6


@dataclass
class ProcessorPorts:
    """Everything a batch talks to. Real adapters in the handler and the rebuild, fakes in tests."""

    devices: DeviceCache
    aggregates: AggregateStore
    archive: Archive
    metrics: MetricsSink
    detector: Detector | None = None  # None disables detection
    anomaly_store: AnomalyWriter | None = None
    alerter: Alerter | None = None
    # None: functions.detector.pipeline_stage.handle_verdicts (imported when first needed)
    handle_verdicts: VerdictHandler[Verdict] | None = None
    # Where the per-device detector persists its carried alarm state (the devices table); None: memory only
    detector_state: DetectorStateWriter | None = None


@dataclass(frozen=True)
class ProcessorConfig:
    rules: DecodeRules = field(default_factory=DecodeRules)
    window_s: int = 60
    max_write_attempts: int = MAX_WRITE_ATTEMPTS
    sleep: Callable[[float], None] = time.sleep
    # Windows are independent items, so their conditional writes can run in parallel: a 5,000-record
    # batch over 1,000 devices is ~1,000 writes, ~10 s serially at ~10 ms each, under 1 s with 16 threads.
    write_concurrency: int = 1
    # Time budget: no new stage or window write starts with less than this left of the invocation
    # (what remains is handed back for redelivery); it covers the archive puts, metrics and the response.
    reserve_ms: int = 10_000
    # How the records left to redelivery go back. False (AWS, LocalStack): ``batchItemFailures`` from each
    # shard's earliest failed record. True (ministack, which DROPS records reported there but retries a
    # failed invocation): hand back the whole batch (nothing archived or counted as done but what is
    # already in the table) and let the handler fail the invocation.
    hand_back_whole_batch: bool = False
    # expires_at of a window item = window end + this many days (the aggregates table's TTL attribute);
    # None: the AGGREGATES_TTL_DAYS setting of the process.
    aggregates_ttl_days: int | None = None


# Dispositions: every input reading ends in exactly one (``Outcome.dispositions``).
AGGREGATED = "aggregated"  # added to the table by this invocation
DUPLICATE = "duplicate"  # its device and event time were already counted
REDELIVERED = "redelivered"  # an earlier delivery added it to the table (counted by that one)
RETRY = "retry"  # handed back for redelivery
QUARANTINED = "quarantined"  # "quarantined:<reason>"


def quarantined(reason: str) -> str:
    return f"{QUARANTINED}:{reason}"


@dataclass(frozen=True)
class Count:
    """One count of the outcome: its field, the metric it is published as, and a dimension for a mapping.

    A field whose metric is None is logged in the summary line only."""

    field: str
    metric: str | None = None
    dimension: str | None = None  # for a mapping field: one metric per key, dimensioned by it
    unit: str = "Count"


# The one table of the outcome's counts, in publishing order: ``Outcome.summary`` logs each field,
# ``ingestion_processor.emit_metrics`` publishes each metric. (RecordsRejected and RejectedPercent are
# published from ``rejected`` by reason, with their total; see emit_metrics.)
COUNTS: tuple[Count, ...] = (
    Count("records_in", "RecordsIn"),  # readings (a packed record counts its elements)
    Count("kinesis_records_in", "KinesisRecordsIn"),
    Count("aggregated", "RecordsAggregated"),
    Count("duplicates", "DuplicatesDropped"),
    Count("retry", "RecordsRetried"),  # handed back for redelivery (ministack drops them)
    Count("redelivered", "RecordsRedelivered"),
    Count("archive_failures", "ArchiveWriteFailures"),
    Count("alerts_failed", "AlertsFailed"),
    Count("rejected"),  # published by emit_metrics: per reason and in total, with the percentage
    Count("anomalies", "AnomaliesDetected"),
    Count("alerts_sent", "AlertsSent"),
    Count("alerts_suppressed", "AlertsSuppressed"),
    # A device's reading the fleet model scored instead of its own calibration (its item or calibration
    # unreadable or invalid, a calibrated channel missing...): visible, per reason.
    Count("calibration_fallbacks", "CalibrationFallbacks", dimension="Reason"),
    # Calls to the SageMaker endpoint that failed or timed out, by the policy that handled them
    # (fallback: scored by the embedded model; skip: kept unscored; fail: handed back).
    Count("detector_backend_failures", "DetectorBackendFailures", dimension="Policy"),
    # Aggregated, but not scored (or its anomaly not stored): visible, per reason.
    Count("detection_failures", "DetectionFailures", dimension="Reason"),
    Count("detector_states_written"),
    Count("windows_written"),
    Count("write_conflicts"),
    Count("archive_kept"),
    Count("out_of_time"),
    Count("failed_sequence_numbers"),
)


def counts_of(stage_result: object) -> dict[str, Any]:
    """The counts of ``COUNTS`` a stage's result carries under the same names (for the outcome)."""
    return {c.field: getattr(stage_result, c.field) for c in COUNTS if hasattr(stage_result, c.field)}
