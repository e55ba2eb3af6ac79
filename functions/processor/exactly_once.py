"""Stage 4: apply one batch's partial aggregate to a stored window exactly once.

Per (device_id, window_start) the stored item carries, besides the statistics:
- ``watermarks``: per Kinesis shard, the highest sequence number already applied;
- ``seen_offsets_ms``: the event-time offsets (ms within the window) of the readings applied;
- ``version``: +1 per write; every write is conditional on the version it read.

A batch (records of one shard arrive in sequence order) drops every reading at or below its shard's
watermark (redelivery, retries, bisection, overlapping batches) and every reading whose event time the
window already holds (a producer that re-sent a reading under a new sequence number), folds the rest,
merges, and writes once with ``version = :read_version``. A lost race (ConditionalCheckFailed) re-reads
and recomputes, so two writers can never both apply the same record. Result: exactly-once aggregates
under at-least-once delivery.

Why dropping at-or-below the watermark is safe: Kinesis delivers a shard in sequence order, Lambda
retries from the earliest failed record (or bisects in order), and one write carries *all* of a batch's
records for that window. So once a sequence number is recorded for a window, every lower-numbered record
of that shard and window has been applied or was never meant for it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

from functions.core.errors import StoreError, VersionConflict, is_transient
from functions.core.ports import AggregateItem, AggregateStore, WindowKey
from functions.core.readings import DeviceInfo, Reading
from functions.core.retry import Backoff
from functions.core.timestamps import format_ms, format_s
from functions.processor import windows
from functions.processor.batch import MAX_WRITE_ATTEMPTS, item_key
from functions.settings import get_settings

# The outer retry around read-merge-write: botocore already retries each call (adaptive mode); this loop
# handles lost races and errors that outlived botocore's retries. Bounded so a batch finishes in time.
MAX_ATTEMPTS = MAX_WRITE_ATTEMPTS
BACKOFF_BASE_S = 0.05
BACKOFF_CAP_S = 1.0


@dataclass(slots=True)
class WindowGroup:
    """This batch's readings for one (device, window), each shard's records in sequence order."""

    device_id: str
    window_start: int
    readings: list[Reading]
    device: DeviceInfo | None = None

    @property
    def key(self) -> WindowKey:
        return (self.device_id, self.window_start)


@dataclass(slots=True)
class ApplyResult:
    applied: list[Reading] = field(default_factory=list)  # added to the stored window by this write
    duplicates: list[Reading] = field(default_factory=list)  # the window already held this event time
    # At or below their shard's watermark: an earlier delivery of the same Kinesis record applied them
    # (a redelivery after a crash, a hand-back or a retry), so they were counted then, not now.
    redelivered: list[Reading] = field(default_factory=list)
    attempts: int = 0
    conflicts: int = 0
    written: bool = False


def split_fresh(
    item: AggregateItem | None, readings: Sequence[Reading], window_start: int
) -> tuple[list[Reading], list[Reading]]:
    """(fresh, already applied) readings relative to the stored item's watermarks and seen offsets."""
    if item is None:
        return list(readings), []
    watermarks: Mapping[str, str] = item.get("watermarks") or {}
    marks = {shard: int(seq) for shard, seq in watermarks.items()}
    seen = set(item.get("seen_offsets_ms") or ())
    base_ms = window_start * 1000
    fresh: list[Reading] = []
    dups: list[Reading] = []
    for r in readings:
        mark = marks.get(r.shard_id)
        offset = r.epoch_ms - base_ms
        if (mark is not None and int(r.sequence_number) <= mark) or offset in seen:
            dups.append(r)
        else:
            fresh.append(r)
            seen.add(offset)  # also catches repeats inside `readings` (the batch dedupes earlier too)
    return fresh, dups


def split_redelivered(
    item: AggregateItem | None, dropped: Sequence[Reading]
) -> tuple[list[Reading], list[Reading]]:
    """(redelivered, duplicates) among readings ``split_fresh`` dropped: redelivered ones are at or below
    their shard's watermark (this very record was applied before), the rest repeat an applied event time."""
    if item is None or not dropped:
        return [], list(dropped)
    marks = {shard: int(seq) for shard, seq in (item.get("watermarks") or {}).items()}
    redelivered: list[Reading] = []
    duplicates: list[Reading] = []
    for r in dropped:
        mark = marks.get(r.shard_id)
        (redelivered if mark is not None and int(r.sequence_number) <= mark else duplicates).append(r)
    return redelivered, duplicates


