"""In-memory fakes: one per table, implementing the same Protocols (``functions.core.ports``) as the
adapters in ``functions/adapters``, plus the archive, metrics, alerts and Kinesis. For unit tests, the
benchmark, the demo app and local runs; never shipped (``testkit/`` is not in any Lambda bundle).

They honour the same contracts as the real adapters, including the failure modes tests need to provoke:
version conflicts, transient errors, throttled reads, and a crash after N successful writes. Reads page
like DynamoDB: ``Limit`` counts evaluated items and the last evaluated key is returned only when the limit
cut the result short, so the API's paging code is tested for real.
"""

from __future__ import annotations

import copy
import dataclasses
import hashlib
import json
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import Any

from functions.adapters.alerts import Acquired, should_alert
from functions.core import archive_layout
from functions.core.errors import StoreError, StoreThrottled, TransientStoreError, VersionConflict
from functions.core.jsonl_gzip import gunzip_lines, gzip_lines
from functions.core.ports import AggregateItem, AnomalyItem, Item, Key, Slice, StoredObject, WindowKey
from functions.core.readings import DeviceInfo


def _page(
    ordered: list[Item],
    key_of: Callable[[Item], Key],
    limit: int,
    start_key: Key | None,
    keep: Callable[[Item], bool] = lambda _: True,
) -> Slice:
    """One DynamoDB-like page of ``ordered`` (Limit counts evaluated items, filters apply after)."""
    if start_key is not None:
        keys = [key_of(i) for i in ordered]
        ordered = ordered[keys.index(start_key) + 1 :] if start_key in keys else []
    evaluated = ordered[:limit]
    last = key_of(evaluated[-1]) if len(ordered) > limit and evaluated else None
    return Slice([copy.deepcopy(i) for i in evaluated if keep(i)], last)


def _device_item(device: DeviceInfo) -> Item:
    return {k: v for k, v in dataclasses.asdict(device).items() if v is not None and v != {}}


def _device_info(item: Mapping[str, Any]) -> DeviceInfo:
    names = {f.name for f in dataclasses.fields(DeviceInfo)}
    return DeviceInfo(**{k: v for k, v in item.items() if k in names})


