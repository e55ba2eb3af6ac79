"""The batch orchestration: ``process_batch(records, ports) -> Outcome``, runnable with in-memory fakes.

Stages, each a function returning a value (one module each), composed by ``_process_batch``:
``prepare.prepare_batch`` (decode/validate, enrich, in-batch dedupe, grouping by (device, window)) ->
``window_writes.prefetch_windows`` (the stored windows) -> ``anomaly_stage.detect_anomalies`` (the fresh
readings, ``exactly_once.split_fresh``, through the detector and ``handle_verdicts``) ->
``window_writes.write_windows`` (one conditional write per window, ``exactly_once.apply_group``) ->
``archiving.archive_batch`` -> ``accounting.account`` -> metrics. The per-shard failure points and the
``Outcome`` are folded here from what the stages return.

Failure policy (see docs/processing.md):
- bad data never raises: it is quarantined with a reason and archived; the shard moves on;
- a storage or detection failure that outlives the bounded retries marks the affected records failed; per
  shard the earliest failed sequence number is reported in ``batchItemFailures`` and everything from it
  on is left to redelivery (not archived, not counted as done). Records after it that were applied
  anyway are recognised as duplicates on redelivery by the watermarks, so nothing is lost or doubled.
- every input reading ends in exactly one bucket: aggregated, duplicate, quarantined (by reason) or retry.
  A packed Kinesis record (a JSON array of readings) contributes one item per element; a record that
  cannot be parsed at all counts as one quarantined item. Failure points and watermarks stay per Kinesis
  record (a record is never split across batches), so all readings of a record share its fate on retry.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.core.ports import (
    AggregateStore,
    Alerter,
    AnomalyWriter,
    Archive,
    DetectorStateWriter,
    MetricsSink,
    VerdictHandler,
)
from functions.detector.interface import Detector, Verdict
from functions.processor import exactly_once
from functions.processor.accounting import FailPoints, ItemKey, account, fail_items
from functions.processor.anomaly_stage import detect_anomalies
from functions.processor.archiving import archive_batch
from functions.processor.decode import DecodeRules
from functions.processor.enrich import DeviceCache
from functions.processor.prepare import Prepared, gc_paused, prepare_batch, quarantine_reading
from functions.processor.records import (
    REASONS,
    STAGE_AGGREGATE,
    STORAGE_REJECTED,
    KinesisRecord,
)
from functions.processor.window_writes import Deadline, RemainingMs, prefetch_windows, write_windows

__all__ = ["Outcome", "ProcessorConfig", "ProcessorPorts", "gc_paused", "prepare_batch", "process_batch"]

logger = logging.getLogger(__name__)


@dataclass
class ProcessorPorts:
    """Everything ``process_batch`` talks to. Real adapters in the handler, fakes in tests."""

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
    max_write_attempts: int = exactly_once.MAX_ATTEMPTS
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


@dataclass
class Outcome:
    records_in: int = 0  # readings (elements of packed records, plus one per unpacked or unparseable record)
    kinesis_records_in: int = 0  # raw Kinesis records in the batch
    aggregated: int = 0  # readings this invocation added to the aggregates table (the table's count agrees)
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    retry: int = 0
    redelivered: int = 0  # readings an earlier delivery already added to the table (counted by it)
    archive_failures: int = 0  # archive puts that failed (their shard is handed back)
    archive_kept: int = 0  # archive objects an earlier delivery of the same range had written (kept)
    out_of_time: bool = False  # the time budget ran out: the rest of the batch was handed back
    alerts_failed: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)  # one per failed shard
    anomalies: int = 0
    alerts_sent: int = 0
    alerts_suppressed: int = 0
    calibration_fallbacks: dict[str, int] = field(default_factory=dict)
    detector_backend_failures: dict[str, int] = field(default_factory=dict)  # by failure policy
    # Readings aggregated although detection failed for them alone, by reason (anomaly_stage)
    detection_failures: dict[str, int] = field(default_factory=dict)
    detector_states_written: int = 0
    windows_written: int = 0
    write_conflicts: int = 0
    archived_keys: list[str] = field(default_factory=list)
    window_lag_s: float | None = None
    duration_ms: float = 0.0
    shard_ranges: dict[str, tuple[str, str]] = field(default_factory=dict)
    errors: list[str] = field(default_factory=list)
    # (shard_id, sequence_number, index) -> "aggregated" | "duplicate" | "retry" | "quarantined:<reason>"
    dispositions: dict[ItemKey, str] = field(default_factory=dict)

    @property
    def quarantined(self) -> int:
        return sum(self.rejected.values())

    def batch_item_failures(self) -> list[dict[str, str]]:
        return [{"itemIdentifier": seq} for seq in self.failed_sequence_numbers]

    def summary(self) -> dict[str, Any]:
        """Counts for the structured log line (never payloads)."""
        return {
            "records_in": self.records_in,
            "kinesis_records_in": self.kinesis_records_in,
            "aggregated": self.aggregated,
            "duplicates": self.duplicates,
            "rejected": dict(self.rejected),
            "retry": self.retry,
            "redelivered": self.redelivered,
            "archive_failures": self.archive_failures,
            "archive_kept": self.archive_kept,
            "out_of_time": self.out_of_time,
            "failed_sequence_numbers": self.failed_sequence_numbers,
            "anomalies": self.anomalies,
            "alerts_sent": self.alerts_sent,
            "alerts_suppressed": self.alerts_suppressed,
            "alerts_failed": self.alerts_failed,
            "calibration_fallbacks": self.calibration_fallbacks,
            "detector_backend_failures": self.detector_backend_failures,
            "detection_failures": self.detection_failures,
            "detector_states_written": self.detector_states_written,
            "windows_written": self.windows_written,
            "write_conflicts": self.write_conflicts,
            "shards": {s: {"first": a, "last": b} for s, (a, b) in self.shard_ranges.items()},
            "window_lag_s": self.window_lag_s,
            "duration_ms": round(self.duration_ms, 2),
            "errors": self.errors[:5],
        }


def process_batch(
    records: Sequence[KinesisRecord],
    ports: ProcessorPorts,
    config: ProcessorConfig | None = None,
    now_s: float | None = None,
    remaining_ms: RemainingMs | None = None,
) -> Outcome:
    """Process one Kinesis batch end to end. Never raises for bad data; see the module docstring.

    ``remaining_ms`` (the invocation's time left; None: unbounded) bounds the work: a stage or window
    write that would start with less than ``config.reserve_ms`` left is not started, and its records are
    handed back like a failed write (``batchItemFailures`` from the first unprocessed sequence number).
    """
    with gc_paused():
        return _process_batch(records, ports, config, now_s, remaining_ms)


def _process_batch(
    records: Sequence[KinesisRecord],
    ports: ProcessorPorts,
    config: ProcessorConfig | None,
    now_s: float | None,
    remaining_ms: RemainingMs | None = None,
) -> Outcome:
    """The stages in order, each returning a value; the failure points and the outcome folded from them."""
    started = time.perf_counter()
    config = config or ProcessorConfig()
    now_s = time.time() if now_s is None else now_s
    if not records:
        return Outcome(kinesis_records_in=0)
    deadline = Deadline(remaining_ms, config.reserve_ms)
    failed_at: FailPoints = {}

    prepared = prepare_batch(records, ports.devices, config.rules, int(now_s * 1000), config.window_s)
    fail_items(failed_at, (item for item, _ in prepared.failed))

    prefetched = prefetch_windows(ports.aggregates, prepared.groups)
    fail_items(failed_at, prefetched.failed)

    detection = detect_anomalies(ports, prefetched.groups, prefetched.current, now_s, deadline)
    if detection.hand_back_all:
        fail_items(failed_at, prepared.records)
    fail_items(failed_at, detection.failed)

    writes = write_windows(
        ports.aggregates, detection.groups, prefetched.current, detection.anomalous, now_s, config, deadline
    )
    fail_items(failed_at, writes.failed)
    for reading, detail in writes.rejected:
        quarantine_reading(prepared, reading, STORAGE_REJECTED, STAGE_AGGREGATE, detail)
    deadline_note = ["deadline: window writes not started"] if deadline.hit else []

    if failed_at and config.hand_back_whole_batch:
        fail_items(failed_at, prepared.records)
    # Archive lines: readings in the table say "aggregated" whether this write or an earlier one put them
    # there (an earlier delivery that was handed back wrote no archive line for them).
    archived = archive_batch(
        prepared, ports.archive, failed_at, writes.applied | writes.redelivered, detection.verdicts
    )
    fail_items(failed_at, archived.failed)
    accounting = account(prepared, failed_at, writes)

    outcome = Outcome(
        records_in=accounting.records_in,
        kinesis_records_in=len(records),
        aggregated=accounting.aggregated,
        duplicates=accounting.duplicates,
        rejected=accounting.rejected,
        retry=accounting.retry,
        redelivered=accounting.redelivered,
        archive_failures=len(archived.failed),
        archive_kept=len(archived.kept),
        out_of_time=deadline.hit,
        alerts_failed=detection.alerts_failed,
        failed_sequence_numbers=accounting.failed_sequence_numbers,
        anomalies=detection.anomalies,
        alerts_sent=detection.alerts_sent,
        alerts_suppressed=detection.alerts_suppressed,
        calibration_fallbacks=detection.calibration_fallbacks,
        detector_backend_failures=detection.backend_failures,
        detection_failures=detection.detection_failures,
        detector_states_written=detection.detector_states_written,
        windows_written=writes.windows_written,
        write_conflicts=writes.conflicts,
        archived_keys=archived.keys,
        window_lag_s=_window_lag_s(prepared, now_s),
        shard_ranges=archived.shard_ranges,
        errors=[
            *(why for _, why in prepared.failed),
            *prefetched.errors,
            *detection.errors,
            *writes.errors,
            *deadline_note,
            *archived.errors,
        ],
        dispositions=accounting.dispositions,
    )
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    _emit_metrics(ports.metrics, outcome)
    return outcome


def _window_lag_s(prepared: Prepared, now_s: float) -> float | None:
    newest = max((r.epoch_ms for g in prepared.groups.values() for r in g.readings), default=None)
    return None if newest is None else max(0.0, now_s - newest / 1000)


def _emit_metrics(metrics: MetricsSink, outcome: Outcome) -> None:
    try:
        metrics.add("RecordsIn", outcome.records_in)  # readings (a packed record counts its elements)
        metrics.add("KinesisRecordsIn", outcome.kinesis_records_in)
        metrics.add("RecordsAggregated", outcome.aggregated)
        metrics.add("DuplicatesDropped", outcome.duplicates)
        metrics.add("RecordsRetried", outcome.retry)  # handed back for redelivery (ministack drops them)
        metrics.add("RecordsRedelivered", outcome.redelivered)
        metrics.add("ArchiveWriteFailures", outcome.archive_failures)
        metrics.add("AlertsFailed", outcome.alerts_failed)
        rejected_total = 0
        for reason in REASONS:
            count = outcome.rejected.get(reason, 0)
            if count:
                metrics.add("RecordsRejected", count, dimensions={"Reason": reason})
                rejected_total += count
        # The total (no dimension) feeds the dashboard; the per-batch percentage feeds the
        # rejection-ratio alarm, because ministack rejects metric-math alarms.
        metrics.add("RecordsRejected", rejected_total)
        if outcome.records_in:
            metrics.add("RejectedPercent", 100.0 * rejected_total / outcome.records_in, unit="Percent")
        metrics.add("AnomaliesDetected", outcome.anomalies)
        metrics.add("AlertsSent", outcome.alerts_sent)
        metrics.add("AlertsSuppressed", outcome.alerts_suppressed)
        for reason, count in sorted(outcome.calibration_fallbacks.items()):
            # A device's reading the fleet forest scored instead of its own calibration (its item or
            # calibration unreadable or invalid, a calibrated channel missing...): visible, per reason.
            metrics.add("CalibrationFallbacks", count, dimensions={"Reason": reason})
        for policy, count in sorted(outcome.detector_backend_failures.items()):
            # Calls to the SageMaker endpoint that failed or timed out, by the policy that handled them
            # (fallback: scored by the embedded model; skip: kept unscored; fail: handed back).
            metrics.add("DetectorBackendFailures", count, dimensions={"Policy": policy})
        for reason, count in sorted(outcome.detection_failures.items()):
            # Aggregated, but not scored (or its anomaly not stored): visible, per reason.
            metrics.add("DetectionFailures", count, dimensions={"Reason": reason})
        if outcome.window_lag_s is not None:
            metrics.add("WindowLagSeconds", outcome.window_lag_s, unit="Seconds")
        metrics.add("BatchDurationMs", outcome.duration_ms, unit="Milliseconds")
        metrics.flush()
    except Exception:  # metrics must never fail a batch whose data is safely stored
        logger.exception("metrics publishing failed")
