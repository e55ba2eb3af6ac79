"""Read-side stores of the query API: interfaces, DynamoDB adapters and in-memory fakes."""

from functions.api.stores.ports import (
    AggregateStore,
    AnomalyStore,
    DeviceStore,
    Item,
    Key,
    Slice,
    StoreError,
    Stores,
    StoreThrottled,
)

__all__ = [
    "AggregateStore",
    "AnomalyStore",
    "DeviceStore",
    "Item",
    "Key",
    "Slice",
    "StoreError",
    "StoreThrottled",
    "Stores",
]
