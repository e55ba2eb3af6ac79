"""Response models. Aggregate and Anomaly mirror functions/schemas/{aggregate,anomaly}.schema.json.

They are written out (rather than generated at import) so the OpenAPI document carries readable names
and descriptions; tests/unit/test_api_models.py asserts that their properties, required fields and
patterns equal the shared schemas', and the route tests validate every response against those schemas,
so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, JsonValue

DEVICE_ID_PATTERN = r"^[A-Za-z0-9_.:-]{1,64}$"
Severity = Literal["low", "medium", "high", "critical"]

_DATE_TIME: dict[str, JsonValue] = {"format": "date-time"}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ChannelStats(_Strict):
    count: int = Field(ge=1)
    mean: float
    min: float
    max: float
    std: float = Field(ge=0, description="Population standard deviation.")


class Aggregate(_Strict):
    """One 1-minute tumbling window of one device (event time, UTC)."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    window_start: str = Field(
        json_schema_extra=_DATE_TIME, description="Inclusive window start, ISO 8601 UTC."
    )
    window_end: str = Field(json_schema_extra=_DATE_TIME, description="Exclusive window end, ISO 8601 UTC.")
    count: int = Field(ge=1, description="Readings in the window, duplicates counted once.")
    channels: dict[str, ChannelStats] = Field(description="Per-channel statistics.")
    site: str | None = None
    location: str | None = None
    anomaly_count: int | None = Field(default=None, ge=0, description="Anomalies flagged in this window.")


class Anomaly(_Strict):
    """One flagged reading: the API shape of the anomalies-table item (``functions.core.anomaly_items``
    builds the item and projects it onto these fields)."""

    device_id: str = Field(pattern=DEVICE_ID_PATTERN)
    timestamp: str = Field(
        json_schema_extra=_DATE_TIME, description="Event time of the reading, ISO 8601 UTC."
    )
    epoch_ms: int | None = Field(default=None, ge=0)
    sequence_number: str | None = Field(default=None, pattern=r"^[0-9]{1,128}$")
    score: float = Field(description="Higher = more anomalous.")
    threshold: float
    severity: Severity
    severity_rank: int | None = Field(default=None, ge=1, le=4)
    top_feature: str = Field(description="The feature that contributed most.")
    reason: str = Field(description="Human-readable explanation.")
    values: dict[str, float] = Field(description="The reading's channels.")
    site: str | None = None
    location: str | None = None
    model_version: str | None = None


class Device(BaseModel):
    device_id: str
    name: str | None = None
    site: str | None = None
    location: str | None = Field(default=None, description='"City, CC"')
    latitude: float | None = None
    longitude: float | None = None
    model: str | None = None
    timezone: str | None = None
    registered_at: str | None = None


class _Page(BaseModel):
    next_cursor: str | None = Field(
        default=None, description="Pass as `cursor` to get the next page; absent on the last page."
    )


class DevicePage(_Page):
    items: list[Device]


class AggregatePage(_Page):
    device_id: str
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    items: list[Aggregate]

    model_config = ConfigDict(populate_by_name=True)


class AnomalyPage(_Page):
    from_: str = Field(alias="from", serialization_alias="from")
    to: str
    order: Literal["newest_first"] = "newest_first"
    items: list[Anomaly]

    model_config = ConfigDict(populate_by_name=True)


class Failures(BaseModel):
    """What the tables cannot show: readings handed back, archive and alert failures (metric sums)."""

    records_retried: int = Field(
        description="Readings handed back for redelivery, summed over deliveries: a batch retried 50 times "
        "counts 50 times (see readings_held_back_now for each reading once).")
    readings_held_back_now: int = Field(
        default=0, description="Readings handed back in the last 2 minutes, each counted once however often "
        "its batch was retried: the largest handed-back delivery (a retry carries the same readings). "
        "Above 0 means a batch is failing now.")
    archive_write_failures: int = Field(description="Archive puts that failed.")
    alerts_failed: int = Field(description="Alerts that could not be sent (the anomalies are stored).")
    records_redelivered: int = Field(description="Readings that came back after being put in the table.")
    calibration_fallbacks: dict[str, int] = Field(
        default_factory=dict,
        description="Readings the fleet model scored instead of the device's own calibration, by reason "
        "(unreadable_item, unreadable_calibration, invalid_calibration, missing_channel, ...).",
    )
    detection_failures: dict[str, int] = Field(
        default_factory=dict,
        description="Readings aggregated although detection failed for them, by reason "
        "(unscored, anomaly_not_stored).",
    )


class Stats(BaseModel):
    generated_at: str
    period_s: int = Field(description="The trailing period the *_last_hour figures cover.")
    devices: int
    devices_truncated: bool = Field(description="True if the registry holds more devices than were counted.")
    devices_sampled: int = Field(
        description="Devices whose windows were summed (the first N of the registry)."
    )
    windows_last_hour: int
    readings_last_hour: int
    anomalies_last_hour: int
    failures_last_hour: Failures | None = Field(
        default=None, description="Failure counters from the processor's metrics; null when unreadable."
    )
    readings_in_last_hour: int | None = Field(
        default=None, description="Readings the processor received (RecordsIn; a retried batch counts again)."
    )
    quarantined_last_hour: int | None = Field(
        default=None, description="Readings quarantined (RecordsRejected, all reasons); null when unreadable."
    )
    quarantined_by_reason: dict[str, int] | None = Field(
        default=None, description="quarantined_last_hour per reason (reasons with none left out)."
    )


class Health(BaseModel):
    status: Literal["ok"] = "ok"
    service: str = "query-api"
