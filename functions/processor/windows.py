"""Stage 3: 1-minute tumbling windows per device by event time, as a pure fold.

``initialize() -> acc``, ``agg(acc, reading) -> acc``, ``merge(a, b) -> acc``, ``result(acc) -> stats``.
The accumulator holds sufficient statistics per channel, so partial aggregates from different batches
merge exactly (up to floating-point summation order) and mean and population standard deviation are
derived, never accumulated. No I/O: storage is ``exactly_once``'s job.

Shifted sums, for a variance that does not cancel. Per channel the accumulator keeps ``count``, a
``shift`` K (the first value the window saw), ``dsum`` = Σ(x - K) and ``dsq`` = Σ(x - K)², plus ``min`` and
``max``. ``var = dsq/n - (dsum/n)²`` then subtracts numbers of the size of the spread around K, not of
x² itself: for the values 999999999.1 .. 999999999.9, Σx²/n - mean² cancels all 16 digits a float has
(and gave 0), while the shifted form keeps the ~0.26 standard deviation to ~1e-7 relative. The shift is
stored with the window on its first write and every later write folds its fresh readings on top with the
same K (``exactly_once.build_item`` continues the stored accumulator), so nothing is ever re-shifted on
the write path and the exactly-once bookkeeping is untouched. ``merge`` of two accumulators with
different shifts (tests, tools) re-expresses the second around the first's K:
Σ(x - K) = S + nδ and Σ(x - K)² = Q + 2δS + nδ², with δ = K' - K.

An item written before shifted sums (no ``shift``) reads back as K = 0 with ``sum``/``sumsq``: the same
algebra, so such a window keeps aggregating (with the old precision).

``agg`` mutates and returns its accumulator (a fold over one batch's readings would otherwise allocate a
new accumulator per reading); ``merge`` returns a new one and leaves its inputs alone.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from functions.core.readings import Reading

# Per-channel sufficient statistics: [count, shift, dsum, dsq, min, max] (a list: cheapest mutable record).
Stats = list[float]
_N, _SHIFT, _DSUM, _DSQ, _MIN, _MAX = range(6)
# A stored shifted sum of squares below this is 0 for every purpose: differences of accepted values are at
# least ~1e-76 (an ulp of the smallest accepted magnitude, representable.py), so their squares can fall
# under DynamoDB's 1e-130, and the variance they carry is ~1e-32 of the values' own squares: below what
# a float of the mean can resolve.
DSQ_FLUSH = 1e-120


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
            channels[name] = [1, value, 0.0, 0.0, value, value]
        else:
            d = value - s[1]
            s[0] += 1
            s[2] += d
            s[3] += d * d
            if value < s[4]:
                s[4] = value
            if value > s[5]:
                s[5] = value
    return acc


def agg_all(readings: Iterable[Reading], acc: WindowAcc | None = None) -> WindowAcc:
    """``agg`` over ``readings`` (same statistics, bit for bit), with ``agg``'s body inlined.

    A batch's window groups are small (5-10 readings), so per-reading overhead dominates: no call per
    reading, and the accumulator's scalar fields live in locals until the end. With ``acc`` (a stored
    window's statistics) the readings are folded on top of it, around its shifts.
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
                channels[name] = [1, value, 0.0, 0.0, value, value]
            else:
                d = value - s[1]
                s[0] += 1
                s[2] += d
                s[3] += d * d
                if value < s[4]:
                    s[4] = value
                if value > s[5]:
                    s[5] = value
    acc.count, acc.first_ms, acc.last_ms = count, first, last
    return acc


def _merge_stats(a: Stats, b: Stats) -> Stats:
    """``b`` re-expressed around ``a``'s shift, then added (Chan et al.'s pairwise update, shifted form)."""
    delta = b[_SHIFT] - a[_SHIFT]
    n_b = b[_N]
    return [
        a[_N] + n_b,
        a[_SHIFT],
        a[_DSUM] + b[_DSUM] + n_b * delta,
        a[_DSQ] + b[_DSQ] + 2.0 * delta * b[_DSUM] + n_b * delta * delta,
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
    shift, dsum, dsq = s[_SHIFT], s[_DSUM], s[_DSQ]
    if abs(dsq) < DSQ_FLUSH:
        dsq = 0.0
    mean_d = dsum / n
    # Population variance around the shift; clamp the tiny negative values rounding can leave.
    var = max(dsq / n - mean_d * mean_d, 0.0)
    return {
        "count": n,
        "sum": n * shift + dsum,
        "shift": shift,
        "dsum": dsum,
        "dsq": dsq,
        "min": s[_MIN],
        "max": s[_MAX],
        "mean": shift + mean_d,
        "std": math.sqrt(var),
    }


def result(acc: WindowAcc) -> dict[str, dict[str, Any]]:
    """Per-channel statistics with derived mean and population std (the item's ``channels`` map)."""
    return {name: channel_result(s) for name, s in acc.channels.items()}


def from_channels(channels: dict[str, dict[str, Any]]) -> dict[str, Stats]:
    """Sufficient statistics back from a stored ``channels`` map (derived fields ignored). A channel
    stored before shifted sums (``sum``/``sumsq``, no ``shift``) reads as shift 0."""
    out: dict[str, Stats] = {}
    for name, c in channels.items():
        if "shift" in c:
            shift, dsum, dsq = float(c["shift"]), float(c["dsum"]), float(c["dsq"])
        else:
            shift, dsum, dsq = 0.0, float(c["sum"]), float(c["sumsq"])
        out[name] = [int(c["count"]), shift, dsum, dsq, float(c["min"]), float(c["max"])]
    return out


def window_start_of(epoch_ms: int, window_s: int = 60) -> int:
    """Epoch seconds of the window containing ``epoch_ms`` (floor division also floors negatives)."""
    return (epoch_ms // (window_s * 1000)) * window_s
