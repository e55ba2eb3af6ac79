"""One settings object per process, read once from the environment.

Every Lambda function and every local tool reads its configuration through ``get_settings()``.
Defaults are the documented local defaults; on AWS the template sets every variable explicitly.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache


class SettingsError(ValueError):
    """A configuration value is missing or malformed (fail fast at cold start)."""


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise SettingsError(f"{name} must be a number, got {raw!r}") from exc


def _choice(name: str, default: str, allowed: tuple[str, ...]) -> str:
    value = os.environ.get(name) or default
    if value not in allowed:
        raise SettingsError(f"{name} must be one of {allowed}, got {value!r}")
    return value


@dataclass(frozen=True)
class Settings:
    # Where AWS is. endpoint_url is None on real AWS; set to the emulator locally.
    region: str = "us-east-1"
    endpoint_url: str | None = None
    stack_name: str = "iotpipe"

    # Resource names (stack outputs / template environment variables).
    stream_name: str = "iotpipe-readings"
    devices_table: str = "iotpipe-devices"
    aggregates_table: str = "iotpipe-aggregates"
    anomalies_table: str = "iotpipe-anomalies"
    archive_bucket: str = "iotpipe-archive"
    alerts_topic_arn: str = ""

    # Processing rules.
    window_seconds: int = 60
    allowed_lateness_s: int = 600
    max_future_skew_s: int = 120
    device_cache_ttl_s: int = 300
    max_record_bytes: int = 8192  # a Kinesis record holding one reading (a JSON object)
    # A packed Kinesis record (a JSON array of readings, docs/data-model.md): at most this many bytes and
    # readings. 1 MiB is Kinesis's own record limit, so whatever the stream accepts is judged reading by
    # reading: 500 realistic readings (~150 B each) take ~75 KB, and 500 fit up to ~2 KiB each.
    # Producers pack 25 by default (SIM_PACK).
    max_packed_bytes: int = 1_048_576
    max_packed_readings: int = 500
    # "report" (batchItemFailures; AWS, LocalStack) or "raise" (fail the invocation so the whole batch is
    # retried: for ministack, which drops records reported in batchItemFailures). docs/processing.md.
    partial_batch_response: str = "report"

    # Metrics: "emf" on AWS (CloudWatch parses EMF log lines), "cloudwatch" (PutMetricData) where the
    # target does not parse EMF (ministack, LocalStack), "none" to disable. "auto" (the default)
    # resolves to "cloudwatch" when AWS_ENDPOINT_URL is set (an emulator) and "emf" otherwise, so the
    # template deploys unchanged to every target.
    metrics_sink: str = "emf"
    metrics_namespace: str = "IoTPipeline"

    # Anomaly detection.
    detector_backend: str = "embedded"
    model_artifact_path: str = ""
    sagemaker_endpoint: str = ""
    sagemaker_timeout_s: float = 2.0
    sagemaker_failure_policy: str = "fallback"
    alert_cooldown_s: int = 300
    anomaly_ttl_days: int = 30
    aggregates_ttl_days: int = 90  # expires_at = window_end + this (DynamoDB TTL on the aggregates table)

    # API.
    api_key: str = field(default="", repr=False)
    # ARN of the cursor signing secret (Secrets Manager; the template creates it). Empty: derive from
    # api_key, or a random per-process key (local uvicorn only).
    cursor_secret_arn: str = ""
    api_max_range_s: int = 7 * 24 * 3600
    api_max_limit: int = 1000
    ingest_max_records: int = 500
    ingest_max_body_bytes: int = 1_048_576

    log_level: str = "INFO"


def _resolve_partial_batch_response(value: str) -> str:
    # auto: the one template deploys unchanged everywhere, and the embedded emulator's launcher
    # (iotpipe/emulator.py) marks the environment its functions inherit with IOTPIPE_EMULATOR=ministack,
    # whose Kinesis mapping drops records reported in batchItemFailures: there, fail the invocation so
    # the whole batch is retried instead.
    if value != "auto":
        return value
    return "raise" if os.environ.get("IOTPIPE_EMULATOR") == "ministack" else "report"


def _resolve_metrics_sink(value: str, endpoint: str | None) -> str:
    if value != "auto":
        return value
    return "cloudwatch" if endpoint else "emf"


def load_settings() -> Settings:
    """Build Settings from the environment (no caching; tests call this after monkeypatching)."""
    env = os.environ.get
    endpoint = env("AWS_ENDPOINT_URL") or None
    return Settings(
        region=env("AWS_REGION") or env("AWS_DEFAULT_REGION") or "us-east-1",
        endpoint_url=endpoint,
        stack_name=env("STACK_NAME") or "iotpipe",
        stream_name=env("STREAM_NAME") or "iotpipe-readings",
        devices_table=env("DEVICES_TABLE") or "iotpipe-devices",
        aggregates_table=env("AGGREGATES_TABLE") or "iotpipe-aggregates",
        anomalies_table=env("ANOMALIES_TABLE") or "iotpipe-anomalies",
        archive_bucket=env("ARCHIVE_BUCKET") or "iotpipe-archive",
        alerts_topic_arn=env("ALERTS_TOPIC_ARN") or "",
        window_seconds=_int("WINDOW_SECONDS", 60),
        allowed_lateness_s=_int("ALLOWED_LATENESS_S", 600),
        max_future_skew_s=_int("MAX_FUTURE_SKEW_S", 120),
        device_cache_ttl_s=_int("DEVICE_CACHE_TTL_S", 300),
        max_record_bytes=_int("MAX_RECORD_BYTES", 8192),
        max_packed_bytes=_int("MAX_PACKED_BYTES", 1_048_576),
        max_packed_readings=_int("MAX_PACKED_READINGS", 500),
        partial_batch_response=_resolve_partial_batch_response(
            _choice("PARTIAL_BATCH_RESPONSE", "auto", ("auto", "report", "raise"))),
        metrics_sink=_resolve_metrics_sink(
            _choice("METRICS_SINK", "auto", ("auto", "emf", "cloudwatch", "none")), endpoint
        ),
        metrics_namespace=env("METRICS_NAMESPACE") or "IoTPipeline",
        detector_backend=_choice("DETECTOR_BACKEND", "embedded", ("embedded", "sagemaker")),
        model_artifact_path=env("MODEL_ARTIFACT_PATH") or "",
        sagemaker_endpoint=env("SAGEMAKER_ENDPOINT") or "",
        sagemaker_timeout_s=_float("SAGEMAKER_TIMEOUT_S", 2.0),
        sagemaker_failure_policy=_choice(
            "SAGEMAKER_FAILURE_POLICY", "fallback", ("fallback", "skip", "fail")
        ),
        alert_cooldown_s=_int("ALERT_COOLDOWN_S", 300),
        anomaly_ttl_days=_int("ANOMALY_TTL_DAYS", 30),
        aggregates_ttl_days=_int("AGGREGATES_TTL_DAYS", 90),
        api_key=env("API_KEY") or "",
        cursor_secret_arn=env("CURSOR_SECRET_ARN") or "",
        api_max_range_s=_int("API_MAX_RANGE_S", 7 * 24 * 3600),
        api_max_limit=_int("API_MAX_LIMIT", 1000),
        ingest_max_records=_int("INGEST_MAX_RECORDS", 500),
        ingest_max_body_bytes=_int("INGEST_MAX_BODY_BYTES", 1_048_576),
        log_level=env("LOG_LEVEL") or "INFO",
    )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (cold start). Tests clear with get_settings.cache_clear()."""
    return load_settings()
