"""Labelled readings for training and evaluation: from the simulator, or from a CSV of your own devices."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np
import orjson

from functions.core.readings import CORE_CHANNELS, DeviceInfo, Reading


@dataclass(frozen=True)
class ReadingSet:
    """Rows sorted by (device_id, epoch_ms): the order the feature builder needs."""

    keys: list[str]
    epoch_ms: np.ndarray
    values: np.ndarray  # rows x channels, in ``channels`` order
    baselines: np.ndarray  # the registry baseline of each row's device (or NaN when unknown)
    labels: list[str]  # ground truth ("normal" when unknown)
    channels: tuple[str, ...]
    devices: dict[str, DeviceInfo]

    def __len__(self) -> int:
        return len(self.keys)

    def take(self, mask: np.ndarray) -> ReadingSet:
        idx = np.flatnonzero(mask)
        return ReadingSet(
            keys=[self.keys[i] for i in idx],
            epoch_ms=self.epoch_ms[idx],
            values=self.values[idx],
            baselines=self.baselines[idx],
            labels=[self.labels[i] for i in idx],
            channels=self.channels,
            devices=self.devices,
        )

    def readings(self) -> list[Reading]:
        """As the processor hands them to the detector (in this set's order)."""
        names = self.channels
        return [
            Reading(
                device_id=key,
                epoch_ms=int(ms),
                channels=dict(zip(names, row, strict=True)),
                shard_id="shardId-000000000000",
                sequence_number=str(i),
                device=self.devices.get(key),
                ground_truth=label,
            )
            for i, (key, ms, row, label) in enumerate(
                zip(self.keys, self.epoch_ms.tolist(), self.values.tolist(), self.labels, strict=True)
            )
        ]


def _sorted_set(
    rows: list[tuple[str, int, list[float], str]], devices: dict[str, DeviceInfo], channels: tuple[str, ...]
) -> ReadingSet:
    rows.sort(key=lambda r: (r[0], r[1]))
    keys = [r[0] for r in rows]
    baselines = np.array(
        [[devices[k].baseline.get(ch, np.nan) if k in devices else np.nan for ch in channels] for k in keys],
        dtype=np.float64,
    ).reshape(len(rows), len(channels))
    return ReadingSet(
        keys=keys,
        epoch_ms=np.array([r[1] for r in rows], dtype=np.int64),
        values=np.array([r[2] for r in rows], dtype=np.float64).reshape(len(rows), len(channels)),
        baselines=baselines,
        labels=[r[3] for r in rows],
        channels=channels,
        devices=devices,
    )


def from_simulator(
    devices: int,
    duration_s: float,
    seed: int,
    anomaly_rate: float = 0.0,
    rate_hz: float = 1.0,
    mix: dict[str, float] | None = None,
) -> ReadingSet:
    """Readings of a simulated fleet (colleague's ``simulator`` package), deterministic for a seed."""
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    config = SimulatorConfig(
        devices=devices,
        rate_hz=rate_hz,
        seed=seed,
        anomaly_rate=anomaly_rate,
        **({"anomaly_mix": mix} if mix else {}),
        malformed_rate=0.0,
        duration_s=duration_s,
        sink="null",
        timestamp_format="epoch_ms",
        include_ground_truth=True,
    )
    fleet = generate_fleet(devices, seed)
    infos = {
        d.device_id: DeviceInfo(
            device_id=d.device_id,
            name=d.name,
            site=d.site,
            location=d.location,
            model=d.model,
            baseline=dict(d.baseline),
        )
        for d in fleet
    }
    rows = []
    for produced in generate_readings(config, fleet):
        record = orjson.loads(produced.payload)
        rows.append(
            (
                record["device_id"],
                int(record["timestamp"]),
                [float(record[ch]) for ch in CORE_CHANNELS],
                produced.kind,
            )
        )
    return _sorted_set(rows, infos, CORE_CHANNELS)


def _epoch_ms(raw: str) -> int:
    if raw.lstrip("-").isdigit():
        return int(raw)
    return int(datetime.fromisoformat(raw.replace("Z", "+00:00")).timestamp() * 1000)


def from_csv(path: Path, channels: tuple[str, ...] = CORE_CHANNELS) -> ReadingSet:
    """A CSV with columns ``device_id, timestamp`` (ISO 8601 or epoch ms), one column per channel, and
    optionally ``baseline_<channel>`` (the registry baseline) and ``label`` (ground truth; default normal).
    """
    rows = []
    baselines: dict[str, dict[str, float]] = {}
    with path.open(newline="") as handle:
        for record in csv.DictReader(handle):
            key = record["device_id"]
            rows.append(
                (
                    key,
                    _epoch_ms(record["timestamp"]),
                    [float(record[ch]) for ch in channels],
                    record.get("label") or "normal",
                )
            )
            for ch in channels:
                value = record.get(f"baseline_{ch}")
                if value:
                    baselines.setdefault(key, {})[ch] = float(value)
    devices = {k: DeviceInfo(device_id=k, baseline=b) for k, b in baselines.items()}
    return _sorted_set(rows, devices, channels)
