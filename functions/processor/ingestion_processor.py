"""The batch orchestration: ``process_batch(records, ports) -> Outcome``, runnable with in-memory fakes.

Stages, each a function returning a value (one module each), composed by ``_process_batch``:
``prepare.prepare_batch`` (decode/validate, enrich, in-batch dedupe, grouping by (device, window)) ->
``window_writes.prefetch_windows`` (the stored windows) -> ``anomaly_stage.detect_anomalies`` (the fresh
readings, ``exactly_once.split_fresh``, through the detector and ``handle_verdicts``) ->
``window_writes.write_windows`` (one conditional write per window, ``exactly_once.apply_group``) ->
``archiving.archive_batch`` -> ``accounting.account`` -> metrics. Stages return what failed (handed back)
or what they rejected; the per-shard failure points (``batch.fail_points``) and the ``Outcome`` are
computed here from those values. The batch's types (ports, config, item keys, dispositions, the table of
counts) live in ``batch.py``, below every stage.

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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.core.ports import MetricsSink
from functions.core.readings import Reading
from functions.processor.accounting import account
from functions.processor.anomaly_stage import detect_anomalies
from functions.processor.archiving import archive_batch
from functions.processor.batch import (
    COUNTS,
    FailPoints,
    ItemKey,
    ProcessorConfig,
    ProcessorPorts,
    counts_of,
    fail_points,
)
from functions.processor.prepare import Prepared, gc_paused, prepare_batch, quarantine_late
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
class Outcome:
    """What one batch did. Its counts are named once, in ``batch.COUNTS`` (summary line and metrics)."""

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
        """Counts for the structured log line (never payloads): every count of ``batch.COUNTS``."""
        out: dict[str, Any] = {c.field: getattr(self, c.field) for c in COUNTS}
        out["rejected"] = dict(self.rejected)
        out["shards"] = {s: {"first": a, "last": b} for s, (a, b) in self.shard_ranges.items()}
        out["window_lag_s"] = self.window_lag_s
        out["duration_ms"] = round(self.duration_ms, 2)
        out["errors"] = self.errors[:5]
        return out


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
    """The stages in order, each returning a value; the failure points and the outcome computed from them."""
    started = time.perf_counter()
    config = config or ProcessorConfig()
    now_s = time.time() if now_s is None else now_s
    if not records:
        return Outcome(kinesis_records_in=0)
    deadline = Deadline(remaining_ms, config.reserve_ms)

    prepared = prepare_batch(records, ports.devices, config.rules, int(now_s * 1000), config.window_s)
    prefetched = prefetch_windows(ports.aggregates, prepared.groups)
    detection = detect_anomalies(ports, prefetched.groups, prefetched.current, now_s, deadline)
    writes = write_windows(
        ports.aggregates, detection.groups, prefetched.current, detection.anomalous, now_s, config, deadline
    )
    # The readings whose window item the table refused join the quarantine (a new value: stage 1's is kept)
    settled = quarantine_late(prepared, writes.rejected, STORAGE_REJECTED, STAGE_AGGREGATE)

    handed_back: Sequence[Reading | KinesisRecord] = [
        *(item for item, _ in prepared.failed),
        *prefetched.failed,
        *detection.failed,
        *writes.failed,
    ]
    if detection.hand_back_all or (handed_back and config.hand_back_whole_batch):
        handed_back = prepared.records  # every shard fails from its first record: the whole batch goes back
    failed_at: FailPoints = fail_points(handed_back)
    # Archive lines: readings in the table say "aggregated" whether this write or an earlier one put them
    # there (an earlier delivery that was handed back wrote no archive line for them).
    archived = archive_batch(
        settled, ports.archive, failed_at, writes.applied | writes.redelivered, detection.verdicts
    )
    accounting = account(settled, fail_points(archived.failed, into=failed_at), writes)

    outcome = Outcome(
        **accounting.counts(),
        **counts_of(detection),  # anomalies, alerts, fallbacks, detector failures, states written
        kinesis_records_in=len(records),
        archive_failures=len(archived.failed),
        archive_kept=len(archived.kept),
        out_of_time=deadline.hit,
        windows_written=writes.windows_written,
        write_conflicts=writes.conflicts,
        archived_keys=archived.keys,
        window_lag_s=_window_lag_s(settled, now_s),
        shard_ranges=archived.shard_ranges,
        errors=[
            *(why for _, why in prepared.failed),
            *prefetched.errors,
            *detection.errors,
            *writes.errors,
            *(["deadline: window writes not started"] if deadline.hit else []),
            *archived.errors,
        ],
    )
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    emit_metrics(ports.metrics, outcome)
    return outcome


def _window_lag_s(prepared: Prepared, now_s: float) -> float | None:
    newest = max((r.epoch_ms for g in prepared.groups.values() for r in g.readings), default=None)
    return None if newest is None else max(0.0, now_s - newest / 1000)


def emit_metrics(metrics: MetricsSink, outcome: Outcome) -> None:
    """Publish every metric of ``batch.COUNTS`` (and the rejection total and percentage), then flush."""
    try:
        for count in COUNTS:
            value = getattr(outcome, count.field)
            if count.field == "rejected":
                _emit_rejected(metrics, outcome)
            elif count.metric is None:
                continue
            elif count.dimension is None:
                metrics.add(count.metric, value, unit=count.unit)
            else:
                for key, n in sorted(value.items()):
                    metrics.add(count.metric, n, unit=count.unit, dimensions={count.dimension: key})
        if outcome.window_lag_s is not None:
            metrics.add("WindowLagSeconds", outcome.window_lag_s, unit="Seconds")
        metrics.add("BatchDurationMs", outcome.duration_ms, unit="Milliseconds")
        metrics.flush()
    except Exception:  # metrics must never fail a batch whose data is safely stored
        logger.exception("metrics publishing failed")


def _emit_rejected(metrics: MetricsSink, outcome: Outcome) -> None:
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
