"""scripts/deploy.sh with the SageMaker backend: the serving image is built and pushed only when the stack
creates the endpoint on AWS (dry runs: the calls are printed, not made)."""

from __future__ import annotations

import os
import re
import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _deploy(*args: str, endpoint: str | None = None) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "IOTPIPE_TEST_HOOKS"))}
    if endpoint:
        env["AWS_ENDPOINT_URL"] = endpoint
    script = str(ROOT / "scripts" / "deploy.sh")
    return subprocess.run(["bash", script, "--dry-run", "--yes", "--no-build", *args], env=env,
                          capture_output=True, text=True, check=False, timeout=60)


def _calls(result: subprocess.CompletedProcess[str]) -> list[str]:
    assert result.returncode == 0, result.stderr
    return [line[2:] for line in result.stderr.splitlines() if line.startswith("+ ")]


def test_aws_with_a_created_endpoint_pushes_the_serving_image_before_the_stack() -> None:
    # GIVEN a dry run to AWS with the SageMaker backend and no existing endpoint
    calls = _calls(_deploy("--target", "aws", "--stack", "demo", "--param", "DetectorBackend=sagemaker"))
    # THEN it creates the repository, logs docker in to ECR, builds serving/Dockerfile, tags and pushes
    image_calls = [re.sub(r"^\S*/aws ", "aws ", c) for c in calls if " ecr " in c or c.startswith("docker")]
    expected = ["aws ecr create-repository ", "aws ecr get-login-password ", "docker build ", "docker tag ",
                "docker push "]
    assert len(image_calls) == len(expected)
    for call, start in zip(image_calls, expected, strict=True):
        assert call.startswith(start), call
    assert "| docker login --username AWS --password-stdin 000000000000.dkr.ecr." in image_calls[1]
    build = image_calls[2]
    assert f"-f {ROOT}/serving/Dockerfile" in build
    assert "--platform linux/amd64" in build
    pushed = image_calls[4].split()[-1]
    registry = r"000000000000\.dkr\.ecr\.us-east-1\.amazonaws\.com"
    assert re.fullmatch(registry + r"/demo-detector:[0-9a-f]{16}", pushed)
    # AND the stack is deployed afterwards with that image as ModelImageUri
    deploy = next(i for i, c in enumerate(calls) if "cloudformation deploy" in c)
    assert deploy > max(i for i, c in enumerate(calls) if c.startswith("docker push"))
    assert f"ModelImageUri={pushed}" in calls[deploy]


def test_an_existing_endpoint_or_the_embedded_backend_builds_no_image() -> None:
    named = _calls(_deploy("--target", "aws", "--param", "DetectorBackend=sagemaker",
                           "--param", "SageMakerEndpointName=my-endpoint"))
    default = _calls(_deploy("--target", "aws"))
    for calls in (named, default):
        assert not [c for c in calls if " ecr " in c or c.startswith("docker")]
        assert not [c for c in calls if "ModelImageUri" in c]


def test_the_emulators_need_a_local_serving_process_instead() -> None:
    # No SageMaker on the emulators: creating the endpoint there is refused with what to do instead
    result = _deploy("--target", "embedded", "--param", "DetectorBackend=sagemaker",
                     endpoint="http://127.0.0.1:4566")
    assert result.returncode == 2
    assert "SageMakerRuntimeUrl" in result.stderr
    assert "iotpipe up --detector sagemaker" in result.stderr
    # AND with the local server named, the deploy goes ahead with no image
    local = _calls(_deploy("--target", "embedded", "--param", "DetectorBackend=sagemaker",
                           "--param", "SageMakerEndpointName=iotpipe-detector-local",
                           "--param", "SageMakerRuntimeUrl=http://127.0.0.1:8080", endpoint="http://127.0.0.1:4566"))
    assert not [c for c in local if " ecr " in c or c.startswith("docker")]


def test_a_stack_name_iam_could_never_match_is_refused() -> None:
    result = _deploy("--target", "aws", "--stack", "Demo", "--param", "DetectorBackend=sagemaker")
    assert result.returncode == 2
    assert "lower case" in result.stderr
