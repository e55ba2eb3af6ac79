"""Least privilege, enforced: each function's role may do what the function needs and nothing more.

The embedded emulator runs with AUTH=true (ministack evaluates every call of a function against its
execution role). Here the test itself takes a session of each role of the session's stack and makes
one call the role must be refused and one call of the same kind the function needs (so a role that
can do nothing would fail too). The roles trust only lambda.amazonaws.com: for the test, each role's
trust policy is given one more statement trusting this account's root (the credentials the tests
sign with) and put back after; the role's permissions are untouched.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import boto3
import orjson
import pytest
from botocore.exceptions import ClientError

from tests.integration.targets import TARGET, facts

pytestmark = pytest.mark.integration

DENIED = {"AccessDenied", "AccessDeniedException"}
PROBE_DEVICE = "iam-probe-no-such-device"  # never created: a conditional write fails after IAM allowed it


@dataclass(frozen=True)
class Call:
    what: str
    run: Callable[[Callable[[str], Any], dict[str, str]], Any]
    # A ClientError code that still proves IAM allowed the call (e.g. the item's condition failed)
    allowed_codes: frozenset[str] = frozenset()


def _update_device(attribute: str) -> Callable[[Callable[[str], Any], dict[str, str]], Any]:
    """UpdateItem of one attribute of a device that does not exist (condition: it exists)."""
    def run(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
        return aws("dynamodb").update_item(
            TableName=out["DevicesTableName"], Key={"device_id": {"S": PROBE_DEVICE}},
            UpdateExpression="SET #a = :v", ConditionExpression="attribute_exists(device_id)",
            ExpressionAttributeNames={"#a": attribute}, ExpressionAttributeValues={":v": {"S": "x"}})
    return run


def _probe_key(table: str) -> dict[str, dict[str, str]]:
    """A key of ``table`` that no item has (the probe device, at time 0)."""
    described = aws_root("dynamodb").describe_table(TableName=table)["Table"]
    types = {a["AttributeName"]: a["AttributeType"] for a in described["AttributeDefinitions"]}
    return {k["AttributeName"]: {types[k["AttributeName"]]: PROBE_DEVICE if types[k["AttributeName"]] == "S"
                                 else "0"} for k in described["KeySchema"]}


def _get(table_output: str) -> Callable[[Callable[[str], Any], dict[str, str]], Any]:
    def run(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
        table = out[table_output]
        return aws("dynamodb").get_item(TableName=table, Key=_probe_key(table))
    return run


def _put_device(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
    return aws("dynamodb").put_item(TableName=out["DevicesTableName"], Item={
        "device_id": {"S": PROBE_DEVICE}, "credential_hash": {"S": "0" * 64}})


def _put_aggregate(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
    table = out["AggregatesTableName"]
    return aws("dynamodb").put_item(TableName=table, Item=_probe_key(table))


def _list(prefix: str) -> Callable[[Callable[[str], Any], dict[str, str]], Any]:
    def run(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
        return aws("s3").list_objects_v2(Bucket=out["ArchiveBucketName"], Prefix=prefix, MaxKeys=1)
    return run


def _put_processed(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
    return aws("s3").put_object(Bucket=out["ArchiveBucketName"], Key=f"processed/{PROBE_DEVICE}.jsonl",
                                Body=b"{}")


def _put_metric(aws: Callable[[str], Any], out: dict[str, str]) -> Any:
    return aws("cloudwatch").put_metric_data(Namespace="IoTPipeline", MetricData=[
        {"MetricName": "IamProbe", "Value": 0.0, "Unit": "Count"}])


# role (logical id) -> (a call it must be refused, a call of the same kind its function makes)
CASES: dict[str, tuple[Call, Call]] = {
    "ProcessorRole": (
        Call("dynamodb:PutItem devices (a device with a credential)", _put_device),
        Call("dynamodb:UpdateItem devices SET detector_state", _update_device("detector_state"),
             frozenset({"ConditionalCheckFailedException"}))),
    "IngestRole": (
        Call("dynamodb:GetItem aggregates (reading aggregates)", _get("AggregatesTableName")),
        Call("dynamodb:GetItem devices (a device's credential hash)", _get("DevicesTableName"))),
    "QueryApiRole": (
        Call("dynamodb:PutItem aggregates (writing anything)", _put_aggregate),
        Call("dynamodb:GetItem aggregates", _get("AggregatesTableName"))),
    "CalibratorRole": (
        Call("s3:PutObject archive processed/ (rewriting the archive)", _put_processed),
        Call("s3:ListBucket archive prefix processed/", _list("processed/"))),
    "CompactorRole": (
        Call("dynamodb:PutItem devices (a device with a credential)", _put_device),
        Call("s3:ListBucket archive prefix processed/", _list("processed/"))),
    "IngestAuthorizerRole": (
        Call("dynamodb:PutItem devices (a device with a credential)", _put_device),
        Call("dynamodb:GetItem devices (a device's credential hash)", _get("DevicesTableName"))),
    "IotIngestRole": (
        Call("dynamodb:GetItem aggregates (reading aggregates)", _get("AggregatesTableName")),
        Call("cloudwatch:PutMetricData namespace IoTPipeline", _put_metric)),
}


def aws_root(service: str) -> Any:
    """A client with the credentials the tests sign with (the emulator's root)."""
    return boto3.client(service)


@pytest.fixture(scope="module")
def role_sessions(deployed_stack: dict[str, str]) -> Iterator[dict[str, Callable[[str], Any]]]:
    if not facts().iam_enforced:
        pytest.skip(f"{TARGET}: the emulator does not evaluate IAM policies")
    iam, sts = aws_root("iam"), aws_root("sts")
    root = sts.get_caller_identity()["Arn"]
    resources = aws_root("cloudformation").describe_stack_resources(StackName=deployed_stack["StackName"])
    roles = {r["LogicalResourceId"]: r["PhysicalResourceId"] for r in resources["StackResources"]
             if r["ResourceType"] == "AWS::IAM::Role"}
    saved: dict[str, str] = {}
    sessions: dict[str, Callable[[str], Any]] = {}
    try:
        for logical in CASES:
            name = roles[logical].rsplit("/", 1)[-1]
            role = iam.get_role(RoleName=name)["Role"]
            trust = role["AssumeRolePolicyDocument"]
            trust = orjson.loads(trust) if isinstance(trust, str) else trust
            saved[name] = orjson.dumps(trust).decode()
            widened = {**trust, "Statement": [*trust["Statement"], {
                "Effect": "Allow", "Principal": {"AWS": root}, "Action": "sts:AssumeRole"}]}
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=orjson.dumps(widened).decode())
            creds = sts.assume_role(RoleArn=role["Arn"], RoleSessionName="iam-denials")["Credentials"]
            session = boto3.Session(aws_access_key_id=creds["AccessKeyId"],
                                    aws_secret_access_key=creds["SecretAccessKey"],
                                    aws_session_token=creds["SessionToken"],
                                    region_name=os.environ["AWS_REGION"])
            sessions[logical] = session.client
        yield sessions
    finally:
        for name, document in saved.items():
            iam.update_assume_role_policy(RoleName=name, PolicyDocument=document)


