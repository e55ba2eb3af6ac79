"""The one time module: format and parse round-trip, agree with the standard library, and refuse naive."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.core import timestamps as ts

# 1970 .. 2999: the reading schema's range.
EPOCH_MS = st.integers(min_value=0, max_value=32_503_680_000_000 - 1)


@given(EPOCH_MS)
def test_format_ms_agrees_with_strftime_and_parses_back(epoch_ms: int) -> None:
    # GIVEN any instant the schema admits WHEN formatted THEN it is strftime's rendering, and parses back
    expected = (datetime(1970, 1, 1, tzinfo=UTC) + timedelta(milliseconds=epoch_ms)).strftime(
        "%Y-%m-%dT%H:%M:%S.%f"
    )[:-3] + "Z"
    assert ts.format_ms(epoch_ms) == expected
    assert ts.parse_ms(expected) == epoch_ms
    assert ts.datetime_to_ms(ts.ms_to_datetime(epoch_ms)) == epoch_ms
    assert ts.format_datetime_ms(ts.ms_to_datetime(epoch_ms)) == expected


def test_format_s_and_offsets() -> None:
    assert ts.format_s(0) == "1970-01-01T00:00:00Z"
    assert ts.format_ms(1_795_000_000_123) == "2026-11-18T11:06:40.123Z"
    # Other offsets and precisions parse to the same instant; sub-millisecond is truncated.
    assert ts.parse_ms("2026-11-18T12:06:40.1239+01:00") == 1_795_000_000_123
    assert ts.parse_ms("2026-11-18t11:06:40.123z") == 1_795_000_000_123
    assert ts.parse_ms(1_795_000_000_123) == 1_795_000_000_123


@pytest.mark.parametrize(
    "bad", ["2026-11-18T09:46:40.123", "2026-13-01T00:00:00Z", "2026-11-18T24:00:00Z", "x"]
)
def test_parse_ms_refuses_naive_and_invalid(bad: str) -> None:
    with pytest.raises(ts.TimestampError):
        ts.parse_ms(bad)


def test_parse_datetime_takes_naive_as_utc() -> None:
    assert ts.parse_datetime("2026-11-18T09:46:40") == datetime(2026, 11, 18, 9, 46, 40, tzinfo=UTC)
    assert ts.parse_datetime("2026-11-18T10:46:40+01:00") == datetime(2026, 11, 18, 9, 46, 40, tzinfo=UTC)
