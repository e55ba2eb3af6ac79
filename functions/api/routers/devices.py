"""Device registry and per-device time series: /devices, /devices/{id}, its aggregates and anomalies."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from functions.api import queries
from functions.api.deps import (
    ApiKeyRequired,
    CursorQuery,
    DeviceIdPath,
    FromQuery,
    LimitDep,
    NowDep,
    SettingsDep,
    StoresDep,
    ToQuery,
)
from functions.api.errors import ERROR_RESPONSES, NOT_FOUND_RESPONSE
from functions.api.models import AggregatePage, AnomalyPage, Device, DevicePage, Severity

router = APIRouter(
    prefix="/devices", tags=["devices"], dependencies=ApiKeyRequired, responses=ERROR_RESPONSES
)


@router.get("", summary="List registered devices", response_model_exclude_none=True)
def list_devices(stores: StoresDep, limit: LimitDep, cursor: CursorQuery = None) -> DevicePage:
    return queries.list_devices(stores, limit, cursor)


@router.get(
    "/{device_id}", summary="One device", responses=NOT_FOUND_RESPONSE, response_model_exclude_none=True
)
def get_device(device_id: DeviceIdPath, stores: StoresDep) -> Device:
    return queries.get_device(stores, device_id)


@router.get(
    "/{device_id}/aggregates",
    summary="1-minute aggregates of one device, oldest first",
    responses=NOT_FOUND_RESPONSE,
    response_model_exclude_none=True,
    response_model_by_alias=True,
)
def device_aggregates(
    device_id: DeviceIdPath,
    stores: StoresDep,
    settings: SettingsDep,
    now: NowDep,
    limit: LimitDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    cursor: CursorQuery = None,
) -> AggregatePage:
    return queries.device_aggregates(
        stores, device_id, from_, to, limit, cursor, settings.api_max_range_s, now
    )


@router.get(
    "/{device_id}/anomalies",
    summary="Anomalies of one device, newest first",
    responses=NOT_FOUND_RESPONSE,
    response_model_exclude_none=True,
    response_model_by_alias=True,
)
def device_anomalies(
    device_id: DeviceIdPath,
    stores: StoresDep,
    settings: SettingsDep,
    now: NowDep,
    limit: LimitDep,
    from_: FromQuery = None,
    to: ToQuery = None,
    cursor: CursorQuery = None,
    min_severity: Annotated[Severity | None, Query(description="Only this severity or worse.")] = None,
) -> AnomalyPage:
    return queries.anomalies(
        stores,
        from_,
        to,
        device_id,
        min_severity,
        limit,
        cursor,
        settings.api_max_range_s,
        now,
        route="device_anomalies",
    )
