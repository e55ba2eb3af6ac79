"""Ports: the small interfaces the pure core and the API call. Real adapters live in
``functions/adapters`` (boto3), in-memory fakes in ``testkit.fakes``; both implement these Protocols.
Errors they raise: ``functions.core.errors``.

One adapter per table reads and writes it. Consumers that need only a part of a table's interface
(the processor writes aggregates, the API reads them) type against the narrow Protocol below; the
table's Protocol is the union, and the one adapter implements it.

Items are storage-shaped: the data model's attributes as plain Python values (int/float, str, dict,
list); the adapters convert to and from DynamoDB's representation (``functions.adapters.codec``).
Resume keys are a LastEvaluatedKey as plain JSON values. Shapes: docs/data-model.md.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from functions.core.readings import DeviceInfo, Reading

Item = dict[str, Any]
Key = dict[str, Any]
# An aggregate item in Python-native types. Shape: docs/data-model.md "aggregates table".
AggregateItem = dict[str, Any]
WindowKey = tuple[str, int]  # (device_id, window_start epoch seconds)
# An anomalies-table item (functions.core.anomaly_items builds it).
AnomalyItem = dict[str, Any]


@dataclass(frozen=True)
class Slice:
    """One store round trip: the items and where to resume (None = nothing after them)."""

    items: list[Item]
    last_key: Key | None


# --- devices table -------------------------------------------------------------------------------


class DeviceRegistry(Protocol):
    """What the processor and the ingest path need: device info for enrichment."""

    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        """Registry entries for the ids that exist (unknown ids are simply absent). Raises StoreError."""
        ...


class DeviceReader(Protocol):
    """What the API needs: registry items as stored, one page at a time."""

    def get(self, device_id: str) -> Item | None: ...

    def scan(self, limit: int, start_key: Key | None) -> Slice: ...

    def count(self, max_items: int) -> tuple[int, bool]:
        """Devices in the registry, counting at most ``max_items``; the flag says it stopped early."""
        ...


class DetectorStateWriter(Protocol):
    """What the processor's per-device detector needs: persist a device's carried alarm state."""

    def save_detector_state(self, device_id: str, state: Mapping[str, Any]) -> bool:
        """Store ``state`` on the device's item unless a state with a later ``ts`` is already there.

        Returns False when the stored state was newer (or the device is gone): nothing written.
        Raises StoreError.
        """
        ...


class CalibrationWriter(Protocol):
    """What calibration (``iotpipe model calibrate``) needs: set a device's detector calibration."""

    def save_calibration(self, device_id: str, calibration: Mapping[str, Any]) -> None:
        """Store ``calibration`` on the device's (existing) item and clear its carried alarm state.

        Raises StoreError (``VersionConflict`` when the device is not registered).
        """
        ...

    def refuse_calibration(self, device_id: str, refusal: Mapping[str, Any]) -> None:
        """Record why the device's calibration request cannot be served (``calibration_refused``) and
        remove the request; the device stays on the fleet model. Raises StoreError."""
        ...


class CredentialLookup(Protocol):
    """What the ingest authorizer needs: a device's stored credential hash (``functions.auth``)."""

    def credential_hash(self, device_id: str) -> str | None:
        """The device's ``credential_hash`` (``sha256:...``), or None when the device is unknown or has
        none. Raises StoreError (a registry outage is a 5xx, never a silent refusal)."""
        ...


class DeviceStore(
    DeviceRegistry, DeviceReader, DetectorStateWriter, CalibrationWriter, CredentialLookup, Protocol
):
    """The devices table."""


# --- aggregates table ----------------------------------------------------------------------------


class AggregateWriter(Protocol):
    """What the exactly-once merge needs: strongly consistent reads and version-conditional puts."""

    def get_many(self, keys: Sequence[WindowKey]) -> dict[WindowKey, AggregateItem]:
        """Current items for the keys that exist (strongly consistent). Raises StoreError."""
        ...

    def get(self, key: WindowKey) -> AggregateItem | None:
        """Current item (strongly consistent) or None. Raises StoreError."""
        ...

    def put(self, item: AggregateItem, expected_version: int | None) -> None:
        """Write ``item`` if the stored version is ``expected_version`` (None: the item must not exist).

        Raises VersionConflict when the condition fails, StoreError otherwise.
        """
        ...


class AggregateReader(Protocol):
    """What the API needs: windows of one device in a time range."""

    def query(self, device_id: str, start_s: int, end_s: int, limit: int, start_key: Key | None) -> Slice:
        """Windows of one device with ``start_s <= window_start <= end_s``, oldest first."""
        ...

    def totals(self, device_id: str, start_s: int, end_s: int) -> tuple[int, int]:
        """(windows, readings) of one device with window_start in the range (bounded, for /stats)."""
        ...


class AggregateStore(AggregateWriter, AggregateReader, Protocol):
    """The aggregates table."""


# --- anomalies table -----------------------------------------------------------------------------


class AnomalyWriter(Protocol):
    """What the detector stage needs: idempotent batched puts."""

    def put_many(self, items: Sequence[AnomalyItem]) -> int:
        """Write items (idempotently, overwrite by key); returns how many were written."""
        ...


class AnomalyReader(Protocol):
    """What the API needs: anomalies by device or by day, newest first."""

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


class AnomalyStore(AnomalyWriter, AnomalyReader, Protocol):
    """The anomalies table."""


# --- other ports ---------------------------------------------------------------------------------


