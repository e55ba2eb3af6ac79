"""The developer tools' one boto3 client factory: a client for the target the settings name.

The Lambda functions build theirs in functions/adapters/clients.py (cached, with their timeouts); the
tools build one per call, because ``iotpipe`` re-points its environment at the emulator it finds
(iotpipe/settings.py) and a cached client would keep talking to the old endpoint.
"""

from __future__ import annotations

from typing import Any

from iotpipe.settings import ToolSettings, tool_settings


def client(service: str, settings: ToolSettings | None = None) -> Any:
    """A boto3 client of ``service`` on the current target (the emulator locally, AWS otherwise)."""
    import boto3  # deferred: `iotpipe --help` and the cost model load no AWS SDK

    s = settings or tool_settings()
    return boto3.client(service, endpoint_url=s.endpoint_url, region_name=s.region)
