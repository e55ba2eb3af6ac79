"""Decode/validate stage: every way a record can be wrong maps to a reason code, nothing raises."""

from __future__ import annotations

import base64

import orjson
import pytest

from functions.core.readings import Reading
from functions.processor.decode import (
    PHYSICAL_BOUNDS,
    DecodeRules,
    TimestampError,
    decode_record,
    format_ms,
    parse_timestamp_ms,
)
from functions.processor.records import KinesisRecord, Rejection
from testkit.events import make_records, reading_doc

NOW_S = 1_795_000_000.0
NOW_MS = int(NOW_S * 1000)
RULES = DecodeRules(max_record_bytes=1024, allowed_lateness_ms=600_000, max_future_skew_ms=120_000)


def decode(payload: dict | bytes, arrival_s: float = NOW_S) -> Reading | Rejection:
    (record,) = make_records([payload], arrival_s=arrival_s)
    return decode_record(record, RULES, NOW_MS)


def test_valid_reading_decodes_with_channels_and_ground_truth() -> None:
    # GIVEN a valid reading with an extra channel and a simulator label
    doc = reading_doc("dev-1", NOW_MS - 1000, extra={"co2": 600}, ground_truth="spike")
    # WHEN decoded
    out = decode(doc)
    # THEN it is a Reading with float channels (extra flattened) and the label carried along
    assert isinstance(out, Reading)
    assert out.epoch_ms == NOW_MS - 1000
    assert out.channels == {"temperature": 21.5, "humidity": 45.0, "pressure": 1013.25, "co2": 600.0}
    assert all(type(v) is float for v in out.channels.values())
    assert out.ground_truth == "spike"


def test_epoch_ms_timestamp_is_accepted() -> None:
    out = decode(reading_doc("dev-1", NOW_MS - 5, iso=False))
    assert isinstance(out, Reading)
    assert out.epoch_ms == NOW_MS - 5


@pytest.mark.parametrize(
    ("payload", "reason", "stage"),
    [
        (b"not json", "malformed_json", "decode"),
        (b"", "malformed_json", "decode"),
        (b"\xff\xfe", "malformed_json", "decode"),
        (b"[1, 2]", "schema_invalid", "validate"),
        (b'"a string"', "schema_invalid", "validate"),
        ({"device_id": "dev-1"}, "schema_invalid", "validate"),
        (b"x" * 2000, "oversized", "decode"),
    ],
)
def test_bad_payloads_map_to_reasons(payload: bytes | dict, reason: str, stage: str) -> None:
    # GIVEN a bad payload / WHEN decoded / THEN a Rejection with the reason and stage, raw bytes kept
    out = decode(payload)
    assert isinstance(out, Rejection)
    assert (out.reason, out.stage) == (reason, stage)
    raw = payload if isinstance(payload, bytes) else orjson.dumps(payload)
    assert base64.b64decode(out.record.data_b64) == raw


def test_invalid_base64_is_malformed() -> None:
    record = KinesisRecord("shardId-000000000000", "1", "%%%not-base64%%%", NOW_MS)
    out = decode_record(record, RULES, NOW_MS)
    assert isinstance(out, Rejection)
    assert out.reason == "malformed_json"


@pytest.mark.parametrize(
    ("channel", "value"), [(c, v) for c, (lo, hi) in PHYSICAL_BOUNDS.items() for v in (lo - 0.01, hi + 0.01)]
)
def test_values_outside_physical_bounds_are_out_of_range(channel: str, value: float) -> None:
    # GIVEN a reading with one channel just outside its physical bounds
    doc = reading_doc("dev-1", NOW_MS - 1000)
    doc[channel] = value
    # WHEN decoded / THEN quarantined as out_of_range, naming the device
    out = decode(doc)
    assert isinstance(out, Rejection)
    assert out.reason == "out_of_range"
    assert out.device_id == "dev-1"


def test_bounds_are_inclusive() -> None:
    doc = reading_doc("dev-1", NOW_MS - 1000, temperature=-90.0, humidity=100, pressure=300)
    assert isinstance(decode(doc), Reading)


def test_extra_channel_shadowing_a_core_channel_is_invalid() -> None:
    out = decode(reading_doc("dev-1", NOW_MS, extra={"humidity": 3.0}))
    assert isinstance(out, Rejection)
    assert out.reason == "schema_invalid"


