"""Replay a recorded CSV (e.g. SKAB) as one virtual device, at original or accelerated speed.

Columns map onto channels with ``Column=channel[*scale][+offset]``; ``extra.<name>`` puts a column
under ``extra``. The defaults map SKAB's pump test bed onto the reading contract: its Pressure (bar,
gauge, -1.26..1.69 over the shared files) is scaled into the atmospheric band (``*100+900``: 774..1069 hPa)
so readings pass validation (300..1100; ``+1000`` quarantined every reading above 1 bar);
Volume Flow RateRMS (about 32) stands in for humidity; the rest become extra channels.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import orjson

from simulator.malformed import format_timestamp
from simulator.stream import Produced

CORE = ("temperature", "humidity", "pressure")


@dataclass(frozen=True)
class ChannelMap:
    channel: str  # "temperature" | "humidity" | "pressure" | "extra.<name>"
    scale: float = 1.0
    offset: float = 0.0

    def apply(self, raw: str) -> float:
        return float(raw) * self.scale + self.offset


SKAB_MAPPING: dict[str, ChannelMap] = {
    "Temperature": ChannelMap("temperature"),
    "Pressure": ChannelMap("pressure", 100.0, 900.0),
    "Volume Flow RateRMS": ChannelMap("humidity"),
    "Accelerometer1RMS": ChannelMap("extra.accel1_rms"),
    "Accelerometer2RMS": ChannelMap("extra.accel2_rms"),
    "Current": ChannelMap("extra.current"),
    "Voltage": ChannelMap("extra.voltage"),
    "Thermocouple": ChannelMap("extra.thermocouple"),
}
_SPEC = re.compile(r"^(?P<channel>[A-Za-z_][\w.]*)(?:\*(?P<scale>[-+]?[0-9.]+))?(?P<offset>[-+][0-9.]+)?$")


def parse_mapping(spec: str) -> dict[str, ChannelMap]:
    """``"Temperature=temperature,Pressure=pressure*100+1000,Current=extra.current"`` -> mapping."""
    mapping: dict[str, ChannelMap] = {}
    for part in spec.split(","):
        if not part.strip():
            continue
        column, sep, target = part.partition("=")
        match = _SPEC.match(target.strip())
        if not sep or match is None:
            raise ValueError(f"bad mapping {part!r}; expected Column=channel[*scale][+offset]")
        channel = match["channel"]
        if channel not in CORE and not channel.startswith("extra."):
            raise ValueError(f"bad channel {channel!r}; use {CORE} or extra.<name>")
        mapping[column.strip()] = ChannelMap(
            channel, float(match["scale"] or 1.0), float(match["offset"] or 0.0)
        )
    return mapping


def _parse_time(raw: str) -> int:
    parsed = datetime.fromisoformat(raw.strip())
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)  # SKAB times carry no zone; treat them as UTC
    return int(parsed.timestamp() * 1000)


def replay_readings(
    path: str,
    *,
    device_id: str = "replay-000000",
    mapping: Mapping[str, ChannelMap] | None = None,
    start_ms: int | None = None,
    delimiter: str = ";",
    time_column: str = "datetime",
    label_column: str | None = "anomaly",
    anomaly_label: str = "drift",
    timestamp_format: str = "iso",
    include_ground_truth: bool = True,
) -> Iterator[Produced]:
    """Rows of ``path`` as readings of ``device_id``, shifted to begin at ``start_ms``.

    ``start_ms=None`` keeps the recorded timestamps. A row whose label column is 1 carries
    ``ground_truth = anomaly_label`` (SKAB marks faults, not their shape; ``drift`` by default).
    """
    mapping = dict(SKAB_MAPPING if mapping is None else mapping)
    with open(path, newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle, delimiter=delimiter)
        missing = set(mapping) - set(reader.fieldnames or ())
        if missing:
            raise ValueError(f"{path}: columns {sorted(missing)} not found in {reader.fieldnames}")
        missing_core = set(CORE) - {m.channel for m in mapping.values()}
        if missing_core:
            raise ValueError(f"mapping leaves required channels unmapped: {sorted(missing_core)}")
        first_ms: int | None = None
        for row in reader:
            recorded_ms = _parse_time(row[time_column])
            if first_ms is None:
                first_ms = recorded_ms
            event_ms = recorded_ms if start_ms is None else start_ms + (recorded_ms - first_ms)
            record: dict[str, object] = {
                "device_id": device_id,
                "timestamp": format_timestamp(event_ms, timestamp_format),
            }
            extra: dict[str, float] = {}
            for column, target in mapping.items():
                value = target.apply(row[column])
                if target.channel.startswith("extra."):
                    extra[target.channel[6:]] = value
                else:
                    record[target.channel] = value
            if "humidity" in record:
                record["humidity"] = min(max(float(record["humidity"]), 0.0), 100.0)  # type: ignore[arg-type]
            if extra:
                record["extra"] = extra
            label = "normal"
            if label_column and float(row.get(label_column) or 0) >= 1:
                label = anomaly_label
            if include_ground_truth:
                record["ground_truth"] = label
            yield Produced(device_id, orjson.dumps(record), label, event_ms, event_ms)
