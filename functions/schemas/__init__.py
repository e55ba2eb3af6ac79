"""The shared JSON Schemas (draft 2020-12) and fast compiled validators for them.

One place for the data contract: the processor and the ingest Lambda validate readings with these,
the simulator's tests check its output against them, and the API generates its response models from them.

Validators are compiled with fastjsonschema (generated Python code, several times faster than an
interpreting validator). fastjsonschema implements draft-07; the schema files therefore use only keywords
whose meaning is identical in draft-07 and 2020-12 (no ``prefixItems``, ``unevaluated*``, ``$dynamicRef``),
so a 2020-12 validator (``jsonschema.Draft202012Validator``) and the compiled one agree. The unit tests
check the files against the 2020-12 meta-schema and compare both validators on sample documents.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_NAMES: tuple[str, ...] = ("reading", "aggregate", "anomaly", "quarantined", "processed")

Validator = Callable[[Any], Any]


class SchemaValidationError(ValueError):
    """A document does not match its schema. ``path`` is the JSON path of the offending value."""

    def __init__(self, message: str, path: str = "data", rule: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.path = path
        self.rule = rule


def _check_name(name: str) -> str:
    if name not in SCHEMA_NAMES:
        raise KeyError(f"unknown schema {name!r}; known: {', '.join(SCHEMA_NAMES)}")
    return name


@cache
def _load(name: str) -> str:
    return resources.files(__name__).joinpath(f"{name}.schema.json").read_text(encoding="utf-8")


def load_schema(name: str) -> dict[str, Any]:
    """The schema ``name`` (one of ``SCHEMA_NAMES``) as a fresh dict."""
    return json.loads(_load(_check_name(name)))


def _no_remote_refs(uri: str) -> Any:
    # Every $ref is local (#/$defs/...). Refuse to fetch anything rather than let a typo reach the network.
    raise LookupError(f"remote $ref not allowed: {uri}")


@cache
def compiled_validator(name: str) -> Validator:
    """The raw fastjsonschema validator (raises ``fastjsonschema.JsonSchemaValueException``).

    Hot paths call this directly; it returns the document unchanged (no defaults are declared).
    """
    import fastjsonschema  # deferred: readers of the schema files only (the API's cold start) skip it

    schema = load_schema(name)
    return fastjsonschema.compile(
        schema,
        handlers={"http": _no_remote_refs, "https": _no_remote_refs},
        use_default=False,
        use_formats=True,
    )


def validate(name: str, document: Any) -> None:
    """Validate ``document`` against schema ``name``; raise :class:`SchemaValidationError` if it fails."""
    import fastjsonschema

    try:
        compiled_validator(_check_name(name))(document)
    except fastjsonschema.JsonSchemaValueException as exc:
        raise SchemaValidationError(
            exc.message, ".".join(str(p) for p in (exc.path or ["data"])), exc.rule or ""
        ) from None


def is_valid(name: str, document: Any) -> bool:
    import fastjsonschema

    try:
        compiled_validator(_check_name(name))(document)
    except fastjsonschema.JsonSchemaValueException:
        return False
    return True


def validate_reading(document: Any) -> None:
    """Shape check of one input reading (see reading.schema.json)."""
    validate("reading", document)


__all__ = [
    "SCHEMA_NAMES",
    "SchemaValidationError",
    "compiled_validator",
    "is_valid",
    "load_schema",
    "validate",
    "validate_reading",
]