def test_future_and_late_are_judged_against_arrival_time() -> None:
    # GIVEN readings ahead of / behind their arrival time by more than the skew / lateness
    future = decode(reading_doc("dev-1", NOW_MS + 121_000))
    late = decode(reading_doc("dev-1", NOW_MS - 601_000))
    just_ok = decode(reading_doc("dev-1", NOW_MS - 599_000))
    # THEN future_timestamp, late, and accepted
    assert isinstance(future, Rejection)
    assert future.reason == "future_timestamp"
    assert isinstance(late, Rejection)
    assert late.reason == "late"
    assert isinstance(just_ok, Reading)


def test_backlog_is_not_late_when_it_arrived_on_time() -> None:
    # GIVEN a reading that arrived on time an hour ago (the processor fell behind)
    arrival = NOW_S - 3600
    doc = reading_doc("dev-1", int(arrival * 1000) - 1000)
    # WHEN processed now / THEN it is still accepted (lateness is the producer's, not ours)
    assert isinstance(decode(doc, arrival_s=arrival), Reading)


@pytest.mark.parametrize(
    ("text", "expected_ms"),
    [
        ("2026-11-21T23:05:16.123Z", 1795302316123),
        ("2026-11-21T23:05:16Z", 1795302316000),
        ("2026-11-21T23:05:16.1Z", 1795302316100),
        ("2026-11-21T23:05:16.123456Z", 1795302316123),
        ("2026-11-21T23:05:16.123+00:00", 1795302316123),
        ("2026-11-22T00:05:16.123+01:00", 1795302316123),
        (1795302316123, 1795302316123),
    ],
)
def test_parse_timestamp_forms(text: str | int, expected_ms: int) -> None:
    assert parse_timestamp_ms(text) == expected_ms


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-21T23:05:16",
        "2026-02-30T00:00:00.000Z",
        "2026-11-21T24:00:00.000Z",
        "2026-11-21T23:05:1 .123Z",
        "x" * 24,
    ],
)
def test_parse_timestamp_rejects_naive_and_impossible(text: str) -> None:
    with pytest.raises(TimestampError):
        parse_timestamp_ms(text)


def test_bad_timestamp_is_schema_invalid() -> None:
    doc = reading_doc("dev-1", NOW_MS)
    doc["timestamp"] = "2026-11-21T23:05:16.000"  # no offset
    out = decode(doc)
    assert isinstance(out, Rejection)
    assert out.reason == "schema_invalid"
    assert "offset" in out.detail


def test_format_ms_round_trips() -> None:
    assert parse_timestamp_ms(format_ms(1795302316123)) == 1795302316123


def test_event_factory_record_matches_direct_record() -> None:
    # GIVEN the same payload through the Lambda event shape and directly
    from testkit.events import kinesis_event, records_of

    doc = reading_doc("dev-1", NOW_MS)
    (from_event,) = records_of(kinesis_event([doc], arrival_s=NOW_S))
    (direct,) = make_records([doc], arrival_s=NOW_S)
    # THEN both carry the same shard, sequence number, data and arrival time
    assert from_event == direct


def test_a_reading_carries_at_most_sixteen_extra_channels() -> None:
    # GIVEN the channel limit (3 core + 16 extra; docs/model-card.md says why a 52-channel plant such as
    # TEP is evaluated offline, through the same scoring code, instead of raising it)
    rules = DecodeRules(max_record_bytes=4096, allowed_lateness_ms=600_000, max_future_skew_ms=120_000)
    sixteen = {f"ch{i}": float(i) for i in range(16)}
    ok = reading_doc("dev-1", NOW_MS - 1000, extra=sixteen)
    too_many = reading_doc("dev-1", NOW_MS - 1000, extra={**sixteen, "ch16": 16.0})
    # WHEN decoded
    (a, b) = make_records([ok, too_many], arrival_s=NOW_S)
    accepted, refused = decode_record(a, rules, NOW_MS), decode_record(b, rules, NOW_MS)
    # THEN 19 channels are a reading; a 20th is refused with a reason, its bytes kept
    assert isinstance(accepted, Reading)
    assert len(accepted.channels) == 19
    assert isinstance(refused, Rejection)
    assert (refused.reason, refused.stage) == ("schema_invalid", "validate")
