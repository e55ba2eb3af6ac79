"""Devices over MQTT with their own X.509 identity, through the emulator's IoT Core into the pipeline.

Real end to end on the embedded emulator: `iotpipe devices provision`'s code creates things and
certificates (signed by ministack's CA), the simulator's MQTT sink connects over mTLS as each device
and publishes to its own topic, the stack's topic rules hand the messages to the IoT ingest function
(through a queue, IotRuleAction=sqs: ministack's rules have no kinesis action), and the processor
aggregates them. A reading claiming another device is refused by the rules and counted, never
aggregated as that device; a revoked (INACTIVE) certificate is refused by the broker. LocalStack 4.14
community has no IoT data plane: the stack deploys without the IoT path and this module skips, after
checking that.
"""

from __future__ import annotations

import datetime as dt
import stat
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from iotpipe.devices import provision as prov
from iotpipe.devices.registry import IotRegistry
from iotpipe.ops.status import collect, render
from simulator.mqtt_sink import MqttSink
from simulator.stream import Produced
from tests.integration.polling import wait_for
from tests.integration.targets import TARGET, facts

pytestmark = pytest.mark.integration


def _iso(ms: int) -> str:
    return dt.datetime.fromtimestamp(ms / 1000, dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def _reading(device_id: str, ms: int) -> bytes:
    return orjson.dumps({"device_id": device_id, "timestamp": _iso(ms), "temperature": 21.5,
                         "humidity": 45.0, "pressure": 1013.0})


def _refused(reason: str, since: dt.datetime) -> int:
    cw = boto3.client("cloudwatch")
    points = cw.get_metric_statistics(
        Namespace="IoTPipeline", MetricName="ReadingsRefused",
        Dimensions=[{"Name": "Reason", "Value": reason}], StartTime=since,
        EndTime=dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1), Period=60, Statistics=["Sum"],
    )["Datapoints"]
    return int(sum(p["Sum"] for p in points))


def _window_count(table: str, device: str, window: int) -> int:
    item = boto3.client("dynamodb").get_item(
        TableName=table, Key={"device_id": {"S": device}, "window_start": {"N": str(window)}},
        ConsistentRead=True,
    ).get("Item")
    return int(item["count"]["N"]) if item else 0


@pytest.fixture(scope="module")
def fleet(deployed_stack: dict[str, str], tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    if not facts().iot_data_plane:
        assert "IotDevicePolicyName" not in deployed_stack  # the fact is true of the deployed stack
        pytest.skip(f"{TARGET}: no IoT Core data plane (LocalStack 4.14 community: Pro only); the stack is "
                    "deployed with IotCoreIngest=disabled")
    suffix = uuid.uuid4().hex[:8]
    names = {role: f"mq-{role}-{suffix}" for role in ("a", "b", "revoked")}
    ddb = boto3.client("dynamodb")
    for device in names.values():  # registered devices, as `simulator register` leaves them
        ddb.put_item(TableName=deployed_stack["DevicesTableName"],
                     Item={"device_id": {"S": device}, "site": {"S": "mqtt"}})
    key_dir = tmp_path_factory.mktemp("devices")
    policy, topics = deployed_stack["IotDevicePolicyName"], deployed_stack["IotReadingsTopicPrefix"]
    identities = prov.provision(IotRegistry(), key_dir, list(names.values()), policy, topics)
    return {"names": names, "key_dir": key_dir, "identities": {i.thing_name: i for i in identities}}


def test_provisioning_stores_each_key_private_and_binds_it_to_its_thing(fleet: dict[str, Any]) -> None:
    key_dir: Path = fleet["key_dir"]
    iot = boto3.client("iot")
    for thing, identity in fleet["identities"].items():
        key = key_dir / thing / prov.KEY_FILE
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
        assert stat.S_IMODE((key_dir / thing).stat().st_mode) == 0o700
        assert key.read_text().startswith("-----BEGIN")
        assert iot.list_thing_principals(thingName=thing)["principals"] == [identity.certificate_arn]
        assert identity.topic.endswith(f"/devices/{thing}/readings")
    assert (key_dir / prov.CA_FILE).read_text().startswith("-----BEGIN CERTIFICATE")


def test_own_readings_are_aggregated_a_claimed_device_is_refused_and_a_revoked_certificate_cannot_connect(
    deployed_stack: dict[str, str], fleet: dict[str, Any]
) -> None:
    a, b, revoked = (fleet["names"][r] for r in ("a", "b", "revoked"))
    since = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=1)
    now_ms = int(time.time() * 1000)
    window = (now_ms // 60_000) * 60 - 60  # the previous minute: complete, within lateness
    base_ms = window * 1000
    refused_before = _refused("device_mismatch", since)

    # GIVEN device A publishing five readings of its own and one that claims to be device B
    sink = MqttSink(fleet["key_dir"])
    sink.setup()
    for i in range(5):
        sink.add(Produced(a, _reading(a, base_ms + 1000 * (i + 1)), "normal", base_ms))
    sink.add(Produced(a, _reading(b, base_ms + 10_000), "normal", base_ms))
    # AND the third device publishing once while its certificate is active
    sink.add(Produced(revoked, _reading(revoked, base_ms + 20_000), "normal", base_ms))
    sink.close()
    # THEN the broker acknowledged all seven (it does not read payloads; the rules do)
    assert sink.stats.as_dict()["sent"] == 7, sink.stats.as_dict()

    # THEN A's five readings are aggregated under A, and nothing under B
    aggregates = deployed_stack["AggregatesTableName"]
    counts = wait_for(lambda: (c := _window_count(aggregates, a, window)) >= 5 and c, timeout_s=90)
    assert counts == 5
    assert wait_for(lambda: _window_count(aggregates, revoked, window), timeout_s=30) == 1
    assert _window_count(aggregates, b, window) == 0
    # AND the claim was counted as refused, with its reason
    assert wait_for(lambda: _refused("device_mismatch", since) > refused_before, timeout_s=60)
    # AND `iotpipe status` shows it apart from the pipeline's counts
    status = collect(deployed_stack["StackName"])
    assert status.refused_by_reason.get("device_mismatch", 0) >= 1
    assert "MQTT messages kept off the stream" in render(status)

    # WHEN the third device's certificate is revoked (UpdateCertificate INACTIVE)
    prov.revoke(IotRegistry(), fleet["key_dir"], revoked)
    assert IotRegistry().certificate_status(fleet["identities"][revoked].certificate_id) == "INACTIVE"
    late = MqttSink(fleet["key_dir"])
    late.setup()
    late.add(Produced(revoked, _reading(revoked, base_ms + 30_000), "normal", base_ms))
    late.close()
    # THEN the broker refuses its connection: nothing it sends is acknowledged, nothing more aggregated
    stats = late.stats.as_dict()
    assert (stats["sent"], stats["failed"]) == (0, 1), stats
    assert stats["errors"].get("connect_refused") == 1, stats
    time.sleep(3)
    assert _window_count(aggregates, b, window) == 0
    assert _window_count(aggregates, revoked, window) == 1