def build_item(
    current: AggregateItem | None,
    group: WindowGroup,
    fresh: Sequence[Reading],
    anomalies: int,
    now_s: float,
    window_s: int,
    ttl_days: int | None = None,
) -> AggregateItem:
    """The new stored item: current statistics merged with ``fresh``, watermarks advanced, version + 1.

    ``expires_at`` (the table's TTL attribute) is ``window_end + ttl_days`` (default: the
    ``AGGREGATES_TTL_DAYS`` setting): derived from the window, never the clock, so every write agrees.
    """
    watermarks: dict[str, str] = dict(current.get("watermarks") or {}) if current else {}
    for r in fresh:  # per shard, the maximum (numeric, not lexicographic) sequence number applied
        mark = watermarks.get(r.shard_id)
        if mark is None or int(r.sequence_number) > int(mark):
            watermarks[r.shard_id] = r.sequence_number
    base_ms = group.window_start * 1000
    seen = set(current.get("seen_offsets_ms") or ()) if current else set()
    seen.update(r.epoch_ms - base_ms for r in fresh)
    if current:
        # The stored statistics, continued: the fresh readings are folded around the window's stored
        # shifts (windows.py), so a window's shift is set by its first write and never changes.
        acc = windows.agg_all(
            fresh,
            windows.WindowAcc(
                count=int(current["count"]),
                channels=windows.from_channels(current.get("channels") or {}),
                anomaly_count=int(current.get("anomaly_count") or 0) + anomalies,
            ),
        )
    else:
        acc = windows.agg_all(fresh)
        acc.anomaly_count = anomalies
    ttl = get_settings().aggregates_ttl_days if ttl_days is None else ttl_days
    device = group.device
    site = (device.site if device else "") or (current.get("site", "") if current else "")
    location = (device.location if device else "") or (current.get("location", "") if current else "")
    return {
        "device_id": group.device_id,
        "window_start": group.window_start,
        "window_end": group.window_start + window_s,
        "count": acc.count,
        "channels": windows.result(acc),
        "site": site,
        "location": location,
        "watermarks": watermarks,
        "seen_offsets_ms": sorted(seen),
        "version": (int(current["version"]) if current else 0) + 1,
        "first_event_at": format_ms(base_ms + min(seen)),
        "last_event_at": format_ms(base_ms + max(seen)),
        "updated_at": format_s(int(now_s)),
        "anomaly_count": acc.anomaly_count,
        "expires_at": group.window_start + window_s + ttl * 86_400,
    }


def _same_write(current: AggregateItem | None, attempted: AggregateItem) -> bool:
    return (
        current is not None
        and int(current["version"]) == int(attempted["version"])
        and (current.get("watermarks") or {}) == attempted["watermarks"]
        and sorted(current.get("seen_offsets_ms") or ()) == attempted["seen_offsets_ms"]
    )


def apply_group(
    store: AggregateStore,
    group: WindowGroup,
    current: AggregateItem | None,
    is_anomaly: Callable[[Reading], bool],
    now_s: float,
    window_s: int = 60,
    max_attempts: int = MAX_ATTEMPTS,
    sleep: Callable[[float], None] = time.sleep,
    ttl_days: int | None = None,
) -> ApplyResult:
    """Read-merge-conditional-write loop for one window. Raises StoreError when attempts run out.

    ``current`` is the item as prefetched for the whole batch (None: absent). ``is_anomaly`` says whether
    the detector flagged a reading, so ``anomaly_count`` counts only readings applied by this write.
    """
    out = ApplyResult()
    last_error: BaseException | None = None
    ambiguous: tuple[AggregateItem, list[Reading]] | None = None  # a put whose outcome we do not know
    ambiguous_base: AggregateItem | None = current  # the item that put was computed from
    # A stateful loop (re-read, the ambiguous put), so the helper's attempts() rather than call().
    backoff = Backoff(max_attempts, BACKOFF_BASE_S, BACKOFF_CAP_S, sleep)
    for attempt in backoff.attempts():
        out.attempts = attempt + 1
        if attempt > 0:
            try:
                current = store.get(group.key)
            except StoreError as exc:
                if not exc.transient:
                    raise
                last_error = exc
                continue
            if ambiguous is not None and _same_write(current, ambiguous[0]):
                # The "failed" put (a timeout, a 500 after commit) had in fact been applied.
                out.applied = ambiguous[1]
                mine = set(map(item_key, ambiguous[1]))
                out.redelivered, out.duplicates = split_redelivered(
                    ambiguous_base, [r for r in group.readings if item_key(r) not in mine]
                )
                out.written = True
                return out
            ambiguous = None
        fresh, dups = split_fresh(current, group.readings, group.window_start)
        out.applied = fresh
        out.redelivered, out.duplicates = split_redelivered(current, dups)
        ambiguous_base = current
        if not fresh:
            return out  # everything already applied: nothing to write
        anomalies = sum(1 for r in fresh if is_anomaly(r))
        item = build_item(current, group, fresh, anomalies, now_s, window_s, ttl_days)
        try:
            store.put(item, expected_version=int(current["version"]) if current else None)
        except VersionConflict as exc:
            out.conflicts += 1
            last_error = exc
            continue
        except Exception as exc:
            if not is_transient(exc):
                raise
            last_error = exc
            ambiguous = (item, fresh)
            continue
        out.written = True
        return out
    raise StoreError(
        f"window {group.device_id}/{group.window_start}: "
        f"gave up after {max_attempts} attempts ({last_error!r})",
        transient=True,
    )
