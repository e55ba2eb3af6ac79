"""Seeded in-memory stores (``testkit.fakes``) in the data model's storage shape: tests, the demo app,
the live-view test and UI work. Anomalies are built by the one item builder
(``functions.core.anomaly_items``), like the detector stage's.

Data is generated relative to ``now``, deterministic for a given seed: a small fleet across four sites,
1-minute windows per device, one temperature spike with its anomaly and one older anomaly.
"""

from __future__ import annotations

import math
import random
from datetime import UTC, datetime, timedelta

from functions.api.deps import Stores
from functions.core import anomaly_items
from testkit.fakes import InMemoryAggregateStore, InMemoryAnomalyStore, InMemoryDeviceRegistry

SITES = [
    ("plant-berlin", "Berlin, DE", 52.52, 13.40),
    ("plant-lyon", "Lyon, FR", 45.76, 4.84),
    ("plant-milan", "Milan, IT", 45.46, 9.19),
    ("plant-gdansk", "Gdansk, PL", 54.35, 18.65),
]
BASELINE = {"temperature": (21.0, 0.4), "humidity": (45.0, 1.5), "pressure": (1013.0, 0.8)}


def device_item(i: int, rng: random.Random) -> dict:
    site, location, lat, lon = SITES[i % len(SITES)]
    return {
        "device_id": f"dev-{i:06d}",
        "name": f"sensor {i}",
        "site": site,
        "location": location,
        "latitude": round(lat + rng.uniform(-0.4, 0.4), 4),
        "longitude": round(lon + rng.uniform(-0.6, 0.6), 4),
        "model": "BME280",
        "timezone": "Europe/Berlin",
        "registered_at": "2026-01-01T00:00:00.000Z",
    }


def window_item(device: dict, window_start: int, rng: random.Random, bump: float = 0.0) -> dict:
    channels = {}
    for name, (mean, spread) in BASELINE.items():
        centre = mean + spread * math.sin(window_start / 900) + (bump if name == "temperature" else 0.0)
        lo, hi = centre - spread * rng.uniform(0.3, 1.0), centre + spread * rng.uniform(0.3, 1.0)
        channels[name] = {
            "count": 60,
            "sum": centre * 60,
            "sumsq": centre * centre * 60,
            "min": round(lo, 3),
            "max": round(hi, 3),
            "mean": round(centre, 3),
            "std": round((hi - lo) / 4, 4),
        }
    return {
        "device_id": device["device_id"],
        "window_start": window_start,
        "window_end": window_start + 60,
        "count": 60,
        "channels": channels,
        "site": device["site"],
        "location": device["location"],
        "watermarks": {"shardId-000000000000": "49650000000000000000000000000000000000000000000000000001"},
        "version": 1,
        "anomaly_count": 1 if bump else 0,
    }


def anomaly_item(
    device: dict, at: datetime, seq: int, severity: str = "high", temperature: float = 35.0
) -> dict:
    return anomaly_items.anomaly_item(
        device_id=device["device_id"],
        epoch_ms=int(at.timestamp() * 1000),
        sequence_number=f"{seq:056d}",
        shard_id="shardId-000000000000",
        score=0.71,
        threshold=0.62,
        severity=severity,
        top_feature="temperature_z",
        reason="temperature spike (z=9.1)",
        values={"temperature": temperature, "humidity": 45.1, "pressure": 1013.2},
        model_version="iforest-demo",
        ttl_days=30,
        site=device["site"],
        location=device["location"],
    )


def seeded_stores(now: datetime | None = None, devices: int = 6, minutes: int = 60, seed: int = 7) -> Stores:
    now = now or datetime.now(tz=UTC)
    rng = random.Random(seed)
    registry = [device_item(i, rng) for i in range(devices)]
    last_window = int(now.timestamp()) // 60 * 60 - 60
    spike_window = last_window - 10 * 60
    aggregates, anomalies = InMemoryAggregateStore(), InMemoryAnomalyStore()
    for device in registry:
        for k in range(minutes):
            start = last_window - k * 60
            bump = 12.0 if device is registry[0] and start == spike_window else 0.0
            aggregates.add(window_item(device, start, rng, bump))
    at = datetime.fromtimestamp(spike_window + 31.5, tz=UTC)
    anomalies.put_many([
        anomaly_item(registry[0], at, 1, "critical", 34.2),
        anomaly_item(registry[1], now - timedelta(hours=3), 2, "medium", 22.9),
    ])
    return Stores(InMemoryDeviceRegistry(registry), aggregates, anomalies)