class InMemoryDeviceRegistry:
    """The devices table: ``get_many`` for enrichment (DeviceInfo), ``get``/``scan``/``count`` for the
    API (items as stored). Built from DeviceInfo objects or from storage-shaped items."""

    def __init__(
        self, devices: Mapping[str, DeviceInfo] | Iterable[DeviceInfo | Mapping[str, Any]] = ()
    ) -> None:
        entries = devices.values() if isinstance(devices, Mapping) else devices
        self.items: dict[str, Item] = {}
        self.devices: dict[str, DeviceInfo] = {}
        self.calls: list[list[str]] = []
        self.fail_next: int = 0  # raise a transient StoreError for the next N get_many calls
        self.throttle = False  # API reads raise StoreThrottled (ProvisionedThroughputExceeded)
        self.state_writes = 0  # detector states written (the processor's extra writes)
        self.credential_lookups: list[str] = []  # device ids whose credential hash was asked for
        for entry in entries:
            self.put(entry)

    def put(self, entry: DeviceInfo | Mapping[str, Any]) -> None:
        if isinstance(entry, DeviceInfo):
            self.devices[entry.device_id] = entry
            self.items[entry.device_id] = _device_item(entry)
        else:
            self.items[str(entry["device_id"])] = dict(entry)
            self.devices[str(entry["device_id"])] = _device_info(entry)

    add = put

    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        self.calls.append(sorted(device_ids))
        if self.fail_next > 0:
            self.fail_next -= 1
            raise TransientStoreError("fake registry unavailable")
        return {d: self.devices[d] for d in device_ids if d in self.devices}

    def save_detector_state(self, device_id: str, state: Mapping[str, Any]) -> bool:
        """As the adapter: only onto an existing item, and never over a state with a later ``ts``."""
        item = self.items.get(device_id)
        if item is None:
            return False
        stored = item.get("detector_state")
        if isinstance(stored, dict) and int(stored.get("ts", -1)) >= int(state["ts"]):
            return False
        self.state_writes += 1
        self.put({**item, "detector_state": copy.deepcopy(dict(state))})
        return True

    def save_calibration(self, device_id: str, calibration: Mapping[str, Any]) -> None:
        item = self.items.get(device_id)
        if item is None:
            raise VersionConflict(f"devices.update_item: no device {device_id!r}")
        kept = {k: v for k, v in item.items()
                if k not in ("detector_state", "calibration_request", "calibration_refused")}
        self.put({**kept, "calibration": copy.deepcopy(dict(calibration))})

    def refuse_calibration(self, device_id: str, refusal: Mapping[str, Any]) -> None:
        item = self.items.get(device_id)
        if item is None:
            raise VersionConflict(f"devices.update_item: no device {device_id!r}")
        kept = {k: v for k, v in item.items() if k != "calibration_request"}
        self.put({**kept, "calibration_refused": copy.deepcopy(dict(refusal))})

    def _snapshot(self) -> list[Item]:
        if self.throttle:
            raise StoreThrottled("simulated throttle")
        return list(self.items.values())

    def get(self, device_id: str) -> Item | None:
        return next((dict(i) for i in self._snapshot() if i["device_id"] == device_id), None)

    def scan(self, limit: int, start_key: Key | None) -> Slice:
        ordered = sorted(self._snapshot(), key=lambda i: i["device_id"])
        return _page(ordered, lambda i: {"device_id": i["device_id"]}, limit, start_key)

    def count(self, max_items: int) -> tuple[int, bool]:
        n = len(self._snapshot())
        return min(n, max_items), n > max_items

    def credential_hash(self, device_id: str) -> str | None:
        """As the adapter: the item's ``credential_hash`` when it is one, else None."""
        self.credential_lookups.append(device_id)
        item = next((i for i in self._snapshot() if i["device_id"] == device_id), {})
        value = item.get("credential_hash")
        return value if isinstance(value, str) and value.startswith("sha256:") else None


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
    throttle: bool = False  # API reads raise StoreThrottled (ProvisionedThroughputExceeded)
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

    def add(self, item: AggregateItem) -> None:
        """Store ``item`` unconditionally (seed data), as a table load would."""
        self.items[(item["device_id"], int(item["window_start"]))] = copy.deepcopy(item)

    def query(self, device_id: str, start_s: int, end_s: int, limit: int, start_key: Key | None) -> Slice:
        if self.throttle:
            raise StoreThrottled("simulated throttle")
        ordered = sorted(
            (i for (d, w), i in list(self.items.items()) if d == device_id and start_s <= w <= end_s),
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


class InMemoryAnomalyStore:
    """The anomalies table: overwrite by key ``(device_id, ts_seq)``; reads by device or by day."""

    def __init__(self, items: Iterable[AnomalyItem] = ()) -> None:
        self.items: dict[tuple[str, str], AnomalyItem] = {}
        self.writes = 0
        self.throttle = False  # API reads raise StoreThrottled
        self._lock = threading.Lock()
        self.put_many(list(items))
        self.writes = 0

    def put_many(self, items: Sequence[AnomalyItem]) -> int:
        with self._lock:
            for item in items:
                self.items[(item["device_id"], item["ts_seq"])] = dict(item)
                self.writes += 1
        return len(items)

    def _select(self, match: Callable[[Item], bool], lo: str, hi: str) -> list[Item]:
        if self.throttle:
            raise StoreThrottled("simulated throttle")
        with self._lock:
            chosen = [i for i in self.items.values() if match(i) and lo <= i["ts_seq"] <= hi]
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
        # Within one day partition ts_seq can tie across devices; order ties by device_id (a GSI does
        # not guarantee an order, but a deterministic one is all the paging code needs).
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


class InMemoryArchive:
    def __init__(self) -> None:
        self.objects: dict[str, bytes] = {}  # key -> gzip bytes, exactly as S3 would hold them
        self.puts = 0
        self.fail_next: int = 0

    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> bool:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreError("fake S3 failure", transient=True)
        if key in self.objects:  # S3's If-None-Match: "*" answers 412 PreconditionFailed
            return False
        self.puts += 1
        self.objects[key] = gzip_lines(lines)
        return True

    # ArchiveObjects (the compactor's raw access): the ETag is the MD5 of the bytes, as S3's for a plain put.
    def listing(self, prefix: str, start_after: str = "") -> list[StoredObject]:
        return [StoredObject(key, hashlib.md5(body).hexdigest(), len(body))  # noqa: S324 - S3's ETag, not security
                for key, body in sorted(self.objects.items()) if key.startswith(prefix) and key > start_after]

    # ArchiveReader: the same reading path as S3Archive's (functions.core.archive_layout).
    def iter_objects(
        self, prefix: str, since_ms: int | None = None
    ) -> Iterator[tuple[StoredObject, list[bytes]]]:
        return archive_layout.iter_objects(self, prefix, since_ms)

    def iter_lines(self, prefix: str, since_ms: int | None = None) -> Iterator[bytes]:
        return archive_layout.iter_lines(self, prefix, since_ms)

    def read(self, key: str) -> bytes | None:
        return self.objects.get(key)

    def write(self, key: str, body: bytes, content_type: str) -> None:
        if self.fail_next > 0:
            self.fail_next -= 1
            raise StoreError("fake S3 failure", transient=True)
        self.puts += 1
        self.objects[key] = body

    def lines(self, prefix: str = "") -> list[bytes]:
        out: list[bytes] = []
        for key in sorted(self.objects):
            if key.startswith(prefix):
                out.extend(gunzip_lines(self.objects[key]))
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


def dynamodb_accepts(text: str) -> bool:
    """A number string DynamoDB stores: 0, or magnitude 1e-130 .. <1e126 with at most 38 digits."""
    from boto3.dynamodb.types import DYNAMODB_CONTEXT  # deferred: most users of the fakes never need it

    try:
        DYNAMODB_CONTEXT.create_decimal(Decimal(text))  # traps Inexact, Rounded, Underflow, Overflow
    except ArithmeticError:
        return False
    d = Decimal(text)
    return d.is_finite() and (d == 0 or Decimal("1e-130") <= abs(d) < Decimal("1e126"))


def attribute_numbers(attr: Any) -> list[str]:
    """Every N (and NS element) inside an AttributeValue (or a low-level item)."""
    if isinstance(attr, dict):
        if "N" in attr:
            return [attr["N"]]
        if "NS" in attr:
            return list(attr["NS"])
        return [n for v in attr.values() for n in attribute_numbers(v)]
    if isinstance(attr, list):
        return [n for v in attr for n in attribute_numbers(v)]
    return []


class FakeDynamoDBClient:
    """Stands in for a boto3 DynamoDB client on one in-memory table, with the service's rules tests rely on.

    Items are stored low-level (AttributeValues), keyed by the values of ``key_names``. Puts honour the
    adapters' conditions (``attribute_not_exists(...)`` and ``#v = :v`` on ``version``), raising
    ``ConditionalCheckFailedException``; an item holding a number DynamoDB refuses, or one ``refuse``
    names, raises ``ValidationException`` (for BatchWriteItem: the whole call, as the service does);
    ``fail_code`` makes every call raise that error (throttling past retries, a missing table).
    """

    def __init__(
        self,
        key_names: tuple[str, ...] = ("device_id", "window_start"),
        refuse: Callable[[dict[str, Any]], bool] = lambda item: False,
        fail_code: str | None = None,
    ) -> None:
        self.key_names, self.refuse, self.fail_code = key_names, refuse, fail_code
        self.items: dict[tuple[str, ...], dict[str, Any]] = {}
        self.puts = 0  # items written (PutItem and BatchWriteItem requests)

    def _key(self, attrs: Mapping[str, Any]) -> tuple[str, ...]:
        return tuple(next(iter(attrs[name].values())) for name in self.key_names)

    def _check(self, operation: str, item: dict[str, Any] | None = None) -> None:
        code = self.fail_code
        refused = item is not None and (
            self.refuse(item) or not all(dynamodb_accepts(n) for n in attribute_numbers(item))
        )
        if code is None and refused:
            code = "ValidationException"
        if code is not None:
            from botocore.exceptions import ClientError

            raise ClientError({"Error": {"Code": code, "Message": code}}, operation)

    def put_item(
        self, TableName: str, Item: dict[str, Any], ConditionExpression: str = "",
        ExpressionAttributeNames: Any = None, ExpressionAttributeValues: Any = None,
    ) -> dict[str, Any]:
        self._check("PutItem", Item)
        stored = self.items.get(self._key(Item))
        if ConditionExpression.startswith("attribute_not_exists"):
            ok = stored is None
        elif ConditionExpression:
            ok = stored is not None and stored["version"]["N"] == ExpressionAttributeValues[":v"]["N"]
        else:
            ok = True
        if not ok:
            from botocore.exceptions import ClientError

            error = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "version differs"}}
            raise ClientError(error, "PutItem")
        self.items[self._key(Item)] = copy.deepcopy(Item)
        self.puts += 1
        return {}

    def get_item(self, TableName: str, Key: dict[str, Any], **_: Any) -> dict[str, Any]:
        self._check("GetItem")
        item = self.items.get(self._key(Key))
        return {"Item": copy.deepcopy(item)} if item else {}

    def batch_get_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        self._check("BatchGetItem")
        ((table, request),) = RequestItems.items()
        keys = [self._key(k) for k in request["Keys"]]
        return {"Responses": {table: [copy.deepcopy(self.items[k]) for k in keys if k in self.items]}}

    def batch_write_item(self, RequestItems: dict[str, Any]) -> dict[str, Any]:
        requests = [r["PutRequest"]["Item"] for rs in RequestItems.values() for r in rs]
        self._check("BatchWriteItem")
        for item in requests:  # one refused item fails the whole call, nothing of it written
            self._check("BatchWriteItem", item)
        for item in requests:
            self.items[self._key(item)] = copy.deepcopy(item)
            self.puts += 1
        return {"UnprocessedItems": {}}


