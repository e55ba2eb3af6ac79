"""Stage 3: 1-minute tumbling windows per device by event time, as a pure fold.

``initialize() -> acc``, ``agg(acc, reading) -> acc``, ``merge(a, b) -> acc``, ``result(acc) -> stats``.
The accumulator holds sufficient statistics per channel (count, sum, sum of squares, min, max), so partial
aggregates from different batches merge exactly (up to floating-point summation order) and mean and
population standard deviation are derived, never accumulated. No I/O: storage is ``exactly_once``'s job.

``agg`` mutates and returns its accumulator (a fold over one batch's readings would otherwise allocate a
new accumulator per reading); ``merge`` returns a new one and leaves its inputs alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from functions.core.readings import Reading

# Per-channel sufficient statistics: [count, sum, sumsq, min, max] (a list: cheapest mutable record).
Stats = list[float]
_N, _SUM, _SUMSQ, _MIN, _MAX = range(5)


@dataclass(slots=True)
class WindowAcc:
    count: int = 0
    channels: dict[str, Stats] = field(default_factory=dict)
    first_ms: int | None = None
    last_ms: int | None = None
    anomaly_count: int = 0


def initialize() -> WindowAcc:
    return WindowAcc()


def agg(acc: WindowAcc, reading: Reading) -> WindowAcc:
    acc.count += 1
    ms = reading.epoch_ms
    if acc.first_ms is None or ms < acc.first_ms:
        acc.first_ms = ms
    if acc.last_ms is None or ms > acc.last_ms:
        acc.last_ms = ms
    channels = acc.channels
    for name, value in reading.channels.items():
        s = channels.get(name)
        if s is None:
            channels[name] = [1, value, value * value, value, value]
        else:
            s[0] += 1
            s[1] += value
            s[2] += value * value
            if value < s[3]:
                s[3] = value
            if value > s[4]:
                s[4] = value
    return acc


def agg_all(readings: Iterable[Reading], acc: WindowAcc | None = None) -> WindowAcc:
    """``agg`` over ``readings`` (same statistics, bit for bit), with ``agg``'s body inlined.

    A batch's window groups are small (5-10 readings), so per-reading overhead dominates: no call per
    reading, and the accumulator's scalar fields live in locals until the end.
    """
    acc = initialize() if acc is None else acc
    channels = acc.channels
    get = channels.get
    count, first, last = acc.count, acc.first_ms, acc.last_ms
    for reading in readings:
        count += 1
        ms = reading.epoch_ms
        if first is None or ms < first:
            first = ms
        if last is None or ms > last:
            last = ms
        for name, value in reading.channels.items():
            s = get(name)
            if s is None:
                channels[name] = [1, value, value * value, value, value]
            else:
                s[0] += 1
                s[1] += value
                s[2] += value * value
                if value < s[3]:
                    s[3] = value
                if value > s[4]:
                    s[4] = value
    acc.count, acc.first_ms, acc.last_ms = count, first, last
    return acc


def _merge_stats(a: Stats, b: Stats) -> Stats:
    return [
        a[_N] + b[_N],
        a[_SUM] + b[_SUM],
        a[_SUMSQ] + b[_SUMSQ],
        min(a[_MIN], b[_MIN]),
        max(a[_MAX], b[_MAX]),
    ]


def _min_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else min(a, b)


def _max_opt(a: int | None, b: int | None) -> int | None:
    return b if a is None else a if b is None else max(a, b)


def merge(a: WindowAcc, b: WindowAcc) -> WindowAcc:
    channels: dict[str, Stats] = {name: list(s) for name, s in a.channels.items()}
    for name, s in b.channels.items():
        mine = channels.get(name)
        channels[name] = list(s) if mine is None else _merge_stats(mine, s)
    return WindowAcc(
        count=a.count + b.count,
        channels=channels,
        first_ms=_min_opt(a.first_ms, b.first_ms),
        last_ms=_max_opt(a.last_ms, b.last_ms),
        anomaly_count=a.anomaly_count + b.anomaly_count,
    )


def channel_result(s: Stats) -> dict[str, Any]:
    n = int(s[_N])
    mean = s[_SUM] / n
    # Population variance from sufficient statistics; clamp tiny negative values from cancellation.
    var = max(s[_SUMSQ] / n - mean * mean, 0.0)
    return {
        "count": n,
        "sum": s[_SUM],
        "sumsq": s[_SUMSQ],
        "min": s[_MIN],
        "max": s[_MAX],
        "mean": mean,
        "std": math.sqrt(var),
    }


def result(acc: WindowAcc) -> dict[str, dict[str, Any]]:
    """Per-channel statistics with derived mean and population std (the item's ``channels`` map)."""
    return {name: channel_result(s) for name, s in acc.channels.items()}


def from_channels(channels: dict[str, dict[str, Any]]) -> dict[str, Stats]:
    """Sufficient statistics back from a stored ``channels`` map (derived fields ignored)."""
    return {
        name: [int(c["count"]), float(c["sum"]), float(c["sumsq"]), float(c["min"]), float(c["max"])]
        for name, c in channels.items()
    }


def window_start_of(epoch_ms: int, window_s: int = 60) -> int:
    """Epoch seconds of the window containing ``epoch_ms`` (floor division also floors negatives)."""
    return (epoch_ms // (window_s * 1000)) * window_s
