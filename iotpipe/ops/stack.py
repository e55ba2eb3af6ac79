"""Read a deployed stack: its outputs, the API key's value and the API URL for the current target."""

from __future__ import annotations

import subprocess
from typing import Any

from iotpipe import aws
from iotpipe.local.ports import live_url
from iotpipe.settings import ROOT, tool_settings


def api_base_url(rest_api_id: str, region: str, endpoint_url: str | None, stage: str = "prod") -> str:
    """The URL clients call: the emulator's execute-api path locally, the AWS hostname otherwise."""
    if endpoint_url:
        return f"{endpoint_url.rstrip('/')}/_aws/execute-api/{rest_api_id}/{stage}"
    return f"https://{rest_api_id}.execute-api.{region}.amazonaws.com/{stage}"


def stack_outputs(stack_name: str) -> dict[str, str]:
    """Stack outputs by key, plus ``ApiKey`` (the key's value) and ``ApiUrl`` for this target."""
    settings = tool_settings()
    cfn = aws.client("cloudformation", settings)
    stack = cfn.describe_stacks(StackName=stack_name)["Stacks"][0]
    # Local URLs among the outputs (queue URLs) carry the port the emulator had when it wrote them, which
    # after a restart from a snapshot on another port is dead: every caller gets the live one.
    endpoint = settings.endpoint_url
    outputs = {o["OutputKey"]: live_url(o["OutputValue"], endpoint) for o in stack.get("Outputs", [])}
    outputs["StackStatus"] = stack["StackStatus"]
    if "ApiKeyId" in outputs:
        key = aws.client("apigateway", settings).get_api_key(apiKey=outputs["ApiKeyId"], includeValue=True)
        outputs["ApiKey"] = key["value"]
    if "RestApiId" in outputs:
        outputs["AwsApiUrl"] = outputs.get("ApiUrl", "")
        outputs["ApiUrl"] = api_base_url(outputs["RestApiId"], settings.region, endpoint)
    return outputs


def deploy(stack_name: str, target: str = "embedded", extra_args: list[str] | None = None,
           quiet: bool = False, test_hooks: str | None = None) -> None:
    """Run scripts/deploy.sh (the one deploy path for every target).

    ``test_hooks`` ("none" or "faults") is for test stacks only: "faults" deploys the processor with the
    test-only fault hook (``TestHooks=faults``, the processor-testhooks package). None leaves it to
    deploy.sh: ``IOTPIPE_TEST_HOOKS`` if set (the integration tests set it), else none.

    On the emulators a stack lost with the emulator's state leaves its retained archive bucket behind;
    it is adopted first (``iotpipe.local.recovery``), so the deploy does not fail on "already exists".
    """
    if target != "aws":
        from iotpipe.local.recovery import adopt_retained

        adopt_retained(stack_name, aws.client, tool_settings().region,
                       say=lambda m: print(f"[iotpipe] {m}", flush=True))
    cmd = ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", target, "--stack", stack_name, "--yes",
           *(["--test-hooks", test_hooks] if test_hooks else []), *(extra_args or [])]
    kwargs: dict[str, Any] = {}
    if quiet:
        kwargs = {"stdout": subprocess.PIPE, "stderr": subprocess.STDOUT, "text": True}
    result = subprocess.run(cmd, check=False, **kwargs)
    if result.returncode != 0:
        detail = "\n".join(result.stdout.splitlines()[-40:]) if quiet and result.stdout else ""
        raise RuntimeError(f"deploy of {stack_name} to {target} failed (exit {result.returncode})\n{detail}")
