"""Per-target behaviour of the template features the project relies on, asserted target by target.

The expected behaviour of each target is the table in tests/integration/targets.py (and
docs/deploying.md). Nothing here is skipped: on every target the test asserts what that target does.
"""

from __future__ import annotations

import boto3
import pytest
from botocore.exceptions import ClientError

from tests.integration.targets import TARGET, facts

pytestmark = pytest.mark.integration


def test_dashboard(deployed_stack: dict[str, str]) -> None:
    name = f"{deployed_stack['StackName']}-pipeline"
    found, body, error = True, "", ""
    try:
        body = boto3.client("cloudwatch").get_dashboard(DashboardName=name)["DashboardBody"]
    except ClientError as exc:
        found, error = False, exc.response["Error"]["Code"]
    if not found:  # LocalStack answers a dashboard it does not have with InvalidParameterValue
        assert error in {"ResourceNotFound", "ResourceNotFoundException", "InvalidParameterValue"}, error
    assert found is facts().dashboard_created, f"{TARGET}: dashboard {name} found={found}"
    if found:
        assert "widgets" in body
    else:
        # LocalStack marks the resource complete with a placeholder physical id
        assert deployed_stack["DashboardName"] in {"unknown", name}


def test_stream_encryption(deployed_stack: dict[str, str]) -> None:
    summary = boto3.client("kinesis").describe_stream_summary(StreamName=deployed_stack["StreamName"])
    encryption = summary["StreamDescriptionSummary"].get("EncryptionType", "NONE")
    assert (encryption == "KMS") is facts().stream_encryption, f"{TARGET}: EncryptionType {encryption}"


def test_logging_config(deployed_stack: dict[str, str]) -> None:
    config = boto3.client("lambda").get_function_configuration(
        FunctionName=deployed_stack["ProcessorFunctionName"])
    group = config.get("LoggingConfig", {}).get("LogGroup")
    kept = group == f"/aws/lambda/{deployed_stack['StackName']}-processor"
    assert kept is facts().logging_config_kept, f"{TARGET}: LoggingConfig {config.get('LoggingConfig')}"


def test_aggregates_table_is_provisioned_and_the_others_on_demand(deployed_stack: dict[str, str]) -> None:
    # GIVEN the template's defaults (AggregatesBillingMode PROVISIONED, 10 WCU / 10 RCU minimum)
    from iotpipe.ops.template import load_template

    params = load_template()["Parameters"]
    ddb = boto3.client("dynamodb")

    def table(name: str) -> dict:
        return ddb.describe_table(TableName=deployed_stack[name])["Table"]

    # THEN the aggregates table bills provisioned capacity, at the template's minimum
    aggregates = table("AggregatesTableName")
    assert aggregates.get("BillingModeSummary", {}).get("BillingMode", "PROVISIONED") == "PROVISIONED"
    throughput = aggregates["ProvisionedThroughput"]
    # int(): ministack keeps a !Ref'd Number parameter as the string CloudFormation passed it ("10")
    assert int(throughput["WriteCapacityUnits"]) == int(params["AggregatesWriteCapacity"]["Default"])
    assert int(throughput["ReadCapacityUnits"]) == int(params["AggregatesReadCapacity"]["Default"])
    # AND the spiky, small tables stay on-demand
    for name in ("DevicesTableName", "AnomaliesTableName"):
        assert table(name)["BillingModeSummary"]["BillingMode"] == "PAY_PER_REQUEST", name
    # AND the auto scaling resources are in the stack where the target has a provider for them
    pages = boto3.client("cloudformation").get_paginator("list_stack_resources").paginate(
        StackName=deployed_stack["StackName"])
    logical = {r["LogicalResourceId"] for page in pages for r in page["StackResourceSummaries"]}
    scaling = {"AggregatesWriteScaling", "AggregatesWriteScalingPolicy", "AggregatesReadScaling",
               "AggregatesReadScalingPolicy"}
    assert (scaling <= logical) is facts().capacity_scaling_in_stack, f"{TARGET}: {scaling & logical}"
