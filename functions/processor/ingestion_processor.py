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
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter
from typing import Any

import orjson

from functions.core.errors import is_item_error, is_transient
from functions.core.ports import (
    AggregateItem,
    AggregateStore,
    Alerter,
    AnomalyStageResult,
    AnomalyWriter,
    Archive,
    MetricsSink,
    VerdictHandler,
    WindowKey,
)
from functions.core.readings import Reading
from functions.detector.interface import Detector, Verdict
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
from functions.processor.records import (
    DETECTION_FAILED,
    REASONS,
    STAGE_AGGREGATE,
    STAGE_ANOMALY_STORE,
    STAGE_DETECT,
    STAGE_ENRICH,
    STORAGE_REJECTED,
    UNKNOWN_DEVICE,
    KinesisRecord,
    Rejection,
)

logger = logging.getLogger(__name__)

AGGREGATED = "aggregated"
DUPLICATE = "duplicate"
REDELIVERED = "redelivered"
RETRY = "retry"

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
class Prepared:
    """The pure part of a batch: decoded, enriched, deduplicated, grouped (what the benchmark times)."""

    records: list[KinesisRecord]  # sorted by (shard, sequence number)
    rejections: list[Rejection] = field(default_factory=list)
    batch_duplicates: list[Reading] = field(default_factory=list)
    groups: dict[WindowKey, WindowGroup] = field(default_factory=dict)
    failed: list[tuple[KinesisRecord | Reading, str]] = field(default_factory=list)  # (record, why)
    by_seq: dict[tuple[str, str], KinesisRecord] | None = None  # (shard, sequence) -> record, on demand


# (shard_id, sequence_number, index within a packed record or None): one input reading (or unparseable record)
ItemKey = tuple[str, str, int | None]


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
    out_of_time: bool = False  # the time budget ran out: the rest of the batch was handed back
    alerts_failed: int = 0
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
            "redelivered": self.redelivered,
            "archive_failures": self.archive_failures,
            "out_of_time": self.out_of_time,
            "failed_sequence_numbers": self.failed_sequence_numbers,
            "anomalies": self.anomalies,
            "alerts_sent": self.alerts_sent,
            "alerts_suppressed": self.alerts_suppressed,
            "alerts_failed": self.alerts_failed,
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


FailPoints = dict[str, int]  # shard -> the earliest failed sequence number (int): Lambda resumes there


def _fail_point(failed_at: FailPoints, shard_id: str, seq: int) -> None:
    current = failed_at.get(shard_id)
    if current is None or seq < current:
        failed_at[shard_id] = seq


def _fail_items(failed_at: FailPoints, items: Iterable[Reading | KinesisRecord]) -> None:
    for item in items:
        _fail_point(failed_at, item.shard_id, int(item.sequence_number))


RemainingMs = Callable[[], int]  # the Lambda context's get_remaining_time_in_millis


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


@dataclass
class Deadline:
    """The invocation's time budget: ``expired()`` once less than ``reserve_ms`` is left (and stays so)."""

    remaining_ms: RemainingMs | None
    reserve_ms: int
    hit: bool = False

    def expired(self) -> bool:
        if self.remaining_ms is not None and self.remaining_ms() < self.reserve_ms:
            self.hit = True  # a plain flag: window-writer threads only ever set it to True
        return self.hit


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
    _fail_items(failed_at, (item for item, _ in prepared.failed))

    prefetched = prefetch_windows(ports.aggregates, prepared.groups)
    _fail_items(failed_at, prefetched.failed)

    detection = detect_anomalies(ports, prefetched.groups, prefetched.current, now_s, deadline)
    if detection.hand_back_all:
        _fail_items(failed_at, prepared.records)
    _fail_items(failed_at, detection.failed)
    for reading, reason, stage, detail in detection.casualties:  # failed alone: out of their windows
        _quarantine_reading(prepared, reading, reason, stage, detail)

    writes = write_windows(
        ports.aggregates, detection.groups, prefetched.current, detection.anomalous, now_s, config, deadline
    )
    _fail_items(failed_at, writes.failed)
    for reading, detail in writes.rejected:
        _quarantine_reading(prepared, reading, STORAGE_REJECTED, STAGE_AGGREGATE, detail)
    deadline_note = ["deadline: window writes not started"] if deadline.hit else []

    if failed_at and config.hand_back_whole_batch:
        _fail_items(failed_at, prepared.records)
    # Archive lines: readings in the table say "aggregated" whether this write or an earlier one put them
    # there (an earlier delivery that was handed back wrote no archive line for them).
    archived = archive_batch(prepared, ports.archive, failed_at, writes.applied | writes.redelivered)
    _fail_items(failed_at, archived.failed)
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
        out_of_time=deadline.hit,
        alerts_failed=detection.alerts_failed,
        failed_sequence_numbers=accounting.failed_sequence_numbers,
        anomalies=detection.anomalies,
        alerts_sent=detection.alerts_sent,
        alerts_suppressed=detection.alerts_suppressed,
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


