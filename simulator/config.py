"""Simulator configuration: one dataclass, read from ``SIM_*`` environment variables or the CLI.

Every option has an environment variable so that the Docker image and docker-compose can be tuned
without a command line; the CLI layers its flags on top of ``from_env()``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import datetime
from typing import Any

ANOMALY_KINDS: tuple[str, ...] = ("spike", "drift", "stuck", "dropout", "noise_burst", "out_of_range")
MALFORMED_KINDS: tuple[str, ...] = (
    "invalid_json",
    "missing_field",
    "extra_field",
    "wrong_type",
    "impossible_value",
    "future_timestamp",
    "stale_timestamp",
    "duplicate",
    "unknown_device",
    "oversized",
)
SINKS: tuple[str, ...] = ("kinesis", "http", "mqtt", "stdout", "file", "null")
MAX_PACK = 500  # the processor's MAX_PACKED_READINGS default


class ConfigError(ValueError):
    """An option is missing or malformed (fail fast before anything is sent)."""


def _uniform_mix(kinds: tuple[str, ...]) -> dict[str, float]:
    return dict.fromkeys(kinds, 1.0)


@dataclass(frozen=True)
class SimulatorConfig:
    """What to simulate and where to send it. Immutable: live tuning builds a new one with ``replace``."""

    devices: int = 100
    rate_hz: float = 1.0  # readings per second per device; fractional rates allowed (0.1 = every 10 s)
    seed: int = 42
    anomaly_rate: float = 0.01  # fraction of good readings that belong to an anomaly episode
    anomaly_mix: Mapping[str, float] = field(default_factory=lambda: _uniform_mix(ANOMALY_KINDS))
    malformed_rate: float = 0.0  # fraction of records replaced by (or, for duplicates, added as) bad ones
    malformed_mix: Mapping[str, float] = field(default_factory=lambda: _uniform_mix(MALFORMED_KINDS))
    duration_s: float | None = None  # stop after this much (simulated) time ...
    count: int | None = None  # ... or after this many records, whichever comes first
    burst: bool = False  # unpaced: send as fast as the sink accepts (timestamps still simulated)
    jitter: float = 0.1  # per-reading timing jitter as a fraction of the period
    extra_channels: tuple[str, ...] = ()  # e.g. ("co2",) -> readings carry "extra": {"co2": ...}
    start_time: datetime | None = None  # simulated clock origin; None = now (wall clock)
    timestamp_format: str = "iso"  # "iso" (2026-11-21T23:05:16.123Z) or "epoch_ms"
    include_ground_truth: bool = True
    # Delivery.
    sink: str = "stdout"
    stream_name: str = "iotpipe-readings"
    ingest_url: str = ""
    # Fleet secret the devices' /ingest credentials derive from (simulator/credentials.py): this value,
    # else the file (created by `register`).
    device_secret: str = field(default="", repr=False)
    device_secret_file: str = ".iotpipe/device-fleet.secret"  # noqa: S105 - a path, not a secret
    # MQTT sink: the device identities `iotpipe devices provision` stored (certificates, keys, topics).
    mqtt_key_dir: str = ".iotpipe/devices/iotpipe"
    endpoint_url: str | None = None
    region: str = "us-east-1"
    shard_count: int | None = None  # None = ask Kinesis (DescribeStreamSummary) at setup
    # Kinesis sink: up to this many good readings per Kinesis record (a packed record, a JSON array;
    # docs/data-model.md), <= 64 KiB each. 1 = one reading per record. Packing cuts PUT payload units
    # and the Lambda event envelope per reading (docs/scalability-and-cost.md). Malformed test records
    # are always sent alone. Other sinks ignore it.
    pack: int = 25
    # Kinesis sink: gzip each packed record (docs/data-model.md#compressed-records): ~4x fewer Kinesis
    # bytes and invoke payload per reading at pack 25. Lone readings and malformed records go uncompressed.
    compress: bool = True
    output_path: str | None = None  # file sink target
    labels_path: str | None = None  # ground-truth labels (CSV or .jsonl), None = not written
    devices_table: str = "iotpipe-devices"
    # Operations.
    control_port: int | None = None  # None = no control endpoint; 0 = pick a free port
    control_host: str = "127.0.0.1"  # 0.0.0.0 only inside a container whose port is published locally
    progress_interval_s: float = 2.0

    def __post_init__(self) -> None:
        self.validate()

    def validate(self) -> None:
        if self.devices < 1:
            raise ConfigError(f"devices must be >= 1, got {self.devices}")
        if not self.rate_hz > 0:
            raise ConfigError(f"rate_hz must be > 0, got {self.rate_hz}")
        for name in ("anomaly_rate", "malformed_rate"):
            value = getattr(self, name)
            if not 0.0 <= value < 1.0:
                raise ConfigError(f"{name} must be in [0, 1), got {value}")
        if not 0.0 <= self.jitter <= 0.8:
            raise ConfigError(f"jitter must be in [0, 0.8], got {self.jitter}")
        _check_mix("anomaly_mix", self.anomaly_mix, ANOMALY_KINDS)
        _check_mix("malformed_mix", self.malformed_mix, MALFORMED_KINDS)
        if self.timestamp_format not in ("iso", "epoch_ms"):
            raise ConfigError(f"timestamp_format must be iso or epoch_ms, got {self.timestamp_format!r}")
        if self.sink not in SINKS:
            raise ConfigError(f"sink must be one of {SINKS}, got {self.sink!r}")
        if not 1 <= self.pack <= MAX_PACK:
            raise ConfigError(f"pack must be in [1, {MAX_PACK}], got {self.pack}")
        if self.count is not None and self.count < 0:
            raise ConfigError("count must be >= 0")
        if self.duration_s is not None and self.duration_s < 0:
            raise ConfigError("duration_s must be >= 0")

    @property
    def target_rate(self) -> float:
        """Records per second the whole fleet should produce."""
        return self.devices * self.rate_hz

    def with_updates(self, **changes: Any) -> SimulatorConfig:
        """A validated copy with ``changes`` applied (used by live tuning)."""
        return replace(self, **changes)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> SimulatorConfig:
        """Build a config from ``SIM_*`` variables (see docs/simulator.md), then apply ``overrides``."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for f in fields(cls):
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is None or raw == "":
                continue
            values[f.name] = parse_value(f.name, raw)
        # AWS_ENDPOINT_URL / AWS_REGION are the project-wide names; SIM_* wins when both are set.
        if "endpoint_url" not in values and env.get("AWS_ENDPOINT_URL"):
            values["endpoint_url"] = env["AWS_ENDPOINT_URL"]
        if "region" not in values and (env.get("AWS_REGION") or env.get("AWS_DEFAULT_REGION")):
            values["region"] = env.get("AWS_REGION") or env["AWS_DEFAULT_REGION"]
        if "stream_name" not in values and env.get("STREAM_NAME"):
            values["stream_name"] = env["STREAM_NAME"]
        if "devices_table" not in values and env.get("DEVICES_TABLE"):
            values["devices_table"] = env["DEVICES_TABLE"]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)


