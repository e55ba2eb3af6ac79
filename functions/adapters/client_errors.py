"""The one place botocore errors become domain errors (``functions.core.errors``), by code.

Every adapter wraps its AWS calls with :func:`translate_client_error`; nothing above the adapters sees
botocore. Duck-typed on ``exc.response`` (botocore's ``ClientError`` shape) so the test fakes that raise
real ``ClientError`` objects and ones that only look like them are translated the same way.
"""

from __future__ import annotations

from functions.core.errors import StoreError, StoreThrottled, VersionConflict, is_transient

# Throttling after the client's own (adaptive) retries: the API answers 503 + Retry-After for these.
THROTTLE_CODES: frozenset[str] = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "TooManyRequestsException",
    }
)


def error_code(exc: BaseException) -> str:
    """The AWS error code of a botocore ClientError ("" for anything else)."""
    response = getattr(exc, "response", None)
    if isinstance(response, dict):
        return str(response.get("Error", {}).get("Code", ""))
    return ""


def translate_client_error(exc: BaseException, what: str) -> StoreError:
    """Map a botocore error to a StoreError by its code (never by message text)."""
    code = error_code(exc)
    if code == "ConditionalCheckFailedException":
        return VersionConflict(f"{what}: conditional check failed", code=code)
    if code in THROTTLE_CODES:
        return StoreThrottled(f"{what}: {code}", code=code)
    return StoreError(f"{what}: {type(exc).__name__} {code}".strip(), transient=is_transient(exc), code=code)
