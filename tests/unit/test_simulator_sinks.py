"""Sinks with in-memory fakes: Kinesis partial failures, rate limits, HTTP batching, JSON lines."""

from __future__ import annotations

import gzip
import io
import random
import zlib
from typing import Any

import orjson
import pytest

from simulator.clock import FakeClock
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.sinks import HttpSink, JsonLinesSink, KinesisSink, NullSink, make_sink, pack_group
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


def test_http_sink_posts_arrays_with_device_credentials_and_sends_broken_json_alone() -> None:
    # GIVEN readings including invalid JSON
    items = readings(1200, malformed_rate=0.05, malformed_mix={"invalid_json": 1})
    broken = sum(1 for p in items if p.kind == "invalid_json")
    fake = FakeHttp()
    sink = HttpSink("http://127.0.0.1:1/ingest", lambda d: f"Device {d}.s", client=fake, clock=FakeClock())
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN good records arrive as JSON arrays of <= 500, one device per array with its credential;
    # broken ones alone (as the device that produced them) and rejected
    arrays = [(orjson.loads(body), h) for _, body, h in fake.posts if body.startswith(b"[")]
    assert all(len(a) <= 500 for a, _ in arrays)
    assert sum(len(a) for a, _ in arrays) == 1200 - broken
    assert all({f"Device {d['device_id']}.s" for d in a} == {h["authorization"]} for a, h in arrays)
    assert all(headers["authorization"].startswith("Device dev-") for _, _, headers in fake.posts)
    assert sink.stats.sent == 1200 - broken
    assert sink.stats.rejected == broken > 0


def test_http_sink_retries_throttling_and_server_errors() -> None:
    # GIVEN an endpoint answering 429, then 503, then 200
    clock = FakeClock()
    fake = FakeHttp([429, 503, 200])
    sink = HttpSink("http://127.0.0.1:1/ingest", lambda d: f"Device {d}.s", client=fake, clock=clock)
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


# ------------------------------------------------------------------------------------------ packing
def unpack(data: bytes) -> list[bytes]:
    """The readings' payloads in one Kinesis record: the elements of a packed record, or the record."""
    doc = orjson.loads(data)
    return [orjson.dumps(d) for d in doc] if isinstance(doc, list) else [data]


def test_kinesis_packs_good_readings_and_sends_each_exactly_once() -> None:
    # GIVEN readings with malformed records of every kind, and a sink packing 25 per record
    items = readings(3000, devices=40, malformed_rate=0.03)
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=25)
    with sink:
        for produced in items:
            sink.add(produced)
    malformed = [p for p in items if p.category == "malformed"]
    good = [p for p in items if p.category != "malformed"]
    assert malformed
    assert good
    # THEN malformed records are sent alone, byte for byte, keyed by their device's pack group
    bad = [p for p in malformed if p.kind != "duplicate"]  # a duplicate's bytes equal its good twin's
    stored = [(r["Data"], r["PartitionKey"]) for r in fake.stored]
    assert all((p.payload, f"pack-{pack_group(p.device_id):02d}") in stored for p in bad)
    # AND every payload is in exactly one record (orjson round trip of an element is its payload)
    sent = [payload for r in fake.stored for payload in unpack_or_raw(r["Data"])]
    assert sorted(sent) == sorted(p.payload for p in items)
    packs = [r for r in fake.stored if r["Data"].startswith(b"[")]
    # AND packs hold at most 25 readings and 64 KiB of one pack group, keyed by the group, so a device's
    # records all carry one key and one explicit hash key (one shard, one concurrent batch)
    assert all(len(unpack(r["Data"])) <= 25 for r in packs)
    assert max(len(unpack(r["Data"])) for r in packs) == 25
    assert all(len(r["Data"]) <= 64 * 1024 for r in packs)
    keys_of: dict[str, set[tuple[str, str]]] = {}
    for r in fake.stored:
        for element in unpack_or_raw(r["Data"]):
            try:
                device = orjson.loads(element)["device_id"]
            except (orjson.JSONDecodeError, TypeError, KeyError):
                continue
            if isinstance(device, str):
                keys_of.setdefault(device, set()).add((r["PartitionKey"], r["ExplicitHashKey"]))
    assert keys_of
    assert all(len(keys) == 1 for keys in keys_of.values())
    assert all(r["PartitionKey"] == f"pack-{pack_group(orjson.loads(unpack(r['Data'])[0])['device_id']):02d}"
               for r in packs)
    # AND stats count readings (sent) and Kinesis records (records)
    assert sink.stats.sent == len(items)
    assert sink.stats.records == len(fake.stored) < len(items) / 5
    assert sink.stats.failed == 0


def test_packs_keep_send_order_around_malformed_records() -> None:
    # GIVEN a malformed record between good ones WHEN packed
    items = readings(400, devices=20, malformed_rate=0.05, malformed_mix={"invalid_json": 1})
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=10)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN each partition key (a pack group) holds its devices' payloads in the order they were produced:
    # the order Kinesis keeps and the processor relies on (across keys there is no order to keep)
    by_key: dict[str, list[bytes]] = {}
    for r in fake.stored:
        by_key.setdefault(r["PartitionKey"], []).extend(unpack_or_raw(r["Data"]))
    want: dict[str, list[bytes]] = {}
    for p in items:
        want.setdefault(f"pack-{pack_group(p.device_id):02d}", []).append(p.payload)
    assert by_key == want


