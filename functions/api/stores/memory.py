"""In-memory fakes of the read-side stores, with DynamoDB's paging semantics.

Items are kept in storage shape; ``Limit`` counts evaluated items and the last evaluated key is returned
only when the limit cut the result short, as DynamoDB does (so paging code is tested for real).
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable

from functions.api.stores.ports import Item, Key, Slice, StoreThrottled


class _Table:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.items: list[Item] = []
        self.throttle = False  # tests flip this to simulate ProvisionedThroughputExceeded

    def put(self, item: Item, key: Callable[[Item], tuple]) -> None:
        with self._lock:
            self.items = [i for i in self.items if key(i) != key(item)] + [dict(item)]

    def snapshot(self) -> list[Item]:
        if self.throttle:
            raise StoreThrottled("simulated throttle")
        with self._lock:
            return list(self.items)


def _page(
    ordered: list[Item],
    key_of: Callable[[Item], Key],
    limit: int,
    start_key: Key | None,
    keep: Callable[[Item], bool] = lambda _: True,
) -> Slice:
    if start_key is not None:
        keys = [key_of(i) for i in ordered]
        ordered = ordered[keys.index(start_key) + 1 :] if start_key in keys else []
    evaluated = ordered[:limit]
    last = key_of(evaluated[-1]) if len(ordered) > limit and evaluated else None
    return Slice([dict(i) for i in evaluated if keep(i)], last)


class MemoryDeviceStore:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.table = _Table()
        for item in items:
            self.put(item)

    def put(self, item: Item) -> None:
        self.table.put(item, lambda i: (i["device_id"],))

    def get(self, device_id: str) -> Item | None:
        return next((dict(i) for i in self.table.snapshot() if i["device_id"] == device_id), None)

    def scan(self, limit: int, start_key: Key | None) -> Slice:
        ordered = sorted(self.table.snapshot(), key=lambda i: i["device_id"])
        return _page(ordered, lambda i: {"device_id": i["device_id"]}, limit, start_key)

    def count(self, max_items: int) -> tuple[int, bool]:
        n = len(self.table.snapshot())
        return min(n, max_items), n > max_items


class MemoryAggregateStore:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.table = _Table()
        for item in items:
            self.put(item)

    def put(self, item: Item) -> None:
        self.table.put(item, lambda i: (i["device_id"], i["window_start"]))

    def query(self, device_id: str, start_s: int, end_s: int, limit: int, start_key: Key | None) -> Slice:
        ordered = sorted(
            (
                i
                for i in self.table.snapshot()
                if i["device_id"] == device_id and start_s <= i["window_start"] <= end_s
            ),
            key=lambda i: i["window_start"],
        )
        return _page(
            ordered,
            lambda i: {"device_id": i["device_id"], "window_start": i["window_start"]},
            limit,
            start_key,
        )

    def totals(self, device_id: str, start_s: int, end_s: int) -> tuple[int, int]:
        items = self.query(device_id, start_s, end_s, 10_000, None).items
        return len(items), sum(int(i.get("count", 0)) for i in items)


class MemoryAnomalyStore:
    def __init__(self, items: Iterable[Item] = ()) -> None:
        self.table = _Table()
        for item in items:
            self.put(item)

    def put(self, item: Item) -> None:
        self.table.put(item, lambda i: (i["device_id"], i["ts_seq"]))

    def _select(self, match: Callable[[Item], bool], lo: str, hi: str) -> list[Item]:
        chosen = (i for i in self.table.snapshot() if match(i) and lo <= i["ts_seq"] <= hi)
        return sorted(chosen, key=lambda i: i["ts_seq"], reverse=True)

    def query_device(
        self, device_id: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        ordered = self._select(lambda i: i["device_id"] == device_id, lo, hi)
        return _page(
            ordered,
            lambda i: {"device_id": i["device_id"], "ts_seq": i["ts_seq"]},
            limit,
            start_key,
            lambda i: int(i.get("severity_rank", 0)) >= min_rank,
        )

    def query_day(
        self, day: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        # Within one day partition ts_seq can tie across devices; order ties by device_id like a GSI would
        # not guarantee, but deterministically, which is all the paging code needs.
        ordered = sorted(
            self._select(lambda i: i.get("day") == day, lo, hi),
            key=lambda i: (i["ts_seq"], i["device_id"]),
            reverse=True,
        )
        return _page(
            ordered,
            lambda i: {"day": i["day"], "device_id": i["device_id"], "ts_seq": i["ts_seq"]},
            limit,
            start_key,
            lambda i: int(i.get("severity_rank", 0)) >= min_rank,
        )

    def count_day(self, day: str, lo: str, hi: str, max_items: int) -> int:
        return min(len(self._select(lambda i: i.get("day") == day, lo, hi)), max_items)
