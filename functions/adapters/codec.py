"""The one DynamoDB codec: plain Python values <-> low-level AttributeValues, for every table.

boto3's ``TypeSerializer`` / ``TypeDeserializer`` do the type mapping; this module adds only what the
data model needs on top of them:

- floats are written through their ``repr`` (the shortest round-trip form), so
  ``float(Decimal(repr(x))) == x`` exactly and a redelivered batch writes byte-identical numbers;
- numbers come back as ``int`` when written without a fraction or an exponent and as ``float``
  otherwise (``"21.0"`` stays a float), never as ``Decimal``; number sets come back as sorted lists.

No hand-written fast path: the processor benchmark (``bench/processor.py``) stops at the storage
boundary, and an aggregate put serialises one item per (device, window), which is small against the
network round trip it precedes. The serialiser's number checks (DynamoDB's 38-digit context) are
wanted: a number DynamoDB would refuse fails here as a ``decimal`` error, which
``functions.core.errors.is_item_error`` recognises.
"""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from functools import cache
from typing import Any

AttributeValue = dict[str, Any]


@cache
def _serializer() -> Any:
    from boto3.dynamodb.types import TypeSerializer  # deferred: importing the codec needs no boto3

    return TypeSerializer()


@cache
def _deserializer() -> Any:
    from boto3.dynamodb.types import TypeDeserializer

    return TypeDeserializer()


def to_dynamo(value: Any) -> Any:
    """Plain Python to what boto3's serializer accepts (floats become Decimal via their repr)."""
    if isinstance(value, bool) or value is None or isinstance(value, str | int):
        return value
    if isinstance(value, float):
        return Decimal(repr(value))
    if isinstance(value, Mapping):
        return {str(k): to_dynamo(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return {to_dynamo(v) for v in value}
    return value


def _number(value: Decimal) -> int | float:
    text = str(value)
    if "." in text or "e" in text.lower() or not value.is_finite():
        return float(value)
    return int(value)


def from_dynamo(value: Any) -> Any:
    """What boto3's deserializer returns, back to plain Python (Decimal -> int/float, sets -> lists)."""
    if isinstance(value, Decimal):
        return _number(value)
    if isinstance(value, dict):
        return {k: from_dynamo(v) for k, v in value.items()}
    if isinstance(value, list):
        return [from_dynamo(v) for v in value]
    if isinstance(value, set | frozenset):
        return sorted(from_dynamo(v) for v in value)
    return value


def to_attribute(value: Any) -> AttributeValue:
    """Python value -> DynamoDB AttributeValue."""
    return _serializer().serialize(to_dynamo(value))


def from_attribute(attr: AttributeValue) -> Any:
    """DynamoDB AttributeValue -> Python value."""
    return from_dynamo(_deserializer().deserialize(attr))


def to_item(item: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """A whole item (or key) in AttributeValues."""
    return {name: to_attribute(value) for name, value in item.items()}


def from_item(attrs: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """A whole item (or LastEvaluatedKey) from AttributeValues."""
    return {name: from_attribute(value) for name, value in attrs.items()}
