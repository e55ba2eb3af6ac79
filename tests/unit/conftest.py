"""The unit tier runs without network: every test here has sockets disabled (pytest-socket).

Scoped to this folder on purpose: the integration tier talks to a real emulator over TCP. A unit test
that opens a socket fails with ``SocketBlockedError``; one that genuinely needs a local server belongs in
tests/integration (or, with a stated reason, carries ``@pytest.mark.enable_socket``).
"""

from __future__ import annotations

from pathlib import Path

import pytest

UNIT = Path(__file__).parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # This hook sees every collected item of the session, not only this folder's: filter by path.
    for item in items:
        if item.path.is_relative_to(UNIT) and not item.get_closest_marker("enable_socket"):
            item.add_marker(pytest.mark.disable_socket)


@pytest.fixture(autouse=True)
def _offline_aws_credentials(monkeypatch: pytest.MonkeyPatch) -> None:
    # A boto3 client built without credentials in the environment walks the provider chain to the EC2
    # metadata endpoint (169.254.169.254): a network call, blocked here. Dummy keys end the chain at the
    # environment; no unit test may use real ones anyway.
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "testing")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "testing")
    monkeypatch.delenv("AWS_SESSION_TOKEN", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
