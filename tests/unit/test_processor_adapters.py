"""Adapters behind the processor's ports, with botocore's Stubber on real clients (no network)."""

from __future__ import annotations

import gzip
import io
from typing import Any

import orjson
import pytest

from functions.adapters.aggregates import DynamoAggregateStore, item_from_dynamo, item_to_dynamo
from functions.adapters.archive import S3Archive
from functions.adapters.devices import DynamoDeviceRegistry
from functions.adapters.metrics import CloudWatchMetrics, EmfMetrics, NullMetrics
from functions.core.errors import StoreError, VersionConflict, is_transient
from testkit.aws_stubs import StubbedClient, client_error

ITEM = {
    "device_id": "dev-1",
    "window_start": 1795302300,
    "window_end": 1795302360,
    "count": 2,
    "channels": {
        "temperature": {
            "count": 2,
            "sum": 42.1,
            "sumsq": 886.21,
            "min": 21.0,
            "max": 21.1,
            "mean": 21.05,
            "std": 0.05,
        }
    },
    "site": "s",
    "location": "Porto, PT",
    "watermarks": {"shardId-000000000000": "49650000000000000000000000000000000000000001"},
    "seen_offsets_ms": [1000, 2000],
    "version": 3,
    "first_event_at": "2026-11-21T23:05:01.000Z",
    "last_event_at": "2026-11-21T23:05:02.000Z",
    "updated_at": "2026-11-21T23:05:10Z",
    "anomaly_count": 0,
}


def test_item_round_trips_through_dynamodb_types_exactly() -> None:
    # GIVEN an aggregate item / WHEN converted to AttributeValues and back / THEN nothing changes
    attrs = item_to_dynamo(ITEM)
    assert attrs["seen_offsets_ms"] == {"B": bytes([0xE8, 0x07, 0xE8, 0x07])}  # varints of 1000, +1000
    assert attrs["watermarks"]["M"]["shardId-000000000000"] == {
        "S": ITEM["watermarks"]["shardId-000000000000"]
    }
    assert item_from_dynamo(attrs) == ITEM


def test_put_is_conditional_on_version_or_absence() -> None:
    with StubbedClient("dynamodb").answer("put_item", times=2) as stub:
        store = DynamoAggregateStore("aggs", stub.client)
        store.put(ITEM, expected_version=None)
        store.put(ITEM, expected_version=3)
    first, second = stub.params("put_item")
    assert first["ConditionExpression"] == "attribute_not_exists(device_id)"
    assert second["ConditionExpression"] == "#v = :v"
    assert second["ExpressionAttributeValues"] == {":v": {"N": "3"}}


def test_conditional_check_failure_is_a_version_conflict_and_throttling_is_transient() -> None:
    stub = StubbedClient("dynamodb")
    stub.fail("put_item", "ConditionalCheckFailedException")
    stub.fail("put_item", "ProvisionedThroughputExceededException")
    store = DynamoAggregateStore("aggs", stub.client)
    with stub:
        with pytest.raises(VersionConflict):
            store.put(ITEM, 3)
        with pytest.raises(StoreError) as info:
            store.put(ITEM, 3)
    assert info.value.transient
    assert info.value.code == "ProvisionedThroughputExceededException"


def test_get_many_follows_unprocessed_keys_with_consistent_reads() -> None:
    attrs = item_to_dynamo(ITEM)
    stub = StubbedClient("dynamodb")
    stub.answer("batch_get_item", {
        "Responses": {"aggs": []},
        "UnprocessedKeys": {"aggs": {"Keys": [{"device_id": {"S": "dev-1"}}], "ConsistentRead": True}},
    })
    stub.answer("batch_get_item", {"Responses": {"aggs": [attrs]}})
    store = DynamoAggregateStore("aggs", stub.client, sleep=lambda _: None)
    with stub:
        found = store.get_many([("dev-1", 1795302300), ("dev-2", 1795302300)])
    assert found == {("dev-1", 1795302300): ITEM}
    assert stub.calls[0][1]["RequestItems"]["aggs"]["ConsistentRead"] is True
    assert len(stub.calls) == 2




@pytest.mark.parametrize(
    ("make_store", "keys"),
    [
        (lambda stub, sleep: DynamoAggregateStore("tbl", stub, sleep=sleep), [("dev-1", 1795302300)]),
        (lambda stub, sleep: DynamoDeviceRegistry("tbl", stub, sleep=sleep), ["dev-1"]),
    ],
    ids=["aggregates", "devices"],
)
def test_get_many_gives_up_after_six_rounds_of_unprocessed_keys(make_store: Any, keys: list[Any]) -> None:
    # Throttled every round: 6 BatchGetItem calls, a full-jitter delay up to 0.05 * 2**(n-1) s before
    # each retry n (none after the last round), then a transient error for the processor to hand back.
    unprocessed = {"tbl": {"Keys": [{"device_id": {"S": "dev-1"}}]}}
    stub = StubbedClient("dynamodb")
    stub.answer("batch_get_item", {"Responses": {"tbl": []}, "UnprocessedKeys": unprocessed}, times=6)
    sleeps: list[float] = []
    with stub, pytest.raises(StoreError) as info:
        make_store(stub.client, sleeps.append).get_many(keys)
    assert info.value.transient
    assert len(stub.calls) == 6
    assert len(sleeps) == 5
    assert all(0 <= s <= min(1.0, 0.05 * 2 ** (n - 1)) for n, s in enumerate(sleeps, start=1))

