"""One adapter and one fake per table, both implementing that table's Protocol (functions/core/ports.py)."""

from __future__ import annotations

import inspect

import pytest

from functions.adapters.aggregates import DynamoAggregateStore
from functions.adapters.anomalies import DynamoAnomalyStore
from functions.adapters.devices import DynamoDeviceRegistry
from functions.core import ports
from testkit.fakes import InMemoryAggregateStore, InMemoryAnomalyStore, InMemoryDeviceRegistry

TABLES = [
    (ports.DeviceStore, DynamoDeviceRegistry, InMemoryDeviceRegistry),
    (ports.AggregateStore, DynamoAggregateStore, InMemoryAggregateStore),
    (ports.AnomalyStore, DynamoAnomalyStore, InMemoryAnomalyStore),
]


def _methods(protocol: type) -> dict[str, list[str]]:
    names = {n for base in protocol.__mro__ if base not in (object,) and getattr(base, "_is_protocol", False)
             for n, v in vars(base).items() if inspect.isfunction(v) and not n.startswith("_")}
    return {n: list(inspect.signature(getattr(protocol, n)).parameters) for n in sorted(names)}


@pytest.mark.parametrize(("protocol", "adapter", "fake"), TABLES, ids=lambda x: getattr(x, "__name__", ""))
def test_adapter_and_fake_implement_the_tables_protocol(protocol: type, adapter: type, fake: type) -> None:
    # GIVEN the table's Protocol (the union of what the processor and the API use)
    expected = _methods(protocol)
    assert expected  # the Protocol names its methods: a rename cannot make this pass vacuously
    # THEN the one adapter and the one fake have every method, with the same parameters
    for implementation in (adapter, fake):
        for name, params in expected.items():
            assert list(inspect.signature(getattr(implementation, name)).parameters) == params, (
                f"{implementation.__name__}.{name}"
            )
