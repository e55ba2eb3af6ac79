"""docker-compose.yml and the Dockerfiles, checked statically (no Docker engine runs here)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_localstack_is_pinned_overridable_healthchecked_and_has_the_docker_socket(
    compose: dict[str, Any],
) -> None:
    ls = compose["services"]["localstack"]
    assert ls["image"] == "${LOCALSTACK_IMAGE:-localstack/localstack:4.14.0}"
    assert "/var/run/docker.sock:/var/run/docker.sock" in ls["volumes"]
    assert ls["healthcheck"]["test"]
    assert all(p.startswith("127.0.0.1:") for p in ls["ports"])


def test_deployer_runs_the_same_deploy_script_after_localstack_is_healthy(compose: dict[str, Any]) -> None:
    deployer = compose["services"]["deployer"]
    assert deployer["command"][:2] == ["bash", "scripts/deploy.sh"]
    assert "--target" in deployer["command"]
    assert "localstack" in deployer["command"]
    assert deployer["depends_on"]["localstack"]["condition"] == "service_healthy"
    assert deployer["environment"]["AWS_ENDPOINT_URL"] == "http://localstack:4566"


def test_simulator_starts_after_the_deploy_and_takes_devices_and_rate_from_the_environment(
    compose: dict[str, Any],
) -> None:
    sim = compose["services"]["simulator"]
    assert sim["depends_on"]["deployer"]["condition"] == "service_completed_successfully"
    assert sim["environment"]["SIM_DEVICES"].startswith("${SIM_DEVICES")
    assert sim["environment"]["SIM_RATE_HZ"].startswith("${SIM_RATE_HZ")
    # The simulator must write to the stream the template creates for the same stack name.
    assert sim["environment"]["SIM_STREAM_NAME"] == "${STACK_NAME:-iotpipe}-readings"


def test_every_build_refers_to_an_existing_dockerfile_whose_copies_exist(compose: dict[str, Any]) -> None:
    for name, service in compose["services"].items():
        build = service.get("build")
        if not build:
            continue
        dockerfile = ROOT / build["context"] / build["dockerfile"]
        assert dockerfile.exists(), f"{name}: {dockerfile} missing"
        text = dockerfile.read_text()
        assert re.search(r"^FROM python:3\.12", text, re.M), f"{name}: not on python 3.12"
        for src in re.findall(r"^COPY\s+(?:--\S+\s+)*(.+?)\s+\S+$", text, re.M):
            for part in src.split():
                assert (ROOT / build["context"] / part).exists(), f"{name}: COPY {part} missing"
