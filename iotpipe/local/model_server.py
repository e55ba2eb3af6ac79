"""The SageMaker-contract model server (``serving/``) as a local process on 127.0.0.1.

``iotpipe up --detector sagemaker``, the integration tests and ``bench/detector_backends.py`` start it
here and point the processor's ``sagemaker-runtime`` client at it (``runtime_url``, deployed as the
function's ``AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME``). It runs the project's interpreter in its own process
group and is stopped by its own pid.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

from iotpipe.local.emulator import free_port
from iotpipe.settings import ROOT, child_env

LOCAL_ENDPOINT_NAME = "iotpipe-detector-local"


class ModelServerError(RuntimeError):
    pass


def ping(url: str, timeout: float = 1.0) -> bool:
    try:
        with urllib.request.urlopen(f"{url}/ping", timeout=timeout) as resp:  # noqa: S310 - local URL
            return resp.status == 200
    except OSError:
        return False


@dataclass
class ModelServer:
    """One serving process: ``start()``, ``stop()``; ``pause()``/``resume()`` stall it (SIGSTOP/SIGCONT)."""

    endpoint_name: str = LOCAL_ENDPOINT_NAME
    port: int = 0  # 0: a free one
    log_path: Path | None = None
    env: dict[str, str] = field(default_factory=dict)  # e.g. MODEL_ARTIFACT_PATH
    process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, wait_s: float = 30.0) -> ModelServer:
        if not self.port:
            self.port = free_port()
        log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL  # noqa: SIM115 - child's
        env = child_env({**self.env, "PYTHONPATH": str(ROOT)})
        env.pop("AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME", None)
        self.process = subprocess.Popen(
            [sys.executable, "-m", "serving", "--host", "127.0.0.1", "--port", str(self.port),
             "--endpoint-name", self.endpoint_name],
            env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + wait_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise ModelServerError(f"the model server exited with {self.process.returncode}"
                                       + (f"; see {self.log_path}" if self.log_path else ""))
            if ping(self.url, timeout=0.5):
                return self
            time.sleep(0.1)
        self.stop()
        raise ModelServerError(f"the model server did not answer /ping within {wait_s:.0f} s")

    def pause(self) -> None:
        """Stall it: connections are accepted by the kernel and never answered (a hung endpoint)."""
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGSTOP)

    def resume(self) -> None:
        if self.process is not None:
            os.killpg(self.process.pid, signal.SIGCONT)

    def stop(self, grace_s: float = 10.0) -> None:
        proc, self.process = self.process, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGCONT)  # a paused server cannot act on SIGTERM
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=5)

    def deploy_params(self, failure_policy: str | None = None) -> list[str]:
        """scripts/deploy.sh arguments that point the processor's SageMaker backend at this server."""
        params = ["DetectorBackend=sagemaker", f"SageMakerEndpointName={self.endpoint_name}",
                  f"SageMakerRuntimeUrl={self.url}"]
        if failure_policy:
            params.append(f"SageMakerFailurePolicy={failure_policy}")
        return [arg for p in params for arg in ("--param", p)]
