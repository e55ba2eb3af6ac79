"""`iotpipe up` keeps the ports it was asked for: a busy one is reported with its holder and the run
refused before anything starts (a silently replaced port leaves every printed URL dead)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

from iotpipe.local.emulator import free_port

ROOT = Path(__file__).resolve().parents[2]


def test_a_busy_port_is_refused_with_what_holds_it(tmp_path: Path) -> None:
    # GIVEN a process of ours listening on the port `up` is asked to use for the emulator
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        holder.bind(("127.0.0.1", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        env = {**os.environ, "IOTPIPE_RUN_DIR": str(tmp_path)}
        env.pop("AWS_ENDPOINT_URL", None)
        # WHEN `iotpipe up` is run with it
        result = subprocess.run(
            [sys.executable, "-m", "iotpipe.cli", "up", "--port", str(busy), "--api-port", str(free_port()),
             "--control-port", str(free_port()), "--duration", "1"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=60, check=False)
    # THEN it refuses, naming the port, its holder (this test's process) and how to choose another,
    # and started nothing: no emulator, no other port
    assert result.returncode == 1, result.stderr[-2000:]
    assert f"port {busy} (emulator) is in use by pid {os.getpid()}: " in result.stderr
    assert "EMULATOR_PORT=N make up, or --port N" in result.stderr
    assert "starting the embedded emulator" not in result.stderr
    assert not (tmp_path / "emulator.json").exists()
