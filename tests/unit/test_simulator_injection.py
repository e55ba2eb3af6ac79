"""Anomaly and malformed injection: each kind appears at its configured rate and looks like its kind."""

from __future__ import annotations

import itertools
from collections import Counter

import fastjsonschema
import orjson
import pytest

from simulator.anomalies import EPISODE_LENGTH, start_probabilities
from simulator.config import ANOMALY_KINDS, MALFORMED_KINDS, SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.malformed import EXPECTED_REASON, OVERSIZED_MIN_BYTES
from simulator.stream import generate_readings

from .test_simulator_stream import reading_schema

START_MS = 1_780_000_000_000


@pytest.fixture(scope="module")
def fleet() -> list:
    return generate_fleet(500, 11)


@pytest.fixture(scope="module")
def is_valid():
    validate = fastjsonschema.compile(reading_schema())

    def check(document: object) -> bool:
        try:
            validate(document)
        except fastjsonschema.JsonSchemaValueException:
            return False
        return True

    return check


def test_start_probabilities_give_the_configured_fraction() -> None:
    # GIVEN rate r and a mix WHEN start probabilities are derived THEN A / (A + 1 - P) == r
    mix = {"spike": 3.0, "drift": 1.0, "stuck": 1.0}
    p = start_probabilities(0.05, mix)
    mean_len = [sum(EPISODE_LENGTH[k]) / 2 for k in ANOMALY_KINDS]
    a = sum(pk * lk for pk, lk in zip(p, mean_len, strict=True))
    assert a / (a + 1 - p.sum()) == pytest.approx(0.05)
    assert p[ANOMALY_KINDS.index("dropout")] == 0.0


def test_anomalies_at_configured_rate_and_mix(fleet: list) -> None:
    # GIVEN a 10 % anomaly rate over 500 devices x 400 readings with all kinds equally weighted
    config = SimulatorConfig(devices=500, anomaly_rate=0.10, count=200_000, seed=3)
    counts = Counter(p.kind for p in generate_readings(config, fleet, START_MS))
    total = sum(counts.values())
    # THEN the anomalous fraction is 10 % (episodes make it lumpy: 15 % relative tolerance)
    anomalous = total - counts["normal"]
    assert anomalous / total == pytest.approx(0.10, rel=0.15)
    # AND every kind's share is about rate / 6 (30 % relative: a few hundred episodes per kind)
    for kind in ANOMALY_KINDS:
        assert counts[kind] / total == pytest.approx(0.10 / 6, rel=0.3), kind


def test_anomaly_kinds_look_like_their_kind(fleet: list) -> None:
    # GIVEN a stream rich in anomalies, grouped per device
    config = SimulatorConfig(devices=500, anomaly_rate=0.2, count=100_000, seed=4)
    per_device: dict[str, list[tuple[str, dict]]] = {}
    for p in generate_readings(config, fleet, START_MS):
        per_device.setdefault(p.device_id, []).append((p.kind, orjson.loads(p.payload)))
    stuck_runs, dropouts, out_of_range, drift_runs = [], 0, 0, []
    for series in per_device.values():
        for kind, group in itertools.groupby(series, key=lambda item: item[0]):
            docs = [doc for _, doc in group]
            if kind == "stuck" and len(docs) > 1:
                stuck_runs.append(docs)
            elif kind == "dropout":
                dropouts += sum(1 for d in docs if d["temperature"] == 0.0 or d["humidity"] == 0.0)
                assert all(d["temperature"] == 0.0 or d["humidity"] == 0.0 for d in docs)
            elif kind == "out_of_range":
                for d in docs:
                    out_of_range += 1
                    assert d["temperature"] >= 50 or d["temperature"] <= -25 or not 950 < d["pressure"] < 1060
            elif kind == "drift" and len(docs) >= 10:
                drift_runs.append(docs)
    # THEN stuck episodes repeat identical values; dropouts read 0.0; drifts span several readings
    assert stuck_runs
    for docs in stuck_runs:
        assert len({(d["temperature"], d["humidity"], d["pressure"]) for d in docs}) == 1
    assert dropouts > 0
    assert out_of_range > 0
    assert drift_runs


def test_malformed_kinds_at_configured_rate_and_shape(fleet: list, is_valid) -> None:
    # GIVEN 10 % malformed records over 100,000 device-readings, all kinds equally
    config = SimulatorConfig(devices=500, malformed_rate=0.10, anomaly_rate=0.0, count=100_000, seed=5)
    produced = list(generate_readings(config, fleet, START_MS))
    counts = Counter(p.kind for p in produced)
    ids = {d.device_id for d in fleet}
    last_payload: dict[str, bytes] = {}
    # THEN each kind is about 1 % of device-readings (duplicates add a record instead of replacing one)
    readings = len(produced) - counts["duplicate"]
    for kind in MALFORMED_KINDS:
        assert counts[kind] / readings == pytest.approx(0.01, rel=0.2), kind
    # AND each record is malformed the way its label says, and good ones are valid
    for p in produced:
        if p.kind == "invalid_json":
            with pytest.raises(orjson.JSONDecodeError):
                orjson.loads(p.payload)
            continue
        doc = orjson.loads(p.payload)
        if p.kind == "normal":
            assert is_valid(doc)
        elif p.kind in ("missing_field", "extra_field", "wrong_type"):
            assert not is_valid(doc)
        elif p.kind == "impossible_value":
            assert is_valid(doc)
            assert (
                not 0 <= doc["humidity"] <= 100
                or doc["temperature"] < -273.15
                or doc["temperature"] > 200
                or not 0 < doc["pressure"] < 2000
            )
        elif p.kind == "future_timestamp":
            assert is_valid(doc)
            assert p.event_ms - p.send_ms >= 3600_000
        elif p.kind == "stale_timestamp":
            assert is_valid(doc)
            assert p.send_ms - p.event_ms >= 86400_000
        elif p.kind == "duplicate":
            assert p.payload == last_payload[p.device_id]
        elif p.kind == "unknown_device":
            assert is_valid(doc)
            assert doc["device_id"] not in ids
        elif p.kind == "oversized":
            assert len(p.payload) >= OVERSIZED_MIN_BYTES
            assert is_valid(doc)
        last_payload[p.device_id] = p.payload
        assert p.category == ("normal" if p.kind == "normal" else "malformed")
    assert set(EXPECTED_REASON) == set(MALFORMED_KINDS)


def test_rates_of_zero_give_clean_streams(fleet: list) -> None:
    # GIVEN no anomalies and no malformed WHEN generated THEN every record is normal
    config = SimulatorConfig(devices=500, anomaly_rate=0.0, malformed_rate=0.0, count=5000)
    assert {p.kind for p in generate_readings(config, fleet)} == {"normal"}


def test_expected_outcome_maps_labels_to_what_the_pipeline_does() -> None:
    from simulator.malformed import expected_outcome

    assert expected_outcome("good", "normal") == "aggregated"
    assert expected_outcome("anomaly", "spike") == "aggregated"
    assert expected_outcome("malformed", "duplicate") == "duplicate"
    assert expected_outcome("malformed", "impossible_value") == "out_of_range"
    assert expected_outcome("malformed", "stale_timestamp") == "late"
