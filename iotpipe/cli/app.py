"""The root typer app of ``iotpipe``, its command groups and the options the commands share."""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Annotated

import typer

from iotpipe.console import say

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="run the pipeline on the embedded emulator, deploy it, and look at it",
                  context_settings={"help_option_names": ["-h", "--help"]})
model_app = typer.Typer(add_completion=False, no_args_is_help=True, help="model commands")
app.add_typer(model_app, name="model")
archive_app = typer.Typer(add_completion=False, no_args_is_help=True, help="the S3 archive")
app.add_typer(archive_app, name="archive")

# Options whose default comes from the environment (as `make up` and the compose file pass them).
StackOption = Annotated[str, typer.Option(envvar="STACK_NAME", help="CloudFormation stack name")]
JsonOption = Annotated[bool, typer.Option("--json", help="one JSON object (for scripts)")]
# `cost` and `model evaluate` parse their own options: everything after the command is theirs.
PASS_THROUGH = {"allow_extra_args": True, "ignore_unknown_options": True, "help_option_names": []}


class Detector(StrEnum):
    embedded = "embedded"
    sagemaker = "sagemaker"


class Sink(StrEnum):
    kinesis = "kinesis"
    mqtt = "mqtt"


class Target(StrEnum):
    embedded = "embedded"
    localstack = "localstack"
    aws = "aws"


def failed(what: str, exc: Exception, stack: str, as_json: bool) -> int:
    """A command's one-line failure: a JSON object on stdout with --json, else a line on stderr; status 1."""
    if as_json:
        print(json.dumps({"error": str(exc), "stack": stack}))
    else:
        say(f"{what} failed: {exc}")
    return 1
