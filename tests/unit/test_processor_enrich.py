"""Device cache: TTL, negative cache for unknown ids, one registry call per miss set."""

from __future__ import annotations

import pytest

from functions.core.errors import StoreError
from functions.processor.enrich import DeviceCache
from testkit.events import devices
from testkit.fakes import InMemoryDeviceRegistry


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_known_devices_are_cached_until_ttl() -> None:
    # GIVEN a registry with one device and a cache with a 300 s TTL
    registry = InMemoryDeviceRegistry(devices("dev-1"))
    clock = Clock()
    cache = DeviceCache(registry, ttl_s=300, clock=clock)
    # WHEN resolved twice within the TTL and once after
    first = cache.resolve(["dev-1"])
    cache.resolve(["dev-1"])
    clock.now = 301
    cache.resolve(["dev-1"])
    # THEN the registry was asked twice, and the info carries site and location
    assert first["dev-1"] is not None
    assert first["dev-1"].site == "site-a"
    assert len(registry.calls) == 2


def test_unknown_ids_are_negatively_cached_for_a_shorter_time() -> None:
    # GIVEN an empty registry and a long positive TTL
    registry = InMemoryDeviceRegistry()
    clock = Clock()
    cache = DeviceCache(registry, ttl_s=300, clock=clock)
    # WHEN an unknown id is resolved repeatedly
    assert cache.resolve(["ghost"]) == {"ghost": None}
    cache.resolve(["ghost"])
    assert len(registry.calls) == 1
    # THEN after the (capped, 60 s) negative TTL a newly registered device is found
    registry.add(devices("ghost")[0])
    clock.now = 61
    assert cache.resolve(["ghost"])["ghost"] is not None


def test_misses_are_fetched_in_one_call() -> None:
    registry = InMemoryDeviceRegistry(devices("a", "b", "c"))
    cache = DeviceCache(registry, ttl_s=300, clock=Clock())
    cache.resolve(["a"])
    cache.resolve(["a", "b", "c", "zz"])
    assert registry.calls == [["a"], ["b", "c", "zz"]]


def test_registry_errors_propagate_and_are_not_cached() -> None:
    registry = InMemoryDeviceRegistry(devices("a"))
    registry.fail_next = 1
    cache = DeviceCache(registry, ttl_s=300, clock=Clock())
    with pytest.raises(StoreError):
        cache.resolve(["a"])
    assert cache.resolve(["a"])["a"] is not None
