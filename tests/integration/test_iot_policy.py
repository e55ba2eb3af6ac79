"""The template's IoT device policy, enforced by a broker: a certificate acts only as its own thing.

ministack holds mTLS MQTT sessions to the IoT policies attached to their certificate only with
``AUTH=true`` (without it, any ACTIVE certificate may publish anywhere), which every emulator this
project starts has; this module starts one of its own, without a stack. Only IoT is needed here:
the policy document is the template's ``IotDevicePolicy`` resolved for this emulator, devices are
provisioned with `iotpipe devices`' code, and each check is what the broker answers a device.
"""

from __future__ import annotations

import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import orjson
import pytest

from iotpipe.devices import provision as prov
from iotpipe.devices.registry import IotRegistry
from iotpipe.local.emulator import TEST_CREDENTIALS, Emulator, free_port
from iotpipe.ops.template import load_template
from simulator.mqtt_sink import connect
from tests.integration.targets import TARGET

pytestmark = pytest.mark.integration

STACK, REGION, ACCOUNT = "pol", "us-east-1", "000000000000"
NOT_AUTHORIZED = 0x87  # MQTT 5 reason code


def _template_policy() -> dict[str, Any]:
    """IotDevicePolicy's document with its !Sub pseudo parameters filled in (``${!x}`` stays ``${x}``)."""
    env = {"AWS::Partition": "aws", "AWS::Region": REGION, "AWS::AccountId": ACCOUNT, "AWS::StackName": STACK}

    def resolve(value: Any) -> Any:
        if isinstance(value, dict) and set(value) == {"Sub"}:
            text = value["Sub"]
            for name, replacement in env.items():
                text = text.replace("${" + name + "}", replacement)
            return text.replace("${!", "${")
        if isinstance(value, dict):
            return {k: resolve(v) for k, v in value.items()}
        if isinstance(value, list):
            return [resolve(v) for v in value]
        return value

    return resolve(load_template()["Resources"]["IotDevicePolicy"]["Properties"]["PolicyDocument"])


@pytest.fixture(scope="module")
def devices() -> Iterator[dict[str, Any]]:
    if TARGET != "embedded":
        pytest.skip(f"{TARGET}: this module starts its own embedded emulator with AUTH=true")
    state = Path(tempfile.mkdtemp(prefix="iotpipe-auth-"))
    emulator = Emulator(port=free_port(), state_dir=state, auth=True).start()
    try:
        iot = boto3.client("iot", endpoint_url=emulator.endpoint, region_name=REGION,
                           aws_access_key_id=TEST_CREDENTIALS["AWS_ACCESS_KEY_ID"],
                           aws_secret_access_key=TEST_CREDENTIALS["AWS_SECRET_ACCESS_KEY"])
        policy = f"{STACK}-device"
        iot.create_policy(policyName=policy, policyDocument=orjson.dumps(_template_policy()).decode())
        key_dir = state / "devices"
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("IOTPIPE_MQTT_ENDPOINT", f"127.0.0.1:{emulator.mqtt_port}")
            registry = IotRegistry(iot=iot, endpoint_url=emulator.endpoint)
            identities = prov.provision(registry, key_dir, ["pol-a", "pol-b"], policy, f"{STACK}/devices")
        yield {"key_dir": key_dir, "endpoint": identities[0].endpoint,
               "topics": {i.thing_name: i.topic for i in identities}}
    finally:
        emulator.stop()


def _publish(client: Any, topic: str) -> int:
    """Publish QoS 1 and return the PUBACK's reason code (0 = accepted)."""
    acked = threading.Event()
    codes: dict[int, int] = {}

    def on_publish(_c: Any, _u: Any, mid: int, reason: Any, _props: Any) -> None:
        codes[mid] = reason.value
        acked.set()

    client.on_publish = on_publish
    info = client.publish(topic, b'{"device_id": "pol-a"}', qos=1)
    assert acked.wait(10), f"no PUBACK for {topic}"
    return codes[info.mid]


def test_a_device_publishes_to_its_own_topic_only_and_subscribes_to_nothing(devices: dict[str, Any]) -> None:
    client, error = connect("pol-a", devices["key_dir"], devices["endpoint"], 10)
    assert client is not None, error
    try:
        assert _publish(client, devices["topics"]["pol-a"]) == 0
        assert _publish(client, devices["topics"]["pol-b"]) == NOT_AUTHORIZED
        assert _publish(client, devices["topics"]["pol-a"] + "/x") == NOT_AUTHORIZED
        granted = threading.Event()
        answer: dict[str, Any] = {}

        def on_subscribe(_c: Any, _u: Any, _mid: int, reasons: list[Any], _props: Any) -> None:
            answer["codes"] = [r.value for r in reasons]
            granted.set()

        client.on_subscribe = on_subscribe
        client.subscribe("#", qos=1)
        assert granted.wait(10)
        assert answer["codes"] == [NOT_AUTHORIZED]
    finally:
        client.disconnect()
        client.loop_stop()


def test_a_certificate_cannot_connect_as_another_thing(devices: dict[str, Any]) -> None:
    client, error = connect("pol-a", devices["key_dir"], devices["endpoint"], 10, client_id="pol-b")
    assert client is None
    assert (error is not None and "refused" in error) or "closed" in (error or ""), error
