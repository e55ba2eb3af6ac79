"""Integration fixtures: a real emulator process and a stack deployed by scripts/deploy.sh.

With AWS_ENDPOINT_URL set (LocalStack under Docker, or an emulator you started) the tests use it;
otherwise the session starts the embedded emulator (ministack) on a free port and stops it after.
IOTPIPE_TARGET picks the deploy target (embedded by default, localstack for LocalStack).
"""

from __future__ import annotations

import os
import tempfile
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from iotpipe.local.emulator import TEST_CREDENTIALS, Emulator, free_port
from iotpipe.ops.stack import deploy, stack_outputs
from tests.integration.stacks import delete_stack

pytestmark = pytest.mark.integration
# Every stack these tests deploy is a test stack: its processor carries the fault hook (TestHooks=faults,
# the processor-testhooks package), which test_fault_*.py switch on with PROCESSOR_FAULTS.
os.environ.setdefault("IOTPIPE_TEST_HOOKS", "faults")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def emulator_endpoint() -> Iterator[str]:
    saved = dict(os.environ)
    existing = os.environ.get("AWS_ENDPOINT_URL")
    emulator: Emulator | None = None
    if existing:
        endpoint = existing
        os.environ.update({k: os.environ.get(k, v) for k, v in TEST_CREDENTIALS.items()})
    else:
        state = Path(tempfile.mkdtemp(prefix="iotpipe-emulator-"))
        emulator = Emulator(port=free_port(), state_dir=state).start()
        endpoint = emulator.endpoint
        os.environ.update(emulator.client_env())
    os.environ.setdefault("AWS_REGION", "us-east-1")
    os.environ.setdefault("AWS_DEFAULT_REGION", os.environ["AWS_REGION"])
    _clear_cached_clients()
    try:
        yield endpoint
    finally:
        if emulator is not None:
            emulator.stop()
        os.environ.clear()
        os.environ.update(saved)
        _clear_cached_clients()


@pytest.fixture(scope="session")
def deployed_stack(emulator_endpoint: str) -> Iterator[dict[str, str]]:
    """The whole template deployed once per session under a unique stack name; outputs by key."""
    stack_name = f"it-{uuid.uuid4().hex[:8]}"
    deploy(stack_name, target=os.environ.get("IOTPIPE_TARGET", "embedded"), quiet=True)
    outputs = stack_outputs(stack_name)
    outputs["StackName"] = stack_name
    # Point the project's own settings at this stack so adapters under test find its resources.
    os.environ.update({
        "STREAM_NAME": outputs["StreamName"],
        "DEVICES_TABLE": outputs["DevicesTableName"],
        "AGGREGATES_TABLE": outputs["AggregatesTableName"],
        "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
        "ARCHIVE_BUCKET": outputs["ArchiveBucketName"],
        "ALERTS_TOPIC_ARN": outputs["AlertsTopicArn"],
    })
    _clear_cached_clients()
    try:
        yield outputs
    finally:
        # A session-owned emulator disappears with its state; on a shared endpoint (LocalStack)
        # remove the stack so repeated runs do not pile up.
        if os.environ.get("IOTPIPE_KEEP_STACK") != "1":
            delete_stack(stack_name)


@pytest.fixture(scope="module")
def http(deployed_stack: dict[str, str]) -> httpx.Client:
    """A client of the session stack's API, through the emulator's API Gateway (stage prod)."""
    return httpx.Client(base_url=deployed_stack["ApiUrl"].rstrip("/") + "/", timeout=30)


@pytest.fixture(scope="module")
def key(deployed_stack: dict[str, str]) -> dict[str, str]:
    """The reader key's header."""
    return {"x-api-key": deployed_stack["ApiKey"]}


def _clear_cached_clients() -> None:
    from functions.adapters.clients import client
    from functions.settings import get_settings

    get_settings.cache_clear()
    client.cache_clear()
