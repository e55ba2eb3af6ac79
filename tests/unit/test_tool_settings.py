"""The tools' one settings object (iotpipe/settings.py) and client factory (iotpipe/aws.py): where the
clients point, which variable wins, and that a command re-pointed at the emulator is seen at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from functions.settings import load_settings
from iotpipe import aws
from iotpipe.settings import ROOT, tool_settings, use_endpoint


def test_with_nothing_set_the_tools_and_the_functions_use_the_same_region(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in ("AWS_REGION", "AWS_DEFAULT_REGION", "AWS_ENDPOINT_URL", "IOTPIPE_RUN_DIR", "EMULATOR_BIN"):
        monkeypatch.delenv(name, raising=False)
    s = tool_settings()
    assert s.region == load_settings().region
    assert (s.endpoint_url, s.run_dir, s.emulator_bin) == (None, ROOT / ".iotpipe", None)


def test_aws_region_wins_over_aws_default_region_and_empty_means_unset() -> None:
    env = {"AWS_REGION": "", "AWS_DEFAULT_REGION": "eu-west-1", "AWS_ENDPOINT_URL": "",
           "IOTPIPE_RUN_DIR": "/tmp/run", "EMULATOR_BIN": "/opt/ministack"}
    s = tool_settings(env)
    assert (s.region, s.endpoint_url) == ("eu-west-1", None)
    assert (s.run_dir, s.emulator_bin) == (Path("/tmp/run"), Path("/opt/ministack"))
    assert tool_settings({**env, "AWS_REGION": "eu-central-1"}).region == "eu-central-1"


def test_a_client_built_after_use_endpoint_talks_to_the_new_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # GIVEN a shell pointed at one endpoint and region
    monkeypatch.setenv("AWS_ENDPOINT_URL", "http://127.0.0.1:4566")
    monkeypatch.setenv("AWS_REGION", "eu-west-1")
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "test")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "test")
    assert aws.client("s3").meta.endpoint_url == "http://127.0.0.1:4566"
    # WHEN a command points the process at the emulator it found
    use_endpoint({"AWS_ENDPOINT_URL": "http://127.0.0.1:53889", "AWS_REGION": "us-west-2"})
    # THEN the next client (and the next child: they read the same environment) uses it: nothing cached
    client = aws.client("s3")
    assert (client.meta.endpoint_url, client.meta.region_name) == ("http://127.0.0.1:53889", "us-west-2")
