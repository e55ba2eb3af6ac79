"""The processor's ports: small interfaces its core calls, and the domain errors adapters raise.

The core (``ingestion_processor.process_batch``) only knows these Protocols. Real adapters live in
``functions/adapters`` (boto3), in-memory fakes in ``functions/adapters/fakes.py``. Adapters translate
botocore ``ClientError`` codes into the exceptions below, so the core never matches AWS error text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from functions.readings import DeviceInfo

# Kinesis / DynamoDB / S3 / CloudWatch error codes that are worth retrying (throttling and service-side).
TRANSIENT_ERROR_CODES: frozenset[str] = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "Throttling",
        "ThrottledException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
        "SlowDown",
        "RequestTimeout",
        "RequestTimeoutException",
        "InternalServerError",
        "InternalError",
        "InternalFailure",
        "ServiceUnavailable",
        "ServiceUnavailableException",
        "TransactionInProgressException",
        "KMSThrottlingException",
    }
)


class StoreError(Exception):
    """A storage call failed. ``transient`` says whether retrying the same call may succeed."""

    transient: bool = False

    def __init__(self, message: str, *, transient: bool | None = None, code: str = "") -> None:
        super().__init__(message)
        if transient is not None:
            self.transient = transient
        self.code = code


class TransientStoreError(StoreError):
    transient = True


class VersionConflict(StoreError):
    """The conditional write lost a race: somebody wrote the item since we read it. Re-read and retry."""

    transient = True


def is_transient(exc: BaseException) -> bool:
    """True for errors a bounded retry may fix: our transient StoreErrors, throttling, 5xx, timeouts."""
    if isinstance(exc, StoreError):
        return exc.transient
    response = getattr(exc, "response", None)
    if isinstance(response, dict):  # botocore.exceptions.ClientError, without importing botocore
        code = str(response.get("Error", {}).get("Code", ""))
        status = int(response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0) or 0)
        return code in TRANSIENT_ERROR_CODES or status >= 500
    # botocore connection/timeouts (EndpointConnectionError, ReadTimeoutError, ...) subclass these.
    return isinstance(exc, ConnectionError | TimeoutError) or type(exc).__name__ in {
        "EndpointConnectionError",
        "ConnectTimeoutError",
        "ReadTimeoutError",
        "ConnectionClosedError",
    }


# Error codes that are about the item sent, not the service: the same request fails the same way again.
ITEM_ERROR_CODES: frozenset[str] = frozenset(
    {"ValidationException", "ItemCollectionSizeLimitExceededException"}
)


def is_item_error(exc: BaseException) -> bool:
    """True when the store refused this item itself (a retry fails the same way; other items would not).

    DynamoDB's ValidationException (a number out of range, an item over 400 KB), boto3's serialiser
    refusing a number (``decimal`` Underflow, Overflow, Inexact, Rounded, Clamped) or a type. Not access
    errors, missing tables or throttling: those are about the service and affect every item alike.
    """
    import decimal

    if isinstance(exc, StoreError):
        return exc.code in ITEM_ERROR_CODES
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", "")) in ITEM_ERROR_CODES
    return isinstance(exc, decimal.DecimalException | TypeError | OverflowError)


def translate_client_error(exc: BaseException, what: str) -> StoreError:
    """Map a botocore error to a StoreError by its code (never by message text)."""
    response = getattr(exc, "response", None)
    code = ""
    if isinstance(response, dict):
        code = str(response.get("Error", {}).get("Code", ""))
    if code == "ConditionalCheckFailedException":
        return VersionConflict(f"{what}: conditional check failed", code=code)
    return StoreError(f"{what}: {type(exc).__name__} {code}".strip(), transient=is_transient(exc), code=code)


class DeviceRegistry(Protocol):
    def get_many(self, device_ids: Sequence[str]) -> dict[str, DeviceInfo]:
        """Registry entries for the ids that exist (unknown ids are simply absent). Raises StoreError."""
        ...


# An aggregate item in Python-native types (ints, floats, str, dict, list); the adapter converts to and
# from DynamoDB's representation. Shape: docs/data-model.md "aggregates table".
AggregateItem = dict[str, Any]
WindowKey = tuple[str, int]  # (device_id, window_start epoch seconds)


class AggregateStore(Protocol):
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


class Archive(Protocol):
    def put_jsonl_gz(self, key: str, lines: Sequence[bytes]) -> None:
        """Write the lines as one gzip JSON-lines object at ``key`` (overwrite). Raises StoreError."""
        ...


class MetricsSink(Protocol):
    def add(self, name: str, value: float, unit: str = "Count", dimensions: Mapping[str, str] | None = None):
        """Record one data point (buffered until flush)."""
        ...

    def flush(self) -> None:
        """Publish buffered points. Never raises: metrics must not fail a batch."""
        ...


def chunked(items: Sequence[Any], size: int) -> Iterable[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
