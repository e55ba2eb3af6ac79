"""The Docker Compose user's path, as far as it runs without a Docker engine.

docker-compose.yml's ``deployer`` command and ``simulator`` entrypoint are run here as written, with
the environment the compose file gives them, against the emulator under test instead of the
``localstack`` service (under ``make test-localstack`` that is LocalStack 4.14.0's own code). What a
compose user then sees is checked: the deploy output names the API URL in the target's local form and
the key; readings flow; aggregates and anomalies are queryable through the emulator's API Gateway; the
live view loads there in Chromium; ``iotpipe status`` reads the pipeline through AWS_ENDPOINT_URL.

What differs from a real ``docker compose up``, on purpose: on the embedded emulator the deployer also
passes ``AggregatesCapacityScaling=disabled`` (ministack has no Application Auto Scaling provider); the
stack gets a unique name (compose's
``STACK_NAME`` variable), the simulator's control endpoint binds 127.0.0.1 on a free port instead of
0.0.0.0:8765 inside its container, and ``python``/``aws`` are the project's environment instead of
the images' (the images install the same packages, see scripts/deployer.Dockerfile and
simulator/Dockerfile).
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import httpx
import pytest
import yaml

from iotpipe.local.emulator import free_port
from tests.integration.polling import wait_for

pytestmark = [pytest.mark.integration, pytest.mark.slow]
ROOT = Path(__file__).resolve().parents[2]
COMPOSE_ENDPOINT = "http://localstack:4566"
CHROMIUM = Path("/usr/bin/chromium")


def _expand(value: str, variables: dict[str, str]) -> str:
    """Compose's ``${NAME:-default}`` / ``${NAME}`` interpolation."""
    def sub(match: re.Match[str]) -> str:
        name, default = match.group(1), match.group(3) or ""
        return variables.get(name) or default
    return re.sub(r"\$\{(\w+)(:-([^}]*))?\}", sub, value)


def _service(compose: dict[str, Any], name: str, variables: dict[str, str], endpoint: str) -> dict[str, Any]:
    service = compose["services"][name]
    env = {k: _expand(str(v), variables) for k, v in service["environment"].items()}
    assert env["AWS_ENDPOINT_URL"] == COMPOSE_ENDPOINT
    env["AWS_ENDPOINT_URL"] = endpoint
    return {"env": env, "command": service.get("command"), "entrypoint": service.get("entrypoint")}


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture(scope="module")
def host_env() -> dict[str, str]:
    """What the images provide, from the project's environment: python, aws, the repository as /app."""
    return {"PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin", "HOME": os.environ.get("HOME", "/root"),
            "TMPDIR": tempfile.gettempdir(), "PYTHONPATH": str(ROOT)}


@pytest.fixture(scope="module")
def deployed(compose: dict[str, Any], host_env: dict[str, str], emulator_endpoint: str) -> Iterator[dict]:
    stack = f"cp-{uuid.uuid4().hex[:6]}"
    deployer = _service(compose, "deployer", {"STACK_NAME": stack}, emulator_endpoint)
    # GIVEN the deployer service's command, run as written with its environment (on the embedded
    # emulator one parameter more: its CloudFormation has no AWS::ApplicationAutoScaling provider, which
    # LocalStack, the compose file's target, accepts; deploy.sh --target embedded passes the same)
    command = list(deployer["command"])
    if os.environ.get("IOTPIPE_TARGET", "embedded") == "embedded":
        command += ["--param", "AggregatesCapacityScaling=disabled"]
    result = subprocess.run(command, cwd=ROOT, env={**host_env, **deployer["env"]},
                            capture_output=True, text=True, timeout=900, check=False)
    try:
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
        printed = dict(line.split("\t", 1) for line in result.stdout.splitlines() if "\t" in line)
        yield {"stack": stack, "printed": printed, "stdout": result.stdout}
    finally:
        try:
            boto3.client("cloudformation").delete_stack(StackName=stack)
        except Exception as exc:  # cleanup must not mask the test result
            print(f"could not delete stack {stack}: {exc}")