def _outcome(call: Call, aws: Callable[[str], Any], out: dict[str, str]) -> str:
    try:
        call.run(aws, out)
    except ClientError as error:
        return str(error.response["Error"]["Code"])
    return "allowed"


@pytest.mark.parametrize("role", list(CASES))
def test_each_role_is_refused_what_its_function_must_not_do(
    role: str, role_sessions: dict[str, Callable[[str], Any]], deployed_stack: dict[str, str],
) -> None:
    forbidden, needed = CASES[role]
    aws = role_sessions[role]
    refused = _outcome(forbidden, aws, deployed_stack)
    granted = _outcome(needed, aws, deployed_stack)
    print(f"{role}: {forbidden.what} -> {refused}; {needed.what} -> {granted}")
    assert refused in DENIED, f"{role} may {forbidden.what} ({refused})"
    assert granted == "allowed" or granted in needed.allowed_codes, f"{role} may not {needed.what}"


@pytest.mark.parametrize(("role", "attribute"), [("ProcessorRole", "detector_state"),
                                            ("CalibratorRole", "calibration_refused")])
def test_writes_limited_to_attributes_where_the_target_evaluates_them(
    role: str, attribute: str, role_sessions: dict[str, Callable[[str], Any]], deployed_stack: dict[str, str],
) -> None:
    """The processor and the calibrator may update only their own attributes of a device item
    (ForAllValues:StringEquals dynamodb:Attributes). AWS evaluates the attributes an UpdateExpression
    names; ministack 1.5.33 derives dynamodb:Attributes from projections only, so on a write the key is
    absent and ForAllValues holds: the credential_hash write passes IAM there (and fails only on the
    item's condition). The facts row says which; a target that changes fails here."""
    aws = role_sessions[role]
    own = _outcome(Call(f"SET {attribute}", _update_device(attribute)), aws, deployed_stack)
    credential = _outcome(Call("SET credential_hash", _update_device("credential_hash")), aws, deployed_stack)
    print(f"{role}: dynamodb:UpdateItem devices SET {attribute} -> {own}; "
          f"SET credential_hash -> {credential}")
    assert own == "ConditionalCheckFailedException"
    expected = "AccessDeniedException" if facts().write_attributes_evaluated else own
    assert credential == expected
