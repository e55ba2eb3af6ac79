"""The IoT Core device path (template: IotDevicePolicy, IotReadingsRule, IotReadingsRuleRole, ...): the
template's policy confines a device to its own topic, its rule binds the reading's device id to the
publishing thing, and the path is off by default. The template is the one source of these documents;
tests/integration/test_iot_policy.py has a broker enforce the same policy."""

from __future__ import annotations

from typing import Any

import pytest

from iotpipe.ops.template import load_template

ENV = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "iotpipe",
}
ARN = "arn:aws:iot:eu-west-1:123456789012"
THING_NAME = "${iot:Connection.Thing.ThingName}"  # an IoT policy variable, resolved per connection


def _resolve(value: Any) -> Any:
    """Resolve the template's !Sub over pseudo parameters (``${!x}`` stays literal ``${x}``)."""
    if isinstance(value, dict) and set(value) == {"Sub"}:
        text = value["Sub"]
        for name, replacement in ENV.items():
            text = text.replace("${" + name + "}", replacement)
        return text.replace("${!", "${")
    if isinstance(value, dict):
        return {k: _resolve(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_resolve(v) for v in value]
    return value


def _allows(policy: dict[str, Any], action: str, thing_name: str, resource: str) -> bool:
    """Whether ``policy`` lets a connection of ``thing_name`` do ``action`` on ``resource`` (policy variables
    and exact resource match only: enough for this project's policy, not a general IoT evaluator)."""
    for statement in policy.get("Statement", []):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if statement.get("Effect") != "Allow" or action not in actions:
            continue
        resources = statement.get("Resource")
        for allowed in resources if isinstance(resources, list) else [resources]:
            if str(allowed).replace(THING_NAME, thing_name) == resource:
                return True
    return False


@pytest.fixture(scope="module")
def resources() -> dict[str, Any]:
    return load_template()["Resources"]


@pytest.fixture(scope="module")
def policy(resources: dict[str, Any]) -> dict[str, Any]:
    return _resolve(resources["IotDevicePolicy"]["Properties"]["PolicyDocument"])


def test_a_device_may_publish_only_to_its_own_topic(policy: dict[str, Any]) -> None:
    def publish(thing: str, topic: str) -> bool:
        return _allows(policy, "iot:Publish", thing, f"{ARN}:topic/{topic}")

    assert publish("dev-1", "iotpipe/devices/dev-1/readings")
    assert not publish("dev-1", "iotpipe/devices/dev-2/readings")
    assert not publish("dev-1", "iotpipe/devices/+/readings")
    assert not publish("dev-1", "other-stack/devices/dev-1/readings")
    # connects only under its own thing name, and only with a certificate attached to that thing
    assert _allows(policy, "iot:Connect", "dev-1", f"{ARN}:client/dev-1")
    connect = next(s for s in policy["Statement"] if s["Action"] == "iot:Connect")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    assert {s["Action"] for s in policy["Statement"]} == {"iot:Connect", "iot:Publish"}  # no subscribe, no *


def test_rule_accepts_only_readings_of_the_publishing_thing(resources: dict[str, Any]) -> None:
    payload = resources["IotReadingsRule"]["Properties"]["TopicRulePayload"]
    # IotRuleAction=kinesis (AWS) is the first branch of each !If; sqs (the embedded emulator) the second
    condition, kinesis_sql, queue_sql = payload["Sql"]["If"]
    assert condition == "UseIotKinesisAction"
    # topic(3) is the thing name: <stack>/devices/<thing>/readings
    assert _resolve(kinesis_sql) == "SELECT * FROM 'iotpipe/devices/+/readings' WHERE device_id = topic(3)"
    assert _resolve(queue_sql) == ("SELECT *, topic(3) AS iot_thing_name FROM 'iotpipe/devices/+/readings' "
                                   "WHERE device_id = topic(3)")
    (choice,) = payload["Actions"]
    _, action, queued = choice["If"]
    assert queued["Sqs"]["QueueUrl"] == {"Ref": "IotReadingsQueue"}
    assert action["Kinesis"]["StreamName"] == {"Ref": "ReadingsStream"}
    # the thing name, as the other producers use the device id
    assert _resolve(action["Kinesis"]["PartitionKey"]) == "${topic(3)}"


def test_the_iot_path_is_off_by_default_and_its_role_only_writes_the_stream(
    resources: dict[str, Any],
) -> None:
    parameters = load_template()["Parameters"]
    assert parameters["IotCoreIngest"]["Default"] == "disabled"
    assert parameters["IotRuleAction"]["Default"] == "kinesis"
    iot = {k: v for k, v in resources.items() if v["Type"].startswith("AWS::IoT::") or k.startswith("Iot")}
    # each rule action's resources exist with it only; everything else with IotCoreIngest=enabled
    kinesis = {"IotReadingsRuleRole"}
    queue = {"IotReadingsQueue", "IotReadingsQueueMapping", "IotQueueRuleRole"}
    assert set(iot) == {
        "IotDevicePolicy", "IotReadingsRule", "IotRefusedReadingsRule", "IotRefusedRuleInvokePermission",
        "IotIngestRole", "IotIngestLogGroup", "IotIngestFunction", *kinesis, *queue,
    }
    assert all(v.get("Condition") == "UseIotCore" for k, v in iot.items() if k not in queue | kinesis)
    assert all(resources[k]["Condition"] == "UseIotQueue" for k in queue)
    assert resources["IotReadingsRuleRole"]["Condition"] == "UseIotKinesisAction"
    role = resources["IotReadingsRuleRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "iot.amazonaws.com"}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {(s["Action"], str(s["Resource"])) for s in statements} == {
        ("kinesis:PutRecord", str({"GetAtt": "ReadingsStream.Arn"})),
        ("kms:GenerateDataKey", str({"GetAtt": "PipelineKey.Arn"})),
    }