def test_device_registry_reads_in_chunks_of_100_and_maps_items() -> None:
    stub = StubbedClient("dynamodb")
    ids = [f"d{i:03d}" for i in range(150)]
    for response in [
        {
            "Responses": {
                "devs": [
                    {
                        "device_id": {"S": "d000"},
                        "site": {"S": "plant"},
                        "location": {"S": "Oslo, NO"},
                        "latitude": {"N": "59.9"},
                        "baseline": {"M": {"temperature": {"N": "20.5"}}},
                    }
                ]
            }
        },
        {"Responses": {"devs": []}},
    ]:
        stub.answer("batch_get_item", response)
    with stub:
        found = DynamoDeviceRegistry("devs", stub.client).get_many(ids)
    assert [len(kwargs["RequestItems"]["devs"]["Keys"]) for _, kwargs in stub.calls] == [100, 50]
    info = found["d000"]
    assert (info.site, info.location, info.latitude, info.baseline) == (
        "plant",
        "Oslo, NO",
        59.9,
        {"temperature": 20.5},
    )


def test_s3_archive_writes_gzip_json_lines() -> None:
    with StubbedClient("s3").answer("put_object") as s3:
        assert S3Archive("bucket", s3.client).put_jsonl_gz("processed/x.jsonl.gz", [b'{"a":1}', b'{"a":2}'])
    (put,) = s3.params("put_object")
    assert put["Bucket"] == "bucket"
    assert gzip.decompress(put["Body"]) == b'{"a":1}\n{"a":2}\n'


def test_an_item_written_with_a_number_set_of_offsets_still_reads() -> None:
    # GIVEN an item as the adapter wrote it before the binary encoding (seen_offsets_ms as an NS)
    attrs = item_to_dynamo(ITEM)
    attrs["seen_offsets_ms"] = {"NS": ["2000", "1000"]}
    # WHEN read / THEN the offsets are the same sorted list
    assert item_from_dynamo(attrs) == ITEM


def test_archive_put_is_first_write_wins() -> None:
    # GIVEN S3 that already holds the key (If-None-Match: "*" answers 412 PreconditionFailed)
    # WHEN the processor archives under it / THEN the put was conditional and reports the object kept
    with StubbedClient("s3").fail("put_object", "PreconditionFailed", status=412) as s3:
        assert S3Archive("bucket", s3.client).put_jsonl_gz("processed/x.jsonl.gz", [b"{}"]) is False
    assert s3.params("put_object")[0]["IfNoneMatch"] == "*"


def test_is_transient_classification() -> None:
    assert is_transient(client_error("ThrottlingException"))
    assert is_transient(client_error("Whatever", status=503))
    assert not is_transient(client_error("ValidationException"))
    assert not is_transient(client_error("AccessDeniedException", status=403))
    assert is_transient(ConnectionError())


