"""One settings object per process, read once from the environment, validated at cold start.

Every setting is declared once below: its default, its environment variable and its allowed values or
range. ``load_settings()`` reads the environment, checks every value and raises ``SettingsError`` naming
the variable (a Lambda fails its cold start loudly instead of misbehaving later); ``get_settings()`` is
the one cached accessor. On AWS the template sets every variable explicitly; the defaults are the
documented local ones.

Per function: ``CommonSettings`` (where AWS is, resource names, metrics, logging) is shared;
``ProcessorSettings``, ``IngestSettings``, ``ApiSettings`` and ``CompactorSettings`` add what each function
owns. ``Settings``
is their union, what ``get_settings()`` returns: modules shared between functions (adapters, the
detector) and the local tools read it, and each field still has exactly one declaration.

Why not pydantic-settings (the obvious library, and the first choice): the processor and ingest bundles
carry no pydantic, and pydantic + pydantic-settings add ~125 ms (with bytecode) to ~400 ms (as Lambda
runs the bundle, without it) to the processor's ~180 ms cold-start import, measured with bench/end_to_end.py's
method (emulator CPython 3.12, unpacked bundle, best of 5). That is a 1.7x to 3x regression for ~40
typed, ranged fields, which the ~60 lines of ``_load`` below validate as strictly: a declared type, a
range or a set of choices, empty means unset, one clear message per bad variable.
"""

from __future__ import annotations

import dataclasses
import os
import typing
from dataclasses import dataclass
from functools import lru_cache
from typing import Any


class SettingsError(ValueError):
    """A configuration value is missing or malformed (fail fast at cold start)."""


def setting(
    default: Any,
    env: str | tuple[str, ...],
    *,
    ge: float | None = None,
    gt: float | None = None,
    le: float | None = None,
    choices: tuple[str, ...] | None = None,
    secret: bool = False,
) -> Any:
    """A field: its default, the environment variable(s) it is read from (first set wins) and its rule."""
    names = (env,) if isinstance(env, str) else env
    rule = {"env": names, "ge": ge, "gt": gt, "le": le, "choices": choices}
    return dataclasses.field(default=default, repr=not secret, metadata=rule)


def _check(name: str, value: Any, rule: typing.Mapping[str, Any]) -> None:
    """Raise SettingsError unless ``value`` satisfies the field's range or choices."""
    var = rule["env"][0]
    if rule["choices"] is not None and value not in rule["choices"]:
        raise SettingsError(f"{var} must be one of {rule['choices']}, got {value!r}")
    for bound, ok, text in (
        ("ge", lambda v, b: v >= b, ">="),
        ("gt", lambda v, b: v > b, ">"),
        ("le", lambda v, b: v <= b, "<="),
    ):
        limit = rule[bound]
        if limit is not None and not ok(value, limit):
            raise SettingsError(f"{var} ({name}) must be {text} {limit:g}, got {value!r}")


class _Validated:
    """Checks every field's rule on construction, so ``Settings(...)`` in code fails as fast as the env."""

    def __post_init__(self) -> None:
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            if f.metadata:
                _check(f.name, getattr(self, f.name), f.metadata)
        self._resolve()

    def _resolve(self) -> None:
        """Resolve values that depend on where the code runs (subclasses)."""


@dataclass(frozen=True)
class CommonSettings(_Validated):
    # Where AWS is. endpoint_url is None on real AWS; set to the emulator locally.
    region: str = setting("us-east-1", ("AWS_REGION", "AWS_DEFAULT_REGION"))
    endpoint_url: str | None = setting(None, "AWS_ENDPOINT_URL")
    stack_name: str = setting("iotpipe", "STACK_NAME")

    # Resource names (stack outputs / template environment variables).
    stream_name: str = setting("iotpipe-readings", "STREAM_NAME")
    devices_table: str = setting("iotpipe-devices", "DEVICES_TABLE")
    aggregates_table: str = setting("iotpipe-aggregates", "AGGREGATES_TABLE")
    anomalies_table: str = setting("iotpipe-anomalies", "ANOMALIES_TABLE")
    archive_bucket: str = setting("iotpipe-archive", "ARCHIVE_BUCKET")
    alerts_topic_arn: str = setting("", "ALERTS_TOPIC_ARN")

    # Metrics: "emf" on AWS (CloudWatch parses EMF log lines), "cloudwatch" (PutMetricData) where the
    # target does not parse EMF (ministack, LocalStack), "none" to disable. "auto" (the default)
    # resolves to "cloudwatch" when AWS_ENDPOINT_URL is set (an emulator) and "emf" otherwise, so the
    # template deploys unchanged to every target.
    metrics_sink: str = setting("auto", "METRICS_SINK", choices=("auto", "emf", "cloudwatch", "none"))
    metrics_namespace: str = setting("IoTPipeline", "METRICS_NAMESPACE")

    # The reading contract's size limit, shared by ingest (per body item) and the processor (per record).
    max_record_bytes: int = setting(8192, "MAX_RECORD_BYTES", ge=1, le=1_048_576)

    log_level: str = setting("INFO", "LOG_LEVEL")

    def _resolve(self) -> None:
        if self.metrics_sink == "auto":
            object.__setattr__(self, "metrics_sink", "cloudwatch" if self.endpoint_url else "emf")


