"""The IoT ingest function: a reading goes on the stream only when its device_id is the publishing thing.

The rule event is what the topic rules' ``SELECT *, topic(3) AS iot_thing_name`` projects; the
integration test (tests/integration/test_mqtt_ingest.py) runs the same path through the emulator's broker.
"""

from __future__ import annotations

import orjson
import pytest

from functions.adapters.kinesis import KinesisPublisher
from functions.ingest.mqtt import REFUSED_METRIC, StreamUnavailable, ingest_message, ingest_queued
from testkit.events import reading_doc
from testkit.fakes import FakeKinesisClient, InMemoryMetrics


def _publisher(*fail_plan: set[int]) -> tuple[KinesisPublisher, FakeKinesisClient]:
    fake = FakeKinesisClient(list(fail_plan))
    return KinesisPublisher("stream", fake, max_attempts=2, sleep=lambda _: None), fake


def test_own_reading_goes_on_the_stream_as_sent_keyed_by_the_thing() -> None:
    pub, fake = _publisher()
    metrics = InMemoryMetrics()
    reading = reading_doc("dev-a")
    outcome = ingest_message({**reading, "iot_thing_name": "dev-a"}, pub, metrics)
    assert outcome.to_json() == {"status": "stored", "thing": "dev-a", "sequence_number": fake.stored[0][0]}
    (_, data, partition_key) = fake.stored[0]
    # The thing name is the rules' addition, not part of the reading (the schema allows no extra field).
    assert orjson.loads(data) == reading
    assert partition_key == "dev-a"
    assert metrics.points == []


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        (reading_doc("dev-b"), "device_mismatch"),
        ({k: v for k, v in reading_doc("dev-a").items() if k != "device_id"}, "no_device_id"),
        ({}, "not_json_object"),
    ],
)
def test_message_not_of_the_publishing_thing_never_enters_the_stream_and_is_counted(
    fields: dict, reason: str
) -> None:
    pub, fake = _publisher()
    metrics = InMemoryMetrics()
    outcome = ingest_message({**fields, "iot_thing_name": "dev-a"}, pub, metrics)
    assert outcome.to_json() == {"status": "refused", "thing": "dev-a", "reason": reason}
    assert fake.calls == []
    assert [(p[0], p[1], p[3]) for p in metrics.points] == [(REFUSED_METRIC, 1, {"Reason": reason})]


def test_a_reading_the_stream_does_not_take_raises_so_lambda_retries_the_event() -> None:
    pub, fake = _publisher({0}, {0})  # both attempts throttled
    with pytest.raises(StreamUnavailable, match="dev-a"):
        ingest_message({**reading_doc("dev-a"), "iot_thing_name": "dev-a"}, pub, InMemoryMetrics())
    assert fake.stored == []


def test_an_event_without_the_thing_name_is_a_rule_error_not_a_guess() -> None:
    pub, fake = _publisher()
    with pytest.raises(ValueError, match="iot_thing_name"):
        ingest_message(reading_doc("dev-a"), pub, InMemoryMetrics())
    assert fake.calls == []


def _queued(message_id: str, fields: dict, thing: str = "dev-a") -> dict:
    return {"messageId": message_id, "body": orjson.dumps({**fields, "iot_thing_name": thing}).decode()}


def test_a_queued_batch_stores_own_readings_in_one_call_counts_the_rest_and_returns_only_failures() -> None:
    # GIVEN a batch from the readings queue: two own readings, one claiming dev-b, one not a rule event,
    # and a stream that throttles the second entry on both attempts
    pub, fake = _publisher({1}, {0})
    metrics = InMemoryMetrics()
    records = [
        _queued("m1", reading_doc("dev-a", epoch_ms=1)),
        _queued("m2", reading_doc("dev-a", epoch_ms=2)),
        _queued("m3", reading_doc("dev-b")),
        {"messageId": "m4", "body": "not json"},
    ]
    response = ingest_queued(records, pub, metrics)
    # THEN the own readings went in one PutRecords, keyed by the thing; the throttled one and the
    # undecodable one are handed back for redelivery; the claim is counted and never stored
    assert len(fake.calls[0]) == 2
    assert [orjson.loads(data)["device_id"] for _, data, _ in fake.stored] == ["dev-a"]
    assert response == {"batchItemFailures": [{"itemIdentifier": "m4"}, {"itemIdentifier": "m2"}]}
    assert metrics.total(REFUSED_METRIC, Reason="device_mismatch") == 1
