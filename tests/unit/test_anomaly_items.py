"""The one anomaly-item shape (functions/core/anomaly_items.py) against anomaly.schema.json."""

from __future__ import annotations

from datetime import UTC, datetime

from functions.api.models import Anomaly
from functions.core.anomaly_items import STORAGE_ATTRIBUTES, anomaly_item, api_fields, schema_fields
from functions.schemas import load_schema, validate
from testkit.seed import anomaly_item as seed_anomaly_item
from testkit.seed import device_item


def _item() -> dict:
    return anomaly_item(
        device_id="dev-000001", epoch_ms=1_767_225_600_123, sequence_number="4965" + "0" * 52,
        shard_id="shardId-000000000000", score=0.71, threshold=0.62, severity="high",
        top_feature="temperature_z", reason="spike", values={"temperature": 35.0},
        model_version="iforest-1", ttl_days=30, site="plant-lyon", location="Lyon, FR",
    )


def test_the_item_is_the_schema_shape_plus_the_table_attributes() -> None:
    # GIVEN an item from the one builder
    item = _item()
    # THEN it stores the schema's properties (but the one derived from the key) and the table's own
    derived = {"sequence_number"}
    assert set(item) == (set(schema_fields()) - derived) | set(STORAGE_ATTRIBUTES)
    assert item["ts_seq"] == "2026-01-01T00:00:00.123Z#4965" + "0" * 52
    assert item["day"] == "2026-01-01"
    assert item["expires_at"] == 1_767_225_600 + 30 * 86_400


def test_the_api_projection_validates_against_the_schema_and_the_model() -> None:
    fields = api_fields(_item())
    validate("anomaly", fields)
    assert set(fields) == set(load_schema("anomaly")["properties"])
    assert fields["sequence_number"] == "4965" + "0" * 52
    assert Anomaly.model_validate(fields).severity_rank == 3


def test_seed_data_uses_the_same_builder() -> None:
    import random

    device = device_item(1, random.Random(1))
    item = seed_anomaly_item(device, datetime(2026, 1, 1, tzinfo=UTC), 7, "critical")
    validate("anomaly", api_fields(item))
    assert set(item) == set(_item())
