"""The README's "second terminal" commands, run as written against a running stack and simulator.

The commands are read from README.md (the bash block after "In a second terminal"), so a README edit
is what gets tested. They run in bash from the repository root, with ``$API`` and ``$KEY`` set as the
README says and the simulator's control port in place of 8765; the stack is the session's
(``deployed_stack``), the simulator runs as ``iotpipe up`` runs it (``register``, then ``run`` to
Kinesis). Every command must exit 0 and print something that is not an error; the query must return
rows, and the tuning that adds devices must leave them registered, with credentials, before they send.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from iotpipe.local.emulator import free_port
from simulator.credentials import device_secret, hash_secret
from tests.integration.archive_objects import archived_lines
from tests.integration.polling import wait_for
from tests.integration.targets import facts

ROOT = Path(__file__).resolve().parents[2]
DEVICES, SEED = 20, 4242  # a seed of its own: dev-0000NN items are this test's (checked by their hash)
# ("refused" alone is a count `iotpipe status` prints: MQTT messages kept off the stream.)
ERROR_WORDS = re.compile(r"Traceback|\berror\b|failed:|connection refused|AccessDenied|not found",
                         re.IGNORECASE)


def readme_commands() -> list[str]:
    text = (ROOT / "README.md").read_text()
    block = re.search(r"In a second terminal.*?```bash\n(.*?)```", text, re.DOTALL)
    assert block, "README.md has no 'In a second terminal' bash block"
    commands = []
    for line in block.group(1).splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        # a trailing comment is not part of the command ('#' inside quotes is not one here)
        commands.append(re.sub(r"\s+#\s.*$", "", line).strip())
    return commands


@pytest.fixture(scope="module")
def simulator(deployed_stack: dict[str, str],
              tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The simulator as `iotpipe up` starts it: devices registered, then run to Kinesis with live tuning."""
    port = free_port()
    env = {**os.environ, "SIM_DEVICES": str(DEVICES), "SIM_RATE_HZ": "1", "SIM_SEED": str(SEED),
           "SIM_SINK": "kinesis", "SIM_STREAM_NAME": deployed_stack["StreamName"],
           "SIM_DEVICES_TABLE": deployed_stack["DevicesTableName"], "SIM_CONTROL_PORT": str(port),
           "SIM_ANOMALY_RATE": "0.01", "SIM_MALFORMED_RATE": "0", "SIM_DEVICE_SECRET": uuid.uuid4().hex}
    subprocess.run([sys.executable, "-m", "simulator", "register"], env=env, cwd=ROOT, check=True,
                   capture_output=True, timeout=120)
    log = tmp_path_factory.mktemp("readme") / "simulator.log"
    with log.open("wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "simulator", "run"], env=env, cwd=ROOT, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        yield {"port": port, "secret": env["SIM_DEVICE_SECRET"], "log": log, "proc": proc}
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()


def _archived_today(bucket: str) -> bool:
    from datetime import UTC, datetime

    today = datetime.now(UTC).date().isoformat()
    listing = boto3.client("s3").list_objects_v2(Bucket=bucket, Prefix=f"processed/dt={today}/", MaxKeys=1)
    return bool(listing.get("KeyCount"))


def _run(command: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["bash", "-c", command], cwd=ROOT, env=env, capture_output=True, text=True,
                          timeout=300, check=False)


def test_every_readme_command_answers(deployed_stack: dict[str, str], simulator: dict[str, Any]) -> None:
    # GIVEN the stack receiving the simulator's readings (some archived today, as on a fresh `make up`)
    assert wait_for(lambda: _archived_today(deployed_stack["ArchiveBucketName"]), 180, 2), \
        simulator["log"].read_text()[-2000:]
    env = {**os.environ, "STACK_NAME": deployed_stack["StackName"], "API": deployed_stack["ApiUrl"],
           "KEY": deployed_stack["ApiKey"]}
    commands = readme_commands()
    assert len(commands) >= 5, commands
    outputs: dict[str, str] = {}
    for command in commands:
        if "/config" in command:
            command = command.replace("127.0.0.1:8765", f"127.0.0.1:{simulator['port']}")
        if not facts().archive_sql and " query " in command:
            continue  # LocalStack community: no Athena (docs/querying.md); test_archive_sql.py says so
        # WHEN it runs as written
        result = _run(command, env)
        # THEN it succeeds and prints an answer, not an error
        assert result.returncode == 0, (command, result.stdout[-2000:], result.stderr[-2000:])
        assert result.stdout.strip(), (command, result.stderr[-2000:])
        assert not ERROR_WORDS.search(result.stdout), (command, result.stdout[-2000:])
        outputs[command] = result.stdout
        print(f"$ {command}\n{result.stdout[:600]}")
    # AND the README's query returns rows on this fresh stack (today by default, UTC)
    for command, out in outputs.items():
        if " query " in command:
            rows = re.search(r"\((\d+) rows\)", out)
            assert rows, out
            assert int(rows.group(1)) > 0, (command, out)
    # AND the tuning that added 30 devices registered each of them, with its credential, as start-up did
    tuned = next(json.loads(out) for c, out in outputs.items() if "/config" in c)
    assert tuned["devices"] == 50
    ddb = boto3.client("dynamodb")
    for index in (DEVICES, 35, 49):
        device_id = f"dev-{index:06d}"
        item = ddb.get_item(TableName=deployed_stack["DevicesTableName"], Key={"device_id": {"S": device_id}})
        assert "Item" in item, f"{device_id} was added by the tuning but not registered"
        assert item["Item"]["credential_hash"]["S"] == hash_secret(
            device_id, device_secret(simulator["secret"], device_id))
    assert "registered 30 new devices (20..49)" in simulator["log"].read_text()
    # AND their readings are aggregated, none quarantined as unknown_device (60 % were, before)
    added = {f"dev-{i:06d}" for i in range(DEVICES, 50)}
    aggregates = boto3.client("dynamodb")

    def aggregated(device_id: str) -> bool:
        page = aggregates.query(TableName=deployed_stack["AggregatesTableName"], Limit=1,
                                KeyConditionExpression="device_id = :d",
                                ExpressionAttributeValues={":d": {"S": device_id}})
        return bool(page.get("Items"))

    assert wait_for(lambda: aggregated("dev-000049"), 120, 2), "no window of an added device"
    unknown = [line.doc.get("device_id") for line in archived_lines(
        boto3.client("s3"), deployed_stack["ArchiveBucketName"], "quarantine/")
        if line.doc.get("reason") == "unknown_device" and line.doc.get("device_id") in added]
    assert unknown == []