class FakeScoringEndpoint:
    """Stands in for a scoring endpoint (the detector's ``ScoringEndpoint`` port, SageMaker's adapter).

    Answers ``{"scores": ...}``: ``scores`` if given, else ``score_of(row)`` per feature row (default 0.9).
    ``hang`` makes each call wait (up to 5 s) for the event, to provoke the caller's timeout; ``error`` is
    raised instead of answering. ``bodies`` records every request body.
    """

    def __init__(
        self,
        scores: Sequence[float] | None = None,
        hang: threading.Event | None = None,
        error: BaseException | None = None,
        score_of: Callable[[list[float]], float] = lambda row: 0.9,
    ) -> None:
        self.scores, self.hang, self.error, self.score_of = scores, hang, error, score_of
        self.bodies: list[str] = []

    def invoke(self, body: str) -> bytes:
        self.bodies.append(body)
        if self.hang is not None:
            self.hang.wait(5)
        if self.error is not None:
            raise self.error
        rows = json.loads(body)["features"]
        scores = list(self.scores) if self.scores is not None else [self.score_of(r) for r in rows]
        return json.dumps({"scores": scores}).encode()


class InMemoryCooldownStore:
    """Fake with the same semantics (single process, so atomicity is free)."""

    def __init__(self) -> None:
        self.state: dict[str, dict[str, float]] = {}

    def try_acquire(self, device_id: str, now: float, cooldown_s: float) -> Acquired:
        item = self.state.setdefault(device_id, {"suppressed": 0})
        if not should_alert(item.get("last_alert_at"), now, cooldown_s):
            return Acquired(False, 0)
        before = int(item.get("suppressed", 0))
        item.update(last_alert_at=now, suppressed=0)
        return Acquired(True, before)

    def add_suppressed(self, device_id: str, count: int) -> None:
        item = self.state.setdefault(device_id, {"suppressed": 0})
        item["suppressed"] = item.get("suppressed", 0) + count