@dataclass(frozen=True)
class ProcessorSettings(CommonSettings):
    # Processing rules.
    window_seconds: int = setting(60, "WINDOW_SECONDS", gt=0, le=3600)
    allowed_lateness_s: int = setting(600, "ALLOWED_LATENESS_S", ge=0)
    max_future_skew_s: int = setting(120, "MAX_FUTURE_SKEW_S", ge=0)
    device_cache_ttl_s: int = setting(300, "DEVICE_CACHE_TTL_S", ge=0)
    # A packed Kinesis record (a JSON array of readings, docs/data-model.md): at most this many bytes and
    # readings. 1 MiB is Kinesis's own record limit, so whatever the stream accepts is judged reading by
    # reading: 500 realistic readings (~150 B each) take ~75 KB, and 500 fit up to ~2 KiB each.
    # Producers pack 25 by default (SIM_PACK).
    max_packed_bytes: int = setting(1_048_576, "MAX_PACKED_BYTES", ge=1, le=1_048_576)
    max_packed_readings: int = setting(500, "MAX_PACKED_READINGS", ge=1, le=500)
    # "report" (batchItemFailures; AWS, LocalStack) or "raise" (fail the invocation so the whole batch is
    # retried: for ministack, which drops records reported in batchItemFailures). docs/processing.md.
    partial_batch_response: str = setting(
        "auto", "PARTIAL_BATCH_RESPONSE", choices=("auto", "report", "raise")
    )
    # Parallel conditional writes (one per window): a 5,000-record batch over 1,000 devices is ~1,000
    # writes, ~10 s serially at ~10 ms each, under 1 s with 16 threads (iotpipe/cost.py reads it too).
    write_concurrency: int = setting(16, "WRITE_CONCURRENCY", ge=1, le=64)

    # Anomaly detection.
    detector_backend: str = setting("embedded", "DETECTOR_BACKEND", choices=("embedded", "sagemaker"))
    model_artifact_path: str = setting("", "MODEL_ARTIFACT_PATH")
    sagemaker_endpoint: str = setting("", "SAGEMAKER_ENDPOINT")
    # The SDK's service-specific endpoint variable: set locally to the serving process that answers the
    # runtime API (serving/; iotpipe up --detector sagemaker), unset on AWS. It wins over AWS_ENDPOINT_URL
    # for the sagemaker-runtime client only, as in botocore's own endpoint resolution.
    sagemaker_runtime_endpoint_url: str | None = setting(None, "AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME")
    sagemaker_timeout_s: float = setting(2.0, "SAGEMAKER_TIMEOUT_S", gt=0, le=60)
    sagemaker_failure_policy: str = setting(
        "fallback", "SAGEMAKER_FAILURE_POLICY", choices=("fallback", "skip", "fail")
    )
    alert_cooldown_s: int = setting(300, "ALERT_COOLDOWN_S", ge=0)
    anomaly_ttl_days: int = setting(30, "ANOMALY_TTL_DAYS", ge=1)
    # expires_at = window_end + this (DynamoDB TTL on the aggregates table)
    aggregates_ttl_days: int = setting(90, "AGGREGATES_TTL_DAYS", ge=1)

    def _resolve(self) -> None:
        super()._resolve()
        # auto: the one template deploys unchanged everywhere, and the embedded emulator's launcher
        # (iotpipe/local/emulator.py) marks the environment its functions inherit with
        # IOTPIPE_EMULATOR=ministack, whose Kinesis mapping drops records reported in batchItemFailures:
        # there, fail the invocation so the whole batch is retried instead.
        if self.partial_batch_response == "auto":
            ministack = os.environ.get("IOTPIPE_EMULATOR") == "ministack"
            object.__setattr__(self, "partial_batch_response", "raise" if ministack else "report")


