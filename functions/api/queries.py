"""Read use cases: time ranges, paging with cursors, day-by-day anomaly queries, /stats.

Pure functions of (stores, parameters, now) returning response models; no boto3, no FastAPI. The
stores only know single round trips, so the rules that matter to clients (bounds, order, cursor
contents, the per-day walk over the ``by-day`` index) are the same against DynamoDB and the fakes.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from functions.adapters.metric_totals import FAILURE_METRICS, REASON_METRICS
from functions.api import cursor as cursors
from functions.api.deps import Stores
from functions.api.errors import BadRequest, NotFound
from functions.api.models import (
    Aggregate,
    AggregatePage,
    Anomaly,
    AnomalyPage,
    ChannelStats,
    Device,
    DevicePage,
    Failures,
    Stats,
)
from functions.api.timeparse import iso_ms, iso_s, parse_time
from functions.core.anomaly_items import SEVERITY_RANK, api_fields
from functions.core.ports import Item
from functions.schemas import load_schema

WINDOW_S = 60
DEFAULT_AGGREGATES_SPAN = timedelta(hours=1)
DEFAULT_ANOMALIES_SPAN = timedelta(hours=24)
# A filtered by-day walk can evaluate many items that do not match; stop after this many round trips
# and hand back a cursor rather than let one request run for seconds.
MAX_ROUND_TRIPS = 16
STATS_PERIOD = timedelta(hours=1)
STATS_MAX_DEVICES = 100
STATS_MAX_COUNT = 100_000
STATS_WORKERS = 8
# A batch handed back now is retried within seconds (ministack: every ~1 s; Kinesis: at once).
HELD_BACK_SPAN = timedelta(minutes=2)
# RecordsRejected is published per Reason only: the reasons the quarantine schema allows.
QUARANTINE_REASONS: tuple[str, ...] = tuple(load_schema("quarantined")["properties"]["reason"]["enum"])
TS_SEQ_HIGH = "#~"  # sorts after "#<digits>": makes the upper ts_seq bound inclusive of its millisecond


@dataclass(frozen=True)
class TimeRange:
    start: datetime
    end: datetime


def resolve_range(
    raw_from: str | None, raw_to: str | None, default_span: timedelta, max_range_s: int, now: datetime
) -> TimeRange:
    end = parse_time(raw_to, "to") if raw_to else None
    start = parse_time(raw_from, "from") if raw_from else None
    if end is None:
        end = now if start is None or start <= now else start + default_span
    if start is None:
        start = end - default_span
    if start > end:
        raise BadRequest("`from` must not be after `to`", "invalid_range")
    if (end - start).total_seconds() > max_range_s:
        raise BadRequest(f"the time range may span at most {max_range_s} seconds", "range_too_large")
    return TimeRange(start, end)


def _range_state(rng: TimeRange) -> dict[str, int]:
    return {"f": int(rng.start.timestamp() * 1000), "t": int(rng.end.timestamp() * 1000)}


def _range_from_state(state: dict[str, Any]) -> TimeRange:
    try:
        return TimeRange(
            datetime.fromtimestamp(int(state["f"]) / 1000, tz=UTC),
            datetime.fromtimestamp(int(state["t"]) / 1000, tz=UTC),
        )
    except (KeyError, TypeError, ValueError, OverflowError, OSError):
        raise BadRequest("`cursor` is not a cursor this query returned", "invalid_cursor") from None


def _resume_key(state: dict[str, Any] | None, expected: set[str]) -> dict[str, Any] | None:
    key = (state or {}).get("k")
    if key is None:
        return None
    if not isinstance(key, dict) or set(key) != expected:
        raise BadRequest("`cursor` is not a cursor this query returned", "invalid_cursor")
    return key


# ---------------------------------------------------------------- storage -> response shapes


def device_view(item: Item) -> Device:
    return Device.model_validate({k: v for k, v in item.items() if k in Device.model_fields})


def aggregate_view(item: Item) -> Aggregate:
    channels: dict[str, ChannelStats] = {}
    for name, stats in (item.get("channels") or {}).items():
        count = int(stats.get("count", 0))
        if count < 1:
            continue
        mean = stats.get("mean", stats.get("sum", 0.0) / count)
        channels[name] = ChannelStats(
            count=count,
            mean=mean,
            min=stats.get("min", mean),
            max=stats.get("max", mean),
            std=max(0.0, float(stats.get("std", 0.0))),
        )
    start = int(item["window_start"])
    return Aggregate(
        device_id=item["device_id"],
        window_start=iso_s(start),
        window_end=iso_s(int(item.get("window_end", start + WINDOW_S))),
        count=max(1, int(item.get("count", 1))),
        channels=channels,
        site=item.get("site"),
        location=item.get("location"),
        anomaly_count=item.get("anomaly_count"),
    )


def anomaly_view(item: Item) -> Anomaly:
    return Anomaly.model_validate(api_fields(item))


# ---------------------------------------------------------------- use cases


def get_device(stores: Stores, device_id: str) -> Device:
    item = stores.devices.get(device_id)
    if item is None:
        raise NotFound(f"device {device_id!r} is not registered")
    return device_view(item)


def list_devices(stores: Stores, limit: int, cursor: str | None) -> DevicePage:
    context = {"route": "devices"}
    state = cursors.decode_cursor(cursor, context)
    page = stores.devices.scan(limit, _resume_key(state, {"device_id"}))
    next_cursor = cursors.encode_cursor({"k": page.last_key}, context) if page.last_key else None
    return DevicePage(items=[device_view(i) for i in page.items], next_cursor=next_cursor)


def device_aggregates(
    stores: Stores,
    device_id: str,
    raw_from: str | None,
    raw_to: str | None,
    limit: int,
    cursor: str | None,
    max_range_s: int,
    now: datetime,
) -> AggregatePage:
    """Windows whose start lies in [from, to] (from rounded down to its minute), oldest first."""
    context = {"route": "aggregates", "device_id": device_id, "from": raw_from, "to": raw_to}
    state = cursors.decode_cursor(cursor, context)
    rng = (
        _range_from_state(state)
        if state
        else resolve_range(raw_from, raw_to, DEFAULT_AGGREGATES_SPAN, max_range_s, now)
    )
    if state is None:
        get_device(stores, device_id)  # 404 for unknown devices; later pages already passed this check
    start_s = int(rng.start.timestamp()) // WINDOW_S * WINDOW_S
    end_s = int(rng.end.timestamp())
    page = stores.aggregates.query(
        device_id, start_s, end_s, limit, _resume_key(state, {"device_id", "window_start"})
    )
    next_cursor = (
        cursors.encode_cursor({**_range_state(rng), "k": page.last_key}, context) if page.last_key else None
    )
    return AggregatePage(
        device_id=device_id,
        from_=iso_ms(rng.start),
        to=iso_ms(rng.end),
        items=[aggregate_view(i) for i in page.items],
        next_cursor=next_cursor,
    )


def _days_newest_first(rng: TimeRange) -> list[str]:
    day, last = rng.end.date(), rng.start.date()
    days = []
    while day >= last:
        days.append(day.isoformat())
        day -= timedelta(days=1)
    return days


def anomalies(
    stores: Stores,
    raw_from: str | None,
    raw_to: str | None,
    device_id: str | None,
    min_severity: str | None,
    limit: int,
    cursor: str | None,
    max_range_s: int,
    now: datetime,
    route: str = "anomalies",
) -> AnomalyPage:
    """Anomalies in [from, to], newest first.

    With a device: one key-range query on the table. Without: one query per UTC day on the ``by-day``
    index, from the day of ``to`` back to the day of ``from``. Items are filtered by severity in
    DynamoDB, so a page can hold fewer than ``limit`` items while more exist: follow ``next_cursor``.
    """
    context = {
        "route": route,
        "device_id": device_id,
        "from": raw_from,
        "to": raw_to,
        "min_severity": min_severity,
    }
    state = cursors.decode_cursor(cursor, context)
    rng = (
        _range_from_state(state)
        if state
        else resolve_range(raw_from, raw_to, DEFAULT_ANOMALIES_SPAN, max_range_s, now)
    )
    if route == "device_anomalies" and state is None:
        get_device(stores, device_id or "")  # /devices/{id}/anomalies: 404 for unknown devices
    lo, hi = iso_ms(rng.start), iso_ms(rng.end) + TS_SEQ_HIGH
    min_rank = SEVERITY_RANK[min_severity] if min_severity else 1
    items: list[Item] = []
    next_state: dict[str, Any] | None = None

    if device_id is not None:
        key = _resume_key(state, {"device_id", "ts_seq"})
        for _ in range(MAX_ROUND_TRIPS):
            page = stores.anomalies.query_device(device_id, lo, hi, min_rank, limit - len(items), key)
            items += page.items
            key = page.last_key
            if key is None or len(items) >= limit:
                break
        next_state = {"k": key} if key else None
    else:
        days = _days_newest_first(rng)
        day = (state or {}).get("d", days[0])
        if day not in days:
            raise BadRequest("`cursor` is not a cursor this query returned", "invalid_cursor")
        remaining = days[days.index(day) :]
        key = _resume_key(state, {"day", "device_id", "ts_seq"})
        for _ in range(MAX_ROUND_TRIPS):
            page = stores.anomalies.query_day(remaining[0], lo, hi, min_rank, limit - len(items), key)
            items += page.items
            key = page.last_key
            if key is None:
                remaining = remaining[1:]
            if not remaining or len(items) >= limit:
                break
        next_state = {"d": remaining[0], "k": key} if remaining else None

    next_cursor = cursors.encode_cursor({**_range_state(rng), **next_state}, context) if next_state else None
    return AnomalyPage(
        from_=iso_ms(rng.start),
        to=iso_ms(rng.end),
        items=[anomaly_view(i) for i in items],
        next_cursor=next_cursor,
    )


def stats(stores: Stores, now: datetime) -> Stats:
    """Pipeline counters for the live view, bounded: windows and readings are summed over the first
    ``STATS_MAX_DEVICES`` devices of the registry (one query each), anomalies counted on the by-day index."""
    since = now - STATS_PERIOD
    devices, truncated = stores.devices.count(STATS_MAX_COUNT)
    sample = [i["device_id"] for i in stores.devices.scan(STATS_MAX_DEVICES, None).items]
    start_s, end_s = int(since.timestamp()) // WINDOW_S * WINDOW_S, int(now.timestamp())
    with ThreadPoolExecutor(max_workers=STATS_WORKERS) as pool:
        totals = list(pool.map(lambda d: stores.aggregates.totals(d, start_s, end_s), sample))
    lo, hi = iso_ms(since), iso_ms(now) + TS_SEQ_HIGH
    anomaly_count = sum(
        stores.anomalies.count_day(day, lo, hi, STATS_MAX_COUNT)
        for day in _days_newest_first(TimeRange(since, now))
    )
    failures, readings_in, by_reason = None, None, None
    if stores.metrics is not None:
        sums = stores.metrics.sums((*FAILURE_METRICS, "RecordsIn"), since, now)
        held_back = stores.metrics.peak("RecordsRetried", now - HELD_BACK_SPAN, now)
        reasons = {name: stores.metrics.by_reason(name, since, now) for name in REASON_METRICS}
        if sums is not None and all(r is not None for r in reasons.values()):
            failures = Failures(
                records_retried=sums["RecordsRetried"],
                readings_held_back_now=held_back or 0,
                archive_write_failures=sums["ArchiveWriteFailures"],
                alerts_failed=sums["AlertsFailed"],
                records_redelivered=sums["RecordsRedelivered"],
                calibration_fallbacks=reasons["CalibrationFallbacks"] or {},
                detection_failures=reasons["DetectionFailures"] or {},
            )
            readings_in = sums["RecordsIn"]
        by_reason = stores.metrics.sums_by("RecordsRejected", "Reason", QUARANTINE_REASONS, since, now)
    return Stats(
        failures_last_hour=failures,
        readings_in_last_hour=readings_in,
        quarantined_last_hour=None if by_reason is None else sum(by_reason.values()),
        quarantined_by_reason=by_reason,
        generated_at=iso_ms(now),
        period_s=int(STATS_PERIOD.total_seconds()),
        devices=devices,
        devices_truncated=truncated,
        devices_sampled=len(sample),
        windows_last_hour=sum(w for w, _ in totals),
        readings_last_hour=sum(r for _, r in totals),
        anomalies_last_hour=anomaly_count,
    )
