"""Read-side store interfaces of the query API, and the errors their adapters raise.

Stores deal in storage-shaped items (the data model's attributes as plain Python values: numbers as
int/float, maps as dicts) and in resume keys (a LastEvaluatedKey as plain JSON values). Turning items into
API responses, cursors and day-by-day iteration live above them (``functions.api.queries``), so the
in-memory fakes exercise the same paging logic as the DynamoDB adapters.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Protocol

Item = dict[str, Any]
Key = dict[str, Any]


class StoreError(Exception):
    """The table could not be read (not a throttle)."""


class StoreThrottled(StoreError):
    """DynamoDB throttled the read even after the client's own retries."""


@dataclass(frozen=True)
class Slice:
    """One store round trip: the items and where to resume (None = nothing after them)."""

    items: list[Item]
    last_key: Key | None


class DeviceStore(Protocol):
    def get(self, device_id: str) -> Item | None: ...

    def scan(self, limit: int, start_key: Key | None) -> Slice: ...

    def count(self, max_items: int) -> tuple[int, bool]:
        """Devices in the registry, counting at most ``max_items``; the flag says it stopped early."""
        ...


class AggregateStore(Protocol):
    def query(self, device_id: str, start_s: int, end_s: int, limit: int, start_key: Key | None) -> Slice:
        """Windows of one device with ``start_s <= window_start <= end_s``, oldest first."""
        ...

    def totals(self, device_id: str, start_s: int, end_s: int) -> tuple[int, int]:
        """(windows, readings) of one device with window_start in the range (bounded, for /stats)."""
        ...


class AnomalyStore(Protocol):
    def query_device(
        self, device_id: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        """Anomalies of one device with ``lo <= ts_seq <= hi``, newest first, severity_rank >= min_rank.

        ``limit`` bounds the items *evaluated* (DynamoDB semantics), so a filtered slice may hold fewer.
        """
        ...

    def query_day(
        self, day: str, lo: str, hi: str, min_rank: int, limit: int, start_key: Key | None
    ) -> Slice:
        """Same as :meth:`query_device` on the ``by-day`` index partition ``day`` (YYYY-MM-DD)."""
        ...

    def count_day(self, day: str, lo: str, hi: str, max_items: int) -> int: ...


@dataclass(frozen=True)
class Stores:
    devices: DeviceStore
    aggregates: AggregateStore
    anomalies: AnomalyStore
    # Failure counters for /stats (functions/api/stores/metrics.py); None: not available.
    metrics: Any | None = None
