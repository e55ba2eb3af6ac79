"""The pure part of a batch: decode, validate, enrich, in-batch dedupe, grouping by (device, window)."""

from __future__ import annotations

import gc
import logging
from base64 import b64decode
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from operator import attrgetter

import orjson

from functions.core.ports import WindowKey
from functions.core.readings import Reading
from functions.processor.decode import DecodeRules, decode_batch
from functions.processor.enrich import DeviceCache
from functions.processor.exactly_once import WindowGroup
from functions.processor.records import (
    STAGE_ENRICH,
    UNKNOWN_DEVICE,
    KinesisRecord,
    Rejection,
)

logger = logging.getLogger(__name__)


@dataclass
class Prepared:
    """The pure part of a batch: decoded, enriched, deduplicated, grouped (what the benchmark times)."""

    records: list[KinesisRecord]  # sorted by (shard, sequence number)
    rejections: list[Rejection] = field(default_factory=list)
    batch_duplicates: list[Reading] = field(default_factory=list)
    groups: dict[WindowKey, WindowGroup] = field(default_factory=dict)
    failed: list[tuple[KinesisRecord | Reading, str]] = field(default_factory=list)  # (record, why)
    by_seq: dict[tuple[str, str], KinesisRecord] | None = None  # (shard, sequence) -> record, on demand


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


def _record_of(prepared: Prepared, reading: Reading) -> KinesisRecord:
    if prepared.by_seq is None:  # built only when a later stage quarantines a reading (rare)
        prepared.by_seq = {(rec.shard_id, rec.sequence_number): rec for rec in prepared.records}
    return prepared.by_seq[(reading.shard_id, reading.sequence_number)]


def quarantine_reading(prepared: Prepared, reading: Reading, reason: str, stage: str, detail: str) -> None:
    """Move a grouped reading to the quarantine (a later stage failed on it alone)."""
    record = _record_of(prepared, reading)
    raw = None if reading.index is None else _element_bytes(record, reading.index)
    prepared.rejections.append(
        Rejection(record, reason, stage, detail, reading.device_id, raw, reading.index)
    )
    for group in prepared.groups.values():  # an emptied group stays: apply_group writes nothing for it
        if group.device_id == reading.device_id:
            group.readings = [r for r in group.readings if r is not reading]
