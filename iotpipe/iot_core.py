"""The AWS IoT Core device path (production option; docs/security.md), as data.

Each device is an IoT *thing* with its own X.509 certificate. The certificate is attached to the thing
and to one IoT policy shared by the whole fleet, which lets a connection act only as the thing its
certificate is attached to: connect with client id = thing name, publish only to
``<stack>/devices/<thing name>/readings``. A topic rule takes those messages into the same Kinesis
stream, with the thing name (``topic(3)``) as partition key, and only when the reading's ``device_id``
equals it: the same binding the ingest function enforces for POST /ingest.

The template creates the same policy and rule (``IotCoreIngest=enabled``, AWS only);
tests/unit/test_iot_core.py checks that the template's resources and this module agree.

Provisioning one device (AWS CLI, the stack deployed with ``IotCoreIngest=enabled``)::

    aws iot create-thing --thing-name dev-000042
    aws iot create-keys-and-certificate --set-as-active \\
        --certificate-pem-outfile dev-000042.pem --private-key-outfile dev-000042.key  # prints certificateArn
    aws iot attach-thing-principal --thing-name dev-000042 --principal <certificateArn>
    aws iot attach-policy --policy-name <stack>-device --target <certificateArn>

The private key stays on the device (or is generated on it: ``create-certificate-from-csr``).
"""

from __future__ import annotations

from typing import Any

THING_NAME = "${iot:Connection.Thing.ThingName}"  # an IoT policy variable, resolved per connection


def readings_topic(stack_name: str, thing_name: str) -> str:
    return f"{stack_name}/devices/{thing_name}/readings"


def device_policy(stack_name: str, region: str, account_id: str, partition: str = "aws") -> dict[str, Any]:
    """The IoT policy document every device certificate is attached to."""
    arn = f"arn:{partition}:iot:{region}:{account_id}"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "ConnectAsOwnThing",
                "Effect": "Allow",
                "Action": "iot:Connect",
                "Resource": f"{arn}:client/{THING_NAME}",
                # Only a certificate attached to a thing can connect, and only under that thing's name.
                "Condition": {"Bool": {"iot:Connection.Thing.IsAttached": "true"}},
            },
            {
                "Sid": "PublishOwnReadings",
                "Effect": "Allow",
                "Action": "iot:Publish",
                "Resource": f"{arn}:topic/{readings_topic(stack_name, THING_NAME)}",
            },
        ],
    }


def rule_sql(stack_name: str) -> str:
    """The topic rule: readings of the publishing thing only (a reading naming another device is dropped)."""
    return f"SELECT * FROM '{readings_topic(stack_name, '+')}' WHERE device_id = topic(3)"  # noqa: S608 - IoT SQL of a stack name


KINESIS_PARTITION_KEY = "${topic(3)}"  # the thing name, as the other producers use the device id


def allows_publish(
    policy: dict[str, Any], thing_name: str, topic: str, region: str, account_id: str, partition: str = "aws"
) -> bool:
    """Whether ``policy`` lets a connection of ``thing_name`` publish to ``topic`` (policy variables and
    exact resource match only: enough to check this project's policy, not a general IoT evaluator)."""
    wanted = f"arn:{partition}:iot:{region}:{account_id}:topic/{topic}"
    for statement in policy.get("Statement", []):
        actions = statement.get("Action")
        actions = actions if isinstance(actions, list) else [actions]
        if statement.get("Effect") != "Allow" or "iot:Publish" not in actions:
            continue
        resources = statement.get("Resource")
        for resource in resources if isinstance(resources, list) else [resources]:
            if str(resource).replace(THING_NAME, thing_name) == wanted:
                return True
    return False
