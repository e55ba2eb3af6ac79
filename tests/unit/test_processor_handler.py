"""The Lambda handler: Kinesis event in, partial-batch response out, structured log without payloads."""

from __future__ import annotations

import io
import json

import pytest

from functions.processor import handler as processor_handler
from functions.processor.ingestion_processor import ProcessorConfig
from testkit.events import SEQ_BASE, FakeLambdaContext, kinesis_event, reading_doc
from testkit.processor import fake_ports

NOW_S = 1_795_000_020.0


@pytest.fixture
def ports(monkeypatch: pytest.MonkeyPatch):
    ports = fake_ports()
    monkeypatch.setattr(processor_handler, "_ports", ports)
    monkeypatch.setattr(processor_handler, "_config", ProcessorConfig(sleep=lambda _: None))
    return ports


def test_handler_returns_empty_failures_for_a_good_batch_and_logs_a_summary(ports, monkeypatch) -> None:
    out = io.StringIO()
    monkeypatch.setattr(processor_handler.logger.registered_handler, "stream", out)
    # GIVEN a Kinesis event with a good reading and a secret-looking malformed payload
    now_ms = int(NOW_S * 1000)
    event = kinesis_event([reading_doc("dev-1", now_ms - 1000), b"SECRET-PAYLOAD not json"], arrival_s=NOW_S)
    # WHEN the handler runs (arrival time is recent relative to the reading, so nothing is late)
    response = processor_handler.handler(event, FakeLambdaContext())
    # THEN no failures are reported and the log line carries counts and the sequence range, never payloads
    assert response == {"batchItemFailures": []}
    logged = [json.loads(line) for line in out.getvalue().splitlines() if line.startswith("{")]
    summary = next(line for line in logged if line.get("message") == "batch processed")
    assert summary["records_in"] == 2
    assert summary["rejected"] == {"malformed_json": 1}
    assert summary["shards"]["shardId-000000000000"]["first"] == str(SEQ_BASE)
    assert "SECRET-PAYLOAD" not in json.dumps(logged)


def test_handler_reports_failed_sequence_numbers(ports) -> None:
    ports.aggregates.fail_get_many = True
    now_ms = int(NOW_S * 1000)
    event = kinesis_event([b"junk", reading_doc("dev-1", now_ms - 1000)], arrival_s=NOW_S)
    response = processor_handler.handler(event, FakeLambdaContext())
    assert response == {"batchItemFailures": [{"itemIdentifier": str(SEQ_BASE + 1)}]}


def test_handler_with_no_records(ports) -> None:
    assert processor_handler.handler({"Records": []}, FakeLambdaContext()) == {"batchItemFailures": []}


def test_build_ports_wires_real_adapters_without_calling_aws(monkeypatch: pytest.MonkeyPatch) -> None:
    from functions.settings import get_settings

    monkeypatch.setenv("METRICS_SINK", "none")
    get_settings.cache_clear()
    try:
        built = processor_handler.build_ports()
    finally:
        get_settings.cache_clear()
    assert type(built.aggregates).__name__ == "DynamoAggregateStore"
    assert type(built.archive).__name__ == "S3Archive"
