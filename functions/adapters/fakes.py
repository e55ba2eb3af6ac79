"""In-memory fakes for the processor's and ingest's adapters (unit tests, the benchmark, local demos).

They honour the same contracts as the real adapters, including the failure modes tests need to provoke:
version conflicts, transient errors, and a crash after N successful writes.
"""

from __future__ import annotations

import copy
import gzip
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from functions.core.errors import StoreError, TransientStoreError, VersionConflict
from functions.core.ports import AggregateItem, WindowKey
from functions.core.readings import DeviceInfo
from functions.processor.archive_keys import gzip_lines


class InMemoryDeviceRegistry:
    def __init__(self, devices: Mapping[str, DeviceInfo] | Sequence[DeviceInfo] = ()) -> None:
        items = devices.values() if isinstance(devices, Mapping) else devices
        self.devices: dict[str, DeviceInfo] = {d.device_id: d for d in items}
        self.calls: list[list[str]] = []
        self.fail_next: int = 0  # raise a transient StoreError for the next N calls

    def add(self, device: DeviceInfo) -> None:
        self.devices[device.device_id] = device

    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        self.calls.append(sorted(device_ids))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientStoreError("fake registry unavailable")
        return {d: self.devices[d] for d in device_ids if d in self.devices}


class CrashAfterWrites(BaseException):
    """The fake store 'crashes' after the configured number of writes, like a Lambda killed mid-batch.

    A BaseException on purpose: it is not an error the processor may handle, it ends the invocation.
    """


@dataclass
class InMemoryAggregateStore:
    """Items keyed by (device_id, window_start); conditional puts on ``version`` like the real table."""

    items: dict[WindowKey, AggregateItem] = field(default_factory=dict)
    crash_after_writes: int | None = None  # raise CrashAfterWrites once this many puts succeeded
    outage_after_attempts: int | None = None  # every put after this many attempts fails (network down)
    transient_put_failures: int = 0  # fail the next N puts with a transient error (before writing)
    ambiguous_put_failures: int = 0  # write, then raise a transient error (a timeout after commit)
    conflict_injections: int = 0  # before the next N puts, bump the stored version (a concurrent writer)
    fail_get_many: bool = False
    puts: int = 0
    put_attempts: int = 0

    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        if self.fail_get_many:
            raise StoreError("fake get_many failure", transient=True)
        return {k: copy.deepcopy(self.items[k]) for k in keys if k in self.items}

    def get(self, key: WindowKey) -> AggregateItem | None:
        item = self.items.get(key)
        return copy.deepcopy(item) if item is not None else None

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        self.put_attempts += 1
        if self.crash_after_writes is not None and self.puts >= self.crash_after_writes:
            raise CrashAfterWrites(f"crashed after {self.puts} writes")
        if self.outage_after_attempts is not None and self.put_attempts > self.outage_after_attempts:
            raise ConnectionError("fake network down")
        if self.transient_put_failures > 0:
            self.transient_put_failures -= 1
            raise TransientStoreError("fake throttling")
        key = (item["device_id"], int(item["window_start"]))
        stored = self.items.get(key)
        if self.conflict_injections > 0 and stored is not None:
            self.conflict_injections -= 1
            stored["version"] = int(stored["version"]) + 1  # someone else wrote (no data change)
        stored_version = None if stored is None else int(stored["version"])
        if stored_version != expected_version:
            raise VersionConflict(f"version is {stored_version}, expected {expected_version}")
        self.items[key] = copy.deepcopy(item)
        self.puts += 1
        if self.ambiguous_put_failures > 0:
            self.ambiguous_put_failures -= 1
            raise TransientStoreError("fake timeout after commit")


class InMemoryArchive:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}  # key -> gzip bytes, exactly as S3 would hold them
        self.puts = 0
        self.fail_next: int = 0

    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreError("fake S3 failure", transient=True)
        self.puts += 1
        self.objects[key] = gzip_lines(lines)

    def lines(self, prefix: str = "") -> list[bytes]:
        out: list[bytes] = []
        for key in sorted(self.objects):
            if key.startswith(prefix):
                out.extend(line for line in gzip.decompress(self.objects[key]).split(b"\n") if line)
        return out


class InMemoryMetrics:
    def __init__(self) -> None:
        self.points: list[tuple[str, float, str, dict[str, str]]] = []
        self.flushes = 0

    def add(
        self, name: str, value: float, unit: str = "Count", dimensions: Mapping[str, str] | None = None
    ) -> None:
        self.points.append((name, float(value), unit, dict(dimensions or {})))

    def flush(self) -> None:
        self.flushes += 1

    def total(self, name: str, **dimensions: str) -> float:
        """Sum of one metric series, matched on exact dimensions as CloudWatch does."""
        return sum(v for n, v, _, d in self.points if n == name and dict(d) == dimensions)


class FakeKinesisClient:
    """Stands in for a boto3 Kinesis client's ``put_records``.

    ``fail_plan`` is a list, one entry per call: a set of positions (within that call) to fail with
    ProvisionedThroughputExceededException, or an Exception instance to raise for the whole call.
    """

    def __init__(self, fail_plan: Sequence[set[int] | BaseException] = ()) -> None:
        self.fail_plan = list(fail_plan)
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[tuple[str, bytes, str]] = []  # (sequence number, data, partition key)
        self._seq = 49_000_000_000_000_000_000

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Records)
        plan = self.fail_plan.pop(0) if self.fail_plan else set()
        if isinstance(plan, BaseException):
            raise plan
        out: list[dict[str, Any]] = []
        for i, rec in enumerate(Records):
            if i in plan:
                out.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "Rate exceeded"}
                )
            else:
                self._seq += 1
                self.stored.append((str(self._seq), rec["Data"], rec["PartitionKey"]))
                out.append({"SequenceNumber": str(self._seq), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": sum(1 for r in out if "ErrorCode" in r), "Records": out}
