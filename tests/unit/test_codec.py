"""The one DynamoDB codec (functions/adapters/codec.py) means what boto3's serializer means."""

from __future__ import annotations

from decimal import Decimal, DecimalException
from typing import Any

import pytest
from boto3.dynamodb.types import TypeDeserializer, TypeSerializer
from hypothesis import given
from hypothesis import strategies as st

from functions.adapters import codec

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(10**40), max_value=10**40)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=4), inner, max_size=4)
    | st.frozensets(st.integers(-1000, 1000), min_size=1, max_size=4).map(set),
    max_leaves=12,
)


def _boto(value: Any) -> Any:
    try:
        return TypeSerializer().serialize(codec.to_dynamo(value))
    except (TypeError, DecimalException) as exc:
        return type(exc)


def _ours(value: Any) -> Any:
    try:
        return codec.to_attribute(value)
    except (TypeError, DecimalException) as exc:
        return type(exc)


def _canonical(attr: Any) -> Any:
    # Set order is not part of DynamoDB's meaning (boto3 emits sets in iteration order too).
    if isinstance(attr, dict):
        return {k: sorted(v) if k in ("NS", "SS") else _canonical(v) for k, v in attr.items()}
    if isinstance(attr, list):
        return [_canonical(v) for v in attr]
    return attr


@given(values)
def test_writing_matches_boto3_including_the_numbers_it_refuses(value: Any) -> None:
    # GIVEN any plain value WHEN both serialise it THEN the same AttributeValue, or the same error type
    assert _canonical(_ours(value)) == _canonical(_boto(value))


@given(values.filter(lambda v: not isinstance(_boto(v), type)))
def test_reading_back_gives_plain_python(value: Any) -> None:
    attr = codec.to_attribute(value)
    back = codec.from_attribute(attr)
    assert back == codec.from_dynamo(TypeDeserializer().deserialize(attr))
    assert "Decimal" not in repr(back)


def test_floats_round_trip_exactly_and_keep_their_type() -> None:
    for x in (21.0, 0.1, 1e-7, 123456789.123456789, -0.0):
        back = codec.from_attribute(codec.to_attribute(x))
        assert back == x
        assert isinstance(back, float)
    assert codec.from_attribute({"N": "60"}) == 60
    assert isinstance(codec.from_attribute({"N": "60"}), int)
    assert codec.to_attribute(Decimal("1.5")) == {"N": "1.5"}


def test_numbers_dynamodb_refuses_fail_before_the_call() -> None:
    with pytest.raises(DecimalException):
        codec.to_attribute(1e-200)
    with pytest.raises(TypeError):
        codec.to_attribute(float("nan"))
