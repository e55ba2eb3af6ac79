"""POST /ingest: shape validation, limits, per-record results, Kinesis failures surfaced as 503.

Every request is authenticated as one device (``principal``); tests/unit/test_device_auth.py covers the
credential and the binding of readings to it.
"""

from __future__ import annotations

import json

import orjson
import pytest

from functions.adapters.kinesis import KinesisPublisher
from functions.ingest import handler as ingest_handler
from functions.ingest.handler import ingest
from functions.settings import IngestSettings
from testkit.events import FakeLambdaContext, api_gateway_event, reading_doc
from testkit.fakes import FakeKinesisClient

SETTINGS = IngestSettings(ingest_max_records=5, ingest_max_body_bytes=4096, max_record_bytes=512)


def publisher(*fail_plan) -> tuple[KinesisPublisher, FakeKinesisClient]:
    fake = FakeKinesisClient(list(fail_plan))
    return KinesisPublisher("stream", fake, max_attempts=3, sleep=lambda _: None), fake


def body(obj) -> bytes:
    return orjson.dumps(obj)


def test_single_object_is_accepted_and_put_with_device_partition_key() -> None:
    # GIVEN one valid reading
    pub, fake = publisher()
    # WHEN posted
    response = ingest(body(reading_doc("dev-7")), pub, SETTINGS, principal="dev-7")
    # THEN 200 with one accepted result carrying its sequence number; Kinesis got it keyed by device
    assert response.status == 200
    assert response.body["accepted"] == 1
    assert response.body["rejected"] == 0
    (result,) = response.body["results"]
    assert result["status"] == "accepted"
    assert result["sequence_number"] == fake.stored[0][0]
    assert fake.stored[0][2] == "dev-7"
    assert orjson.loads(fake.stored[0][1])["device_id"] == "dev-7"


def test_array_with_invalid_records_reports_per_record_results() -> None:
    pub, fake = publisher()
    docs = [
        reading_doc("dev-1"),
        {"device_id": "dev-1"},
        reading_doc("dev-1", extra={"big": 1.0}, ground_truth="x" * 30),
    ]
    docs.append(reading_doc("dev-1", extra={f"c{i:031d}": float(i) for i in range(16)}))  # > 512 bytes
    response = ingest(body(docs), pub, SETTINGS, principal="dev-1")
    assert response.status == 200
    statuses = [(r["index"], r["status"], r.get("reason")) for r in response.body["results"]]
    assert statuses == [
        (0, "accepted", None),
        (1, "rejected", "schema_invalid"),
        (2, "accepted", None),
        (3, "rejected", "oversized"),
    ]
    assert len(fake.stored) == 2


@pytest.mark.parametrize(
    ("raw", "status", "code"),
    [
        (b"{nope", 400, "invalid_json"),
        (b"42", 400, "invalid_body"),
        (b"[]", 400, "empty_array"),
        (b"", 400, "empty_body"),
        (orjson.dumps([reading_doc()] * 6), 413, "too_many_records"),
        (b"[" + b" " * 5000 + b"]", 413, "body_too_large"),
        (orjson.dumps([{"device_id": "dev-000001"}]), 400, "no_valid_records"),
    ],
)
def test_bad_requests_get_json_errors(raw: bytes, status: int, code: str) -> None:
    pub, fake = publisher()
    response = ingest(raw, pub, SETTINGS, principal="dev-000001")
    assert response.status == status
    assert response.body["error"]["code"] == code
    assert isinstance(response.body["error"]["message"], str)
    assert not fake.stored


def test_partial_kinesis_failure_is_retried_for_failed_entries_only() -> None:
    # GIVEN Kinesis throttles entry 1 on the first call
    pub, fake = publisher({1})
    docs = [reading_doc("dev-0", epoch_ms=1_795_000_000_000 + i * 1000) for i in range(3)]
    # WHEN posted
    response = ingest(body(docs), pub, SETTINGS, principal="dev-0")
    # THEN the retry sent only the failed entry, and everything is accepted
    assert response.status == 200
    assert response.body["accepted"] == 3
    assert [len(c) for c in fake.calls] == [3, 1]
    assert sorted(orjson.loads(data)["timestamp"] for _, data, _ in fake.stored) == sorted(
        d["timestamp"] for d in docs
    )


def test_entries_still_failing_after_retries_give_503_naming_them() -> None:
    # GIVEN Kinesis keeps throttling entry 2 on every attempt
    pub, _ = publisher({2}, {0}, {0})
    docs = [reading_doc("dev-0", epoch_ms=1_795_000_000_000 + i * 1000) for i in range(3)]
    # WHEN posted
    response = ingest(body(docs), pub, SETTINGS, principal="dev-0")
    # THEN 503 with Retry-After; the result for index 2 says failed, the others carry sequence numbers
    assert response.status == 503
    assert response.headers == {"Retry-After": "1"}
    assert response.body["accepted"] == 2
    assert response.body["failed"] == 1
    failed = [r for r in response.body["results"] if r["status"] == "failed"]
    assert [r["index"] for r in failed] == [2]
    assert all("sequence_number" in r for r in response.body["results"] if r["status"] == "accepted")


def test_whole_call_errors_non_transient_are_not_retried() -> None:
    from botocore.exceptions import ClientError

    err = ClientError(
        {"Error": {"Code": "ResourceNotFoundException"}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "PutRecords",
    )
    pub, fake = publisher(err)
    response = ingest(body(reading_doc()), pub, SETTINGS, principal="dev-000001")
    assert response.status == 503
    assert len(fake.calls) == 1


def test_lambda_handler_wraps_proxy_event(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN the handler with a fake publisher
    pub, _ = publisher()
    monkeypatch.setattr(ingest_handler, "_publisher", pub)

    def as_device(event: dict) -> dict:  # what the gateway adds after the device authorizer allowed it
        event["requestContext"]["authorizer"] = {"principalId": "dev-000001", "device_id": "dev-000001"}
        return event

    # WHEN invoked with an API Gateway proxy event (plain and base64 bodies)
    plain = ingest_handler.handler(as_device(api_gateway_event(body(reading_doc()))), FakeLambdaContext())
    b64 = ingest_handler.handler(
        as_device(api_gateway_event(body(reading_doc()), base64_encoded=True)), FakeLambdaContext()
    )
    wrong = ingest_handler.handler(api_gateway_event(None, method="GET"), FakeLambdaContext())
    # THEN proxy responses with JSON bodies
    assert plain["statusCode"] == 200
    assert b64["statusCode"] == 200
    assert plain["headers"]["Content-Type"] == "application/json"
    assert json.loads(plain["body"])["accepted"] == 1
    assert wrong["statusCode"] == 405
