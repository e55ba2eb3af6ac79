"""The batch orchestration: ``process_batch(records, ports) -> Outcome``, runnable with in-memory fakes.

Stages (one module each): decode/validate (``decode``) -> enrich (``enrich``) -> in-batch dedupe and
grouping by (device, window) -> prefetch stored windows and drop already-applied records
(``exactly_once.split_fresh``) -> anomaly detection on the fresh readings (detector + ``handle_verdicts``)
-> one conditional write per window (``exactly_once.apply_group``) -> archive (``archive_keys``) -> metrics.

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

import gc
import logging
import time
from base64 import b64decode
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson

from functions.processor import exactly_once
from functions.processor.archive_keys import (
    PROCESSED_PREFIX,
    QUARANTINE_PREFIX,
    archive_key,
    processed_line,
    quarantine_line,
)
from functions.processor.decode import DecodeRules, decode_batch
from functions.processor.enrich import DeviceCache
from functions.processor.exactly_once import WindowGroup
from functions.processor.ports import AggregateItem, AggregateStore, Archive, MetricsSink, WindowKey
from functions.processor.records import REASONS, STAGE_ENRICH, UNKNOWN_DEVICE, KinesisRecord, Rejection
from functions.readings import Reading

logger = logging.getLogger(__name__)

AGGREGATED = "aggregated"
DUPLICATE = "duplicate"
RETRY = "retry"

HandleVerdicts = Callable[..., Any]


@dataclass
class ProcessorPorts:
    """Everything ``process_batch`` talks to. Real adapters in the handler, fakes in tests."""

    devices: DeviceCache
    aggregates: AggregateStore
    archive: Archive
    metrics: MetricsSink
    detector: Any | None = None  # functions.detector.interface.Detector; None disables detection
    anomaly_store: Any | None = None  # functions.adapters.anomalies.AnomalyStore
    alerter: Any | None = None  # functions.adapters.alerts.Alerter
    handle_verdicts: HandleVerdicts | None = None  # functions.detector.pipeline_stage.handle_verdicts


@dataclass(frozen=True)
class ProcessorConfig:
    rules: DecodeRules = field(default_factory=DecodeRules)
    window_s: int = 60
    max_write_attempts: int = exactly_once.MAX_ATTEMPTS
    sleep: Callable[[float], None] = time.sleep
    # Windows are independent items, so their conditional writes can run in parallel: a 5,000-record
    # batch over 1,000 devices is ~1,000 writes, ~10 s serially at ~10 ms each, under 1 s with 16 threads.
    write_concurrency: int = 1


@dataclass
class Prepared:
    """The pure part of a batch: decoded, enriched, deduplicated, grouped (what the benchmark times)."""

    records: list[KinesisRecord]  # sorted by (shard, sequence number)
    rejections: list[Rejection] = field(default_factory=list)
    batch_duplicates: list[Reading] = field(default_factory=list)
    groups: dict[WindowKey, WindowGroup] = field(default_factory=dict)
    failed: list[tuple[KinesisRecord | Reading, str]] = field(default_factory=list)  # (record, why)


# (shard_id, sequence_number, index within a packed record or None): one input reading (or unparseable record)
ItemKey = tuple[str, str, int | None]


@dataclass
class Outcome:
    records_in: int = 0  # readings (elements of packed records, plus one per unpacked or unparseable record)
    kinesis_records_in: int = 0  # raw Kinesis records in the batch
    aggregated: int = 0
    duplicates: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    retry: int = 0
    failed_sequence_numbers: list[str] = field(default_factory=list)  # one per failed shard
    anomalies: int = 0
    alerts_sent: int = 0
    alerts_suppressed: int = 0
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
            "failed_sequence_numbers": self.failed_sequence_numbers,
            "anomalies": self.anomalies,
            "alerts_sent": self.alerts_sent,
            "alerts_suppressed": self.alerts_suppressed,
            "windows_written": self.windows_written,
            "write_conflicts": self.write_conflicts,
            "shards": {s: {"first": a, "last": b} for s, (a, b) in self.shard_ranges.items()},
            "window_lag_s": self.window_lag_s,
            "duration_ms": round(self.duration_ms, 2),
            "errors": self.errors[:5],
        }


@contextmanager
def gc_paused() -> Iterator[None]:
    """Pause the cyclic garbage collector for one batch.

    A batch allocates several containers per record (decoded dict, channel dict, Reading), which triggers
    a young-generation collection every ~100 records and periodic full scans of everything alive: about a
    quarter of the CPU time of the core in bench/processor.py. Those objects hold no reference cycles, so
    reference counting frees them anyway; the collector is re-enabled (and catches up) after the batch.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()


