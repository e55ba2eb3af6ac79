"""The AWS IoT Core device path: the policy confines a device to its own topic, the rule binds the
reading's device id to the publishing thing, and the template's resources are exactly this code's."""

from __future__ import annotations

from typing import Any

from iotpipe import iot_core
from iotpipe.ops.template import load_template

ENV = {
    "AWS::Partition": "aws",
    "AWS::Region": "eu-west-1",
    "AWS::AccountId": "123456789012",
    "AWS::StackName": "iotpipe",
}


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


def test_a_device_may_publish_only_to_its_own_topic() -> None:
    policy = iot_core.device_policy("iotpipe", "eu-west-1", "123456789012")
    args = ("eu-west-1", "123456789012")
    assert iot_core.allows_publish(policy, "dev-1", "iotpipe/devices/dev-1/readings", *args)
    assert not iot_core.allows_publish(policy, "dev-1", "iotpipe/devices/dev-2/readings", *args)
    assert not iot_core.allows_publish(policy, "dev-1", "iotpipe/devices/+/readings", *args)
    assert not iot_core.allows_publish(policy, "dev-1", "other-stack/devices/dev-1/readings", *args)
    connect = policy["Statement"][0]
    assert connect["Resource"].endswith(":client/${iot:Connection.Thing.ThingName}")
    assert connect["Condition"] == {"Bool": {"iot:Connection.Thing.IsAttached": "true"}}
    assert {s["Action"] for s in policy["Statement"]} == {"iot:Connect", "iot:Publish"}  # no subscribe, no *


def test_rule_accepts_only_readings_of_the_publishing_thing() -> None:
    assert iot_core.rule_sql("iotpipe") == (
        "SELECT * FROM 'iotpipe/devices/+/readings' WHERE device_id = topic(3)"
    )
    # topic(3) is the thing name: <stack>/devices/<thing>/readings
    assert iot_core.readings_topic("iotpipe", "dev-7").split("/")[2] == "dev-7"


def test_template_resources_match_the_code_and_are_off_by_default() -> None:
    template = load_template()
    assert template["Parameters"]["IotCoreIngest"]["Default"] == "disabled"
    resources = template["Resources"]
    iot = {k: v for k, v in resources.items() if v["Type"].startswith("AWS::IoT::") or k.startswith("Iot")}
    assert set(iot) == {"IotDevicePolicy", "IotReadingsRuleRole", "IotReadingsRule"}
    assert all(v.get("Condition") == "UseIotCore" for v in iot.values())
    policy = _resolve(resources["IotDevicePolicy"]["Properties"]["PolicyDocument"])
    assert policy == iot_core.device_policy("iotpipe", "eu-west-1", "123456789012")
    payload = resources["IotReadingsRule"]["Properties"]["TopicRulePayload"]
    assert _resolve(payload["Sql"]) == iot_core.rule_sql("iotpipe")
    (action,) = payload["Actions"]
    assert action["Kinesis"]["StreamName"] == {"Ref": "ReadingsStream"}
    assert action["Kinesis"]["PartitionKey"] == iot_core.KINESIS_PARTITION_KEY
    role = resources["IotReadingsRuleRole"]["Properties"]
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "iot.amazonaws.com"}
    statements = role["Policies"][0]["PolicyDocument"]["Statement"]
    assert {(s["Action"], str(s["Resource"])) for s in statements} == {
        ("kinesis:PutRecord", str({"GetAtt": "ReadingsStream.Arn"})),
        ("kms:GenerateDataKey", str({"GetAtt": "PipelineKey.Arn"})),
    }
