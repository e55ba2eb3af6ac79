"""The API's response models keep to the shared JSON Schemas (functions/schemas)."""

from __future__ import annotations

from typing import Any

import pytest
from pydantic import BaseModel

from functions.api.models import Aggregate, Anomaly, ChannelStats
from functions.schemas import load_schema


def _non_null(prop: dict[str, Any]) -> dict[str, Any]:
    """Optional fields render as anyOf [X, null]; the shared schema states X and leaves them unrequired."""
    variants = [v for v in prop.get("anyOf", []) if v.get("type") != "null"]
    return {**prop, **variants[0]} if len(variants) == 1 else prop


def _compare(model: type[BaseModel], schema: dict[str, Any]) -> None:
    ours = model.model_json_schema(mode="serialization")
    assert set(ours["properties"]) == set(schema["properties"])
    assert set(ours.get("required", [])) == set(schema.get("required", []))
    assert ours.get("additionalProperties") is False
    assert schema.get("additionalProperties") is False
    for name, theirs in schema["properties"].items():
        mine = _non_null(ours["properties"][name])
        for keyword in ("type", "pattern", "format", "minimum", "maximum", "enum"):
            if keyword in theirs:
                expected = theirs[keyword]
                actual = mine.get(keyword)
                if keyword == "type" and expected == "number":
                    assert actual in ("number", "integer"), name
                else:
                    assert actual == expected, (
                        f"{model.__name__}.{name}.{keyword}: {actual!r} != {expected!r}"
                    )


@pytest.mark.parametrize(("model", "name"), [(Aggregate, "aggregate"), (Anomaly, "anomaly")])
def test_model_matches_shared_schema(model: type[BaseModel], name: str) -> None:
    _compare(model, load_schema(name))


def test_channel_stats_match_shared_definition() -> None:
    _compare(ChannelStats, load_schema("aggregate")["$defs"]["channel_stats"])