_SHARD_AND_SEQ = attrgetter("shard_id", "sequence_number")
_SEQ = attrgetter("sequence_number")


def _order(records: Sequence[KinesisRecord]) -> list[KinesisRecord]:
    # Per shard in sequence order (numeric): the watermark logic depends on it. Usually already sorted.
    # Decimal strings of one length order as their numbers, so when all have the same length (Kinesis
    # sequence numbers normally do) a key built in C suffices; otherwise the length goes first.
    if len(set(map(len, map(_SEQ, records)))) <= 1:
        return sorted(records, key=_SHARD_AND_SEQ)
    return sorted(records, key=lambda r: (r.shard_id, len(r.sequence_number), r.sequence_number))


def prepare_batch(
    records: Sequence[KinesisRecord],
    devices: DeviceCache,
    rules: DecodeRules,
    now_ms: int,
    window_s: int = 60,
) -> Prepared:
    """Decode, validate, enrich, drop in-batch duplicates and group by (device, window). No writes."""
    ordered = _order(records)
    readings, rejections = decode_batch(ordered, rules, now_ms)
    prepared = Prepared(records=ordered, rejections=rejections)
    if not readings:
        return prepared

    try:
        infos = devices.resolve({r.device_id for r in readings})
    except Exception as exc:  # registry down after botocore's retries: leave these records to redelivery
        logger.warning("device registry lookup failed: %r", exc)
        prepared.failed.extend((r, f"registry: {type(exc).__name__}") for r in readings)
        return prepared

    seen: set[tuple[str, int]] = set()
    seen_add = seen.add
    by_seq: dict[tuple[str, str], KinesisRecord] | None = None  # built only if a device is unknown
    groups = prepared.groups
    window_ms = window_s * 1000
    for r in readings:
        device_id = r.device_id
        info = infos.get(device_id)
        if info is None:
            if by_seq is None:
                by_seq = {(rec.shard_id, rec.sequence_number): rec for rec in ordered}
            record = by_seq[(r.shard_id, r.sequence_number)]
            rejections.append(
                Rejection(
                    record,
                    UNKNOWN_DEVICE,
                    STAGE_ENRICH,
                    "device not registered",
                    device_id,
                    None if r.index is None else _element_bytes(record, r.index),
                    r.index,
                )
            )
            continue
        r.device = info
        epoch_ms = r.epoch_ms
        key = (device_id, epoch_ms)
        if key in seen:  # same device and event time: counted once (the first by sequence number)
            prepared.batch_duplicates.append(r)
            continue
        seen_add(key)
        wkey = (device_id, (epoch_ms // window_ms) * window_s)
        group = groups.get(wkey)
        if group is None:
            groups[wkey] = WindowGroup(device_id, wkey[1], [r], info)
        else:
            group.readings.append(r)
    return prepared


def _element_bytes(record: KinesisRecord, index: int) -> bytes:
    """Element ``index`` of a packed record, re-serialised (rare: only for a quarantined element)."""
    return orjson.dumps(orjson.loads(b64decode(record.data_b64))[index])


def _fail_point(failed_at: dict[str, int], shard_id: str, seq: int) -> None:
    current = failed_at.get(shard_id)
    if current is None or seq < current:
        failed_at[shard_id] = seq


def process_batch(
    records: Sequence[KinesisRecord],
    ports: ProcessorPorts,
    config: ProcessorConfig | None = None,
    now_s: float | None = None,
) -> Outcome:
    """Process one Kinesis batch end to end. Never raises for bad data; see the module docstring."""
    with gc_paused():
        return _process_batch(records, ports, config, now_s)


def _process_batch(
    records: Sequence[KinesisRecord],
    ports: ProcessorPorts,
    config: ProcessorConfig | None,
    now_s: float | None,
) -> Outcome:
    started = time.perf_counter()
    config = config or ProcessorConfig()
    now_s = time.time() if now_s is None else now_s
    now_ms = int(now_s * 1000)
    outcome = Outcome(kinesis_records_in=len(records))
    if not records:
        return outcome

    prepared = prepare_batch(records, ports.devices, config.rules, now_ms, config.window_s)
    failed_at: dict[str, int] = {}  # shard -> earliest failed sequence number (int)
    for item, why in prepared.failed:
        _fail_point(failed_at, item.shard_id, int(item.sequence_number))
        outcome.errors.append(why)

    groups = prepared.groups
    # Prefetch every touched window in one round of BatchGetItem; conflicts re-read single items.
    current: dict[WindowKey, AggregateItem] = {}
    if groups:
        try:
            current = ports.aggregates.get_many(list(groups))
        except Exception as exc:
            logger.warning("aggregate prefetch failed: %r", exc)
            outcome.errors.append(f"prefetch: {type(exc).__name__}")
            for group in groups.values():
                for r in group.readings:
                    _fail_point(failed_at, r.shard_id, int(r.sequence_number))
            groups = {}

    # Fresh readings per window (not yet applied) feed the detector, sorted by (device, time).
    fresh_by_key: dict[WindowKey, list[Reading]] = {}
    for key, group in groups.items():
        fresh, _ = exactly_once.split_fresh(current.get(key), group.readings, group.window_start)
        if fresh:
            fresh_by_key[key] = fresh
    anomalous: set[int] = set()  # id() of flagged readings
    if fresh_by_key and ports.detector is not None:
        try:
            anomalous = _detect(ports, fresh_by_key, now_s, outcome)
        except Exception as exc:
            # Detection or anomaly persistence failed: writing these windows now would mark their readings
            # applied, and the redelivery would then skip detection for them. Leave them all to redelivery.
            logger.warning("anomaly stage failed: %r", exc)
            outcome.errors.append(f"anomaly stage: {type(exc).__name__}")
            for fresh in fresh_by_key.values():
                for r in fresh:
                    _fail_point(failed_at, r.shard_id, int(r.sequence_number))
            groups = {k: g for k, g in groups.items() if k not in fresh_by_key}

    # One conditional write per window.
    applied_ids: set[int] = set()
    dup_ids: set[int] = set()

    def apply(key: WindowKey) -> exactly_once.ApplyResult | BaseException:
        try:
            return exactly_once.apply_group(
                ports.aggregates,
                groups[key],
                current.get(key),
                lambda r: id(r) in anomalous,
                now_s,
                config.window_s,
                config.max_write_attempts,
                config.sleep,
            )
        except Exception as exc:  # reported below; BaseException (a kill) still ends the invocation
            return exc

    keys = list(groups)
    if config.write_concurrency > 1 and len(keys) > 1:
        results = list(_executor(config.write_concurrency).map(apply, keys))
    else:
        results = [apply(key) for key in keys]
    for key, result in zip(keys, results, strict=True):
        if isinstance(result, BaseException):
            logger.warning("window write failed device=%s window=%s: %r", key[0], key[1], result)
            outcome.errors.append(f"write {key[0]}/{key[1]}: {type(result).__name__}")
            for r in groups[key].readings:
                _fail_point(failed_at, r.shard_id, int(r.sequence_number))
            continue
        outcome.write_conflicts += result.conflicts
        outcome.windows_written += int(result.written)
        applied_ids.update(id(r) for r in result.applied)
        dup_ids.update(id(r) for r in result.duplicates)

    _archive(prepared, ports.archive, failed_at, applied_ids, outcome)
    _account(prepared, failed_at, applied_ids, dup_ids, outcome)

    newest = max((r.epoch_ms for g in prepared.groups.values() for r in g.readings), default=None)
    if newest is not None:
        outcome.window_lag_s = max(0.0, now_s - newest / 1000)
    outcome.duration_ms = (time.perf_counter() - started) * 1000
    _emit_metrics(ports.metrics, outcome)
    return outcome


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _executor(workers: int) -> ThreadPoolExecutor:
    # One pool per container, reused across invocations (boto3 clients are thread-safe).
    pool = _EXECUTORS.get(workers)
    if pool is None:
        pool = _EXECUTORS[workers] = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="window-write"
        )
    return pool


def _detect(
    ports: ProcessorPorts, fresh_by_key: dict[WindowKey, list[Reading]], now_s: float, outcome: Outcome
) -> set[int]:
    readings = sorted(
        (r for fresh in fresh_by_key.values() for r in fresh), key=lambda r: (r.device_id, r.epoch_ms)
    )
    verdicts = ports.detector.detect(readings)  # type: ignore[union-attr]
    if len(verdicts) != len(readings):
        raise ValueError(f"detector returned {len(verdicts)} verdicts for {len(readings)} readings")
    handle = ports.handle_verdicts
    if handle is None:
        from functions.detector.pipeline_stage import handle_verdicts as handle  # lazy: colleague's module
    stage = handle(readings, verdicts, ports.anomaly_store, ports.alerter, now_s)
    flagged = getattr(stage, "anomalies", 0)  # the stored anomaly items (a list), or a count
    outcome.anomalies += len(flagged) if isinstance(flagged, list | tuple) else int(flagged)
    outcome.alerts_sent += int(getattr(stage, "alerts_sent", 0))
    outcome.alerts_suppressed += int(getattr(stage, "alerts_suppressed", 0))
    return {id(r) for r, v in zip(readings, verdicts, strict=True) if v.is_anomaly}


def _archive(
    prepared: Prepared,
    archive: Archive,
    failed_at: dict[str, int],
    applied_ids: set[int],
    outcome: Outcome,
) -> None:
    """Archive, per shard, every record before the shard's failure point: processed and quarantined."""
    by_shard: dict[str, list[KinesisRecord]] = {}
    for record in prepared.records:
        by_shard.setdefault(record.shard_id, []).append(record)
    processed: dict[str, list[bytes]] = {}
    for group in prepared.groups.values():
        for r in group.readings:
            fail = failed_at.get(r.shard_id)
            if fail is None or int(r.sequence_number) < fail:
                status = AGGREGATED if id(r) in applied_ids else DUPLICATE
                processed.setdefault(r.shard_id, []).append(processed_line(r, status))
    for r in prepared.batch_duplicates:
        fail = failed_at.get(r.shard_id)
        if fail is None or int(r.sequence_number) < fail:
            processed.setdefault(r.shard_id, []).append(processed_line(r, DUPLICATE))
    quarantined: dict[str, list[bytes]] = {}
    for rej in prepared.rejections:
        fail = failed_at.get(rej.record.shard_id)
        if fail is None or rej.record.seq < fail:
            quarantined.setdefault(rej.record.shard_id, []).append(quarantine_line(rej))

    for shard_id, shard_records in by_shard.items():
        fail = failed_at.get(shard_id)
        done = [r for r in shard_records if fail is None or r.seq < fail]
        if not done:
            continue
        first, last = done[0], done[-1]
        outcome.shard_ranges[shard_id] = (first.sequence_number, last.sequence_number)
        arrival = first.approximate_arrival_ms
        try:
            for prefix, lines in (
                (PROCESSED_PREFIX, processed.get(shard_id)),
                (QUARANTINE_PREFIX, quarantined.get(shard_id)),
            ):
                if lines:
                    key = archive_key(prefix, shard_id, first.sequence_number, last.sequence_number, arrival)
                    archive.put_jsonl_gz(key, lines)
                    outcome.archived_keys.append(key)
        except Exception as exc:
            # Nothing of this shard counts as done until it is archived: redeliver it all (aggregates
            # already written are recognised by their watermarks next time).
            logger.warning("archive write failed shard=%s: %r", shard_id, exc)
            outcome.errors.append(f"archive {shard_id}: {type(exc).__name__}")
            _fail_point(failed_at, shard_id, first.seq)


def _account(
    prepared: Prepared,
    failed_at: dict[str, int],
    applied_ids: set[int],
    dup_ids: set[int],
    outcome: Outcome,
) -> None:
    dispositions = outcome.dispositions

    def fate(shard_id: str, seq: str, index: int | None, what: str) -> None:
        fail = failed_at.get(shard_id)
        dispositions[(shard_id, seq, index)] = RETRY if fail is not None and int(seq) >= fail else what

    for rej in prepared.rejections:
        record = rej.record
        fate(record.shard_id, record.sequence_number, rej.index, f"quarantined:{rej.reason}")
    for r in prepared.batch_duplicates:
        fate(r.shard_id, r.sequence_number, r.index, DUPLICATE)
    for group in prepared.groups.values():
        for r in group.readings:
            rid = id(r)
            what = AGGREGATED if rid in applied_ids else DUPLICATE if rid in dup_ids else RETRY
            fate(r.shard_id, r.sequence_number, r.index, what)
    for item, _ in prepared.failed:
        dispositions[(item.shard_id, item.sequence_number, getattr(item, "index", None))] = RETRY
    accounted = {(shard, seq) for shard, seq, _ in dispositions}
    for record in prepared.records:  # a record with no item classified above (cannot happen; belt and braces)
        if (record.shard_id, record.sequence_number) not in accounted:
            dispositions[(record.shard_id, record.sequence_number, None)] = RETRY
            _fail_point(failed_at, record.shard_id, record.seq)

    for what in dispositions.values():
        if what == AGGREGATED:
            outcome.aggregated += 1
        elif what == DUPLICATE:
            outcome.duplicates += 1
        elif what == RETRY:
            outcome.retry += 1
        else:
            outcome.rejected[what.split(":", 1)[1]] += 1
    outcome.records_in = len(dispositions)
    # Kinesis semantics: Lambda resumes a shard from the lowest sequence number reported for it.
    by_shard_seq = {r.shard_id: {} for r in prepared.records}
    for record in prepared.records:
        by_shard_seq[record.shard_id][record.seq] = record.sequence_number
    outcome.failed_sequence_numbers = [by_shard_seq[s][seq] for s, seq in sorted(failed_at.items())]


def _emit_metrics(metrics: MetricsSink, outcome: Outcome) -> None:
    try:
        metrics.add("RecordsIn", outcome.records_in)  # readings (a packed record counts its elements)
        metrics.add("KinesisRecordsIn", outcome.kinesis_records_in)
        metrics.add("RecordsAggregated", outcome.aggregated)
        metrics.add("DuplicatesDropped", outcome.duplicates)
        metrics.add("RecordsRetried", outcome.retry)
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
        if outcome.window_lag_s is not None:
            metrics.add("WindowLagSeconds", outcome.window_lag_s, unit="Seconds")
        metrics.add("BatchDurationMs", outcome.duration_ms, unit="Milliseconds")
        metrics.flush()
    except Exception:  # metrics must never fail a batch whose data is safely stored
        logger.exception("metrics publishing failed")
