"""The embedded emulator: ministack, pinned, started as a subprocess on 127.0.0.1.

ministack runs in an environment of its own (``.venv-emulator``, CPython 3.12): it pins botocore
exactly, and it runs every Lambda function on its own interpreter, so that environment is also what
the functions see (plus the dependency layer). ``make`` creates it; ``EMULATOR_PYTHON`` overrides.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
MINISTACK_VERSION = "1.5.33"  # keep in step with the Makefile's emulator environment
DEFAULT_VENV = ROOT / ".venv-emulator"
RUN_DIR = ROOT / ".iotpipe"
PIDFILE = RUN_DIR / "emulator.json"
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class EmulatorError(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ministack_executable() -> Path:
    override = os.environ.get("EMULATOR_BIN")
    exe = Path(override) if override else DEFAULT_VENV / "bin" / "ministack"
    if not exe.exists():
        raise EmulatorError(
            f"ministack not found at {exe}; run 'make emulator-env' (creates .venv-emulator with "
            f"ministack=={MINISTACK_VERSION} on Python 3.12)"
        )
    return exe


def healthy(endpoint: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{endpoint}/_ministack/health", timeout=timeout) as resp:  # noqa: S310
            return resp.status == 200
    except OSError:
        return False


@dataclass
class Emulator:
    """A ministack process this program started (and therefore stops, by its own pid)."""

    port: int
    state_dir: Path
    persist: bool = False
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for AWS clients (boto3, the AWS CLI) that talk to this emulator."""
        return {
            "AWS_ENDPOINT_URL": self.endpoint,
            "AWS_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "AWS_DEFAULT_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            **TEST_CREDENTIALS,
        }

    def start(self, wait_s: float = 60.0) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        env = {
            **os.environ,
            **TEST_CREDENTIALS,
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "MINISTACK_REGION": os.environ.get("AWS_REGION", "us-east-1"),
            "STATE_DIR": str(self.state_dir / "state"),
            # ministack keeps S3 objects under /tmp/ministack-data by default, shared by every
            # emulator on the machine; each emulator gets its own.
            "S3_DATA_DIR": str(self.state_dir / "s3"),
            "TMPDIR": str(self.state_dir / "tmp"),
            "LOG_LEVEL": os.environ.get("EMULATOR_LOG_LEVEL", "WARNING"),
        }
        # Functions inherit the server's environment: do not leak the developer's endpoint or
        # virtualenv into them.
        for name in ("AWS_ENDPOINT_URL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
            env.pop(name, None)
        if self.persist:
            env.update({"PERSIST_STATE": "1", "S3_PERSIST": "1"})
        (self.state_dir / "tmp").mkdir(parents=True, exist_ok=True)
        log = open(self.state_dir / "emulator.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            [str(ministack_executable())],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
            start_new_session=True,  # its own process group: stop() ends its Lambda workers too
            cwd=self.state_dir,
        )
        self.pid = self.process.pid
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise EmulatorError(
                    f"ministack exited with {self.process.returncode}; see {self.state_dir / 'emulator.log'}"
                )
            if healthy(self.endpoint):
                return self
            time.sleep(0.2)
        self.stop()
        raise EmulatorError(f"ministack did not become healthy within {wait_s:.0f} s")

    def stop(self, grace_s: float = 10.0) -> None:
        pid = self.pid
        if pid is None:
            return
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            self.pid = None
            return
        deadline = time.monotonic() + grace_s
        while time.monotonic() < deadline:
            if self.process is not None:
                if self.process.poll() is not None:
                    break
            elif not _alive(pid):
                break
            time.sleep(0.1)
        else:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(pid, signal.SIGKILL)
        if self.process is not None:
            self.process.wait(timeout=5)
        self.pid = None

    # The pidfile lets `iotpipe down` (another process) stop the emulator `iotpipe up` started.
    def write_pidfile(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        PIDFILE.write_text(json.dumps({"pid": self.pid, "port": self.port, "state_dir": str(self.state_dir)}))

    @classmethod
    def from_pidfile(cls) -> Emulator | None:
        if not PIDFILE.exists():
            return None
        data = json.loads(PIDFILE.read_text())
        return cls(port=int(data["port"]), state_dir=Path(data["state_dir"]), pid=int(data["pid"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
