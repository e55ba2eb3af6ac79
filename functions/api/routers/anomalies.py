"""GET /anomalies: fleet-wide anomalies by time (by-day index), device and severity."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api import queries
from functions.api.deps import (
    ApiKeyRequired,
    CursorQuery,
    FromQuery,
    LimitDep,
    NowDep,
    SettingsDep,
    StoresDep,
    ToQuery,
)
from functions.api.errors import ERROR_RESPONSES
from functions.api.models import DEVICE_ID_PATTERN, AnomalyPage, Severity

router = APIRouter(tags=["anomalies"], dependencies=ApiKeyRequired, responses=ERROR_RESPONSES)


@router.get(
    "/anomalies",
    summary="Anomalies across the fleet, newest first",
    response_model_exclude_none=True,
    response_model_by_alias=True,
)
def list_anomalies(
    stores: StoresDep,
    settings: SettingsDep,
    now: NowDep,
    limit: LimitDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    cursor: CursorQuery = None,
    device_id: Annotated[
        str | None, Query(pattern=DEVICE_ID_PATTERN, description="Only this device.")
    ] = None,
    min_severity: Annotated[Severity | None, Query(description="Only this severity or worse.")] = None,
) -> AnomalyPage:
    return queries.anomalies(
        stores, from_, to, device_id, min_severity, limit, cursor, settings.api_max_range_s, now
    )
