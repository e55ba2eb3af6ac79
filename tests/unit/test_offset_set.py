"""The binary form of ``seen_offsets_ms`` (functions/adapters/offset_set.py): lossless and compact."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from functions.adapters.offset_set import pack_offsets, unpack_offsets


@given(st.sets(st.integers(min_value=0, max_value=2**40)))
def test_any_set_of_offsets_round_trips_sorted(offsets: set[int]) -> None:
    assert unpack_offsets(pack_offsets(offsets)) == sorted(offsets)


def test_a_minute_at_1_hz_takes_about_two_bytes_per_reading() -> None:
    # GIVEN a 1 Hz device's minute: 60 offsets ~1 s apart (jittered), and a 10 Hz device's
    one_hz = [i * 1000 + (i * 37) % 200 for i in range(60)]
    ten_hz = [i * 100 + i % 7 for i in range(600)]
    # THEN 2 bytes per reading at 1 Hz (+1 for the first offset), 1 at 10 Hz; a number set took ~3.9
    assert len(pack_offsets(one_hz)) <= 2 * 60 + 1
    assert len(pack_offsets(ten_hz)) <= 600 + 2


def test_negative_and_truncated_input_are_refused() -> None:
    with pytest.raises(ValueError, match="negative"):
        pack_offsets([5, -1])
    with pytest.raises(ValueError, match="truncated"):
        unpack_offsets(pack_offsets([300])[:1])
