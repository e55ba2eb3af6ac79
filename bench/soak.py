"""Soak: run the whole pipeline (``iotpipe up``) for N minutes at the e2e load and watch its disk use.

    .venv/bin/python bench/soak.py [--minutes 5] [--devices 200] [--rate 2] [--sample-s 30]

5 minutes by default (``make bench`` runs every script here); issue 11's soak is ``--minutes 30``.

What it measures is the product, not a re-creation of it: ``iotpipe up`` runs in a run directory of
its own (``IOTPIPE_RUN_DIR``, so a developer's ``make up`` is untouched) on free ports, with the
janitor and the periodic state snapshots it always has. Every ``--sample-s`` it prints the size of the
emulator's state directory (Lambda worker folders, persisted state, S3 objects), the number of
``ministack-lambda-*`` worker folders and the live worker processes; the last line is one JSON object
with peak and final bytes (``bench/end_to_end.py`` has the same load: 200 devices x 2 Hz, 2 % malformed).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotpipe.console import run_app  # noqa: E402
from iotpipe.local.emulator import WORKER_DIR_PREFIX, free_port, tree_bytes  # noqa: E402
from iotpipe.settings import child_env  # noqa: E402


def say(msg: str) -> None:
    print(msg, flush=True)


def worker_dirs(tmp: Path) -> int:
    try:
        return sum(1 for p in tmp.iterdir() if p.name.startswith(WORKER_DIR_PREFIX))
    except OSError:
        return 0


def snapshot_seconds(state: Path) -> float:
    """How long the emulator's last periodic state snapshot took (iotpipe/local/ministack_launcher.py)."""
    try:
        return float(json.loads((state / "state" / "iotpipe-snapshot.json").read_text())["duration_s"])
    except (OSError, ValueError, KeyError):
        return 0.0


def live_workers(tmp: Path) -> int:
    """Processes whose command line names a file under the emulator's TMPDIR (Lambda workers)."""
    needle = str(tmp).encode()
    count = 0
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                count += needle in Path(f"/proc/{entry}/cmdline").read_bytes()
            except OSError:
                continue
    return count


app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def soak(
    minutes: Annotated[float, typer.Option(envvar="SOAK_MINUTES")] = 5.0,
    devices: int = 200,
    rate: float = 2.0,
    malformed_rate: float = 0.02,
    sample_s: float = 30.0,
    keep: Annotated[bool, typer.Option("--keep", help="keep the run directory (default: removed)")] = False,
) -> int:

    run_dir = Path(tempfile.mkdtemp(prefix="iotpipe-soak-"))
    state = run_dir / "emulator"
    tmp = state / "tmp"
    env = child_env({"IOTPIPE_RUN_DIR": str(run_dir)})
    env.pop("AWS_ENDPOINT_URL", None)
    duration_s = minutes * 60
    cmd = [sys.executable, "-m", "iotpipe.cli", "up", "--port", str(free_port()),
           "--control-port", str(free_port()), "--api-port", str(free_port()),
           "--devices", str(devices), "--rate", str(rate),
           "--malformed-rate", str(malformed_rate), "--interval", "30",
           "--duration", str(duration_s)]
    log = open(run_dir / "up.log", "ab")  # noqa: SIM115 - closed below
    say(f"soak: iotpipe up for {minutes:g} min at {devices} devices x {rate:g} Hz; "
        f"run dir {run_dir}")
    proc = subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
    peak = {"bytes": 0, "worker_dirs": 0, "live_workers": 0, "tmp_bytes": 0, "snapshot_s": 0.0}
    samples: list[dict[str, Any]] = []
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            time.sleep(sample_s)
            sample = {"t_s": round(time.monotonic() - t0), "bytes": tree_bytes(state),
                      "tmp_bytes": tree_bytes(tmp), "saved_state_bytes": tree_bytes(state / "state"),
                      "s3_bytes": tree_bytes(state / "s3"), "worker_dirs": worker_dirs(tmp),
                      "live_workers": live_workers(tmp), "snapshot_s": snapshot_seconds(state)}
            samples.append(sample)
            for key in peak:
                peak[key] = max(peak[key], sample[key])
            say(f"  t={sample['t_s']:>5} s  state dir {sample['bytes'] / 1e6:8.1f} MB = worker folders "
                f"{sample['worker_dirs']} ({sample['tmp_bytes'] / 1e6:.1f} MB, live workers "
                f"{sample['live_workers']}) + saved state {sample['saved_state_bytes'] / 1e6:.1f} MB "
                f"+ S3 {sample['s3_bytes'] / 1e6:.1f} MB; last snapshot took {sample['snapshot_s']:.2f} s")
    except KeyboardInterrupt:
        proc.send_signal(signal.SIGINT)
    finally:
        rc = proc.wait(timeout=120)
        log.close()
    lines = (run_dir / "up.log").read_text(errors="replace").splitlines()
    status = [line for line in lines if "| aggregated" in line]
    say(f"iotpipe up exited {rc}; last status: {status[-1] if status else '-'}")
    problems = [line for line in lines if "janitor" in line or "died" in line or "failed" in line]
    for line in problems[-5:]:
        say(f"  {line}")
    final = samples[-1] if samples else {"bytes": 0, "worker_dirs": 0, "tmp_bytes": 0,
                                         "saved_state_bytes": 0, "s3_bytes": 0}
    result = {
        "minutes": minutes, "devices": devices, "rate_hz": rate,
        "peak_state_bytes": peak["bytes"], "final_state_bytes": final["bytes"],
        "peak_worker_dirs": peak["worker_dirs"], "final_worker_dirs": final["worker_dirs"],
        "peak_live_workers": peak["live_workers"], "samples": len(samples),
        "peak_worker_folder_bytes": peak["tmp_bytes"], "final_worker_folder_bytes": final["tmp_bytes"],
        "final_saved_state_bytes": final["saved_state_bytes"], "final_s3_bytes": final["s3_bytes"],
        "max_snapshot_s": peak["snapshot_s"],
        "last_status": status[-1].split("] ", 1)[-1] if status else "", "exit_code": rc,
    }
    if not keep:
        shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result, sort_keys=True))
    return 0 if rc == 0 else 1



def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/soak.py")


if __name__ == "__main__":
    raise SystemExit(main())
