"""``iotpipe up --detector``: which backend the deploy gets, always said explicitly."""

from __future__ import annotations

from typing import Any

import pytest

from iotpipe import cli
from iotpipe.local import supervisor
from iotpipe.local.model_server import ModelServer


def _params(args: list[str]) -> dict[str, str]:
    pairs = [args[i + 1] for i in range(0, len(args), 2) if args[i] == "--param"]
    return dict(p.split("=", 1) for p in pairs)


def test_up_takes_the_detector_from_the_flag_or_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[Any] = []
    monkeypatch.setattr(supervisor, "up", lambda opts: seen.append(opts) or 0)
    assert cli.main(["up", "--detector", "sagemaker"]) == 0
    monkeypatch.setenv("DETECTOR_BACKEND", "sagemaker")
    assert cli.main(["up"]) == 0
    monkeypatch.delenv("DETECTOR_BACKEND")
    assert cli.main(["up"]) == 0
    assert [o.detector for o in seen] == ["sagemaker", "sagemaker", "embedded"]
    assert cli.main(["up", "--detector", "gpu"]) != 0


def test_the_sagemaker_deploy_points_the_processor_at_the_local_server() -> None:
    server = ModelServer(endpoint_name="iotpipe-detector-local", port=18080)
    params = _params(supervisor.detector_params(server))
    assert params == {"DetectorBackend": "sagemaker", "SageMakerEndpointName": "iotpipe-detector-local",
                      "SageMakerRuntimeUrl": "http://127.0.0.1:18080"}


def test_the_embedded_deploy_resets_what_a_sagemaker_deploy_left_on_the_stack() -> None:
    # CloudFormation keeps a parameter's previous value when an update does not name it: a plain `up`
    # after a SageMaker one must switch the processor back, and drop the local server's URL.
    assert _params(supervisor.detector_params(None)) == {
        "DetectorBackend": "embedded", "SageMakerEndpointName": "", "SageMakerRuntimeUrl": ""}