ENV_PREFIX = "SIM_"

_INT_FIELDS = {"devices", "seed", "count", "shard_count", "control_port", "pack"}
_FLOAT_FIELDS = {"rate_hz", "anomaly_rate", "malformed_rate", "duration_s", "jitter", "progress_interval_s"}
_BOOL_FIELDS = {"burst", "include_ground_truth", "compress"}


def parse_value(name: str, raw: str) -> Any:
    """Parse one option from its string form (environment variable or CLI flag)."""
    try:
        if name in _INT_FIELDS:
            return int(raw)
        if name in _FLOAT_FIELDS:
            return float(raw)
        if name in _BOOL_FIELDS:
            return parse_bool(raw)
        if name in ("anomaly_mix", "malformed_mix"):
            return parse_mix(raw)
        if name == "extra_channels":
            return tuple(part.strip() for part in raw.split(",") if part.strip())
        if name == "start_time":
            return parse_time(raw)
    except ValueError as exc:
        raise ConfigError(f"{ENV_PREFIX}{name.upper()}: {exc}") from exc
    return raw


def parse_bool(raw: str) -> bool:
    lowered = raw.strip().lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"not a boolean: {raw!r}")


def parse_mix(raw: str) -> dict[str, float]:
    """``"spike=2,drift=1"`` -> weights; a bare name means weight 1 (``"spike,stuck"``)."""
    mix: dict[str, float] = {}
    for part in raw.split(","):
        part = part.strip()
        if not part:
            continue
        name, _, weight = part.partition("=")
        mix[name.strip()] = float(weight) if weight else 1.0
    return mix


def parse_time(raw: str) -> datetime:
    """ISO 8601 (``Z`` allowed) or epoch milliseconds."""
    from datetime import UTC

    if raw.strip().lstrip("-").isdigit():
        return datetime.fromtimestamp(int(raw) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(raw.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _check_mix(name: str, mix: Mapping[str, float], allowed: tuple[str, ...]) -> None:
    unknown = set(mix) - set(allowed)
    if unknown:
        raise ConfigError(f"{name}: unknown kinds {sorted(unknown)}; allowed {list(allowed)}")
    if any(w < 0 for w in mix.values()) or not any(w > 0 for w in mix.values()):
        raise ConfigError(f"{name}: weights must be >= 0 with at least one > 0")
