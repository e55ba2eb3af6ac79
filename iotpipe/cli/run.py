"""``iotpipe up``, ``down`` and ``deploy``: their options, handed to the supervisor of ``up``
(iotpipe/local/supervisor.py) and to scripts/deploy.sh."""

from __future__ import annotations

import subprocess
from typing import Annotated

import typer

from iotpipe.cli.app import Detector, Sink, StackOption, Target, app
from iotpipe.console import say
from iotpipe.local import supervisor
from iotpipe.local.emulator import use_running_emulator
from iotpipe.settings import ROOT, tool_settings


@app.command(help="run the whole pipeline on the embedded emulator")
def up(
    stack: StackOption = "iotpipe",
    port: Annotated[int, typer.Option(envvar="EMULATOR_PORT")] = 4566,
    devices: Annotated[int, typer.Option(envvar="SIM_DEVICES")] = 20,
    rate: Annotated[float, typer.Option(envvar="SIM_RATE_HZ")] = 1.0,
    seed: Annotated[int, typer.Option(envvar="SIM_SEED")] = 42,
    shards: Annotated[int, typer.Option(envvar="SHARD_COUNT",
                                        help="Kinesis shards (template parameter ShardCount)")] = 1,
    parallelization: Annotated[int, typer.Option(
        envvar="PARALLELIZATION_FACTOR",
        help="concurrent batches per shard (ParallelizationFactor; the emulators run 1)")] = 1,
    anomaly_rate: Annotated[float, typer.Option(envvar="SIM_ANOMALY_RATE")] = 0.01,
    malformed_rate: Annotated[float, typer.Option(envvar="SIM_MALFORMED_RATE")] = 0.01,
    control_port: Annotated[int, typer.Option(envvar="SIM_CONTROL_PORT")] = 8765,
    api_port: Annotated[int, typer.Option(envvar="API_PORT")] = 8000,
    interval: Annotated[float, typer.Option(help="seconds between progress lines")] = 5.0,
    duration: Annotated[float, typer.Option(help="stop after this many seconds (0: run)")] = 0.0,
    fresh: Annotated[bool, typer.Option("--fresh", help="discard the emulator's saved state first")] = False,
    snapshot: Annotated[float, typer.Option(
        envvar="EMULATOR_SNAPSHOT_S",
        help="seconds between emulator state snapshots (0: only on a clean stop)")] = 30.0,
    verbose: Annotated[bool, typer.Option("--verbose", help="show the deploy script's output")] = False,
    detector: Annotated[Detector, typer.Option(
        envvar="DETECTOR_BACKEND",
        help="embedded (in the processor) or sagemaker (through the local model server, serving/)")
    ] = Detector.embedded,
    sink: Annotated[Sink, typer.Option(
        envvar="SIM_SINK",
        help="kinesis (PutRecords) or mqtt (each device over mTLS MQTT as its own IoT thing, "
             "docs/mqtt-devices.md)")
    ] = Sink.kinesis,
) -> int:
    with supervisor.own_terminal_foreground():
        return supervisor.up(supervisor.UpOptions(
            stack=stack, port=port, devices=devices, rate=rate, seed=seed, shards=shards,
            parallelization=parallelization, anomaly_rate=anomaly_rate, malformed_rate=malformed_rate,
            control_port=control_port, api_port=api_port, interval=interval, duration=duration, fresh=fresh,
            snapshot=snapshot, verbose=verbose, detector=detector.value, sink=sink.value,
        ))


@app.command(help="stop what 'iotpipe up' started")
def down() -> int:
    return supervisor.down()


@app.command(name="deploy", help="build, package and deploy the template")
def deploy_command(
    target: Target = Target.embedded,
    stack: StackOption = "iotpipe",
    yes: Annotated[bool, typer.Option("--yes")] = False,
    dry_run: Annotated[bool, typer.Option("--dry-run")] = False,
    param: Annotated[list[str] | None, typer.Option(metavar="KEY=VALUE", help="a template parameter")] = None,
) -> int:
    return cmd_deploy(target.value, stack, yes, dry_run, param or [])


def cmd_deploy(target: str, stack: str, yes: bool, dry_run: bool, params: list[str]) -> int:
    cmd = ["bash", str(ROOT / "scripts" / "deploy.sh"), "--target", target, "--stack", stack]
    if yes:
        cmd.append("--yes")
    if dry_run:
        cmd.append("--dry-run")
    for param in params:
        cmd += ["--param", param]
    if target == "embedded" and not tool_settings().endpoint_url:
        use_running_emulator(say)
    settings = tool_settings()
    if target != "aws" and not dry_run and settings.endpoint_url:
        # A stack lost with the emulator's state leaves its retained archive bucket (iotpipe.local.recovery).
        from iotpipe import aws
        from iotpipe.local.recovery import adopt_retained

        adopt_retained(stack, aws.client, settings.region, say=say)
    return subprocess.run(cmd, check=False).returncode
