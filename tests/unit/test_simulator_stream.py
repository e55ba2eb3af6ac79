"""The offline stream: deterministic, schema-valid, physically plausible, fast enough to vectorise."""

from __future__ import annotations

import itertools
import json
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pytest

from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.stream import generate_readings

SCHEMA_FILE = Path(__file__).resolve().parents[2] / "functions" / "schemas" / "reading.schema.json"

# The contract of docs/data-model.md, used only until functions/schemas/reading.schema.json exists.
CONTRACT_FALLBACK: dict[str, Any] = {
    "type": "object",
    "required": ["device_id", "timestamp", "temperature", "humidity", "pressure"],
    "properties": {
        "device_id": {"type": "string", "pattern": "^[A-Za-z0-9_.:-]{1,64}$"},
        "timestamp": {"anyOf": [{"type": "string"}, {"type": "integer"}]},
        "temperature": {"type": "number"},
        "humidity": {"type": "number"},
        "pressure": {"type": "number"},
        "extra": {"type": "object", "additionalProperties": {"type": "number"}},
        "ground_truth": {"type": "string"},
    },
}


def reading_schema() -> dict[str, Any]:
    """The shared schema (via functions.schemas) when present, else the documented contract."""
    try:
        from functions.schemas import load_schema
    except ImportError:
        load_schema = None
    if load_schema is not None and SCHEMA_FILE.exists():
        return load_schema("reading")
    if SCHEMA_FILE.exists():
        return json.loads(SCHEMA_FILE.read_text())
    return CONTRACT_FALLBACK


@pytest.fixture(scope="module")
def validator() -> Any:
    import jsonschema

    schema = reading_schema()
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
    return cls(schema)


@pytest.fixture(scope="module")
def fleet() -> list:
    return generate_fleet(200, 42)


def take(config: SimulatorConfig, fleet: list, n: int) -> list:
    return list(itertools.islice(generate_readings(config, fleet, 1_780_000_000_000), n))


def test_same_seed_same_bytes(fleet: list) -> None:
    # GIVEN one config with anomalies and malformed records
    config = SimulatorConfig(
        devices=200, seed=9, anomaly_rate=0.05, malformed_rate=0.05, extra_channels=("co2",)
    )
    # WHEN the stream is generated twice, and once with another seed
    first, second = take(config, fleet, 3000), take(config, fleet, 3000)
    other = take(SimulatorConfig(devices=200, seed=10), fleet, 3000)
    # THEN the records are byte for byte identical for the same seed and differ otherwise
    assert first == second
    assert [p.payload for p in first] != [p.payload for p in other]


def test_every_good_reading_validates_against_the_input_schema(fleet: list, validator: Any) -> None:
    # GIVEN readings with anomalies of every kind and extra channels
    config = SimulatorConfig(devices=200, anomaly_rate=0.3, extra_channels=("co2", "light"))
    readings = take(config, fleet, 20_000)
    kinds = {p.kind for p in readings}
    assert {"normal", "spike", "drift", "stuck", "dropout", "noise_burst", "out_of_range"} <= kinds
    for produced in readings:
        # WHEN decoded THEN it matches the schema and carries its ground truth
        document = orjson.loads(produced.payload)
        validator.validate(document)
        assert document["ground_truth"] == produced.kind
        assert document["device_id"] == produced.device_id
        assert 0.0 <= document["humidity"] <= 100.0


def test_timestamps_precision_and_order(fleet: list) -> None:
    # GIVEN 2 Hz readings WHEN generated
    config = SimulatorConfig(devices=200, rate_hz=2.0, anomaly_rate=0.0)
    readings = take(config, fleet, 2000)
    docs = [orjson.loads(p.payload) for p in readings]
    # THEN send order is non-decreasing, timestamps are ISO ms UTC matching event_ms
    sends = [p.send_ms for p in readings]
    assert sends == sorted(sends)
    first = docs[0]["timestamp"]
    assert first.endswith("Z")
    assert len(first) == len("2026-05-28T20:26:40.000Z")
    assert str(np.datetime64(readings[0].event_ms, "ms")) + "Z" == first
    # AND values have sensor precision: 2 decimals °C / hPa, 1 decimal %RH
    for doc in docs:
        assert round(doc["temperature"], 2) == doc["temperature"]
        assert round(doc["humidity"], 1) == doc["humidity"]
        assert round(doc["pressure"], 2) == doc["pressure"]
    # AND each device sends once per period: 2000 readings of 200 devices at 2 Hz span 10 ticks = 5 s
    assert 4500 <= readings[-1].send_ms - readings[0].send_ms < 5000
    per_device = {p.device_id for p in readings}
    assert len(per_device) == 200


def test_epoch_ms_timestamp_format(fleet: list) -> None:
    # GIVEN epoch_ms format WHEN generated THEN the timestamp is the integer event time
    readings = take(SimulatorConfig(devices=200, timestamp_format="epoch_ms"), fleet, 10)
    assert all(orjson.loads(p.payload)["timestamp"] == p.event_ms for p in readings)


def test_physics_diurnal_cycle_and_anticorrelation() -> None:
    # GIVEN one device over two simulated days at one reading per 5 minutes
    fleet = generate_fleet(1, 3)
    config = SimulatorConfig(devices=1, rate_hz=1 / 300, anomaly_rate=0.0, duration_s=2 * 86400)
    docs = [orjson.loads(p.payload) for p in generate_readings(config, fleet, 1_780_000_000_000)]
    temperature = np.array([d["temperature"] for d in docs])
    humidity = np.array([d["humidity"] for d in docs])
    # THEN temperature swings by about twice its diurnal amplitude and humidity moves against it
    amplitude = fleet[0].diurnal_amplitude
    assert temperature.max() - temperature.min() == pytest.approx(2 * amplitude, rel=0.35)
    assert np.corrcoef(temperature, humidity)[0, 1] < -0.8
    assert len(docs) == 2 * 86400 // 300


def test_count_and_duration_limits(fleet: list) -> None:
    # GIVEN a count WHEN generated THEN exactly that many records come out
    assert len(list(generate_readings(SimulatorConfig(devices=200, count=777), fleet))) == 777
    # GIVEN a duration at a fractional rate THEN devices x rate x duration records
    config = SimulatorConfig(devices=200, rate_hz=0.5, duration_s=20)
    assert len(list(generate_readings(config, fleet))) == 200 * 0.5 * 20
