"""Window fold: sufficient statistics, merge is associative/commutative, mean and population std."""

from __future__ import annotations

import math
import statistics

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.readings import Reading
from functions.processor import windows


def reading(value: float, ms: int = 0, extra: float | None = None) -> Reading:
    channels = {"temperature": value, "humidity": 50.0, "pressure": 1000.0}
    if extra is not None:
        channels["co2"] = extra
    return Reading("dev-1", ms, channels, "s", str(ms))


def test_result_gives_mean_min_max_and_population_std() -> None:
    # GIVEN three readings / WHEN folded / THEN stats match statistics.pstdev
    values = [20.0, 21.0, 23.0]
    acc = windows.agg_all(reading(v, i) for i, v in enumerate(values))
    stats = windows.result(acc)["temperature"]
    assert stats["count"] == 3
    assert stats["min"] == 20.0
    assert stats["max"] == 23.0
    assert math.isclose(stats["mean"], statistics.fmean(values))
    assert math.isclose(stats["std"], statistics.pstdev(values))
    assert acc.first_ms == 0
    assert acc.last_ms == 2


def test_constant_channel_has_zero_std_not_negative_variance() -> None:
    acc = windows.agg_all(reading(1013.27, i) for i in range(100))
    assert windows.result(acc)["temperature"]["std"] == 0.0


def test_extra_channel_counts_only_where_present() -> None:
    acc = windows.agg_all([reading(1.0, 0, extra=400.0), reading(2.0, 1)])
    out = windows.result(acc)
    assert out["co2"]["count"] == 1
    assert out["temperature"]["count"] == 2


def test_window_start_floors_to_minute() -> None:
    assert windows.window_start_of(1_795_302_316_123) == 1_795_302_300
    assert windows.window_start_of(59_999) == 0
    assert windows.window_start_of(60_000) == 60


@settings(max_examples=200, deadline=None)
@given(
    values=st.lists(st.floats(min_value=-90, max_value=100, allow_nan=False), min_size=1, max_size=40),
    cut1=st.integers(0, 40),
    cut2=st.integers(0, 40),
)
def test_merge_of_partials_equals_fold_of_all(values: list[float], cut1: int, cut2: int) -> None:
    # GIVEN readings split into three partial aggregates in any way
    rs = [reading(v, i) for i, v in enumerate(values)]
    a, b = sorted((min(cut1, len(rs)), min(cut2, len(rs))))
    parts = [windows.agg_all(rs[:a]), windows.agg_all(rs[a:b]), windows.agg_all(rs[b:])]
    # WHEN merged in different groupings
    left = windows.merge(windows.merge(parts[0], parts[1]), parts[2])
    right = windows.merge(parts[2], windows.merge(parts[1], parts[0]))
    whole = windows.agg_all(rs)
    # THEN counts/min/max are exact and sums agree to rounding
    for acc in (left, right):
        assert acc.count == whole.count
        got, want = windows.result(acc)["temperature"], windows.result(whole)["temperature"]
        assert (got["count"], got["min"], got["max"]) == (want["count"], want["min"], want["max"])
        assert math.isclose(got["sum"], want["sum"], rel_tol=1e-9, abs_tol=1e-9)
        assert math.isclose(got["std"], want["std"], rel_tol=1e-6, abs_tol=1e-6)


def test_merge_does_not_mutate_inputs() -> None:
    a = windows.agg_all([reading(1.0, 0)])
    b = windows.agg_all([reading(3.0, 1)])
    windows.merge(a, b)
    assert a.count == 1
    assert a.channels["temperature"][0] == 1


def test_from_channels_round_trips_sufficient_statistics() -> None:
    acc = windows.agg_all([reading(1.0, 0), reading(2.0, 1)])
    assert windows.from_channels(windows.result(acc)) == acc.channels


def test_the_std_of_large_values_with_a_small_spread_does_not_cancel() -> None:
    # GIVEN 999999999.1 .. 999999999.9 (Σx²/n - mean² cancels every digit a float has: it gave 0)
    values = [999_999_999.0 + k / 10 for k in range(1, 10)]
    want = statistics.pstdev(values)  # ~0.258 (computed around the mean: exact enough)
    # WHEN folded in one pass, and in three batches merged as the table merges them
    whole = windows.result(windows.agg_all(reading(v, i) for i, v in enumerate(values)))["temperature"]
    acc = windows.agg_all(reading(v, i) for i, v in enumerate(values[:2]))
    stored = windows.from_channels(windows.result(acc))
    for part in (values[2:5], values[5:]):
        acc = windows.agg_all((reading(v, 0) for v in part), windows.WindowAcc(acc.count, stored))
        stored = windows.from_channels(windows.result(acc))
    merged = windows.result(windows.merge(windows.agg_all([reading(v, 0) for v in values[:4]]),
                                          windows.agg_all([reading(v, 0) for v in values[4:]])))
    # THEN the standard deviation is the true one, to float precision
    for got in (whole, windows.result(acc)["temperature"], merged["temperature"]):
        assert math.isclose(got["std"], want, rel_tol=1e-6), got
        assert math.isclose(got["mean"], statistics.fmean(values), rel_tol=1e-15)
    assert whole["shift"] == values[0]  # the window keeps the first value it saw as its shift


def test_a_window_stored_before_shifted_sums_keeps_aggregating() -> None:
    legacy = {"temperature": {"count": 2, "sum": 3.0, "sumsq": 5.0, "min": 1.0, "max": 2.0,
                              "mean": 1.5, "std": 0.5}}
    acc = windows.agg_all([reading(3.0, 2)], windows.WindowAcc(2, windows.from_channels(legacy)))
    got = windows.result(acc)["temperature"]
    assert (got["count"], got["sum"], got["min"], got["max"]) == (3, 6.0, 1.0, 3.0)
    assert math.isclose(got["std"], statistics.pstdev([1.0, 2.0, 3.0]))
