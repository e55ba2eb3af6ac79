"""The decode stage's fast paths never accept what the full checks (schema, check_document) reject."""

from __future__ import annotations

import base64
import json
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from functions.core.timestamps import format_ms
from functions.processor.decode import DecodeRules, certainly_valid_shape, check_document
from functions.processor.decode.common import common_reading
from functions.processor.decode.rules import HUM_HI, HUM_LO, PRES_HI, PRES_LO, TEMP_HI, TEMP_LO, TINY
from functions.processor.records import KinesisRecord
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


def test_fast_path_declines_an_unknown_key() -> None:
    # GIVEN the common shape with a key the schema does not know / THEN the fast path asks the schema
    doc = {
        "device_id": "dev-1",
        "timestamp": "2026-11-21T23:05:16.123Z",
        "temperature": 1.5,
        "humidity": 40.0,
        "pressure": 1000.0,
        "firmware": 2.0,
    }
    assert not certainly_valid_shape(doc)
    assert not is_valid("reading", doc)


# common_reading, decode_batch's one-call path, promises a Reading only where check_document (the
# schema and every range, storability and timing check) gives the same Reading; else None.
_RULES = DecodeRules()
_NOW_MS = 1_795_000_000_000
_BOUNDS = {"temperature": (TEMP_LO, TEMP_HI), "humidity": (HUM_LO, HUM_HI), "pressure": (PRES_LO, PRES_HI)}
# Numbers in doubt: just outside a channel's bounds, magnitudes below the smallest storable, zeros.
_EDGE_NUMBERS = [0.0, -0.0, 5e-324, 1e-310, -1e-310, TINY, -TINY, TINY * 0.5, 0, 20]
_EDGE_NUMBERS += [b + d for lo_hi in _BOUNDS.values() for b in lo_hi for d in (-1e-9, 0.0, 1e-9)]


# Event times around the accepted span (lateness behind, skew ahead of the arrival), a few seconds out.
near_now = st.integers(
    _NOW_MS - _RULES.allowed_lateness_ms - 5000, _NOW_MS + _RULES.max_future_skew_ms + 5000
).map(format_ms)


@st.composite
def common_like(draw: st.DrawFn) -> Any:
    """The common shape, often with one field replaced by something else, a key dropped or added."""
    doc: dict[str, Any] = {
        "device_id": draw(
            st.one_of(
                st.sampled_from(["dev-1", "site.2:dev_3-x", "d" * 64]),
                st.sampled_from(["", "d" * 65, "dev 1", "dév-1", "dev/1"]),
            )
        ),
        "timestamp": draw(near_now),
        **{name: draw(st.floats(min_value=lo, max_value=hi)) for name, (lo, hi) in _BOUNDS.items()},
    }
    if draw(st.booleans()):
        doc["ground_truth"] = draw(st.one_of(st.text(max_size=8), st.text(min_size=31, max_size=34)))
    if draw(st.integers(0, 2)) == 0:
        key = draw(st.sampled_from([*doc, "extra", "firmware"]))
        doc[key] = draw(
            st.one_of(
                st.sampled_from(_EDGE_NUMBERS),
                json_scalars,
                device_ids,
                timestamps,
                near_now.map(lambda t: t[:20] + "1x3Z"),
            )
        )
    if draw(st.integers(0, 5)) == 0:
        doc.pop(draw(st.sampled_from(sorted(doc))))
    return doc


@settings(max_examples=1500, deadline=None)
@given(doc=st.one_of(common_like(), json_scalars))
def test_common_reading_gives_what_check_document_gives(doc: Any) -> None:
    # GIVEN a document near the common shape / WHEN common_reading accepts it
    # THEN check_document accepts it too, with the same Reading
    record = KinesisRecord("shardId-0", "1", base64.b64encode(json.dumps(doc).encode()).decode(), _NOW_MS)
    fast = common_reading(doc, record, _RULES, _NOW_MS)
    if fast is not None:
        assert check_document(doc, record, _RULES, _NOW_MS) == fast
