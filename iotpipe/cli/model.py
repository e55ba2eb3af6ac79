"""``iotpipe model``: evaluation, training, calibration, replay evaluation, the operating point (model/)."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated

import typer

from iotpipe import aws
from iotpipe.cli.app import PASS_THROUGH, StackOption, model_app
from iotpipe.console import say
from iotpipe.local.emulator import use_running_emulator
from iotpipe.ops.stack import stack_outputs


@model_app.command(context_settings=PASS_THROUGH, add_help_option=False,
                   help="model evaluation (see docs/model-card.md; its own --help)")
def evaluate(ctx: typer.Context) -> int:
    from model.evaluate import main as evaluate_main

    return int(evaluate_main(list(ctx.args)))


def cmd_calibrate_pending(stack: str, mapping: str | None) -> int:
    """Calibrate every device registered with a calibration request whose first N readings are archived.

    Invokes the stack's calibrator (functions/calibrator, the code its schedule runs) on the pending
    devices; with ``--mapping`` (channel names the deployed function does not know) the same module runs
    here instead."""
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from model import device_calibration as dc
    from simulator.replay import parse_mapping

    use_running_emulator(say)
    outputs = stack_outputs(stack)
    registry = DynamoDeviceRegistry(outputs["DevicesTableName"], aws.client("dynamodb"))
    items, start = [], None
    while True:
        page = registry.scan(500, start)
        items.extend(page.items)
        start = page.last_key
        if start is None:
            break
    wanted = dc.pending(items)
    say(f"{len(wanted)} device(s) with a calibration request and no calibration")
    function = outputs.get("CalibratorFunctionName")
    if mapping or not function:
        say("calibrating here: " + ("--mapping given" if mapping else "the stack has no calibrator"))
        archive = S3Archive(outputs["ArchiveBucketName"], aws.client("s3"))
        result = dc.calibrate_pending(items, archive, registry,
                                      parse_mapping(mapping) if mapping else dc.SKAB_MAPPING)
    elif wanted:
        say(f"invoking {function} ...")
        try:
            result = dc.invoke_calibrator(aws.client("lambda"), function, sorted(wanted)).get("devices", {})
        except dc.CalibratorError as exc:
            print(str(exc), file=sys.stderr)
            return 1
    else:
        result = {}
    print(json.dumps(result, sort_keys=True))
    return 0


def cmd_calibrate(device: str | None, csv_path: Path | None, from_archive: bool, mapping: str | None,
                  rows: int, stack: str, pending: bool = False) -> int:
    """Fit the device's calibration (shipped operating point) and write it to its item on the stack."""
    if pending:
        if device or csv_path or from_archive:
            print("--pending calibrates every requesting device: no --device/--csv/--from-archive",
                  file=sys.stderr)
            return 2
        return cmd_calibrate_pending(stack, mapping)
    if not device:
        print("give --device ID (or --pending)", file=sys.stderr)
        return 2
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.core.errors import VersionConflict
    from model import device_calibration as dc
    from simulator.replay import SKAB_MAPPING, parse_mapping

    if (csv_path is None) == (not from_archive):
        print("give exactly one of --csv FILE or --from-archive", file=sys.stderr)
        return 2
    use_running_emulator(say)
    outputs = stack_outputs(stack)
    channel_map = parse_mapping(mapping) if mapping else SKAB_MAPPING
    if csv_path is not None:
        source = f"csv:{csv_path.name}"
        data = dc.csv_rows(csv_path, channel_map)
    else:
        source = "archive"
        say(f"reading s3://{outputs['ArchiveBucketName']}/processed/ for {device} ...")
        data = dc.archive_rows(S3Archive(outputs["ArchiveBucketName"], aws.client("s3")), device)
    registry = DynamoDeviceRegistry(outputs["DevicesTableName"], aws.client("dynamodb"))
    try:
        stored = dc.calibrate_device(device, data, registry, rows, source, channel_map)
    except ValueError as exc:
        print(f"calibration failed: {exc}", file=sys.stderr)
        return 1
    except VersionConflict:
        table = outputs["DevicesTableName"]
        print(f"calibration not stored: no device {device!r} in {table}", file=sys.stderr)
        return 1
    print(json.dumps({"device_id": device, "rows": stored["calibration_rows"], "source": source,
                      "operating_point": stored["operating_point"], "channels": stored["channels"],
                      "t2_limit": stored["t2_limit"], "q_limit": stored["q_limit"]}, sort_keys=True))
    return 0


@model_app.command(context_settings=PASS_THROUGH, add_help_option=False,
                   help="train the fleet forest (iforest-v1.json): simulator or CSV (its own --help)")
def train(ctx: typer.Context) -> int:
    from model.train import main as train_main

    return int(train_main(list(ctx.args)))


@model_app.command(name="calibrate", help="fit a device's PCA T2+Q calibration and store it on its item")
def calibrate_command(
    device: Annotated[str | None, typer.Option("--device", help="the device id (registered)")] = None,
    csv_path: Annotated[Path | None, typer.Option("--csv", help="a recording (SKAB format)")] = None,
    from_archive: Annotated[bool, typer.Option("--from-archive",
                                               help="the device's first readings in the S3 archive")] = False,
    mapping: Annotated[str | None, typer.Option(help="Column=channel[*scale][+offset],... (replay)")] = None,
    rows: Annotated[int, typer.Option(help="calibration readings (the device's first N)")] = 400,
    pending: Annotated[bool, typer.Option(
        "--pending", help="every device registered with calibration_request, N readings archived")] = False,
    stack: StackOption = "iotpipe",
) -> int:
    return cmd_calibrate(device, csv_path, from_archive, mapping, rows, stack, pending)


@model_app.command(name="replay-eval",
                   help="replay SKAB files through the deployed pipeline, score its anomalies vs labels")
def replay_eval_command(
    files: Annotated[list[Path], typer.Argument(help="SKAB CSV files or folders")],
    rows: Annotated[int, typer.Option(help="calibration rows per file")] = 400,
    step_ms: Annotated[int, typer.Option(help="event-time spacing of replayed rows")] = 100,
    timeout: Annotated[float, typer.Option(help="seconds to wait for the archive per phase")] = 600.0,
    stack: StackOption = "iotpipe",
) -> int:
    from iotpipe.ops.replay_eval import replay_eval
    from model.skab import find_files

    paths = [p for f in files for p in (sorted(find_files(f)) if f.is_dir() else [f])]
    use_running_emulator(say)
    result = replay_eval(stack, paths, rows=rows, step_ms=step_ms, timeout_s=timeout)
    print(json.dumps(result, sort_keys=True))
    return 0


@model_app.command(name="operating-point",
                   help="choose the per-device detector's operating point (model/artifacts/pca-tq-v2.json)")
def operating_point_command(
    skab_dir: Annotated[Path | None, typer.Option(
        help="SKAB folder (default ../shared/datasets/skab)")] = None,
    tep_dir: Annotated[Path | None, typer.Option(help="TEP folder (default ../shared/datasets/tep)")] = None,
    write: Annotated[bool, typer.Option("--write", help="overwrite model/artifacts/pca-tq-v2.json")] = False,
) -> int:
    from model import generalization as g
    from model import operating_point as op

    artifact = op.choose(g.Sources(skab_dir or g.default_skab_dir(), tep_dir or g.default_tep_dir()))
    print(json.dumps(artifact, sort_keys=True))
    if write:
        op.write(artifact)
        say(f"wrote {op.ARTIFACT}")
    return 0
