"""``iotpipe devices``: provision device identities for the MQTT path, list them, revoke one
(iotpipe/devices/)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from iotpipe.cli.app import StackOption, app
from iotpipe.devices import provision as prov
from iotpipe.devices.registry import DeviceRegistryError, IotRegistry

devices_app = typer.Typer(add_completion=False, no_args_is_help=True,
                          help="device identities (IoT things and X.509 certificates) for the MQTT path")
app.add_typer(devices_app, name="devices")

KeyDirOption = Annotated[Path | None, typer.Option(
    help="where key material is kept (default .iotpipe/devices/<stack>/, git-ignored)")]


def _stack_iot(stack: str) -> tuple[str, str]:
    from iotpipe.ops.stack import stack_outputs

    outputs = stack_outputs(stack)
    if "IotDevicePolicyName" not in outputs:
        raise typer.BadParameter(f"stack {stack} has no IoT Core path (deploy it with IotCoreIngest=enabled)")
    return outputs["IotDevicePolicyName"], outputs["IotReadingsTopicPrefix"]


@devices_app.command("provision")
def provision_cmd(
    names: Annotated[list[str] | None, typer.Argument(help="thing names (= device ids)")] = None,
    count: Annotated[int, typer.Option(
        help="or: this many devices, <prefix>000000 .. (the simulator's ids with the default prefix)")] = 0,
    prefix: Annotated[str, typer.Option(help="name prefix with --count")] = "dev-",
    stack: StackOption = "iotpipe",
    key_dir: KeyDirOption = None,
) -> None:
    """Create things and certificates, attach the device policy, store each device's key locally (0600)."""
    things = list(names or []) + [f"{prefix}{i:06d}" for i in range(count)]
    if not things:
        raise typer.BadParameter("name devices or give --count")
    policy, topic_prefix = _stack_iot(stack)
    directory = key_dir or prov.default_key_dir(stack)
    try:
        identities = prov.provision(IotRegistry(), directory, things, policy, topic_prefix)
    except DeviceRegistryError as exc:
        typer.echo(f"iotpipe devices provision: {exc}", err=True)
        raise typer.Exit(1) from exc
    for identity in identities:
        typer.echo(json.dumps({"thing": identity.thing_name, "certificate_id": identity.certificate_id,
                               "topic": identity.topic, "endpoint": identity.endpoint}))
    typer.echo(f"key material in {directory}", err=True)


@devices_app.command("list")
def list_cmd(stack: StackOption = "iotpipe", key_dir: KeyDirOption = None) -> None:
    """The identities stored locally, with their certificate's status in the registry."""
    registry = IotRegistry()
    for identity in prov.load_identities(key_dir or prov.default_key_dir(stack)):
        typer.echo(json.dumps({"thing": identity.thing_name, "certificate_id": identity.certificate_id,
                               "status": registry.certificate_status(identity.certificate_id)}))


@devices_app.command("revoke")
def revoke_cmd(thing: str, stack: StackOption = "iotpipe", key_dir: KeyDirOption = None) -> None:
    """Set the device's certificate INACTIVE: the broker refuses it from then on."""
    try:
        identity = prov.revoke(IotRegistry(), key_dir or prov.default_key_dir(stack), thing)
    except (DeviceRegistryError, FileNotFoundError) as exc:
        typer.echo(f"iotpipe devices revoke: {exc}", err=True)
        raise typer.Exit(1) from exc
    typer.echo(json.dumps({"thing": thing, "certificate_id": identity.certificate_id, "status": "INACTIVE"}))
