"""The AWS call counter (bench/e2e/calls.py) and the batches bench/calls.py feeds the handler."""

from __future__ import annotations

import base64
import json

import boto3
import pytest
from botocore.stub import Stubber

from bench.calls import packed_batches
from bench.e2e.calls import CallCounter
from simulator.sinks import pack_group
from simulator.stream import Produced


def _reading(device: str, send_ms: int, kind: str = "normal") -> Produced:
    payload = json.dumps({"device_id": device, "t": send_ms}).encode()
    return Produced(device_id=device, payload=payload, kind=kind, event_ms=send_ms, send_ms=send_ms)


def _data(record: dict) -> list:
    doc = json.loads(base64.b64decode(record["kinesis"]["data"]))
    return doc if isinstance(doc, list) else [doc]


def test_batches_hold_seconds_of_stream_and_packs_hold_one_group() -> None:
    # GIVEN two devices of different pack groups sending every 100 ms for 3 s, and one malformed record
    a, b = "dev-a", "dev-b"
    assert pack_group(a) != pack_group(b)
    produced = [_reading(d, t) for t in range(0, 3000, 100) for d in (a, b)]
    produced.insert(5, _reading(a, 250, kind="invalid_json"))
    # WHEN cut into 1-second batches, packed up to 4 readings per record
    batches = packed_batches(produced, 4, 1.0, "shardId-000000000000")
    # THEN three batches, each of readings sent within its second
    assert len(batches) == 3
    for i, batch in enumerate(batches):
        sent = [r["t"] for rec in batch for r in _data(rec)]
        assert all(i * 1000 <= t < (i + 1) * 1000 for t in sent), (i, sent)
    # AND every reading is delivered once, a record holds at most 4 readings of one device's group
    delivered = [r["t"] for batch in batches for rec in batch for r in _data(rec)]
    assert len(delivered) == len(produced)
    for rec in (rec for batch in batches for rec in batch):
        readings = _data(rec)
        assert len(readings) <= 4
        assert len({pack_group(r["device_id"]) for r in readings}) == 1
    # AND the malformed record goes alone, after the pack it closed (send order per group kept)
    first = [_data(rec) for rec in batches[0]]
    alone = [i for i, rs in enumerate(first) if rs == [json.loads(produced[5].payload)]]
    assert len(alone) == 1
    before = [r["t"] for rs in first[: alone[0]] for r in rs if r["device_id"] == a]
    assert before == [0, 100, 200]  # device a's open pack, closed by its malformed record
    # AND sequence numbers rise by one over the whole shard
    seqs = [int(rec["kinesis"]["sequenceNumber"]) for batch in batches for rec in batch]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))


def test_counter_counts_calls_per_table_and_the_capacity_dynamodb_reports() -> None:
    # GIVEN a DynamoDB client with the counter attached (stubbed: no network)
    ddb = boto3.client("dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x")
    counter = CallCounter("st-aggregates")
    counter.attach(ddb)
    asked: list[str | None] = []

    def capture(params: dict, **_: object) -> None:  # runs after the counter's hook: sees what it set
        asked.append(params.get("ReturnConsumedCapacity"))

    ddb.meta.events.register("before-parameter-build.dynamodb.*", capture)
    item = {"device_id": {"S": "d1"}, "window_start": {"N": "60"}, "count": {"N": "3"}}
    with Stubber(ddb) as stub:
        stub.add_response("put_item",
                          {"ConsumedCapacity": {"TableName": "st-aggregates", "CapacityUnits": 2.0}})
        stub.add_response("batch_get_item",
                          {"Responses": {}, "ConsumedCapacity": [{"TableName": "st-aggregates",
                                                                  "CapacityUnits": 3.0}]})
        stub.add_response("update_item", {})
        # WHEN the processor's kinds of call are made
        ddb.put_item(TableName="st-aggregates", Item=item)
        ddb.batch_get_item(RequestItems={"st-aggregates": {"Keys": [item, item, item]}})
        ddb.update_item(TableName="st-anomalies", Key=item)
    # THEN every call asked DynamoDB for its consumed capacity
    assert asked == ["TOTAL", "TOTAL", "TOTAL"]
    # AND they are counted per table (BatchGetItem also per key), with DynamoDB's own units
    assert counter.counts == {"dynamodb.PutItem.aggregates": 1, "dynamodb.BatchGetItem.aggregates": 1,
                              "dynamodb.BatchGetItem.aggregates.keys": 3, "dynamodb.UpdateItem.anomalies": 1}
    assert counter.consumed == pytest.approx({"PutItem.aggregates": 2.0, "BatchGetItem.aggregates": 3.0})
    # AND clear() starts a new count
    counter.clear()
    assert not counter.counts
    assert not counter.consumed
