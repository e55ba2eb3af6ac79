"""The pure part of a batch: decode, validate, enrich, in-batch dedupe, grouping by (device, window)."""

from __future__ import annotations

import gc
import logging
from base64 import b64decode
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from operator import attrgetter

import orjson

from functions.core.ports import WindowKey
from functions.core.readings import DeviceInfo, Reading
from functions.processor.batch import ItemKey, item_key
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


@dataclass
class Grouped:
    """Readings grouped by (device, window): the first of each device and event time, in input order."""

    groups: dict[WindowKey, WindowGroup] = field(default_factory=dict)
    duplicates: list[Reading] = field(default_factory=list)  # a device's event time seen before
    unknown: list[Reading] = field(default_factory=list)  # no registry entry: the caller rejects them


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

    grouped = group_by_window(readings, infos, window_s, prepared.groups)
    prepared.batch_duplicates = grouped.duplicates
    if grouped.unknown:
        by_seq = {(rec.shard_id, rec.sequence_number): rec for rec in ordered}
        for r in grouped.unknown:
            record = by_seq[(r.shard_id, r.sequence_number)]
            raw = None if r.index is None else _element_bytes(record, r.index)
            why = "device not registered"
            rejections.append(Rejection(record, UNKNOWN_DEVICE, STAGE_ENRICH, why, r.device_id, raw, r.index))
    return prepared


def group_by_window(
    readings: Sequence[Reading],
    infos: Mapping[str, DeviceInfo | None],
    window_s: int,
    groups: dict[WindowKey, WindowGroup] | None = None,
) -> Grouped:
    """Enrich (``infos``: device id -> registry entry, None when unknown), drop repeats of a device's event
    time (the first in ``readings`` order counts: shard, then sequence number) and group by window.

    The processor's batch and ``iotpipe rebuild`` (readings read back from the archive) both group here.
    """
    out = Grouped(groups if groups is not None else {})
    seen: set[tuple[str, int]] = set()
    seen_add = seen.add
    groups = out.groups
    unknown, duplicates = out.unknown, out.duplicates
    window_ms = window_s * 1000
    for r in readings:
        device_id = r.device_id
        info = infos.get(device_id)
        if info is None:
            unknown.append(r)
            continue
        r.device = info
        epoch_ms = r.epoch_ms
        key = (device_id, epoch_ms)
        if key in seen:  # same device and event time: counted once (the first by sequence number)
            duplicates.append(r)
            continue
        seen_add(key)
        wkey = (device_id, (epoch_ms // window_ms) * window_s)
        group = groups.get(wkey)
        if group is None:
            groups[wkey] = WindowGroup(device_id, wkey[1], [r], info)
        else:
            group.readings.append(r)
    return out


def _element_bytes(record: KinesisRecord, index: int) -> bytes:
    """Element ``index`` of a packed record, re-serialised (rare: only for a quarantined element)."""
    return orjson.dumps(orjson.loads(b64decode(record.data_b64))[index])


def quarantine_late(
    prepared: Prepared, rejected: Sequence[tuple[Reading, str]], reason: str, stage: str
) -> Prepared:
    """``prepared`` with these grouped readings moved to its quarantine (a later stage failed on them
    alone, ``detail`` saying why): a new value; the one stage 1 returned is left as it was."""
    if not rejected:
        return prepared
    by_seq = {(rec.shard_id, rec.sequence_number): rec for rec in prepared.records}
    rejections = list(prepared.rejections)
    gone: set[ItemKey] = set()
    for reading, detail in rejected:
        record = by_seq[(reading.shard_id, reading.sequence_number)]
        raw = None if reading.index is None else _element_bytes(record, reading.index)
        rejections.append(Rejection(record, reason, stage, detail, reading.device_id, raw, reading.index))
        gone.add(item_key(reading))
    groups = {}
    for key, group in prepared.groups.items():  # an emptied group stays: apply_group writes nothing for it
        kept = [r for r in group.readings if item_key(r) not in gone]
        same = len(kept) == len(group.readings)
        groups[key] = group if same else WindowGroup(group.device_id, group.window_start, kept, group.device)
    return replace(prepared, rejections=rejections, groups=groups)
