"""The one DynamoDB codec: plain Python values <-> low-level AttributeValues, for every table.

The meaning is boto3's: ``to_attribute(x) == TypeSerializer().serialize(to_dynamo(x))`` and
``from_attribute(a) == from_dynamo(TypeDeserializer().deserialize(a))`` for every value
(``tests/unit/test_codec.py`` checks both against boto3 on generated values, errors included). On top
of boto3 it adds only what the data model needs:

- floats are written through their ``repr`` (the shortest round-trip form), so
  ``float(Decimal(repr(x))) == x`` exactly and a redelivered batch writes byte-identical numbers;
- numbers come back as ``int`` when written without a fraction or an exponent and as ``float``
  otherwise (``"21.0"`` stays a float), never as ``Decimal``; sets come back as sorted lists.

Why the writing side is hand-written rather than a call to ``TypeSerializer``: the aggregates adapter
serialises one item per (device, window) on the processor's write path, under the GIL beside 16 write
threads. Measured on a 4-channel aggregate item (``timeit``, one run on the shared 2-core dev box):
``TypeSerializer`` + ``to_dynamo`` 320 us/item, this fast path 140 us/item (the earlier hand-written
aggregates codec, which skipped the number checks, 111 us/item). The fast path keeps boto3's number
rules (the same ``DYNAMODB_CONTEXT``, so a number DynamoDB would refuse fails here with the same
``decimal`` error, which ``functions.core.errors.is_item_error`` recognises) and hands anything unusual
(bytes, other types) to ``TypeSerializer`` itself. Reading uses ``TypeDeserializer`` unchanged (157
against 103 us/item for the old hand-written reader: 54 us per window read, small beside the call).
``bench/processor.py`` stops at the storage boundary, so it does not see either.
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


@cache
def _context() -> Any:
    from boto3.dynamodb.types import DYNAMODB_CONTEXT  # DynamoDB's 38-digit number rules

    return DYNAMODB_CONTEXT


def _number_text(value: int | float | Decimal) -> str:
    # As TypeSerializer._serialize_n, after to_dynamo's float -> Decimal(repr(x)).
    number = str(_context().create_decimal(Decimal(repr(value)) if isinstance(value, float) else value))
    if number in ("Infinity", "NaN"):
        raise TypeError("Infinity and NaN not supported")
    return number


def to_attribute(value: Any) -> AttributeValue:
    """Python value -> DynamoDB AttributeValue (what boto3's serializer makes of ``to_dynamo(value)``)."""
    if value is None:
        return {"NULL": True}
    if value is True or value is False:
        return {"BOOL": value}
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, int | float | Decimal):
        return {"N": _number_text(value)}
    if isinstance(value, Mapping):
        return {"M": {k: to_attribute(v) for k, v in value.items()}}
    if isinstance(value, list | tuple):
        return {"L": [to_attribute(v) for v in value]}
    if isinstance(value, set | frozenset):
        if all(isinstance(v, int | float | Decimal) and not isinstance(v, bool) for v in value):
            return {"NS": [_number_text(v) for v in value]}
        if all(isinstance(v, str) for v in value):
            return {"SS": list(value)}
    return _serializer().serialize(to_dynamo(value))  # bytes, binary sets, or the type error


def from_attribute(attr: AttributeValue) -> Any:
    """DynamoDB AttributeValue -> Python value."""
    return from_dynamo(_deserializer().deserialize(attr))


def to_item(item: Mapping[str, Any]) -> dict[str, AttributeValue]:
    """A whole item (or key) in AttributeValues."""
    return {name: to_attribute(value) for name, value in item.items()}


def from_item(attrs: Mapping[str, AttributeValue]) -> dict[str, Any]:
    """A whole item (or LastEvaluatedKey) from AttributeValues."""
    return {name: from_attribute(value) for name, value in attrs.items()}