class InMemoryPublisher:
    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def publish(self, subject: str, message: str, attributes: dict[str, str]) -> None:
        self.messages.append({"subject": subject, "message": json.loads(message), "attributes": attributes})


class MemoryTotals:
    """Failure counters (``MetricTotals``): fixed totals, or None to model CloudWatch being unreachable.

    ``by_dimension`` holds per-dimension sums (``{"RecordsRejected": {"unknown_device": 12}}``), ``peaks``
    the largest single datapoint of a metric and ``reasons`` each ``Reason`` series' sum (``by_reason``)."""

    def __init__(self, totals: dict[str, int] | None = None,
                 by_dimension: dict[str, dict[str, int]] | None = None,
                 peaks: dict[str, int] | None = None,
                 reasons: dict[str, dict[str, int]] | None = None) -> None:
        self.totals = totals
        self.by_dimension = by_dimension or {}
        self.peaks = peaks or {}
        self.reasons = reasons or {}  # metric name -> {reason: sum}

    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        if self.totals is None:
            return None
        return {name: int(self.totals.get(name, 0)) for name in names}

    def by_reason(self, name: str, start: datetime, end: datetime) -> dict[str, int] | None:
        if self.totals is None:
            return None
        return dict(self.reasons.get(name, {}))

    def sums_by(self, name: str, dimension: str, values: Sequence[str], start: datetime,
                end: datetime) -> dict[str, int] | None:
        if self.totals is None:
            return None
        series = self.by_dimension.get(name, {})
        return {v: int(series[v]) for v in values if series.get(v)}

    def peak(self, name: str, start: datetime, end: datetime) -> int | None:
        return None if self.totals is None else int(self.peaks.get(name, 0))