def unpack_or_raw(data: bytes) -> list[bytes]:
    try:
        return unpack(data)
    except orjson.JSONDecodeError:
        return [data]


def test_packs_stay_under_the_byte_limit() -> None:
    # GIVEN a 2 KiB pack limit and readings of ~150-200 bytes
    items = readings(500, devices=10)
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=1, pack=100, max_pack_bytes=2048)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN every record is <= 2 KiB, and packs close on bytes (well before 100 readings)
    assert all(len(r["Data"]) <= 2048 for r in fake.stored)
    assert max(len(unpack(r["Data"])) for r in fake.stored) < 15
    assert sum(len(unpack(r["Data"])) for r in fake.stored) == 500
    # AND a full pack would not have fitted one more reading (each group's last pack may be short)
    by_key: dict[str, list[int]] = {}
    for r in fake.stored:
        by_key.setdefault(r["PartitionKey"], []).append(len(r["Data"]))
    sizes = [size for group in by_key.values() for size in group[:-1]]
    assert sizes
    assert min(sizes) > 2048 - 250


def inflated(data: bytes) -> list[bytes]:
    """A record's payloads, a compressed pack inflated first (as the processor does)."""
    return unpack_or_raw(gzip.decompress(data) if data[:2] == b"\x1f\x8b" else data)


def test_compressed_packs_decode_back_to_the_readings() -> None:
    # GIVEN readings with malformed ones, and the simulator's defaults: pack 25, compressed
    config = SimulatorConfig()
    assert (config.pack, config.compress) == (25, True)
    items = readings(2000, devices=40, malformed_rate=0.03)

    def run() -> list[dict[str, Any]]:
        fake = FakeKinesis()
        sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=config.pack,
                           compress=config.compress)
        with sink:
            for produced in items:
                sink.add(produced)
        return fake.stored

    stored = run()
    # THEN every pack of 2 or more readings is gzip (one member, mtime 0) of the JSON array of its payloads
    packs = [r for r in stored if r["Data"][:2] == b"\x1f\x8b"]
    assert len(packs) > len(stored) / 2
    for r in packs:
        member = zlib.decompressobj(wbits=31)
        assert member.decompress(r["Data"]) == gzip.decompress(r["Data"])
        assert member.eof  # one gzip member, nothing after it
        assert not member.unused_data
    assert all(len(unpack(gzip.decompress(r["Data"]))) >= 2 for r in packs)
    assert max(len(unpack(gzip.decompress(r["Data"]))) for r in packs) == 25
    # AND lone readings and malformed records go plain, byte for byte
    bad = {p.payload for p in items if p.category == "malformed"}
    plain = [r["Data"] for r in stored if r["Data"][:2] != b"\x1f\x8b"]
    assert bad <= set(plain)
    # AND each pack group's payloads come back in the order they were produced, each exactly once
    by_key: dict[str, list[bytes]] = {}
    for r in stored:
        by_key.setdefault(r["PartitionKey"], []).extend(inflated(r["Data"]))
    want: dict[str, list[bytes]] = {}
    for p in items:
        want.setdefault(f"pack-{pack_group(p.device_id):02d}", []).append(p.payload)
    assert by_key == want
    # AND compressed records are ~4x smaller than their JSON, and reproducible (same readings, same bytes)
    assert sum(len(r["Data"]) for r in packs) * 3 < sum(len(gzip.decompress(r["Data"])) for r in packs)
    assert all(r["Data"][4:8] == b"\0\0\0\0" for r in packs)  # gzip MTIME 0: no clock in the bytes
    assert [r["Data"] for r in run()] == [r["Data"] for r in stored]


def test_compressed_pack_split_respects_both_caps() -> None:
    items = readings(1000, devices=10)
    # GIVEN a 2 KiB pack limit: it bounds the JSON (what the processor caps), not the compressed bytes
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=1, pack=100, max_pack_bytes=2048,
                       compress=True)
    with sink:
        for produced in items:
            sink.add(produced)
    packs = [gzip.decompress(r["Data"]) for r in fake.stored if r["Data"][:2] == b"\x1f\x8b"]
    assert packs
    assert all(len(p) <= 2048 for p in packs)
    assert max(len(unpack(p)) for p in packs) < 15  # closed on JSON bytes, as uncompressed
    assert max(len(r["Data"]) for r in fake.stored) < 1024
    # GIVEN a record limit below what 100 compressed readings take (Kinesis's 1 MiB, scaled down)
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=1, pack=100, compress=True,
                       max_record_bytes=600)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN packs are split until each compressed record (data + key) fits, readings kept in order
    assert all(len(r["Data"]) + len(r["PartitionKey"]) <= 600 for r in fake.stored)
    assert max(len(inflated(r["Data"])) for r in fake.stored) > 10
    by_key: dict[str, list[bytes]] = {}
    for r in fake.stored:
        by_key.setdefault(r["PartitionKey"], []).extend(inflated(r["Data"]))
    want: dict[str, list[bytes]] = {}
    for p in items:
        want.setdefault(f"pack-{pack_group(p.device_id):02d}", []).append(p.payload)
    assert by_key == want
    assert sink.stats.sent == 1000
    # AND a pack limit above the processor's cap is refused up front
    with pytest.raises(ValueError, match="max_pack_bytes"):
        KinesisSink("s", client=fake, max_pack_bytes=2 * 1024 * 1024)


