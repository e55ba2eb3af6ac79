"""Every AWS call in shipped code goes through an adapter in ``functions/adapters``.

Outside the adapters, shipped code (``functions/``, ``serving/``) neither imports the AWS SDK (not even
deferred, inside a function, where import-linter's forbidden contracts allow it indirectly), nor creates a
client (``functions.adapters.clients``), nor calls an AWS API operation itself: a boto3 operation is a
method of a client taking PascalCase keyword arguments (``TableName=``, ``SecretId=``, ``EndpointName=``),
which no other method call in this code base uses, so such a call outside the adapters is a raw AWS
call. An adapter owns the call and maps its ``ClientError`` to ``functions.core.errors``
(``functions.adapters.client_errors``).
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SHIPPED = ("functions", "serving")
ADAPTERS = ROOT / "functions" / "adapters"
SDK = ("boto3", "botocore", "aioboto3", "aiobotocore", "s3transfer")
CLIENT_FACTORY = "functions.adapters.clients"


def _modules() -> list[Path]:
    return sorted(
        p for top in SHIPPED for p in (ROOT / top).rglob("*.py") if ADAPTERS not in p.parents
    )


def _is_aws_style(name: str | None) -> bool:
    return bool(name) and name[0].isupper() and "_" not in name  # type: ignore[index]


def raw_aws_uses(source: str) -> list[str]:
    """What in ``source`` talks to AWS without an adapter: ``line: what`` for each finding."""
    found: list[str] = []
    for node in ast.walk(ast.parse(source)):
        names: list[str] = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
        for name in names:
            if name.split(".")[0] in SDK:
                found.append(f"{node.lineno}: imports {name}")
            elif name == CLIENT_FACTORY or name.startswith(CLIENT_FACTORY + "."):
                found.append(f"{node.lineno}: creates a client through {CLIENT_FACTORY}")
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):  # client.operation(...)
            pascal = [k.arg for k in node.keywords if k.arg and _is_aws_style(k.arg)]
            if pascal:
                found.append(f"{node.lineno}: an AWS API call ({', '.join(pascal)}=)")
    return sorted(set(found))


def test_the_scan_sees_shipped_code() -> None:
    modules = {p.relative_to(ROOT).as_posix() for p in _modules()}
    assert {"functions/ingest/handler.py", "functions/api/cursor.py", "serving/app.py"} <= modules
    assert not any(m.startswith("functions/adapters/") for m in modules)


@pytest.mark.parametrize(
    "source",
    [
        "import boto3\n",
        "def f():\n    from botocore.config import Config\n",
        "def f():\n    from functions.adapters.clients import client\n",
        "def f(c):\n    return c.get_secret_value(SecretId='arn')\n",
        "def f(c):\n    return c.invoke_endpoint(EndpointName='ep', Body='{}')\n",
    ],
)
def test_the_scan_finds_each_kind_of_raw_call(source: str) -> None:
    assert raw_aws_uses(source)


def test_shipped_code_calls_aws_only_through_adapters() -> None:
    offenders = {
        p.relative_to(ROOT).as_posix(): uses
        for p in _modules()
        if (uses := raw_aws_uses(p.read_text(encoding="utf-8")))
    }
    assert offenders == {}, "AWS calls outside functions/adapters (add or use an adapter): " + repr(offenders)
