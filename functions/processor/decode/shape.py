"""The reading schema check: a hand-written fast path in front of the compiled reading.schema.json."""

from __future__ import annotations

import re
from typing import Any

import fastjsonschema

from functions.schemas import compiled_validator

validate_reading = compiled_validator("reading")
SchemaError = fastjsonschema.JsonSchemaValueException


# Fast path for the schema check. The compiled validator costs ~4 us per reading, about half of the
# whole per-record budget; this hand-written check costs well under 1 us. It only ever answers "certainly
# valid"; anything else (extra keys, unusual types, any doubt) goes to the compiled schema, which stays
# the authority and produces the error message. tests/unit/test_schemas_fast_path.py checks with
# hypothesis that every document this accepts is also accepted by the compiled reading.schema.json.
DEVICE_ID_OK = re.compile(r"[A-Za-z0-9_.:-]{1,64}", re.ASCII).fullmatch
_CHANNEL_NAME_OK = re.compile(r"[A-Za-z][A-Za-z0-9_]{0,31}", re.ASCII).fullmatch
_MAX_EPOCH_MS = 32_503_680_000_000  # the schema's maximum (year 3000)


def certainly_valid_shape(doc: Any) -> bool:
    """True only if ``doc`` certainly satisfies reading.schema.json (False means: ask the schema)."""
    if type(doc) is not dict:
        return False
    n = len(doc)
    if n < 5 or n > 7:
        return False
    device_id = doc.get("device_id")
    if type(device_id) is not str or DEVICE_ID_OK(device_id) is None:
        return False
    ts = doc.get("timestamp")
    # isinstance narrows for the type checker; the exact-type checks keep bool (an int subclass) out.
    if isinstance(ts, str):
        if not 20 <= len(ts) <= 40:
            return False
    elif type(ts) is not int or not 0 <= ts <= _MAX_EPOCH_MS:
        return False
    t = type(doc.get("temperature"))
    h = type(doc.get("humidity"))
    p = type(doc.get("pressure"))
    if (
        (t is not float and t is not int)
        or (h is not float and h is not int)
        or (p is not float and p is not int)
    ):
        return False
    return n == 5 or _optional_keys_ok(doc, n)


def _optional_keys_ok(doc: dict[str, Any], n: int) -> bool:
    """True only if the keys beyond the five required ones are ``extra`` and/or ``ground_truth``, each
    certainly valid, and nothing else (``n``: the document's key count)."""
    extra_count = 0
    if "extra" in doc:
        extra_count = 1
        extra = doc["extra"]
        if type(extra) is not dict or len(extra) > 16:
            return False
        for name, value in extra.items():
            tv = type(value)
            if (tv is not float and tv is not int) or _CHANNEL_NAME_OK(name) is None:
                return False
    if "ground_truth" in doc:
        extra_count += 1
        gt = doc["ground_truth"]
        if type(gt) is not str or len(gt) > 32:
            return False
    return n == 5 + extra_count


def schema_detail(exc: SchemaError) -> str:
    # fastjsonschema messages name the path and the rule ("data.humidity must be number"), never the value.
    return exc.message[:200]