def test_emf_sink_writes_one_document_per_dimension_set() -> None:
    # GIVEN counts with and without the Reason dimension
    out = io.StringIO()
    sink = EmfMetrics("IoTPipeline", stream=out)
    sink.add("RecordsIn", 10)
    sink.add("RecordsIn", 5)
    sink.add("RecordsRejected", 2, dimensions={"Reason": "late"})
    sink.add("BatchDurationMs", 12.5, unit="Milliseconds")
    # WHEN flushed
    sink.flush()
    docs = [orjson.loads(line) for line in out.getvalue().splitlines()]
    # THEN counts are summed, each dimension set has its own EMF document (Powertools writes value lists)
    plain = next(d for d in docs if "RecordsIn" in d)
    assert plain["RecordsIn"] == [15]
    assert plain["BatchDurationMs"] == [12.5]
    assert plain["service"] == "processor"  # a property, not a dimension
    assert plain["_aws"]["CloudWatchMetrics"][0]["Namespace"] == "IoTPipeline"
    assert plain["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [[]]
    reason = next(d for d in docs if "RecordsRejected" in d)
    assert reason["Reason"] == "late"
    assert reason["_aws"]["CloudWatchMetrics"][0]["Dimensions"] == [["Reason"]]
    # AND a second flush has nothing left to write
    sink.flush()
    assert len(out.getvalue().splitlines()) == 2


def test_cloudwatch_sink_puts_metric_data_and_swallows_errors() -> None:
    with StubbedClient("cloudwatch").answer("put_metric_data") as cw:
        sink = CloudWatchMetrics("IoTPipeline", cw.client)
        sink.add("RecordsRejected", 3, dimensions={"Reason": "late"})
        sink.add("WindowLagSeconds", 1.0, unit="Seconds")
        sink.add("WindowLagSeconds", 3.0, unit="Seconds")
        sink.flush()
    (call,) = cw.params("put_metric_data")
    data = {d["MetricName"]: d for d in call["MetricData"]}
    assert data["RecordsRejected"]["Dimensions"] == [{"Name": "Reason", "Value": "late"}]
    assert data["WindowLagSeconds"]["Values"] == [1.0, 3.0]
    with StubbedClient("cloudwatch").fail("put_metric_data", "Throttling") as failing_cw:
        failing = CloudWatchMetrics("IoTPipeline", failing_cw.client)
        failing.add("RecordsIn", 1)
        failing.flush()  # does not raise
    NullMetrics().flush()


def test_an_item_part_that_does_not_decode_costs_that_part_only() -> None:
    # GIVEN a batch answer in which one device's calibration holds a number as ministack writes 1e40
    # (41 digits, which boto3's deserialiser refuses: decimal.Rounded) and another's detector state is
    # not a map
    big = {"N": "1" + "0" * 40}
    stub = StubbedClient("dynamodb").answer("batch_get_item", {"Responses": {"devs": [
        {"device_id": {"S": "bad-cal"}, "site": {"S": "s"}, "calibration": {"M": {"instant_factor": big}},
         "baseline": {"M": {"temperature": {"N": "1e20"}, "humidity": {"N": "40"}}}},
        {"device_id": {"S": "bad-state"}, "detector_state": {"S": "garbage"}},
        {"device_id": {"S": "fine"}, "site": {"S": "plant"}},
    ]}})
    # WHEN the registry reads them
    with stub:
        found = DynamoDeviceRegistry("devs", stub.client).get_many(["bad-cal", "bad-state", "fine"])
    # THEN each keeps what decoded and names what did not
    assert (found["bad-cal"].site, found["bad-cal"].calibration) == ("s", None)
    assert found["bad-cal"].faults == ("baseline", "calibration")
    assert found["bad-cal"].baseline == {"humidity": 40}
    assert (found["bad-state"].detector_state, found["bad-state"].faults) == (None, ("detector_state",))
    assert (found["fine"].site, found["fine"].faults) == ("plant", ())


def test_a_batch_the_service_refuses_for_an_item_is_read_key_by_key() -> None:
    stub = StubbedClient("dynamodb")
    stub.fail("batch_get_item", "ValidationException")  # the whole BatchGetItem
    stub.answer("get_item", {"Item": {"device_id": {"S": "a"}, "site": {"S": "x"}}})
    stub.fail("get_item", "ValidationException")  # "b" alone: unreadable, but registered
    stub.answer("get_item", {})  # "c": not registered
    with stub:
        found = DynamoDeviceRegistry("devs", stub.client).get_many(["a", "b", "c"])
    assert [name for name, _ in stub.calls] == ["batch_get_item", "get_item", "get_item", "get_item"]
    assert found["a"].site == "x"
    assert found["a"].faults == ()
    assert found["b"].faults == ("item",)
    assert "c" not in found


@pytest.mark.parametrize(
    "code", ["ResourceNotFoundException", "AccessDeniedException", "InternalServerError"]
)
def test_a_registry_outage_still_raises(code: str) -> None:
    status = 500 if code == "InternalServerError" else 400
    stub = StubbedClient("dynamodb").fail("batch_get_item", code, status)
    with stub, pytest.raises(StoreError):
        DynamoDeviceRegistry("devs", stub.client).get_many(["a", "b"])
    assert len(stub.calls) == 1


def test_the_api_reads_of_the_registry_leave_out_what_does_not_decode() -> None:
    # GIVEN a device listing with one item whose calibration boto3 cannot decode (the 41-digit 1e40)
    broken = {"device_id": {"S": "b"}, "site": {"S": "x"},
              "calibration": {"M": {"instant_factor": {"N": "1" + "0" * 40}}}}
    stub = StubbedClient("dynamodb")
    stub.answer("scan", {"Items": [broken, {"device_id": {"S": "a"}}]}).answer("get_item", {"Item": broken})
    registry = DynamoDeviceRegistry("devs", stub.client)
    # WHEN the API lists and gets devices, THEN the broken part is left out, the rest is served
    with stub:
        assert registry.scan(10, None).items == [{"device_id": "b", "site": "x"}, {"device_id": "a"}]
        assert registry.get("b") == {"device_id": "b", "site": "x"}
