"""Security invariants of cloudformation/template.yaml that must hold whatever checkov's version says.

- every checkov suppression carries a written reason (DESIGN: "fixed or suppressed with a reason");
- no Allow statement of an IAM policy or a resource policy grants a wildcard action;
- an Allow on Resource "*" is only for actions that have no resource-level permissions, and is scoped
  by a condition where the service offers one.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from iotpipe.ops.template import load_template

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "cloudformation" / "template.yaml"

# Actions AWS authorises only on Resource "*" (no resource-level permissions in the service
# authorization reference). Anything else on "*" is a finding.
RESOURCELESS_ACTIONS = {
    "cloudwatch:PutMetricData",
    "cloudwatch:GetMetricData",
    "cloudwatch:GetMetricStatistics",
    "cloudwatch:ListMetrics",
    "xray:PutTraceSegments",
    "ecr:GetAuthorizationToken",  # an account-wide token: IAM cannot scope it (the pull is scoped)
    "xray:PutTelemetryRecords",
}
# Policies on these resource types may use wildcards: a KMS key policy must let the account root
# administer the key ("kms:*" is AWS's default key policy; without it the key becomes unmanageable), and
# its Resource "*" means "this key".
KEY_POLICY_TYPES = {"AWS::KMS::Key"}
CHECK_ID = re.compile(r"^CKV2?_[A-Z0-9]+_\d+$")




@pytest.fixture(scope="module")
def template() -> dict[str, Any]:
    return load_template(TEMPLATE)


def _as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def _policy_documents(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    """(resource name, resource type, policy document) for every inline, managed and resource policy."""
    for name, resource in template["Resources"].items():
        kind = resource["Type"]
        props = resource.get("Properties") or {}
        for policy in props.get("Policies") or []:  # AWS::IAM::Role / User / Group inline policies
            yield f"{name}/{policy.get('PolicyName')}", kind, policy["PolicyDocument"]
        for key in ("PolicyDocument", "KeyPolicy"):  # IAM::Policy, ManagedPolicy, S3/SNS/SQS policies, KMS
            if isinstance(props.get(key), dict):
                yield name, kind, props[key]


def _statements(template: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for where, kind, document in _policy_documents(template):
        for i, statement in enumerate(_as_list(document.get("Statement") or [])):
            yield f"{where}#{statement.get('Sid', i)}", kind, statement


def test_the_template_has_policies_to_check(template: dict[str, Any]) -> None:
    assert len(list(_statements(template))) >= 10


def test_every_checkov_skip_has_a_written_reason(template: dict[str, Any]) -> None:
    skips = []
    for name, resource in template["Resources"].items():
        for skip in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []:
            skips.append((name, skip))
    assert skips, "expected the template's documented suppressions"
    for name, skip in skips:
        assert isinstance(skip, dict), f"{name}: a skip must be {{id, comment}}, got {skip!r}"
        assert CHECK_ID.match(str(skip.get("id", ""))), f"{name}: bad check id {skip.get('id')!r}"
        comment = str(skip.get("comment") or "").strip()
        assert len(comment) >= 20, f"{name}: skip {skip['id']} needs a written reason, got {comment!r}"


def test_no_skip_is_repeated_on_one_resource(template: dict[str, Any]) -> None:
    for name, resource in template["Resources"].items():
        ids = [s.get("id") for s in ((resource.get("Metadata") or {}).get("checkov") or {}).get("skip") or []]
        assert len(ids) == len(set(ids)), f"{name}: duplicate skips {ids}"


def test_no_allow_statement_grants_a_wildcard_action(template: dict[str, Any]) -> None:
    offenders = []
    for where, kind, statement in _statements(template):
        if statement.get("Effect") != "Allow" or kind in KEY_POLICY_TYPES:
            continue
        if "NotAction" in statement:
            offenders.append(f"{where}: NotAction")
        for action in _as_list(statement.get("Action") or []):
            if isinstance(action, str) and "*" in action:
                offenders.append(f"{where}: {action}")
    assert not offenders, offenders


def test_resource_wildcards_only_for_actions_without_resource_scope(template: dict[str, Any]) -> None:
    offenders = []
    for where, kind, statement in _statements(template):
        if statement.get("Effect") != "Allow" or kind in KEY_POLICY_TYPES:
            continue
        resources = _as_list(statement.get("Resource") or [])
        if "*" not in resources:
            continue
        actions = set(_as_list(statement.get("Action") or []))
        if not actions <= RESOURCELESS_ACTIONS:
            offenders.append(f"{where}: {sorted(actions - RESOURCELESS_ACTIONS)} on '*'")
        if "cloudwatch:PutMetricData" in actions and _on_aws(statement.get("Condition")) != NAMESPACE_ONLY:
            offenders.append(f"{where}: PutMetricData on '*' without a cloudwatch:namespace condition")
    assert not offenders, offenders


NAMESPACE_ONLY = {"StringEquals": {"cloudwatch:namespace": "IoTPipeline"}}


def _on_aws(condition: Any) -> Any:
    """A statement's Condition as deployed on AWS: the first branch of an IamEnforcer-dependent !If
    (the second, for ministack, which cannot resolve the key, is AWS::NoValue)."""
    if isinstance(condition, dict) and set(condition) == {"If"}:
        name, on_aws, elsewhere = condition["If"]
        assert name == "EvaluatesAllIamConditions", condition
        assert elsewhere == {"Ref": "AWS::NoValue"}, condition
        return on_aws
    return condition


def test_what_the_embedded_emulator_drops_is_kept_on_aws(template: dict[str, Any]) -> None:
    assert template["Parameters"]["IamEnforcer"]["Default"] == "aws"
    assert template["Conditions"]["EvaluatesAllIamConditions"] == {"Equals": [{"Ref": "IamEnforcer"}, "aws"]}
    assert template["Resources"]["ArchiveBucketPolicy"]["Condition"] == "EvaluatesAllIamConditions"


def test_deny_statements_are_the_only_place_for_principal_star(template: dict[str, Any]) -> None:
    # A resource policy that Allows Principal "*" would make a resource public.
    for where, _, statement in _statements(template):
        if statement.get("Principal") in ("*", {"AWS": "*"}):
            assert statement.get("Effect") == "Deny", f"{where}: Allow to Principal '*'"
