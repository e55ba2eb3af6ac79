"""The stored windows: one prefetch for the batch, then one conditional write per window, in parallel,
within the invocation's time budget."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

from functions.core.errors import is_item_error
from functions.core.ports import (
    AggregateItem,
    AggregateStore,
    WindowKey,
)
from functions.core.readings import Reading
from functions.processor import exactly_once
from functions.processor.batch import ItemKey, ProcessorConfig, item_key
from functions.processor.exactly_once import WindowGroup

logger = logging.getLogger(__name__)


RemainingMs = Callable[[], int]  # the Lambda context's get_remaining_time_in_millis


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


class _OutOfTime(Exception):
    """A window write not started because the invocation's time budget ran out."""


@dataclass
class Writes:
    """The window writes' results, folded over the windows (readings by their item key)."""

    applied: set[ItemKey] = field(default_factory=set)  # added to the table by this invocation
    duplicates: set[ItemKey] = field(default_factory=set)
    redelivered: set[ItemKey] = field(default_factory=set)  # an earlier delivery added them
    failed: list[Reading] = field(default_factory=list)  # handed back (a failed or unstarted write)
    rejected: list[tuple[Reading, str]] = field(default_factory=list)  # the table refused the item
    failed_windows: dict[WindowKey, str] = field(default_factory=dict)  # not written: why
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
    anomalous: frozenset[ItemKey],
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
                lambda r: item_key(r) in anomalous,
                now_s,
                config.window_s,
                config.max_write_attempts,
                config.sleep,
                config.aggregates_ttl_days,
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
            out.failed_windows[key] = "deadline: not started"
        elif isinstance(result, BaseException) and is_item_error(result):
            # The table refuses this window's item (a value it cannot store, an item too large): a retry
            # would fail the same way, so quarantine the window's new readings and let the batch go on.
            logger.warning("window item rejected device=%s window=%s: %r", key[0], key[1], result)
            out.errors.append(f"write {key[0]}/{key[1]}: {type(result).__name__}")
            fresh, dropped = exactly_once.split_fresh(current.get(key), group.readings, group.window_start)
            redelivered, dups = exactly_once.split_redelivered(current.get(key), dropped)
            out.rejected.extend((r, f"window item rejected: {result}") for r in fresh)
            out.redelivered.update(map(item_key, redelivered))
            out.duplicates.update(map(item_key, dups))
            out.failed_windows[key] = f"rejected: {result!r}"
        elif isinstance(result, BaseException):
            logger.warning("window write failed device=%s window=%s: %r", key[0], key[1], result)
            out.errors.append(f"write {key[0]}/{key[1]}: {type(result).__name__}")
            out.failed.extend(group.readings)
            out.failed_windows[key] = repr(result)
        else:
            out.conflicts += result.conflicts
            out.windows_written += int(result.written)
            out.applied.update(map(item_key, result.applied))
            out.duplicates.update(map(item_key, result.duplicates))
            out.redelivered.update(map(item_key, result.redelivered))
    return out