@pytest.fixture(scope="module")
def simulator(compose: dict[str, Any], host_env: dict[str, str], deployed: dict) -> Iterator[dict[str, str]]:
    sim = _service(compose, "simulator", {"STACK_NAME": deployed["stack"]}, os.environ["AWS_ENDPOINT_URL"])
    env = {**host_env, **sim["env"], "SIM_CONTROL_HOST": "127.0.0.1", "SIM_CONTROL_PORT": str(free_port())}
    # WHEN the simulator service's entrypoint runs as written (register the fleet, then stream)
    log = open(Path(tempfile.mkdtemp(prefix="iotpipe-compose-sim-")) / "simulator.log", "w+")  # noqa: SIM115
    proc = subprocess.Popen(sim["entrypoint"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                            start_new_session=True)
    try:
        yield env
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.seek(0)
        print("simulator output (last lines):\n" + "".join(log.readlines()[-10:]))
        log.close()


def test_deploy_output_names_the_local_api_url_and_the_key(deployed: dict) -> None:
    printed = deployed["printed"]
    api_id = printed["RestApiId"]
    endpoint = os.environ["AWS_ENDPOINT_URL"].rstrip("/")
    local_form = {"localstack": f"{endpoint}/restapis/{api_id}/prod/_user_request_",
                  "embedded": f"{endpoint}/_aws/execute-api/{api_id}/prod"}
    # The deployer runs `--target localstack` whatever the emulator, as compose does
    assert printed["LocalApiUrl"] == local_form["localstack"], deployed["stdout"][-2000:]
    key_id = printed["ApiKeyId"]
    value = boto3.client("apigateway").get_api_key(apiKey=key_id, includeValue=True)["value"]
    assert printed["ApiKey"] == value


def test_readings_flow_and_are_queryable_through_the_api_gateway(deployed: dict, simulator: dict) -> None:
    api = deployed["printed"]["LocalApiUrl"].rstrip("/")
    headers = {"x-api-key": deployed["printed"]["ApiKey"]}
    devices = int(simulator["SIM_DEVICES"])

    def listed() -> list[dict] | None:
        r = httpx.get(f"{api}/devices", params={"limit": 100}, headers=headers, timeout=30)
        return r.json()["items"] if r.status_code == 200 and len(r.json()["items"]) >= devices else None

    fleet = wait_for(listed, 60, 2)
    assert fleet, "the simulator's register step did not reach the devices table"

    def aggregated() -> int:
        total = 0
        for device in fleet[:5]:
            r = httpx.get(f"{api}/devices/{device['device_id']}/aggregates", headers=headers, timeout=30)
            if r.status_code == 200:
                total += sum(int(w["count"]) for w in r.json()["items"])
        return total

    # THEN within two batching windows readings are aggregated and queryable (1 Hz x 20 devices)
    counted = wait_for(aggregated, 150, 5)
    assert counted, "no aggregates queryable through the API Gateway"

    def anomalies() -> list[dict] | None:
        r = httpx.get(f"{api}/anomalies", params={"limit": 50}, headers=headers, timeout=30)
        return r.json()["items"] if r.status_code == 200 and r.json()["items"] else None

    # AND the injected anomalies (SIM_ANOMALY_RATE 0.01) are flagged and listed
    assert wait_for(anomalies, 150, 5), "no anomaly queryable through the API Gateway"


def test_live_view_loads_through_the_api_gateway(deployed: dict, simulator: dict) -> None:
    if not CHROMIUM.exists():
        if os.environ.get("CI"):
            pytest.fail("/usr/bin/chromium is missing; CI must install Debian's chromium package")
        pytest.skip("/usr/bin/chromium not installed (apt-get install chromium); CI runs this test")
    api = deployed["printed"]["LocalApiUrl"].rstrip("/")
    out = ROOT / "out" / f"live-view-compose-{os.environ.get('IOTPIPE_TARGET', 'embedded')}.png"
    out.parent.mkdir(exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="iotpipe-chromium-") as profile:
        flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run",
                 "--virtual-time-budget=15000", f"--user-data-dir={profile}"]
        url = f"{api}/dashboard#key={deployed['printed']['ApiKey']}"
        dom = subprocess.run([str(CHROMIUM), *flags, "--dump-dom", url], capture_output=True, text=True,
                             timeout=120, check=False).stdout
        subprocess.run([str(CHROMIUM), *flags, f"--screenshot={out}", "--window-size=1280,900", url],
                       capture_output=True, timeout=120, check=False)
    # THEN the page drew the fleet from the API (rows come only from data calls that carried the key)
    assert dom.count('class="device-row') >= 1, dom[:3000]
    status = re.search(r'<span id="status"[^>]*>([^<]*)</span>', dom)
    assert status is not None, dom[:3000]
    assert status.group(1).startswith("updated"), dom[:3000]


def test_iotpipe_status_reads_the_pipeline_through_the_endpoint(deployed: dict, simulator: dict) -> None:
    def status() -> dict | None:
        cli = str(Path(sys.executable).parent / "iotpipe")
        r = subprocess.run([cli, "status", "--json", "--stack", deployed["stack"]], capture_output=True,
                           text=True, timeout=120, check=False, cwd=ROOT)
        last = json.loads(r.stdout.strip().splitlines()[-1]) if r.stdout.strip() else {}
        return last if r.returncode == 0 and last.get("aggregated", 0) > 0 else None

    got = wait_for(status, 90, 5)
    assert got, "iotpipe status did not report aggregated readings"
    assert got["stack_status"] in {"CREATE_COMPLETE", "UPDATE_COMPLETE"}
