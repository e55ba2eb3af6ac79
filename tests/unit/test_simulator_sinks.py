"""Sinks with in-memory fakes: Kinesis partial failures, rate limits, HTTP batching, JSON lines."""

from __future__ import annotations

import io
import random
from typing import Any

import orjson
import pytest

from simulator.clock import FakeClock
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.sinks import HttpSink, JsonLinesSink, KinesisSink, NullSink, make_sink
from simulator.stream import Produced, generate_readings


def readings(n: int, devices: int = 50, **kwargs: Any) -> list[Produced]:
    config = SimulatorConfig(devices=devices, count=n, **kwargs)
    return list(generate_readings(config, generate_fleet(devices, 1), 1_780_000_000_000))


class FakeKinesis:
    """put_records that fails a chosen fraction of entries per call (with the real error shapes)."""

    def __init__(
        self, fail_fraction: float = 0.0, seed: int = 0, always_fail: set[str] | None = None
    ) -> None:
        self.fail_fraction = fail_fraction
        self.rng = random.Random(seed)
        self.always_fail = always_fail or set()
        self.calls: list[list[dict[str, Any]]] = []
        self.stored: list[dict[str, Any]] = []

    def describe_stream_summary(self, StreamName: str) -> dict[str, Any]:
        return {"StreamDescriptionSummary": {"OpenShardCount": 4}}

    def put_records(self, StreamName: str, Records: list[dict[str, Any]]) -> dict[str, Any]:
        assert 0 < len(Records) <= 500
        assert sum(len(r["Data"]) + len(r["PartitionKey"]) for r in Records) <= 5 * 1024 * 1024
        self.calls.append(Records)
        results, failed = [], 0
        for record in Records:
            if record["PartitionKey"] in self.always_fail or self.rng.random() < self.fail_fraction:
                failed += 1
                results.append(
                    {"ErrorCode": "ProvisionedThroughputExceededException", "ErrorMessage": "slow"}
                )
            else:
                self.stored.append(record)
                results.append({"SequenceNumber": str(len(self.stored)), "ShardId": "shardId-000000000000"})
        return {"FailedRecordCount": failed, "Records": results}


def test_kinesis_retries_only_the_failed_entries() -> None:
    # GIVEN a stream that fails 30 % of entries on every call
    clock = FakeClock()
    fake = FakeKinesis(fail_fraction=0.3, seed=1)
    sink = KinesisSink("s", client=fake, clock=clock, shard_count=4, rng=random.Random(2))
    items = readings(2000)
    # WHEN 2,000 records go through the sink
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN every record is stored exactly once, in batches of <= 500, partition key = device id
    assert sorted(r["Data"] for r in fake.stored) == sorted(p.payload for p in items)
    assert all(orjson.loads(r["Data"])["device_id"] == r["PartitionKey"] for r in fake.stored)
    assert sink.stats.sent == 2000
    assert sink.stats.failed == 0
    # AND retries carried only the failed entries: total entries sent = records + failures
    assert (
        sum(len(c) for c in fake.calls) == 2000 + sink.stats.errors["ProvisionedThroughputExceededException"]
    )
    assert sink.stats.retries > 0
    assert max(len(c) for c in fake.calls) == 500


def test_kinesis_backoff_grows_and_gives_up_after_max_attempts() -> None:
    # GIVEN one device whose entries always fail
    clock = FakeClock()
    items = readings(100, devices=10)
    doomed = items[0].device_id
    fake = FakeKinesis(always_fail={doomed})
    sink = KinesisSink("s", client=fake, clock=clock, shard_count=4, max_attempts=5, rng=random.Random(3))
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN the others are delivered, the doomed ones counted as failed after 5 attempts
    doomed_count = sum(1 for p in items if p.device_id == doomed)
    assert sink.stats.failed == doomed_count
    assert sink.stats.sent == 100 - doomed_count
    assert len(fake.calls) == 5
    # AND the backoff is capped exponential with jitter: each sleep <= base * 2^attempt
    backoffs = clock.sleeps
    assert len(backoffs) == 4
    assert all(0 <= s <= 0.05 * 2**i for i, s in enumerate(backoffs))


def test_kinesis_stays_under_the_per_shard_record_limit() -> None:
    # GIVEN one shard (1,000 records/s) and 5,000 records offered at once
    clock = FakeClock()
    sink = KinesisSink("s", client=FakeKinesis(), clock=clock, shard_count=1)
    with sink:
        for produced in readings(5000):
            sink.add(produced)
    # THEN sending them took at least (5,000 - one second of burst) / 950 records/s of (fake) time
    assert clock.monotonic() >= (5000 - 950) / 950 - 0.01
    assert sink.stats.throttled_s > 0