class Archive(Protocol):
    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> bool:
        """Write the lines as one gzip JSON-lines object at ``key`` unless an object is already there.

        First write wins: a key names one shard's sequence range, so an object already at it holds the
        same records, written by the delivery that applied them, with the detector's verdicts; a
        redelivery of the same range would write them without (detection runs once per reading).
        Returns False when the existing object was kept. Raises StoreError.
        """
        ...


@dataclass(frozen=True)
class StoredObject:
    """One archive object as a listing shows it: enough to tell whether an input set changed."""

    key: str
    etag: str
    size: int


class ArchiveObjects(Protocol):
    """Raw object access to the archive bucket: what the compactor reads and writes."""

    def listing(self, prefix: str, start_after: str = "") -> list[StoredObject]:
        """Every object under ``prefix`` keyed after ``start_after``, sorted by key. Raises StoreError."""
        ...

    def read(self, key: str) -> bytes | None:
        """The object's bytes, or None when there is no such key. Raises StoreError."""
        ...

    def write(self, key: str, body: bytes, content_type: str) -> None:
        """Write ``body`` at ``key`` (whole-object overwrite: readers see old or new). Raises StoreError."""
        ...


class ArchiveReader(Protocol):
    """The one reading path over the archive's lines (``functions.core.archive_layout.iter_objects``)."""

    def iter_objects(
        self, prefix: str, since_ms: int | None = None
    ) -> Iterator[tuple[StoredObject, list[bytes]]]:
        """(object, its lines) under ``prefix`` in key order, from ``since_ms``'s hour on.

        Raises StoreError.
        """
        ...

    def iter_lines(self, prefix: str, since_ms: int | None = None) -> Iterator[bytes]:
        """Every line of ``iter_objects``, in order. Raises StoreError."""
        ...


@dataclass(slots=True)
class PutResult:
    """What became of one entry handed to a :class:`Publisher`: stored (a sequence number) or not."""

    index: int
    sequence_number: str | None = None
    shard_id: str | None = None
    error_code: str | None = None
    error_message: str | None = None

    @property
    def ok(self) -> bool:
        return self.sequence_number is not None


class Publisher(Protocol):
    """What the ingest path needs: put records on the stream (Kinesis, or a fake in tests)."""

    def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[PutResult]:
        """Send ``(data, partition_key)`` entries; one PutResult per entry, in input order.

        Never raises for entries the stream refused: they come back not ``ok`` (with the error code),
        after the adapter's own retries, so the caller can tell its client which to send again.
        """
        ...


class SecretSource(Protocol):
    """What the API's cursor signing needs: a secret's value (Secrets Manager, or a fake in tests)."""

    def secret_bytes(self, secret_id: str) -> bytes:
        """The secret's current value (SecretString as UTF-8, else SecretBinary). Raises StoreError."""
        ...


class MetricsSink(Protocol):
    def add(self, name: str, value: float, unit: str = "Count", dimensions: Mapping[str, str] | None = None):
        """Record one data point (buffered until flush)."""
        ...

    def flush(self) -> None:
        """Publish buffered points. Never raises: metrics must not fail a batch."""
        ...


class MetricTotals(Protocol):
    """The processor's failure counters, summed (the API's /stats): CloudWatch or a fake."""

    def sums(self, names: Sequence[str], start: datetime, end: datetime) -> dict[str, int] | None:
        """Sum of each metric (no dimensions) over [start, end), or None if they cannot be read."""
        ...

    def by_reason(self, name: str, start: datetime, end: datetime) -> dict[str, int] | None:
        """Sum of each ``Reason`` series of a metric over [start, end), or None if they cannot be read."""
        ...

    def sums_by(self, name: str, dimension: str, values: Sequence[str], start: datetime,
                end: datetime) -> dict[str, int] | None:
        """Sum of ``name`` per value of ``dimension`` over [start, end) (zeros left out), or None."""
        ...

    def peak(self, name: str, start: datetime, end: datetime) -> int | None:
        """The largest single datapoint of ``name`` (no dimensions) over [start, end), 0 if none, or None
        if unreadable: one invocation's figure, where a sum would add up every retry of the same batch."""
        ...


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]


# ---- The anomaly stage's ports. The processor calls them; functions.detector implements the
# stage (pipeline_stage.handle_verdicts), functions.adapters the store and the alerter. The detector itself
# (Detector, Verdict) is typed in functions.detector.interface, which the processor may import; here only
# what the pipeline reads of a verdict, so the core stays free of the detector. AnomalyWriter: above.


class AlertSummary(Protocol):
    @property
    def sent(self) -> int: ...
    @property
    def suppressed(self) -> int: ...
    @property
    def failed(self) -> int: ...


class Alerter(Protocol):
    def notify(self, anomalies: Sequence[AnomalyItem], now: float) -> AlertSummary:
        """Alert on stored anomalies (one per device per cooldown); never raises for a failed send."""
        ...


class FlaggedVerdict(Protocol):
    @property
    def is_anomaly(self) -> bool: ...


class AnomalyStageResult(Protocol):
    @property
    def anomalies(self) -> Sequence[AnomalyItem]: ...
    @property
    def alerts_sent(self) -> int: ...
    @property
    def alerts_suppressed(self) -> int: ...
    @property
    def alerts_failed(self) -> int: ...


V_contra = TypeVar("V_contra", bound=FlaggedVerdict, contravariant=True)


class VerdictHandler(Protocol[V_contra]):
    def __call__(
        self,
        readings: Sequence[Reading],
        verdicts: Sequence[V_contra],
        store: AnomalyWriter | None,
        alerter: Alerter | None,
        now: float,
        /,
    ) -> AnomalyStageResult:
        """Turn verdicts into stored anomaly items and alerts (store first, then alert)."""
        ...