def test_compress_switch_from_the_environment_and_the_command_line() -> None:
    assert SimulatorConfig.from_env({"SIM_COMPRESS": "false"}).compress is False
    assert SimulatorConfig.from_env({}).compress is True
    sink = make_sink(SimulatorConfig.from_env({"SIM_SINK": "kinesis", "SIM_COMPRESS": "off"}))
    assert isinstance(sink, KinesisSink)
    assert sink.compress is False
    assert make_sink(SimulatorConfig(sink="kinesis")).compress is True  # type: ignore[attr-defined]
    from simulator.cli import parse_config

    assert parse_config(["run", "--compress", "false", "--sink", "kinesis"]).compress is False
    assert parse_config(["run", "--compress", "true", "--sink", "kinesis"]).compress is True


def test_pack_1_sends_one_reading_per_record_as_before() -> None:
    items = readings(300)
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=1)
    with sink:
        for produced in items:
            sink.add(produced)
    assert [r["Data"] for r in fake.stored] == [p.payload for p in items]
    assert [r["PartitionKey"] for r in fake.stored] == [p.device_id for p in items]
    assert sink.stats.records == sink.stats.sent == 300


def test_failed_packed_entries_are_resent_whole() -> None:
    # GIVEN a stream failing 40 % of entries per call, and packs of 20
    fake = FakeKinesis(fail_fraction=0.4, seed=5)
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=20, rng=random.Random(1))
    items = readings(2000, devices=50)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN every reading is stored exactly once
    stored = [payload for r in fake.stored for payload in unpack(r["Data"])]
    assert sorted(stored) == sorted(p.payload for p in items)
    assert sink.stats.sent == 2000
    assert sink.stats.failed == 0
    # AND a retry call carries exactly the packs that failed, unchanged (same bytes, same key)
    assert sink.stats.retries > 0
    first_try = {(r["Data"], r["PartitionKey"]) for call in fake.calls for r in call}
    assert {(r["Data"], r["PartitionKey"]) for r in fake.stored} == first_try
    assert sum(len(c) for c in fake.calls) == sink.stats.records + sink.stats.errors[
        "ProvisionedThroughputExceededException"
    ]


def test_given_up_packs_count_their_readings_as_failed() -> None:
    items = readings(200, devices=10)
    doomed = f"pack-{pack_group(items[0].device_id):02d}"  # the key of the first device's group
    fake = FakeKinesis(always_fail={doomed})
    sink = KinesisSink("s", client=fake, clock=FakeClock(), shard_count=4, pack=25, max_attempts=3)
    with sink:
        for produced in items:
            sink.add(produced)
    # THEN exactly the readings of the doomed group's devices count as failed
    group = pack_group(items[0].device_id)
    assert sink.stats.failed == sum(1 for p in items if pack_group(p.device_id) == group) > 0
    assert sink.stats.failed + sink.stats.sent == 200


def test_packed_records_stay_under_the_per_shard_byte_limit() -> None:
    # GIVEN one shard (1 MiB/s) and 30,000 readings (~5.5 MiB) packed 25 per record: ~1,200 records,
    # far below 1,000 records/s, so the byte budget is what paces them
    clock = FakeClock()
    fake = FakeKinesis()
    sink = KinesisSink("s", client=fake, clock=clock, shard_count=1, pack=25)
    items = readings(30_000, devices=100)
    with sink:
        for produced in items:
            sink.add(produced)
    total = sum(len(r["Data"]) + len(r["PartitionKey"]) for r in fake.stored)
    assert total > 2 * 1024 * 1024
    assert all(sum(len(r["Data"]) for r in call) <= 1024 * 1024 for call in fake.calls)
    assert clock.monotonic() >= (total - 0.95 * 1024 * 1024) / (0.95 * 1024 * 1024) - 0.01
    assert sink.stats.sent == 30_000


def test_pack_option_from_env_cli_and_factory() -> None:
    from simulator.cli import parse_config
    from simulator.config import ConfigError

    assert SimulatorConfig().pack == 25
    assert SimulatorConfig.from_env({"SIM_PACK": "7"}).pack == 7
    assert parse_config(["run", "--pack", "3", "--sink", "kinesis", "--shard-count", "2"]).pack == 3
    sink = make_sink(SimulatorConfig(sink="kinesis", shard_count=2, pack=9))
    assert isinstance(sink, KinesisSink)
    assert sink.pack == 9
    for bad in (0, 501):
        with pytest.raises(ConfigError, match="pack"):
            SimulatorConfig(pack=bad)
