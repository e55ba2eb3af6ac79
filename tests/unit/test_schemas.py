"""The shared JSON Schemas: valid 2020-12 documents, and the compiled validators agree with jsonschema."""

from __future__ import annotations

import copy

import jsonschema
import pytest

from functions.schemas import (
    SCHEMA_NAMES,
    SchemaValidationError,
    compiled_validator,
    is_valid,
    load_schema,
    validate,
    validate_reading,
)

READING = {
    "device_id": "dev-000042",
    "timestamp": "2026-11-21T23:05:16.123Z",
    "temperature": 21.37,
    "humidity": 45.2,
    "pressure": 1013.25,
    "extra": {"co2": 612.0},
    "ground_truth": "spike",
}
AGGREGATE = {
    "device_id": "dev-000042",
    "window_start": "2026-11-21T23:05:00Z",
    "window_end": "2026-11-21T23:06:00Z",
    "count": 60,
    "channels": {"temperature": {"count": 60, "mean": 21.4, "min": 20.9, "max": 22.0, "std": 0.3}},
    "site": "plant-1",
    "location": "Porto, PT",
    "anomaly_count": 1,
}
ANOMALY = {
    "device_id": "dev-000042",
    "timestamp": "2026-11-21T23:05:16.123Z",
    "epoch_ms": 1795302316123,
    "score": 0.71,
    "threshold": 0.6,
    "severity": "high",
    "severity_rank": 3,
    "top_feature": "temperature:dev",
    "reason": "temperature 9.1 sigma above baseline",
    "values": {"temperature": 48.2, "humidity": 45.0, "pressure": 1013.0},
    "site": "plant-1",
    "location": "Porto, PT",
    "model_version": "iforest-1",
}
QUARANTINED = {
    "reason": "malformed_json",
    "stage": "decode",
    "detail": "unexpected character",
    "shard_id": "shardId-000000000000",
    "sequence_number": "49650000000000000000000000000000000000000000",
    "approximate_arrival": "2026-11-21T23:05:16.500Z",
    "raw_b64": "bm90IGpzb24=",
}
PROCESSED = {
    "device_id": "dev-000001",
    "timestamp": "2026-11-21T23:05:16.000Z",
    "epoch_ms": 1_795_302_316_000,
    "channels": {"temperature": 21.5, "humidity": 45.0, "pressure": 1013.25, "co2": 400.0},
    "site": "site-a",
    "location": "Lisbon, PT",
    "shard_id": "shardId-000000000000",
    "sequence_number": "49650000000000000000000000000000000000000000",
    "status": "aggregated",
    "anomaly": False,
    "anomaly_score": 0.25,
    "severity": "none",
    "index": 0,
}
SAMPLES = {"reading": READING, "aggregate": AGGREGATE, "anomaly": ANOMALY, "quarantined": QUARANTINED,
           "processed": PROCESSED}


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_schema_files_are_valid_draft_2020_12(name: str) -> None:
    # GIVEN the schema file / WHEN checked against the 2020-12 meta-schema / THEN it is valid
    schema = load_schema(name)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    jsonschema.Draft202012Validator.check_schema(schema)


@pytest.mark.parametrize("name", SCHEMA_NAMES)
def test_sample_documents_are_valid_for_both_validators(name: str) -> None:
    # GIVEN a sample document of each kind
    doc = SAMPLES[name]
    # WHEN validated by the compiled and the reference validator / THEN both accept it
    compiled_validator(name)(doc)
    jsonschema.Draft202012Validator(load_schema(name), format_checker=jsonschema.FormatChecker()).validate(
        doc
    )


MUTATIONS = [
    ("reading", lambda d: d.pop("temperature")),
    ("reading", lambda d: d.update(temperature="21")),
    ("reading", lambda d: d.update(temperature=True)),
    ("reading", lambda d: d.update(device_id="bad id with spaces")),
    ("reading", lambda d: d.update(device_id="x" * 65)),
    ("reading", lambda d: d.update(unexpected=1)),
    ("reading", lambda d: d.update(extra={"co2": "high"})),
    ("reading", lambda d: d.update(extra={"9bad": 1.0})),
    ("reading", lambda d: d.update(timestamp=-5)),
    ("reading", lambda d: d.update(timestamp="short")),
    ("reading", lambda d: d.update(ground_truth="x" * 33)),
    ("aggregate", lambda d: d.update(count=0)),
    ("aggregate", lambda d: d["channels"]["temperature"].update(std=-1)),
    ("anomaly", lambda d: d.update(severity="none")),
    ("anomaly", lambda d: d.pop("score")),
    ("quarantined", lambda d: d.update(reason="duplicate")),
    ("quarantined", lambda d: d.update(stage="somewhere")),
    ("processed", lambda d: d.update(status="quarantined")),
    ("processed", lambda d: d.pop("anomaly_score")),
    ("processed", lambda d: d["channels"].update(co2="high")),
    ("processed", lambda d: d.update(sequence_number="12a")),
]


@pytest.mark.parametrize(("name", "mutate"), MUTATIONS)
def test_invalid_documents_are_rejected_by_both_validators(name: str, mutate) -> None:
    # GIVEN a sample document with one defect
    doc = copy.deepcopy(SAMPLES[name])
    mutate(doc)
    # WHEN validated / THEN both validators reject it, and validate() raises a SchemaValidationError
    reference = jsonschema.Draft202012Validator(load_schema(name), format_checker=jsonschema.FormatChecker())
    assert not reference.is_valid(doc)
    assert not is_valid(name, doc)
    with pytest.raises(SchemaValidationError) as info:
        validate(name, doc)
    assert info.value.path.startswith("data")


def test_compiled_validator_checks_date_time_format() -> None:
    # GIVEN an aggregate whose window_start is not a date-time (jsonschema checks formats only with
    # optional extras, so only the compiled validator is asserted here)
    doc = copy.deepcopy(AGGREGATE)
    doc["window_start"] = "yesterday"
    # WHEN validated / THEN rejected by the format rule
    with pytest.raises(SchemaValidationError) as info:
        validate("aggregate", doc)
    assert info.value.rule == "format"


def test_validate_reading_accepts_epoch_ms_and_minimal_reading() -> None:
    # GIVEN a reading with epoch ms and no optional fields / WHEN validated / THEN no error
    validate_reading(
        {"device_id": "d1", "timestamp": 1795302316123, "temperature": 1, "humidity": 2, "pressure": 900}
    )


def test_unknown_schema_name_is_a_key_error() -> None:
    with pytest.raises(KeyError):
        load_schema("nope")


def test_load_schema_returns_a_fresh_copy() -> None:
    # GIVEN a loaded schema that a caller mutates / WHEN loaded again / THEN the mutation does not leak
    load_schema("reading")["title"] = "changed"
    assert load_schema("reading")["title"] == "Reading"