# ------------------------------------------------------------------------------------------ prefetch
@dataclass(frozen=True)
class Prefetched:
    """The stored windows the batch touches, and the groups left to process (none if the read failed)."""

    groups: dict[WindowKey, WindowGroup]
    current: dict[WindowKey, AggregateItem]
    failed: list[Reading] = field(default_factory=list)  # handed back: the read failed
    errors: list[str] = field(default_factory=list)


def prefetch_windows(aggregates: AggregateStore, groups: dict[WindowKey, WindowGroup]) -> Prefetched:
    """Every touched window in one round of BatchGetItem (conflicts re-read single items later)."""
    if not groups:
        return Prefetched(groups, {})
    try:
        return Prefetched(groups, aggregates.get_many(list(groups)))
    except Exception as exc:
        logger.warning("aggregate prefetch failed: %r", exc)
        failed = [r for group in groups.values() for r in group.readings]
        return Prefetched({}, {}, failed, [f"prefetch: {type(exc).__name__}"])


# ------------------------------------------------------------------------------------------ detect
Casualty = tuple[Reading, str, str, str]  # (reading, reason, stage, detail): quarantined by a later stage


@dataclass(frozen=True)
class Detection:
    """What the anomaly stage decided, and the groups left to write."""

    groups: dict[WindowKey, WindowGroup]  # the windows to write now (others are handed back)
    anomalous: frozenset[int] = frozenset()  # id() of flagged readings
    casualties: list[Casualty] = field(default_factory=list)  # failed alone: quarantine them
    failed: list[Reading] = field(default_factory=list)  # handed back: the stage had an outage
    hand_back_all: bool = False  # the deadline came before the stage could start
    anomalies: int = 0
    alerts_sent: int = 0
    alerts_suppressed: int = 0
    alerts_failed: int = 0
    errors: list[str] = field(default_factory=list)


def detect_anomalies(
    ports: ProcessorPorts,
    groups: dict[WindowKey, WindowGroup],
    current: dict[WindowKey, AggregateItem],
    now_s: float,
    deadline: Deadline,
) -> Detection:
    """Score the fresh (not yet applied) readings of each window, store the anomalies, alert.

    An outage of the detector or the anomaly store (throttling past retries, an unavailable endpoint, a
    missing table) hands the fresh readings back: writing their windows now would mark them applied, and
    the redelivery would then skip detection for them.
    """
    detector = ports.detector
    if detector is None:
        return Detection(groups)
    fresh_by_key: dict[WindowKey, list[Reading]] = {}
    for key, group in groups.items():
        fresh, _ = exactly_once.split_fresh(current.get(key), group.readings, group.window_start)
        if fresh:
            fresh_by_key[key] = fresh
    if not fresh_by_key:
        return Detection(groups)
    if deadline.expired():
        return Detection({}, hand_back_all=True, errors=["deadline: anomaly stage not started"])
    try:
        anomalous, casualties, stages = _detect(detector, ports, fresh_by_key, now_s)
    except Exception as exc:
        logger.warning("anomaly stage failed: %r", exc)
        return Detection(
            {k: g for k, g in groups.items() if k not in fresh_by_key},
            failed=[r for fresh in fresh_by_key.values() for r in fresh],
            errors=[f"anomaly stage: {type(exc).__name__}"],
        )
    return Detection(
        groups,
        frozenset(anomalous),
        casualties,
        anomalies=sum(len(s.anomalies) for s in stages),
        alerts_sent=sum(s.alerts_sent for s in stages),
        alerts_suppressed=sum(s.alerts_suppressed for s in stages),
        alerts_failed=sum(s.alerts_failed for s in stages),
    )


