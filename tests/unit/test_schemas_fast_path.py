"""The decode stage's hand-written shape check never accepts what reading.schema.json rejects."""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.processor.decode import certainly_valid_shape
from functions.schemas import is_valid

json_scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**63), max_value=2**63),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=70),
)
names = st.one_of(
    st.sampled_from(["co2", "voc", "temperature", "_x", "9a", "a" * 33, "ok_name"]), st.text(max_size=8)
)
device_ids = st.one_of(st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True), st.text(max_size=70))
timestamps = st.one_of(
    st.just("2026-11-21T23:05:16.123Z"),
    st.text(min_size=15, max_size=45),
    st.integers(min_value=-10, max_value=40_000_000_000_000),
    st.floats(allow_nan=False, allow_infinity=False),
)
numbers_or_junk = st.one_of(st.floats(allow_nan=False, allow_infinity=False), st.integers(), json_scalars)


@st.composite
def reading_like(draw: st.DrawFn) -> Any:
    doc: dict[str, Any] = {}
    fields = {
        "device_id": device_ids,
        "timestamp": timestamps,
        "temperature": numbers_or_junk,
        "humidity": numbers_or_junk,
        "pressure": numbers_or_junk,
    }
    for key, strategy in fields.items():
        if draw(st.integers(0, 9)) > 0:  # mostly present
            doc[key] = draw(strategy)
    if draw(st.booleans()):
        doc["extra"] = draw(st.one_of(st.dictionaries(names, numbers_or_junk, max_size=18), json_scalars))
    if draw(st.booleans()):
        doc["ground_truth"] = draw(st.one_of(st.text(max_size=40), json_scalars))
    if draw(st.integers(0, 5)) == 0:
        doc[draw(st.text(max_size=5))] = draw(json_scalars)
    return doc


@settings(max_examples=1500, deadline=None)
@given(doc=st.one_of(reading_like(), json_scalars, st.lists(json_scalars, max_size=3)))
def test_fast_path_accepts_only_schema_valid_documents(doc: Any) -> None:
    # GIVEN any document / WHEN the fast path says "certainly valid" / THEN the compiled schema agrees
    if certainly_valid_shape(doc):
        assert is_valid("reading", doc)


def test_fast_path_accepts_the_common_shape() -> None:
    # GIVEN the shape producers send / THEN the fast path handles it (no schema call needed)
    doc = {
        "device_id": "dev-1",
        "timestamp": "2026-11-21T23:05:16.123Z",
        "temperature": 1.5,
        "humidity": 40,
        "pressure": 1000.0,
        "extra": {"co2": 600},
        "ground_truth": "normal",
    }
    assert certainly_valid_shape(doc)
