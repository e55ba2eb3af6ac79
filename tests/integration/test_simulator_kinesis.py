"""The Kinesis sink against the emulator: records arrive once each, keyed by device id."""

from __future__ import annotations

import time
import uuid
from collections import Counter
from collections.abc import Iterator
from typing import Any

import boto3
import orjson
import pytest

from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.sinks import KinesisSink, pack_group
from simulator.stream import generate_readings

pytestmark = pytest.mark.integration
REGION = "us-east-1"


@pytest.fixture
def stream(emulator_endpoint: str) -> Iterator[tuple[Any, str]]:
    client = boto3.client("kinesis", endpoint_url=emulator_endpoint, region_name=REGION)
    name = f"sim-test-{uuid.uuid4().hex[:10]}"  # unique: tests may share one emulator
    client.create_stream(StreamName=name, ShardCount=2)
    try:
        deadline = time.monotonic() + 30
        while (
            client.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamStatus"]
            != "ACTIVE"
        ):
            assert time.monotonic() < deadline, "stream never became ACTIVE"
            time.sleep(0.2)
        yield client, name
    finally:
        client.delete_stream(StreamName=name, EnforceConsumerDeletion=True)


def read_all(client: Any, name: str, expected: int, timeout_s: float = 30) -> list[dict[str, Any]]:
    shards = client.list_shards(StreamName=name)["Shards"]
    iterators = {
        s["ShardId"]: client.get_shard_iterator(
            StreamName=name, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for s in shards
    }
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout_s
    while len(records) < expected and time.monotonic() < deadline:
        for shard_id, iterator in list(iterators.items()):
            if iterator is None:
                continue
            response = client.get_records(ShardIterator=iterator, Limit=1000)
            records.extend(response["Records"])
            iterators[shard_id] = response.get("NextShardIterator")
        if len(records) < expected:
            time.sleep(0.2)
    return records


def test_readings_reach_the_stream_with_device_partition_keys(
    emulator_endpoint: str, stream: tuple[Any, str]
) -> None:
    client, name = stream
    # GIVEN 600 readings from 20 devices, some malformed (bytes must arrive exactly as produced)
    config = SimulatorConfig(devices=20, count=600, anomaly_rate=0.05, malformed_rate=0.05, seed=77)
    produced = list(generate_readings(config, generate_fleet(20, 77)))
    # WHEN they go through the Kinesis sink (batches of 500 and a remainder)
    sink = KinesisSink(name, endpoint_url=emulator_endpoint, region=REGION)
    with sink:
        for item in produced:
            sink.add(item)
    assert sink.stats.sent == 600
    assert sink.stats.failed == 0
    assert sink.shard_count == 2
    # THEN reading the stream back gives every record once, keyed by its device id
    records = read_all(client, name, expected=600)
    assert len(records) == 600
    assert Counter(bytes(r["Data"]) for r in records) == Counter(p.payload for p in produced)
    by_payload = {p.payload: p.device_id for p in produced}
    assert all(r["PartitionKey"] == by_payload[bytes(r["Data"])] for r in records)
    keys = {r["PartitionKey"] for r in records}
    assert keys == {p.device_id for p in produced}
    # AND good readings decode to their device
    for r in records:
        try:
            document = orjson.loads(r["Data"])
        except orjson.JSONDecodeError:
            continue
        if isinstance(document.get("device_id"), str) and document["device_id"].startswith("dev-"):
            assert document["device_id"] == r["PartitionKey"]


def test_packed_readings_reach_the_stream_once_each(emulator_endpoint: str, stream: tuple[Any, str]) -> None:
    client, name = stream
    # GIVEN 600 readings from 20 devices, some malformed, and the simulator's default pack (25)
    config = SimulatorConfig(devices=20, count=600, anomaly_rate=0.05, malformed_rate=0.05, seed=78)
    assert config.pack == 25
    produced = list(generate_readings(config, generate_fleet(20, 78)))
    malformed = [p for p in produced if p.category == "malformed"]
    good = [p for p in produced if p.category != "malformed"]
    # WHEN they go through the Kinesis sink, packing
    sink = KinesisSink(name, endpoint_url=emulator_endpoint, region=REGION, pack=config.pack)
    with sink:
        for item in produced:
            sink.add(item)
    assert (sink.stats.sent, sink.stats.failed) == (600, 0)
    records = read_all(client, name, expected=sink.stats.records)
    assert len(records) == sink.stats.records < 600 / 5
    # THEN every payload arrives exactly once: good ones inside packs (or alone when a pack closed with
    # one reading), malformed ones alone and byte for byte (oversized, invalid JSON, ...)
    flat: list[bytes] = []
    for r in records:
        data = bytes(r["Data"])
        try:
            doc = orjson.loads(data)
        except orjson.JSONDecodeError:
            doc = None
        if isinstance(doc, list):
            assert 2 <= len(doc) <= 25
            # one pack group per record, keyed by the group (simulator/sinks.py)
            assert {f"pack-{pack_group(d['device_id']):02d}" for d in doc} == {r["PartitionKey"]}
            flat += [orjson.dumps(d) for d in doc]
        else:
            flat.append(data)
    assert Counter(flat) == Counter(p.payload for p in produced)
    assert {p.payload for p in malformed} <= {bytes(r["Data"]) for r in records}
    assert good
