"""The walking skeleton through every stage, on a real emulator process.

simulator-shaped readings -> Kinesis -> processor Lambda (running inside the emulator) -> DynamoDB
aggregates + S3 archive -> query API through API Gateway.
"""

from __future__ import annotations

import json
import subprocess
import sys
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import httpx
import pytest

from tests.integration.polling import wait_for

pytestmark = pytest.mark.integration


def _iso(ts: datetime) -> str:
    return ts.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def test_readings_put_on_the_stream_are_queryable_as_a_one_minute_aggregate(
    deployed_stack: dict[str, str],
) -> None:
    # GIVEN a registered device
    device_id = f"e2e-{uuid.uuid4().hex[:10]}"
    ddb = boto3.client("dynamodb")
    ddb.put_item(TableName=deployed_stack["DevicesTableName"], Item={
        "device_id": {"S": device_id}, "name": {"S": "E2E sensor"}, "site": {"S": "test-site"},
        "location": {"S": "Berlin, DE"}, "latitude": {"N": "52.52"}, "longitude": {"N": "13.405"},
        "model": {"S": "TH-100"}, "timezone": {"S": "Europe/Berlin"},
        "registered_at": {"S": _iso(datetime.now(UTC))},
    })
    # AND ten readings inside one minute, a few seconds old
    window = datetime.now(UTC).replace(second=0, microsecond=0)
    if (datetime.now(UTC) - window).total_seconds() < 12:
        window -= timedelta(minutes=1)
    temps = [20.0 + i * 0.1 for i in range(10)]
    records = [{
        "Data": json.dumps({"device_id": device_id, "timestamp": _iso(window + timedelta(seconds=i)),
                            "temperature": t, "humidity": 45.0, "pressure": 1013.0}).encode(),
        "PartitionKey": device_id,
    } for i, t in enumerate(temps)]

    # WHEN they are put on the stream
    resp = boto3.client("kinesis").put_records(StreamName=deployed_stack["StreamName"], Records=records)
    assert resp["FailedRecordCount"] == 0

    # THEN the query API (through API Gateway) returns one aggregate with all ten readings
    url = f"{deployed_stack['ApiUrl']}/devices/{device_id}/aggregates"
    params = {"from": _iso(window - timedelta(minutes=1)), "to": _iso(window + timedelta(minutes=2))}
    headers = {"x-api-key": deployed_stack["ApiKey"]}

    def aggregates() -> list[dict] | None:
        r = httpx.get(url, params=params, headers=headers, timeout=30)
        if r.status_code != 200:
            return None
        items = r.json()["items"]
        return items if items and items[0]["count"] == len(temps) else None

    items = wait_for(aggregates, timeout_s=120, interval_s=2)
    assert items, f"no complete aggregate for {device_id} within 120 s"
    agg = items[0]
    assert agg["device_id"] == device_id
    assert agg["location"] == "Berlin, DE"
    temperature = agg["channels"]["temperature"]
    assert temperature["count"] == 10
    assert temperature["min"] == pytest.approx(min(temps))
    assert temperature["max"] == pytest.approx(max(temps))
    assert temperature["mean"] == pytest.approx(sum(temps) / len(temps))

    # AND the processed readings are archived in S3 under the processed/ prefix
    s3 = boto3.client("s3")
    listed = s3.list_objects_v2(Bucket=deployed_stack["ArchiveBucketName"], Prefix="processed/")
    assert listed.get("KeyCount", 0) >= 1

    # AND `iotpipe status --json` reports the aggregated readings
    status = subprocess.run(
        [sys.executable, "-m", "iotpipe.cli", "status", "--json", "--stack", deployed_stack["StackName"]],
        capture_output=True, text=True, check=True, timeout=120,
    )
    figures = json.loads(status.stdout.strip().splitlines()[-1])
    assert figures["aggregated"] >= len(temps)
    assert figures["stack_status"] in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
