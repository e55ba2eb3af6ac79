"""cloudformation/template.yaml: lint clean, every resource the design names, least privilege."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudformation" / "template.yaml"

# The resources the checks below loop over, by logical id: each loop first asserts it runs over exactly
# these, so a renamed type or an emptied section fails instead of passing over nothing.
FUNCTIONS = {"ProcessorFunction", "IngestFunction", "IngestAuthorizerFunction", "QueryApiFunction",
             "CompactorFunction", "CalibratorFunction", "IotIngestFunction"}
LOG_GROUPS = {"ProcessorLogGroup", "IngestLogGroup", "IngestAuthorizerLogGroup", "QueryApiLogGroup",
              "CompactorLogGroup", "CalibratorLogGroup", "DetectorEndpointLogGroup", "IotIngestLogGroup"}
ROLES = {"ProcessorRole", "IngestRole", "IngestAuthorizerRole", "QueryApiRole", "IotReadingsRuleRole",
         "CompactorRole", "CalibratorRole", "DetectorModelRole", "IotIngestRole",
         "IotQueueRuleRole"}
QUEUES = {"ProcessorDeadLetterQueue", "IotReadingsQueue"}
TOPICS = {"AlertsTopic"}
METHODS = {"IngestMethod", "HealthMethod", "DocsMethod", "OpenApiMethod", "DashboardPageMethod",
           "ProxyMethod"}


@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _resources(template: dict[str, Any], kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in template["Resources"].items() if v["Type"] == kind}


def test_cfn_lint_is_clean() -> None:
    result = subprocess.run(
        [str(Path(sys.executable).parent / "cfn-lint"), str(TEMPLATE)],
        capture_output=True, text=True, check=False, timeout=300,
    )
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_component_of_the_design_is_declared(template: dict[str, Any]) -> None:
    kinds = {r["Type"] for r in template["Resources"].values()}
    for kind in [
        "AWS::Kinesis::Stream", "AWS::DynamoDB::Table", "AWS::S3::Bucket", "AWS::S3::BucketPolicy",
        "AWS::SQS::Queue", "AWS::SNS::Topic", "AWS::Lambda::Function",
        "AWS::Lambda::EventSourceMapping", "AWS::ApiGateway::RestApi", "AWS::ApiGateway::ApiKey",
        "AWS::ApiGateway::UsagePlan", "AWS::ApiGateway::Stage", "AWS::Logs::LogGroup",
        "AWS::CloudWatch::Alarm", "AWS::CloudWatch::Dashboard", "AWS::KMS::Key",
    ]:
        assert kind in kinds, kind
    assert len(_resources(template, "AWS::DynamoDB::Table")) == 3
    assert set(_resources(template, "AWS::Lambda::Function")) == FUNCTIONS
    for fn in _resources(template, "AWS::Lambda::Function").values():
        assert fn["Properties"]["Runtime"] == "python3.12"


def test_encryption_at_rest_everywhere(template: dict[str, Any]) -> None:
    stream = next(iter(_resources(template, "AWS::Kinesis::Stream").values()))
    assert stream["Properties"]["StreamEncryption"]["EncryptionType"] == "KMS"
    for name, table in _resources(template, "AWS::DynamoDB::Table").items():
        props = table["Properties"]
        assert props["SSESpecification"]["SSEEnabled"] is True
        # Point-in-time recovery on every table but the aggregates, a view rebuilt from the archive
        # (iotpipe rebuild): there it is a parameter, off by default (docs/scalability-and-cost.md)
        pitr = props["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"]
        if name == "AggregatesTable":
            assert pitr == {"If": ["AggregatesPitr", True, False]}
            assert template["Parameters"]["AggregatesPointInTimeRecovery"]["Default"] == "disabled"
        else:
            assert pitr is True
        # the aggregates table's mode is a parameter (PROVISIONED by default: its steady 24/7 load,
        # docs/scalability-and-cost.md); the small, spiky tables stay on-demand
        expected = {"Ref": "AggregatesBillingMode"} if name == "AggregatesTable" else "PAY_PER_REQUEST"
        assert props["BillingMode"] == expected, name
    assert set(_resources(template, "AWS::SQS::Queue")) == QUEUES
    assert set(_resources(template, "AWS::SNS::Topic")) == TOPICS
    for queue in _resources(template, "AWS::SQS::Queue").values():
        assert "KmsMasterKeyId" in queue["Properties"]
    for topic in _resources(template, "AWS::SNS::Topic").values():
        assert "KmsMasterKeyId" in topic["Properties"]
    bucket = template["Resources"]["ArchiveBucket"]["Properties"]
    assert bucket["BucketEncryption"]["ServerSideEncryptionConfiguration"]
    assert all(bucket["PublicAccessBlockConfiguration"].values())
    policy = template["Resources"]["ArchiveBucketPolicy"]["Properties"]["PolicyDocument"]["Statement"]
    assert any(s["Effect"] == "Deny" and s["Condition"]["Bool"]["aws:SecureTransport"] == "false"
               for s in policy)


def test_event_source_mapping_reports_partial_failures_and_has_a_dead_letter_queue(
    template: dict[str, Any],
) -> None:
    esm = next(iter(_resources(template, "AWS::Lambda::EventSourceMapping").values()))["Properties"]
    assert esm["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert esm["BisectBatchOnFunctionError"] is True
    assert "OnFailure" in esm["DestinationConfig"]
    assert "MaximumRetryAttempts" in esm
    assert "MaximumRecordAgeInSeconds" in esm


def _statements(template: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    out = []
    for name, role in _resources(template, "AWS::IAM::Role").items():
        for policy in role["Properties"].get("Policies", []):
            out += [(name, s) for s in policy["PolicyDocument"]["Statement"]]
    return out


# Actions that IAM cannot scope to a resource; each must carry a condition instead.
UNSCOPABLE = {
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
    "ecr:GetAuthorizationToken",
}


def test_iam_has_no_wildcard_action_and_no_unscoped_resource_where_a_scoped_one_exists(
    template: dict[str, Any],
) -> None:
    assert set(_resources(template, "AWS::IAM::Role")) == ROLES
    statements = _statements(template)
    assert {role for role, _ in statements} == ROLES  # every role's inline policies are checked
    for role, statement in statements:
        actions = statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        for action in actions:
            assert "*" not in action, f"{role}: wildcard action {action}"
        if statement.get("Resource") == "*":
            assert set(actions) <= UNSCOPABLE, f"{role}: {actions} on '*'"


def test_every_function_has_its_own_role_and_log_group_with_retention(template: dict[str, Any]) -> None:
    functions = _resources(template, "AWS::Lambda::Function")
    assert set(functions) == FUNCTIONS
    assert set(_resources(template, "AWS::Logs::LogGroup")) == LOG_GROUPS
    roles = [fn["Properties"]["Role"]["GetAtt"] for fn in functions.values()]
    assert len(set(roles)) == len(functions)
    for group in _resources(template, "AWS::Logs::LogGroup").values():
        assert "RetentionInDays" in group["Properties"]
    assert len(_resources(template, "AWS::Logs::LogGroup")) >= len(functions)


def test_every_api_route_but_the_public_ones_requires_the_api_key(template: dict[str, Any]) -> None:
    # Reads take the reader key; POST /ingest takes a device credential (the device authorizer) and
    # not the reader key, so the reader key cannot write (docs/security.md, auth matrix).
    public = {"HealthMethod", "DocsMethod", "OpenApiMethod", "DashboardPageMethod"}
    assert set(_resources(template, "AWS::ApiGateway::Method")) == METHODS
    for name, method in _resources(template, "AWS::ApiGateway::Method").items():
        props = method["Properties"]
        if name == "IngestMethod":
            assert props["ApiKeyRequired"] is False
            # the device authorizer, or (DeviceAuthMode=function, LocalStack) the ingest function's check
            assert props["AuthorizationType"] == {"If": ["UseGatewayAuthorizer", "CUSTOM", "NONE"]}
            assert props["AuthorizerId"] == {
                "If": ["UseGatewayAuthorizer", {"Ref": "DeviceAuthorizer"}, {"Ref": "AWS::NoValue"}]
            }
            assert template["Parameters"]["DeviceAuthMode"]["Default"] == "gateway"
            continue
        assert props["AuthorizationType"] == "NONE", name
        assert props["ApiKeyRequired"] is (name not in public), name
