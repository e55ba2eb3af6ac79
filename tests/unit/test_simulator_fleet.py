"""Fleet generation and registration (no network: the DynamoDB client is an in-memory fake)."""

from __future__ import annotations

import re
from typing import Any

import pytest

from simulator.fleet import CATALOGUE, generate_fleet, register_fleet

DEVICE_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")


def test_same_seed_same_fleet_and_prefix_property() -> None:
    # GIVEN two fleets from one seed and a larger one
    # WHEN they are generated independently
    a, b, bigger = generate_fleet(20, 7), generate_fleet(20, 7), generate_fleet(30, 7)
    # THEN they are identical, and a smaller fleet is a prefix of a larger one (live scaling relies on it)
    assert a == b
    assert bigger[:20] == a
    assert generate_fleet(20, 8) != a


def test_registry_item_matches_the_devices_table_contract() -> None:
    # GIVEN a fleet
    fleet = generate_fleet(50, 1)
    for index, device in enumerate(fleet):
        # WHEN a device becomes a registry item
        item = device.to_registry_item()
        # THEN it carries every attribute of docs/data-model.md with the right types
        assert item["device_id"] == f"dev-{index:06d}"
        assert DEVICE_ID.match(item["device_id"])
        assert {
            "name",
            "site",
            "location",
            "latitude",
            "longitude",
            "model",
            "timezone",
            "registered_at",
        } <= set(item)
        assert re.match(r"^.+, [A-Z]{2}$", item["location"])
        assert -90 <= item["latitude"] <= 90
        assert -180 <= item["longitude"] <= 180
        assert item["model"] in {m.name for m in CATALOGUE}
        assert "/" in item["timezone"] or item["timezone"] == "UTC"
        assert re.match(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ$", item["registered_at"])
        assert set(item["baseline"]) == {"temperature", "humidity", "pressure"}


def test_dynamodb_item_is_typed() -> None:
    # GIVEN a device WHEN serialised for the low-level client THEN numbers are N strings, baseline a map
    item = generate_fleet(1, 3)[0].to_dynamodb_item()
    assert item["device_id"] == {"S": "dev-000000"}
    assert set(item["latitude"]) == {"N"}
    assert set(item["baseline"]["M"]) == {"temperature", "humidity", "pressure"}


class FakeDynamoDB:
    """Refuses the last item of the first ``throttle_calls`` calls (as UnprocessedItems)."""

    def __init__(self, throttle_calls: int) -> None:
        self.throttle_calls = throttle_calls
        self.calls = 0
        self.items: dict[str, dict[str, Any]] = {}

    def batch_write_item(self, RequestItems: dict[str, list[dict[str, Any]]]) -> dict[str, Any]:
        self.calls += 1
        ((table, requests),) = RequestItems.items()
        assert len(requests) <= 25
        accepted = requests[:-1] if self.calls <= self.throttle_calls else requests
        for request in accepted:
            item = request["PutRequest"]["Item"]
            self.items[item["device_id"]["S"]] = item
        unprocessed = requests[len(accepted) :]
        return {"UnprocessedItems": {table: unprocessed} if unprocessed else {}}


def test_register_fleet_retries_unprocessed_items() -> None:
    # GIVEN 60 devices and a table that throttles the first two calls
    fleet = generate_fleet(60, 5)
    fake = FakeDynamoDB(throttle_calls=2)
    # WHEN the fleet is registered
    written = register_fleet(fleet, "devices", fake, sleep=lambda s: None)
    # THEN every device is written exactly once, after retrying the unprocessed ones
    assert written == 60
    assert sorted(fake.items) == [d.device_id for d in fleet]
    assert fake.calls == 3 + 2


def test_register_fleet_gives_up_loudly() -> None:
    # GIVEN a table that never accepts the last item WHEN registering THEN it raises instead of losing it
    with pytest.raises(RuntimeError, match="unprocessed"):
        register_fleet(
            generate_fleet(3, 5), "devices", FakeDynamoDB(10**6), max_attempts=3, sleep=lambda s: None
        )
