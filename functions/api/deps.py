"""Request dependencies: the stores, the API key check, the clock and the paging parameters.

Tests swap the stores and the clock with ``app.dependency_overrides[get_stores] = ...``.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass
from datetime import UTC, datetime
from functools import cache
from typing import Annotated

from fastapi import Depends, Path, Query, Security
from fastapi.security import APIKeyHeader

from functions.api.errors import BadRequest, Forbidden
from functions.api.models import DEVICE_ID_PATTERN
from functions.core.ports import AggregateReader, AnomalyReader, DeviceReader, MetricTotals
from functions.settings import Settings, get_settings

DEFAULT_LIMIT = 100

# auto_error=False: a missing key must produce our 403 body, not FastAPI's default one.
_api_key_header = APIKeyHeader(
    name="x-api-key", auto_error=False, description="API key (API Gateway usage plan on AWS; API_KEY locally)"
)


@dataclass(frozen=True)
class Stores:
    """What the routes read: the three tables (the read side of their one adapter each) and the
    failure counters for /stats (None: not available)."""

    devices: DeviceReader
    aggregates: AggregateReader
    anomalies: AnomalyReader
    metrics: MetricTotals | None = None


@cache
def _dynamo_stores() -> Stores:
    from functions.adapters.aggregates import DynamoAggregateStore
    from functions.adapters.anomalies import DynamoAnomalyStore
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.adapters.metric_totals import CloudWatchTotals

    return Stores(DynamoDeviceRegistry(), DynamoAggregateStore(), DynamoAnomalyStore(), CloudWatchTotals())


def get_stores() -> Stores:
    return _dynamo_stores()


def get_now() -> datetime:
    return datetime.now(tz=UTC)


def require_api_key(
    key: Annotated[str | None, Security(_api_key_header)],
    settings: Annotated[Settings, Depends(get_settings)],
) -> None:
    """Check x-api-key when API_KEY is configured (local uvicorn).

    Behind API Gateway the usage plan has already rejected requests without a valid key, and the
    Lambda has no API_KEY, so this passes through; setting API_KEY there too is harmless.
    """
    expected = settings.api_key
    if expected and not (key and hmac.compare_digest(key.encode(), expected.encode())):
        raise Forbidden("missing or invalid x-api-key")


def page_limit(
    settings: Annotated[Settings, Depends(get_settings)],
    limit: Annotated[
        int, Query(ge=1, description="Items per page (default 100, at most API_MAX_LIMIT).")
    ] = DEFAULT_LIMIT,
) -> int:
    if limit > settings.api_max_limit:
        raise BadRequest(f"`limit` may be at most {settings.api_max_limit}", "limit_too_large")
    return limit


StoresDep = Annotated[Stores, Depends(get_stores)]
NowDep = Annotated[datetime, Depends(get_now)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
LimitDep = Annotated[int, Depends(page_limit)]
CursorQuery = Annotated[str | None, Query(max_length=2048, description="`next_cursor` of the previous page.")]
FromQuery = Annotated[
    str | None, Query(alias="from", max_length=64, description="Start, ISO 8601 or epoch milliseconds (UTC).")
]
ToQuery = Annotated[
    str | None,
    Query(alias="to", max_length=64, description="End, ISO 8601 or epoch milliseconds (default: now)."),
]
DeviceIdPath = Annotated[str, Path(pattern=DEVICE_ID_PATTERN, description="Device id.")]
ApiKeyRequired = [Depends(require_api_key)]