@dataclass(frozen=True)
class IngestSettings(CommonSettings):
    # PutRecords takes at most 500 records per call; API Gateway and Lambda cap a body at 6 MB (10 MB
    # for API Gateway, 6 MB for the synchronous Lambda payload).
    ingest_max_records: int = setting(500, "INGEST_MAX_RECORDS", ge=1, le=500)
    ingest_max_body_bytes: int = setting(1_048_576, "INGEST_MAX_BODY_BYTES", ge=1, le=6_291_456)


@dataclass(frozen=True)
class ApiSettings(CommonSettings):
    api_key: str = setting("", "API_KEY", secret=True)
    # ARN of the cursor signing secret (Secrets Manager; the template creates it). Empty: derive from
    # api_key, or a random per-process key (local uvicorn only).
    cursor_secret_arn: str = setting("", "CURSOR_SECRET_ARN")
    api_max_range_s: int = setting(7 * 24 * 3600, "API_MAX_RANGE_S", gt=0)
    api_max_limit: int = setting(1000, "API_MAX_LIMIT", ge=1, le=10_000)


@dataclass(frozen=True)
class CompactorSettings(CommonSettings):
    # Which hours a scheduled run considers (functions/compactor/compaction.hours_due): those that ended
    # at least settle minutes ago, back to lookback hours (Kinesis retention 24 h + margin).
    compaction_lookback_hours: int = setting(26, "COMPACTION_LOOKBACK_HOURS", ge=1, le=24 * 14)
    compaction_settle_minutes: int = setting(30, "COMPACTION_SETTLE_MINUTES", ge=0, le=24 * 60)
    # DuckDB's memory limit; it spills to /tmp beyond it. About half the function's memory.
    compaction_memory_mb: int = setting(512, "COMPACTION_MEMORY_MB", ge=64, le=10_240)


@dataclass(frozen=True)
class Settings(ProcessorSettings, IngestSettings, ApiSettings, CompactorSettings):
    """Every function's settings: what ``get_settings()`` returns (see the module docstring)."""


def _convert(var: str, raw: str, kind: Any) -> Any:
    if kind is not int and kind is not float:  # str, str | None
        return raw
    try:
        return kind(raw)
    except ValueError:
        what = "an integer" if kind is int else "a number"
        raise SettingsError(f"{var} must be {what}, got {raw!r}") from None


def _load[S: CommonSettings](cls: type[S]) -> S:
    """``cls`` from the environment: for each field, its first variable that is set and non-empty."""
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        for var in f.metadata["env"]:
            raw = os.environ.get(var)
            if raw:  # empty means unset (the template may pass "" for an optional parameter)
                values[f.name] = _convert(var, raw, hints[f.name])
                break
    return cls(**values)


def load_settings() -> Settings:
    """Build Settings from the environment (no caching; tests call this after monkeypatching)."""
    return _load(Settings)


# Stack output -> the setting it names: how a tool points the functions' code at a deployed stack.
STACK_OUTPUT_SETTINGS: dict[str, str] = {
    "StreamName": "stream_name",
    "DevicesTableName": "devices_table",
    "AggregatesTableName": "aggregates_table",
    "AnomaliesTableName": "anomalies_table",
    "ArchiveBucketName": "archive_bucket",
    "AlertsTopicArn": "alerts_topic_arn",
}


def settings_for_stack(
    outputs: typing.Mapping[str, str], base: Settings | None = None, **overrides: Any
) -> Settings:
    """``base`` (None: read from the environment) with a deployed stack's resource names (its outputs)
    and ``overrides`` (field name -> value), validated like any Settings. Nothing global changes: the
    process's ``get_settings()`` and environment are left as they are."""
    values: dict[str, Any] = {f: outputs[k] for k, f in STACK_OUTPUT_SETTINGS.items() if outputs.get(k)}
    return dataclasses.replace(base or load_settings(), **values, **overrides)


def default(name: str) -> Any:
    """The declared default of a setting (for code that precomputes from settings, e.g. DecodeRules)."""
    return Settings.__dataclass_fields__[name].default


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once (cold start). Tests clear with get_settings.cache_clear()."""
    return load_settings()
