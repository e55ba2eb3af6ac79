"""Event factories (readings, Kinesis and API Gateway events) and a fake Lambda context.

One place, so unit tests, ``bench/`` and the integration tests build events the same way. Test-only:
``testkit/`` never ships in a Lambda bundle.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import orjson

from functions.core.readings import DeviceInfo
from functions.processor.records import KinesisRecord

DEFAULT_SHARD = "shardId-000000000000"
SEQ_BASE = 49_650_000_000_000_000_000_000_000_000_000_000_000_000_000


def reading_doc(
    device_id: str = "dev-000001",
    epoch_ms: int = 1_795_000_000_000,
    temperature: float = 21.5,
    humidity: float = 45.0,
    pressure: float = 1013.25,
    *,
    iso: bool = True,
    **extra_fields: Any,
) -> dict[str, Any]:
    """A valid input reading document (timestamp as ISO 'Z' string or epoch ms)."""
    from functions.processor.decode import format_ms

    doc: dict[str, Any] = {
        "device_id": device_id,
        "timestamp": format_ms(epoch_ms) if iso else epoch_ms,
        "temperature": temperature,
        "humidity": humidity,
        "pressure": pressure,
    }
    doc.update(extra_fields)
    return doc


def encode(payload: dict[str, Any] | bytes) -> bytes:
    return payload if isinstance(payload, bytes) else orjson.dumps(payload)


def packed(payloads: Iterable[dict[str, Any] | bytes]) -> bytes:
    """A packed record's data: a JSON array of readings (docs/data-model.md), elements as given."""
    return b"[" + b",".join(encode(p) for p in payloads) + b"]"


def pack_payloads(payloads: Sequence[dict[str, Any] | bytes], size: int) -> list[bytes]:
    """Consecutive payloads packed ``size`` at a time (the last pack may be shorter)."""
    return [packed(payloads[i : i + size]) for i in range(0, len(payloads), size)]


def kinesis_event_record(
    payload: dict[str, Any] | bytes,
    sequence_number: int | str,
    shard_id: str = DEFAULT_SHARD,
    arrival_s: float = 1_795_000_000.0,
    partition_key: str | None = None,
) -> dict[str, Any]:
    """One element of a Lambda Kinesis event's ``Records`` (the shape the ESM delivers)."""
    data = encode(payload)
    if partition_key is None:
        partition_key = payload.get("device_id", "pk") if isinstance(payload, dict) else "pk"
    return {
        "kinesis": {
            "kinesisSchemaVersion": "1.0",
            "partitionKey": str(partition_key),
            "sequenceNumber": str(sequence_number),
            "data": base64.b64encode(data).decode(),
            "approximateArrivalTimestamp": arrival_s,
        },
        "eventSource": "aws:kinesis",
        "eventVersion": "1.0",
        "eventID": f"{shard_id}:{sequence_number}",
        "eventName": "aws:kinesis:record",
        "invokeIdentityArn": "arn:aws:iam::000000000000:role/processor",
        "awsRegion": "us-east-1",
        "eventSourceARN": "arn:aws:kinesis:us-east-1:000000000000:stream/iotpipe-readings",
    }


def kinesis_event(
    payloads: Sequence[dict[str, Any] | bytes],
    shard_id: str = DEFAULT_SHARD,
    first_seq: int = SEQ_BASE,
    arrival_s: float = 1_795_000_000.0,
) -> dict[str, Any]:
    """A Kinesis event for ``payloads`` on one shard, with consecutive sequence numbers."""
    return {
        "Records": [
            kinesis_event_record(p, first_seq + i, shard_id, arrival_s) for i, p in enumerate(payloads)
        ]
    }


def records_of(event: dict[str, Any]) -> list[KinesisRecord]:
    return [KinesisRecord.from_event_record(r) for r in event["Records"]]


def make_records(
    payloads: Iterable[dict[str, Any] | bytes],
    shard_id: str = DEFAULT_SHARD,
    first_seq: int = SEQ_BASE,
    arrival_s: float = 1_795_000_000.0,
) -> list[KinesisRecord]:
    """KinesisRecords directly (skips the event dict; what the benchmark and most unit tests want)."""
    return [
        KinesisRecord(
            shard_id=shard_id,
            sequence_number=str(first_seq + i),
            data_b64=base64.b64encode(encode(p)).decode(),
            approximate_arrival_ms=int(arrival_s * 1000),
            partition_key=p.get("device_id", "pk") if isinstance(p, dict) else "pk",
        )
        for i, p in enumerate(payloads)
    ]


def devices(*ids: str, site: str = "site-a", location: str = "Lisbon, PT") -> list[DeviceInfo]:
    return [DeviceInfo(device_id=d, name=d, site=site, location=location) for d in ids]


def api_gateway_event(
    body: str | bytes | None, method: str = "POST", base64_encoded: bool = False
) -> dict[str, Any]:
    """An API Gateway REST proxy event for POST /ingest."""
    if isinstance(body, bytes):
        body = base64.b64encode(body).decode() if base64_encoded else body.decode()
    return {
        "resource": "/ingest",
        "path": "/ingest",
        "httpMethod": method,
        "headers": {"Content-Type": "application/json", "x-api-key": "test"},
        "queryStringParameters": None,
        "pathParameters": None,
        "requestContext": {
            "resourcePath": "/ingest",
            "httpMethod": method,
            "stage": "v1",
            "requestId": "req-1",
        },
        "body": body,
        "isBase64Encoded": base64_encoded,
    }


@dataclass
class FakeLambdaContext:
    function_name: str = "iotpipe-processor"
    memory_limit_in_mb: int = 512
    invoked_function_arn: str = "arn:aws:lambda:us-east-1:000000000000:function:iotpipe-processor"
    aws_request_id: str = "00000000-0000-0000-0000-000000000000"
    log_group_name: str = "/aws/lambda/iotpipe-processor"
    log_stream_name: str = "2026/11/21/[$LATEST]test"
    remaining_ms: int = 60_000

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms
