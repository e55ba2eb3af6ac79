"""Domain errors raised by the storage adapters, and how to tell a retryable one from a bad item.

One hierarchy for every table and every caller (processor, detector stage, API). The adapters translate
botocore ``ClientError`` codes into these exceptions in one place (``functions.adapters.client_errors``,
by code, never by message text), so the core can decide retry versus quarantine, and the API 503 versus
500, without importing botocore. ``is_transient`` / ``is_item_error`` are duck-typed for the same reason.
"""

from __future__ import annotations

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
        # S3: another conditional write to the same key was in flight (409); the retry sees its result.
        "ConditionalRequestConflict",
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


class StoreThrottled(TransientStoreError):
    """The store throttled the call even after the client's own retries (the API answers 503)."""


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
