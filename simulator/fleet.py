"""The device fleet: identities from Faker, physics parameters from a seeded numpy generator.

Each device is generated from its own seed (derived from the fleet seed and its index), so the first
``n`` devices of a larger fleet are exactly the fleet of size ``n``: scaling the fleet up or down
while running keeps the existing devices unchanged.
"""

from __future__ import annotations

import math
import random
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from functools import cache
from typing import Any

import numpy as np
from faker import Faker


@dataclass(frozen=True, slots=True)
class DeviceModel:
    """A sensor model; noise is the 1-sigma measurement noise per channel."""

    name: str
    temperature_noise: float
    humidity_noise: float
    pressure_noise: float
    co2_noise: float
    weight: float  # share of the fleet


# A small catalogue: cheap sensors are common and noisy, lab-grade ones rare and quiet.
CATALOGUE: tuple[DeviceModel, ...] = (
    DeviceModel("THP-100", 0.25, 1.5, 0.50, 25.0, 0.45),
    DeviceModel("EnviroSense-E2", 0.12, 0.8, 0.20, 15.0, 0.35),
    DeviceModel("AtmoPro-X", 0.05, 0.4, 0.08, 8.0, 0.15),
    DeviceModel("LabRef-9", 0.02, 0.2, 0.03, 4.0, 0.05),
)
MODELS: dict[str, DeviceModel] = {m.name: m for m in CATALOGUE}

_SITE_KINDS = ("Plant", "Warehouse", "Depot", "Campus", "Greenhouse", "Data Center", "Farm")
_REGISTERED_AT = datetime(2026, 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class Device:
    device_id: str
    name: str
    site: str
    location: str  # "City, CC"
    latitude: float
    longitude: float
    model: str
    timezone: str  # IANA
    registered_at: str
    # Means the signal generator oscillates around (stored in the registry as ``baseline``).
    baseline: dict[str, float] = field(default_factory=dict)
    diurnal_amplitude: float = 3.0  # °C, half peak-to-peak

    @property
    def sensor(self) -> DeviceModel:
        return MODELS[self.model]

    def to_registry_item(self) -> dict[str, Any]:
        """The devices table item (docs/data-model.md) with plain Python values."""
        return {
            "device_id": self.device_id,
            "name": self.name,
            "site": self.site,
            "location": self.location,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "model": self.model,
            "timezone": self.timezone,
            "registered_at": self.registered_at,
            "baseline": dict(self.baseline),
        }

    def to_dynamodb_item(self) -> dict[str, Any]:
        """The same item in DynamoDB's typed attribute-value form (for the low-level client)."""
        from boto3.dynamodb.types import TypeSerializer  # deferred: pure tests never import boto3

        serializer = TypeSerializer()
        item = _floats_to_decimal(self.to_registry_item())
        return {key: serializer.serialize(value) for key, value in item.items()}


@cache
def _faker() -> Faker:
    # Building a Faker costs about a millisecond; reseeding one per device keeps devices independent.
    return Faker()


def device_id_for(index: int) -> str:
    return f"dev-{index:06d}"


def generate_device(index: int, seed: int) -> Device:
    """Device ``index`` of the fleet with ``seed``; independent of every other device."""
    device_seed = seed * 1_000_003 + index
    fake = _faker()
    fake.seed_instance(device_seed)
    rng = np.random.default_rng([seed, index, 7])
    # location_on_land gives a real place with a consistent country code and IANA timezone.
    lat_s, lon_s, city, country, timezone = fake.location_on_land()
    # A few km of scatter so devices of one city do not sit on the same point.
    latitude = round(float(lat_s) + float(rng.normal(0, 0.02)), 5)
    longitude = round(float(lon_s) + float(rng.normal(0, 0.02)), 5)
    model = random.Random(device_seed).choices(CATALOGUE, weights=[m.weight for m in CATALOGUE])[0]
    # Warmer near the equator; devices are partly indoors, hence the damped latitude effect.
    temperature = 27.0 - 0.25 * abs(latitude) + float(rng.normal(0, 2.0))
    humidity = float(np.clip(rng.normal(55, 10), 25, 80))
    pressure = float(rng.normal(1013.25, 5.0))
    baseline = {
        "temperature": round(temperature, 2),
        "humidity": round(humidity, 1),
        "pressure": round(pressure, 2),
    }
    site = f"{fake.last_name()} {_SITE_KINDS[int(rng.integers(len(_SITE_KINDS)))]}"
    registered = _REGISTERED_AT.timestamp() + float(rng.uniform(0, 300 * 86400))
    return Device(
        device_id=device_id_for(index),
        name=f"{city} {fake.color_name()} {fake.word().capitalize()}",
        site=site,
        location=f"{city}, {country}",
        latitude=latitude,
        longitude=longitude,
        model=model.name,
        timezone=timezone,
        registered_at=datetime.fromtimestamp(int(registered), tz=UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        baseline=baseline,
        diurnal_amplitude=round(float(rng.uniform(1.5, 5.0)), 2),
    )


def generate_fleet(n: int, seed: int) -> list[Device]:
    """``n`` devices, ``dev-000000`` .. ; the same seed always gives the same fleet."""
    return [generate_device(i, seed) for i in range(n)]


def register_fleet(
    devices: list[Device],
    table_name: str,
    client: Any,
    *,
    max_attempts: int = 8,
    base_delay_s: float = 0.05,
    sleep: Any = time.sleep,
    fleet_secret: str | None = None,
) -> int:
    """Write ``devices`` to the devices table with BatchWriteItem (25 per call).

    With ``fleet_secret`` each item also gets the ``credential_hash`` of the device's /ingest credential
    (simulator/credentials.py); the secret itself is never written.

    Unprocessed items (throttling) are resent with exponential backoff and full jitter; raises
    ``RuntimeError`` if some are still unprocessed after ``max_attempts``. Returns items written.
    """
    written = 0
    for start in range(0, len(devices), 25):
        pending = [{"PutRequest": {"Item": _item(d, fleet_secret)}} for d in devices[start : start + 25]]
        # Its own loop, not functions.core.retry.Backoff: the simulator image (simulator/Dockerfile) copies
        # only simulator/ and its requirements, so functions/ is not importable where this runs.
        for attempt in range(max_attempts):
            response = client.batch_write_item(RequestItems={table_name: pending})
            unprocessed = response.get("UnprocessedItems", {}).get(table_name, [])
            written += len(pending) - len(unprocessed)
            pending = unprocessed
            if not pending:
                break
            sleep(random.uniform(0, base_delay_s * 2**attempt))
        if pending:
            raise RuntimeError(f"{len(pending)} devices still unprocessed after {max_attempts} attempts")
    return written


def _item(device: Device, fleet_secret: str | None) -> dict[str, Any]:
    item = device.to_dynamodb_item()
    if fleet_secret:
        from simulator.credentials import HASH_ATTRIBUTE, device_secret, hash_secret

        secret = device_secret(fleet_secret, device.device_id)
        item[HASH_ATTRIBUTE] = {"S": hash_secret(device.device_id, secret)}
    return item


def _floats_to_decimal(value: Any) -> Any:
    # DynamoDB numbers must be Decimal; str() keeps the short decimal form (21.37, not 21.3699...).
    if isinstance(value, float):
        if math.isnan(value) or math.isinf(value):
            raise ValueError("DynamoDB cannot store NaN or infinity")
        return Decimal(str(value))
    if isinstance(value, dict):
        return {k: _floats_to_decimal(v) for k, v in value.items()}
    return value