def test_kinesis_stays_under_the_per_shard_byte_limit() -> None:
    # GIVEN one shard (1 MiB/s) and 300 oversized records of 8 KiB (2.4 MiB)
    clock = FakeClock()
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=clock, shard_count=1)
    items = [
        p
        for p in readings(30_000, malformed_rate=0.5, malformed_mix={"oversized": 1})
        if p.kind == "oversized"
    ]
    items = items[:300]
    with sink:
        for produced in items:
            sink.add(produced)
    total = sum(len(p.payload) for p in items)
    # THEN no single call exceeds one second of the shard's bytes and the whole took >= the byte budget
    assert all(sum(len(r["Data"]) for r in call) <= 1024 * 1024 for call in fake.calls)
    assert clock.monotonic() >= (total - 0.95 * 1024 * 1024) / (0.95 * 1024 * 1024) - 0.01


def test_kinesis_asks_for_the_shard_count_when_not_given() -> None:
    sink = KinesisSink("s", client=FakeKinesis(), clock=FakeClock())
    sink.setup()
    assert sink.shard_count == 4


class FakeResponse:
    def __init__(self, status_code: int) -> None:
        self.status_code = status_code


class FakeHttp:
    def __init__(self, statuses: list[int] | None = None) -> None:
        self.statuses = list(statuses or [])
        self.posts: list[tuple[str, bytes, dict[str, str]]] = []

    def post(self, url: str, content: bytes, headers: dict[str, str]) -> FakeResponse:
        self.posts.append((url, content, headers))
        if self.statuses:
            return FakeResponse(self.statuses.pop(0))
        try:
            body = orjson.loads(content)
        except orjson.JSONDecodeError:
            return FakeResponse(400)
        return FakeResponse(200 if isinstance(body, list) else 400)

    def close(self) -> None:
        pass


def test_http_sink_posts_arrays_with_api_key_and_sends_broken_json_alone() -> None:
    # GIVEN readings including invalid JSON
    items = readings(1200, malformed_rate=0.05, malformed_mix={"invalid_json": 1})
    broken = sum(1 for p in items if p.kind == "invalid_json")
    fake = FakeHttp()
    sink = HttpSink("http://127.0.0.1:1/ingest", "k3y", client=fake, clock=FakeClock())
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN good records arrive as JSON arrays of <= 500 with the key; broken ones alone and rejected
    arrays = [orjson.loads(body) for _, body, _ in fake.posts if body.startswith(b"[")]
    assert all(len(a) <= 500 for a in arrays)
    assert sum(len(a) for a in arrays) == 1200 - broken
    assert all(headers["x-api-key"] == "k3y" for _, _, headers in fake.posts)
    assert sink.stats.sent == 1200 - broken
    assert sink.stats.rejected == broken > 0


def test_http_sink_retries_throttling_and_server_errors() -> None:
    # GIVEN an endpoint answering 429, then 503, then 200
    clock = FakeClock()
    fake = FakeHttp([429, 503, 200])
    sink = HttpSink("http://127.0.0.1:1/ingest", "k", client=fake, clock=clock)
    with sink:
        for produced in readings(10):
            sink.add(produced)
    # THEN the batch is delivered on the third attempt after two backoff sleeps
    assert sink.stats.sent == 10
    assert sink.stats.retries == 2
    assert len(clock.sleeps) <= 2


def test_json_lines_sink_writes_one_record_per_line() -> None:
    # GIVEN a stream with malformed records (oversized, invalid) WHEN written as JSON lines
    out = io.BytesIO()
    items = readings(500, malformed_rate=0.2)
    sink = JsonLinesSink(stream=out)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN there is exactly one line per record, byte for byte
    assert out.getvalue().split(b"\n")[:-1] == [p.payload for p in items]


def test_null_sink_and_factory() -> None:
    sink = make_sink(SimulatorConfig(sink="null"))
    assert isinstance(sink, NullSink)
    with sink:
        for produced in readings(10):
            sink.add(produced)
    assert sink.stats.sent == 10
    assert isinstance(make_sink(SimulatorConfig(sink="kinesis", shard_count=2)), KinesisSink)
    with pytest.raises(ValueError, match="ingest URL"):
        make_sink(SimulatorConfig(sink="http"))
