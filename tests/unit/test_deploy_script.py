"""scripts/deploy.sh: the same package/deploy calls for every target, only the endpoint differs."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _dry_run(target: str, extra_env: dict[str, str]) -> list[str]:
    # Production deploys: no AWS_* of the caller, and no test hooks (the integration conftest sets
    # IOTPIPE_TEST_HOOKS=faults for its own stacks when both tiers run in one session).
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_") and k != "IOTPIPE_TEST_HOOKS"}
    env.update(extra_env)
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", target, "--dry-run", "--yes"],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return [line[2:] for line in result.stderr.splitlines() if line.startswith("+ ")]


def _without_endpoint(call: str) -> str:
    return re.sub(r"--endpoint-url \S+ ", "", call)


def _without_embedded_parameters(call: str) -> str:
    # The parameters the embedded target sets: ministack's CloudFormation has no
    # AWS::Athena::NamedQuery provider (ArchiveSql=catalog, docs/querying.md) and no
    # AWS::ApplicationAutoScaling one (AggregatesCapacityScaling=disabled, docs/scalability-and-cost.md);
    # its IoT rules have no kinesis action (IotRuleAction=sqs, docs/mqtt-devices.md); its IAM evaluator
    # resolves no cloudwatch: condition key and it serves no TLS (IamEnforcer=ministack, docs/security.md);
    # it invokes as soon as records exist (BatchingWindowSeconds=1, as local targets deploy).
    return call.replace("--parameter-overrides ArchiveSql=catalog AggregatesCapacityScaling=disabled "
                        "IotCoreIngest=enabled IotRuleAction=sqs IamEnforcer=ministack "
                        "BatchingWindowSeconds=1 ", "")


def test_aws_dry_run_makes_the_same_calls_as_the_emulator_with_only_the_endpoint_different() -> None:
    # GIVEN dry runs against the embedded emulator and against AWS
    embedded = _dry_run("embedded", {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})
    aws = _dry_run("aws", {})

    # THEN both build, package and deploy with the same commands
    assert any("cloudformation package" in c for c in aws)
    assert any("cloudformation deploy" in c for c in aws)
    assert all("--endpoint-url" not in c for c in aws)
    aws_calls = [c for c in embedded if c.split()[0].endswith("aws")]
    assert aws_calls
    assert all("--endpoint-url http://127.0.0.1:4566" in c for c in aws_calls)
    assert [_without_embedded_parameters(_without_endpoint(c)) for c in embedded] == aws
    # AND only the embedded deploy leaves out the named queries (no provider for them there)
    assert any("ArchiveSql=catalog" in c for c in embedded)
    assert not any("ArchiveSql" in c for c in aws)
    # AND only the embedded deploy keeps a fixed provisioned capacity (no auto scaling provider there)
    assert any("AggregatesCapacityScaling=disabled" in c for c in embedded)
    assert not any("AggregatesCapacityScaling" in c for c in aws)
    # AND only the embedded deploy turns the MQTT path on, with the queue instead of the Kinesis action
    assert any("IotCoreIngest=enabled IotRuleAction=sqs" in c for c in embedded)
    assert not any("IotCoreIngest" in c or "IotRuleAction" in c for c in aws)
    # AND only the embedded deploy drops the two IAM statements ministack cannot evaluate
    assert any("IamEnforcer=ministack" in c for c in embedded)
    assert not any("IamEnforcer" in c for c in aws)
    # AND only local deploys shorten the batching window (AWS keeps the template's 60 s: the cost default)
    assert any("BatchingWindowSeconds=1" in c for c in embedded)
    assert not any("BatchingWindowSeconds" in c for c in aws)


def test_localstack_deploys_without_sql_over_the_archive() -> None:
    # GIVEN a dry run against LocalStack (4.14 community: no Glue, no Athena)
    calls = _dry_run("localstack", {"AWS_ENDPOINT_URL": "http://127.0.0.1:4566"})
    # THEN the deploy turns the archive's SQL resources off, as it does the gateway authorizer
    deploy = [c for c in calls if "cloudformation deploy" in c]
    assert deploy
    assert "ArchiveSql=disabled" in deploy[0]
    assert "DeviceAuthMode=function" in deploy[0]
    # AND readings are batched for a second, not the AWS default's minute (LocalStack honours the window)
    assert "BatchingWindowSeconds=1" in deploy[0]


def test_unknown_target_is_refused_with_a_clear_message() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", "mars", "--dry-run"],
        capture_output=True, text=True, check=False, timeout=30,
    )
    assert result.returncode == 2
    assert "--target must be embedded, localstack or aws" in result.stderr


def _dry_run_args(*args: str) -> tuple[list[str], Path]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTPIPE_TEST_HOOKS"))}
    env["AWS_ENDPOINT_URL"] = "http://127.0.0.1:4566"
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--dry-run", "--yes", "--stack", "dryrun-hooks", *args],
        env=env, capture_output=True, text=True, check=True, timeout=60,
    )
    return [line[2:] for line in result.stderr.splitlines() if line.startswith("+ ")], (
        ROOT / "build" / "template-testhooks-dryrun-hooks.yaml")


def test_only_a_test_hooks_deploy_ships_the_fault_handler() -> None:
    # GIVEN a default deploy and a test-hooks deploy (dry runs)
    plain, _ = _dry_run_args()
    hooks, copy = _dry_run_args("--test-hooks", "faults")
    # THEN the default one builds, packages and deploys the plain template with no hooks
    assert not any("--test-hooks" in c or "TestHooks" in c or "testhooks" in c for c in plain)
    # AND the test one builds the hooks package, packages a template copy that points the processor at
    # it, and selects the fault handler through the parameter
    assert any("scripts/build.py" in c and "--test-hooks" in c for c in hooks)
    assert any("cloudformation package" in c and str(copy) in c for c in hooks)
    assert any("cloudformation deploy" in c and "TestHooks=faults" in c for c in hooks)
    text = copy.read_text()
    # the processor and the calibrator (same bundle, its own handler: functions.calibrator.handler)
    assert text.count("/processor-testhooks.zip") == 2
    assert "Code: ../build/" not in text  # relative Code paths made absolute: the copy lives in build/
    copy.unlink()


def test_unknown_test_hooks_value_is_refused() -> None:
    result = subprocess.run(
        ["bash", str(ROOT / "scripts" / "deploy.sh"), "--dry-run", "--test-hooks", "all"],
        capture_output=True, text=True, check=False, timeout=30,
        env={**os.environ, "AWS_ENDPOINT_URL": "http://127.0.0.1:4566"},
    )
    assert result.returncode == 2
    assert "--test-hooks must be none or faults" in result.stderr