def _detect(
    detector: Detector, ports: ProcessorPorts, fresh_by_key: dict[WindowKey, list[Reading]], now_s: float
) -> tuple[set[int], list[Casualty], list[AnomalyStageResult]]:
    """Score, store, alert: (ids of flagged readings, casualties, the stage's results).

    A failure that concerns some readings only is contained to them: detection is retried per device and
    then per reading, storage per flagged reading; a reading that still fails becomes a casualty (the
    caller quarantines it) and the rest of the batch goes on. An outage (``_is_outage``) raises, and the
    caller hands the batch's fresh readings back for redelivery.
    """
    readings = sorted(
        (r for fresh in fresh_by_key.values() for r in fresh), key=lambda r: (r.device_id, r.epoch_ms)
    )
    casualties: list[Casualty] = []
    scored, verdicts = _verdicts(detector, readings, casualties)
    handle: VerdictHandler[Verdict]
    if ports.handle_verdicts is not None:
        handle = ports.handle_verdicts
    else:
        from functions.detector.pipeline_stage import handle_verdicts as handle  # lazy: colleague's module
    try:
        stages = [handle(scored, verdicts, ports.anomaly_store, ports.alerter, now_s)]
    except Exception as exc:
        if not is_item_error(exc):  # throttling past retries, a missing table, an alert... : an outage
            raise
        # One bad item fails a whole BatchWriteItem (or its serialisation): isolate by flagged reading.
        logger.warning("anomaly store rejected the batch's items, isolating: %r", exc)
        stages = []
        for r, v in zip(scored, verdicts, strict=True):
            if not v.is_anomaly:
                continue
            try:
                stages.append(handle([r], [v], ports.anomaly_store, ports.alerter, now_s))
            except Exception as item_exc:
                if not is_item_error(item_exc):
                    raise
                casualties.append((r, STORAGE_REJECTED, STAGE_ANOMALY_STORE, _why(item_exc)))
    failed_ids = {id(c[0]) for c in casualties}
    anomalous = {
        id(r) for r, v in zip(scored, verdicts, strict=True) if v.is_anomaly and id(r) not in failed_ids
    }
    return anomalous, casualties, stages


def _verdicts(
    detector: Detector, readings: list[Reading], casualties: list[Casualty]
) -> tuple[list[Reading], list[Verdict]]:
    """(readings that were scored, their verdicts): the whole batch, else per device, else per reading."""

    def detect(rs: list[Reading]) -> list[Verdict]:
        verdicts = detector.detect(rs)
        if len(verdicts) != len(rs):
            raise ValueError(f"detector returned {len(verdicts)} verdicts for {len(rs)} readings")
        return list(verdicts)

    try:
        return readings, detect(readings)
    except Exception as exc:
        if _is_outage(exc):
            raise
        logger.warning("detector failed on the batch, isolating by device: %r", exc)
    scored: list[Reading] = []
    verdicts: list[Verdict] = []
    by_device: dict[str, list[Reading]] = {}
    for r in readings:  # sorted by (device, time), so each device's list is in time order
        by_device.setdefault(r.device_id, []).append(r)
    for device_readings in by_device.values():
        try:
            verdicts.extend(detect(device_readings))
            scored.extend(device_readings)
            continue
        except Exception as exc:
            if _is_outage(exc):
                raise
        for r in device_readings:
            try:
                verdicts.extend(detect([r]))
                scored.append(r)
            except Exception as exc:
                if _is_outage(exc):
                    raise
                casualties.append((r, DETECTION_FAILED, STAGE_DETECT, _why(exc)))
    return scored, verdicts


def _is_outage(exc: BaseException) -> bool:
    """A detector failure of the service rather than of particular readings: hand the batch back.

    Transient errors (throttling, 5xx, timeouts) and a backend that is down under the ``fail`` policy
    (``DetectorUnavailable``). Anything else the detector raises is taken to be about its input and is
    isolated down to the reading. (Storage failures are judged the other way round: only errors about
    the item itself, ``is_item_error``, are isolated; any other storage error is an outage.)
    """
    from functions.detector.anomaly_detector import DetectorUnavailable  # loaded with the detector

    return is_transient(exc) or isinstance(exc, DetectorUnavailable)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]


# ------------------------------------------------------------------------------------------ write windows
class _OutOfTime(Exception):
    """A window write not started because the invocation's time budget ran out."""


