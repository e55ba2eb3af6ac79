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
