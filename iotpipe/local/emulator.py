"""The embedded emulator: ministack, pinned, started as a subprocess on 127.0.0.1.

ministack runs in an environment of its own (``.venv-emulator``, CPython 3.12): it pins botocore
exactly, and it runs every Lambda function on its own interpreter, so that environment is also what
the functions see (plus the dependency layer). ``make`` creates it; ``EMULATOR_PYTHON`` overrides.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from iotpipe.local.ports import answers
from iotpipe.settings import ROOT, child_env, tool_settings, use_endpoint

MINISTACK_VERSION = "1.5.33"  # keep in step with the Makefile's emulator environment
DEFAULT_VENV = ROOT / ".venv-emulator"
RUN_DIR = tool_settings().run_dir  # what `iotpipe up` keeps (pidfiles, logs, emulator state)
PIDFILE = RUN_DIR / "emulator.json"
# ministack extracts each Lambda worker's code (and layers) into TMPDIR/ministack-lambda-<function>-*.
WORKER_DIR_PREFIX = "ministack-lambda-"
JANITOR_INTERVAL_S = 30.0
TEST_CREDENTIALS = {"AWS_ACCESS_KEY_ID": "test", "AWS_SECRET_ACCESS_KEY": "test"}


class EmulatorError(RuntimeError):
    pass


MQTT_TLS_PORT = 8883  # MQTT over TLS, on AWS IoT Core and ministack's default


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def ministack_executable() -> Path:
    exe = tool_settings().emulator_bin or DEFAULT_VENV / "bin" / "ministack"
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
    # With persist: seconds between state snapshots (iotpipe/local/ministack_launcher.py); 0 = only on a clean
    # stop, which is all ministack itself does.
    snapshot_s: float = 0.0
    janitor_s: float = JANITOR_INTERVAL_S  # seconds between sweeps of dead workers' folders; 0 = off
    # IoT Core's mTLS MQTT listener (devices connect here with their certificates). 0: a free port,
    # since ministack's default (8883) would be shared by every emulator on the machine.
    mqtt_port: int = 0
    # AUTH=true: ministack verifies SigV4 (the root key is test/test), runs each function's calls as its
    # execution role against the role's IAM policies, and holds certificate MQTT sessions to their IoT
    # policies. On for every emulator this project starts (make up, the tests, the benches), so each
    # function runs with exactly its role's permissions, as on AWS (docs/security.md).
    auth: bool = True
    process: subprocess.Popen[bytes] | None = None
    pid: int | None = None
    _janitor: Janitor | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def client_env(self) -> dict[str, str]:
        """Environment for AWS clients (boto3, the AWS CLI) that talk to this emulator."""
        region = tool_settings().region
        return {"AWS_ENDPOINT_URL": self.endpoint, "AWS_REGION": region, "AWS_DEFAULT_REGION": region,
                **TEST_CREDENTIALS,
                # Where devices dial IoT Core over MQTT with mTLS (iotpipe devices, the mqtt sink).
                "IOTPIPE_MQTT_ENDPOINT": f"127.0.0.1:{self.mqtt_port or MQTT_TLS_PORT}"}

    def start(self, wait_s: float = 60.0) -> Emulator:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.mqtt_port = self.mqtt_port or free_port()
        settings = tool_settings()
        env = child_env({
            **TEST_CREDENTIALS,
            "BIND_HOST": "127.0.0.1",
            "GATEWAY_PORT": str(self.port),
            "MINISTACK_REGION": settings.region,
            "STATE_DIR": str(self.state_dir / "state"),
            # ministack keeps S3 objects under /tmp/ministack-data by default, shared by every
            # emulator on the machine; each emulator gets its own.
            "S3_DATA_DIR": str(self.state_dir / "s3"),
            "TMPDIR": str(self.state_dir / "tmp"),
            "LOG_LEVEL": settings.emulator_log_level,
            # Functions inherit this environment: the processor's PARTIAL_BATCH_RESPONSE=auto reads it
            # (ministack drops records reported in batchItemFailures; functions/settings.py).
            "IOTPIPE_EMULATOR": "ministack",
            # Athena queries run on DuckDB (installed in the emulator's environment by the Makefile);
            # "auto" would fall back to mock rows if it were missing, which no test could tell from
            # an empty answer, so the engine is named and a missing duckdb fails the query.
            "ATHENA_ENGINE": "duckdb",
            "IOT_MTLS_PORT": str(self.mqtt_port),
            "AUTH": "true" if self.auth else "false",
        })
        # Functions inherit the server's environment: do not leak the developer's endpoint or
        # virtualenv into them.
        for name in ("AWS_ENDPOINT_URL", "VIRTUAL_ENV", "PYTHONPATH", "PYTHONHOME"):
            env.pop(name, None)
        if self.persist:
            env.update({"PERSIST_STATE": "1", "S3_PERSIST": "1"})
        # ministack keeps a burst's extra warm workers (each with its own code folder) for 300 s; the
        # first worker of each function stays warm regardless.
        env.setdefault("LAMBDA_WARM_TTL_SECONDS", "60")
        command = [str(ministack_executable())]
        if self.persist and self.snapshot_s > 0:
            env["IOTPIPE_SNAPSHOT_S"] = str(self.snapshot_s)
            command = [str(emulator_python()), str(Path(__file__).with_name("ministack_launcher.py"))]
        tmp = self.state_dir / "tmp"
        tmp.mkdir(parents=True, exist_ok=True)
        # Folders of the workers of an emulator that was stopped or killed before (never removed by
        # ministack: issue 11, finding 5).
        sweep_worker_dirs(tmp, min_age_s=0)
        log = open(self.state_dir / "emulator.log", "ab")  # noqa: SIM115 - owned by the child
        self.process = subprocess.Popen(
            command,
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
                if self.janitor_s > 0:
                    self._janitor = Janitor(tmp, self.janitor_s)
                    self._janitor.start()
                return self
            time.sleep(0.2)
        self.stop()
        raise EmulatorError(f"ministack did not become healthy within {wait_s:.0f} s")

    def died(self) -> int | None:
        """The exit status if the emulator process has ended (negative: killed by that signal)."""
        if self.process is not None:
            return self.process.poll()
        return None if self.pid is None or _alive(self.pid) else 0

    def stop(self, grace_s: float = 10.0) -> None:
        if self._janitor is not None:
            self._janitor.stop()
            self._janitor = None
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
        # Its workers are gone with its process group; so is any use for their folders.
        sweep_worker_dirs(self.state_dir / "tmp", min_age_s=0)

    # The pidfile lets `iotpipe down` (another process) stop the emulator `iotpipe up` started.
    def write_pidfile(self) -> None:
        RUN_DIR.mkdir(parents=True, exist_ok=True)
        PIDFILE.write_text(json.dumps({"pid": self.pid, "port": self.port, "state_dir": str(self.state_dir),
                                       "mqtt_port": self.mqtt_port}))

    @classmethod
    def from_pidfile(cls) -> Emulator | None:
        if not PIDFILE.exists():
            return None
        data = json.loads(PIDFILE.read_text())
        return cls(port=int(data["port"]), state_dir=Path(data["state_dir"]), pid=int(data["pid"]),
                   mqtt_port=int(data.get("mqtt_port", 0)))


def emulator_python() -> Path:
    """The interpreter of the emulator's environment (the one ministack's entry point runs on)."""
    exe = ministack_executable()
    sibling = exe.parent / "python"
    if sibling.exists():
        return sibling
    first = exe.read_text(errors="replace").splitlines()[0]
    return Path(first[2:].strip()) if first.startswith("#!") else sibling


def live_worker_dirs(tmp: Path) -> set[str]:
    """Names of the folders under ``tmp`` that a running process uses (command line or cwd).

    ministack starts each Lambda worker as ``python <folder>/_worker.py`` with cwd ``<folder>/code``.
    """
    root = str(tmp.resolve()) + os.sep
    live: set[str] = set()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        paths: list[str] = []
        with contextlib.suppress(OSError):
            paths.extend(Path(f"/proc/{entry}/cmdline").read_bytes().decode(errors="replace").split("\0"))
        with contextlib.suppress(OSError):
            paths.append(os.readlink(f"/proc/{entry}/cwd"))
        for path in paths:
            if path.startswith(root):
                live.add(path[len(root):].split(os.sep, 1)[0])
    return live


def sweep_worker_dirs(tmp: Path, min_age_s: float = 120.0, now: float | None = None) -> list[Path]:
    """Remove the Lambda worker folders under ``tmp`` that no live process uses.

    ministack (1.5.33) removes a worker's folder only when it reaps the worker itself; the folders of
    every worker alive when the emulator stops or is killed stay forever (about 80-90 MB each: the
    function's code package extracted, plus its zip). ``min_age_s`` spares a folder being filled for a
    worker that has not started yet (ministack extracts the package before it starts the process).
    """
    if not tmp.is_dir():
        return []
    now = time.time() if now is None else now
    live = live_worker_dirs(tmp)
    removed = []
    for folder in tmp.iterdir():
        if not folder.name.startswith(WORKER_DIR_PREFIX) or folder.name in live:
            continue
        try:
            if now - folder.stat().st_mtime < min_age_s:
                continue
        except OSError:
            continue
        shutil.rmtree(folder, ignore_errors=True)
        removed.append(folder)
    return removed


class Janitor(threading.Thread):
    """Sweeps dead workers' folders every ``interval_s`` in the process that started the emulator."""

    def __init__(self, tmp: Path, interval_s: float) -> None:
        super().__init__(daemon=True, name="emulator-janitor")
        self.tmp, self.interval_s = tmp, interval_s
        self.removed = 0
        self._stopped = threading.Event()

    def run(self) -> None:
        while not self._stopped.wait(self.interval_s):
            with contextlib.suppress(OSError):
                self.removed += len(sweep_worker_dirs(self.tmp))

    def stop(self) -> None:
        self._stopped.set()


def tree_bytes(path: Path) -> int:
    """Bytes allocated on disk under ``path`` (like ``du``; files vanishing meanwhile are skipped)."""
    total = 0
    for dirpath, _dirs, files in os.walk(path):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(dirpath, name)).st_blocks * 512
    return total


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def use_running_emulator(say: Callable[[str], None]) -> Emulator | None:
    """Point this process's AWS clients (and its children) at the emulator `iotpipe up` runs, unless
    AWS_ENDPOINT_URL names another endpoint that answers: one left in the shell from an earlier run (an
    emulator since restarted on another port) would make every command, and every URL it prints, point
    at a dead port. Returns the running emulator when the process now talks to it."""
    emulator = Emulator.from_pidfile()
    if emulator is None or not healthy(emulator.endpoint):
        return None
    current = tool_settings().endpoint_url
    if current and current.rstrip("/") != emulator.endpoint and not answers(current):
        say(f"AWS_ENDPOINT_URL={current} does not answer: using the emulator 'iotpipe up' runs, "
            f"{emulator.endpoint}")
        current = None
    if not current or current.rstrip("/") == emulator.endpoint:
        use_endpoint(emulator.client_env())
        return emulator
    return None