@dataclass
class Writes:
    """The window writes' results, folded over the windows (ids are id() of readings)."""

    applied: set[int] = field(default_factory=set)  # added to the table by this invocation
    duplicates: set[int] = field(default_factory=set)
    redelivered: set[int] = field(default_factory=set)  # an earlier delivery added them
    failed: list[Reading] = field(default_factory=list)  # handed back (a failed or unstarted write)
    rejected: list[tuple[Reading, str]] = field(default_factory=list)  # the table refused the item
    conflicts: int = 0
    windows_written: int = 0
    errors: list[str] = field(default_factory=list)


_EXECUTORS: dict[int, ThreadPoolExecutor] = {}


def _executor(workers: int) -> ThreadPoolExecutor:
    # One pool per container, reused across invocations (boto3 clients are thread-safe).
    pool = _EXECUTORS.get(workers)
    if pool is None:
        pool = _EXECUTORS[workers] = ThreadPoolExecutor(
            max_workers=workers, thread_name_prefix="window-write"
        )
    return pool


def write_windows(
    aggregates: AggregateStore,
    groups: dict[WindowKey, WindowGroup],
    current: dict[WindowKey, AggregateItem],
    anomalous: frozenset[int],
    now_s: float,
    config: ProcessorConfig,
    deadline: Deadline,
) -> Writes:
    """One conditional write per window (in parallel up to ``config.write_concurrency``)."""

    def apply(key: WindowKey) -> exactly_once.ApplyResult | BaseException:
        if deadline.expired():  # checked per window: parallel writes stop starting, those in flight finish
            return _OutOfTime()
        try:
            return exactly_once.apply_group(
                aggregates,
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
    out = Writes()
    for key, result in zip(keys, results, strict=True):
        group = groups[key]
        if isinstance(result, _OutOfTime):
            out.failed.extend(group.readings)
        elif isinstance(result, BaseException) and is_item_error(result):
            # The table refuses this window's item (a value it cannot store, an item too large): a retry
            # would fail the same way, so quarantine the window's new readings and let the batch go on.
            logger.warning("window item rejected device=%s window=%s: %r", key[0], key[1], result)
            out.errors.append(f"write {key[0]}/{key[1]}: {type(result).__name__}")
            fresh, dropped = exactly_once.split_fresh(current.get(key), group.readings, group.window_start)
            redelivered, dups = exactly_once.split_redelivered(current.get(key), dropped)
            out.rejected.extend((r, f"window item rejected: {result}") for r in fresh)
            out.redelivered.update(id(r) for r in redelivered)
            out.duplicates.update(id(r) for r in dups)
        elif isinstance(result, BaseException):
            logger.warning("window write failed device=%s window=%s: %r", key[0], key[1], result)
            out.errors.append(f"write {key[0]}/{key[1]}: {type(result).__name__}")
            out.failed.extend(group.readings)
        else:
            out.conflicts += result.conflicts
            out.windows_written += int(result.written)
            out.applied.update(id(r) for r in result.applied)
            out.duplicates.update(id(r) for r in result.duplicates)
            out.redelivered.update(id(r) for r in result.redelivered)
    return out


def _record_of(prepared: Prepared, reading: Reading) -> KinesisRecord:
    if prepared.by_seq is None:  # built only when a later stage quarantines a reading (rare)
        prepared.by_seq = {(rec.shard_id, rec.sequence_number): rec for rec in prepared.records}
    return prepared.by_seq[(reading.shard_id, reading.sequence_number)]


def _quarantine_reading(prepared: Prepared, reading: Reading, reason: str, stage: str, detail: str) -> None:
    """Move a grouped reading to the quarantine (a later stage failed on it alone)."""
    record = _record_of(prepared, reading)
    raw = None if reading.index is None else _element_bytes(record, reading.index)
    prepared.rejections.append(
        Rejection(record, reason, stage, detail, reading.device_id, raw, reading.index)
    )
    for group in prepared.groups.values():  # an emptied group stays: apply_group writes nothing for it
        if group.device_id == reading.device_id:
            group.readings = [r for r in group.readings if r is not reading]


# ------------------------------------------------------------------------------------------ archive
@dataclass
class Archived:
    keys: list[str] = field(default_factory=list)
    shard_ranges: dict[str, tuple[str, str]] = field(default_factory=dict)  # shard -> (first, last) done
    failed: list[KinesisRecord] = field(default_factory=list)  # first record of each shard not archived
    errors: list[str] = field(default_factory=list)


def archive_batch(
    prepared: Prepared, archive: Archive, failed_at: FailPoints, applied_ids: set[int]
) -> Archived:
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

    out = Archived()
    for shard_id, shard_records in by_shard.items():
        fail = failed_at.get(shard_id)
        done = [r for r in shard_records if fail is None or r.seq < fail]
        if not done:
            continue
        first, last = done[0], done[-1]
        out.shard_ranges[shard_id] = (first.sequence_number, last.sequence_number)
        arrival = first.approximate_arrival_ms
        try:
            for prefix, lines in (
                (PROCESSED_PREFIX, processed.get(shard_id)),
                (QUARANTINE_PREFIX, quarantined.get(shard_id)),
            ):
                if lines:
                    key = archive_key(prefix, shard_id, first.sequence_number, last.sequence_number, arrival)
                    archive.put_jsonl_gz(key, lines)
                    out.keys.append(key)
        except Exception as exc:
            # Nothing of this shard counts as done until it is archived: redeliver it all (aggregates
            # already written are recognised by their watermarks next time).
            logger.warning("archive write failed shard=%s: %r", shard_id, exc)
            out.errors.append(f"archive {shard_id}: {type(exc).__name__}")
            out.failed.append(first)
    return out


# ------------------------------------------------------------------------------------------ account
@dataclass
class Accounting:
    dispositions: dict[ItemKey, str]
    records_in: int = 0
    aggregated: int = 0
    duplicates: int = 0
    retry: int = 0
    redelivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed_sequence_numbers: list[str] = field(default_factory=list)  # one per failed shard


def account(prepared: Prepared, failed_at: FailPoints, writes: Writes) -> Accounting:
    """One disposition per reading. A reading this invocation added to the table is ``aggregated`` even
    when its record is handed back (an archive failure, a later window's failure): the table holds it
    from now on, so counting it here is what keeps RecordsAggregated equal to the table. When that
    record comes back, the watermark marks the reading ``redelivered``, which no total counts."""
    failed_at = dict(failed_at)  # the belt-and-braces point below is this function's own
    applied_ids, dup_ids, redelivered_ids = writes.applied, writes.duplicates, writes.redelivered
    dispositions: dict[ItemKey, str] = {}

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
            if rid in applied_ids:
                dispositions[(r.shard_id, r.sequence_number, r.index)] = AGGREGATED
                continue
            what = REDELIVERED if rid in redelivered_ids else DUPLICATE if rid in dup_ids else RETRY
            fate(r.shard_id, r.sequence_number, r.index, what)
    for item, _ in prepared.failed:
        index = item.index if isinstance(item, Reading) else None
        dispositions[(item.shard_id, item.sequence_number, index)] = RETRY
    accounted = {(shard, seq) for shard, seq, _ in dispositions}
    for record in prepared.records:  # a record with no item classified above (cannot happen; belt and braces)
        if (record.shard_id, record.sequence_number) not in accounted:
            dispositions[(record.shard_id, record.sequence_number, None)] = RETRY
            _fail_point(failed_at, record.shard_id, record.seq)

    out = Accounting(dispositions, records_in=len(dispositions))
    for what in dispositions.values():
        if what == AGGREGATED:
            out.aggregated += 1
        elif what == DUPLICATE:
            out.duplicates += 1
        elif what == RETRY:
            out.retry += 1
        elif what == REDELIVERED:
            out.redelivered += 1
        else:
            out.rejected[what.split(":", 1)[1]] += 1
    # Kinesis semantics: Lambda resumes a shard from the lowest sequence number reported for it.
    by_shard_seq: dict[str, dict[int, str]] = {r.shard_id: {} for r in prepared.records}
    for record in prepared.records:
        by_shard_seq[record.shard_id][record.seq] = record.sequence_number
    out.failed_sequence_numbers = [by_shard_seq[s][seq] for s, seq in sorted(failed_at.items())]
    return out


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
        if outcome.window_lag_s is not None:
            metrics.add("WindowLagSeconds", outcome.window_lag_s, unit="Seconds")
        metrics.add("BatchDurationMs", outcome.duration_ms, unit="Milliseconds")
        metrics.flush()
    except Exception:  # metrics must never fail a batch whose data is safely stored
        logger.exception("metrics publishing failed")
