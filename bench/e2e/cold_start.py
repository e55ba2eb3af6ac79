"""Cold start: each function's import time from its own unpacked code package, and the packages' sizes."""

from __future__ import annotations

import os
import subprocess
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench.e2e.report import say
from iotpipe.local.emulator import DEFAULT_VENV
from iotpipe.settings import REGION_DEFAULT

ROOT = Path(__file__).resolve().parents[2]

# Handler modules per function package (template: Code: ../build/<name>.zip).
COLD_START_MODULES = {"processor": "functions.processor.handler", "ingest": "functions.ingest.handler",
                      "query": "functions.api.lambda_handler"}
BUNDLE_OF = {"processor": "processor", "ingest": "ingest", "query": "api"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def cold_start() -> dict[str, Any]:
    """Each function's import time from its own unpacked zip (as Lambda runs it), and its sizes.

    The interpreter is the emulator's CPython 3.12 (boto3 included, as in the Lambda runtime); each
    package is unpacked into a fresh folder that is the only project path on sys.path.
    """
    build = ROOT / "build"
    py = DEFAULT_VENV / "bin" / "python"
    out: dict[str, Any] = {}
    total_zip = total_unzipped = 0
    with tempfile.TemporaryDirectory(prefix="iotpipe-coldstart-") as tmp:
        for name, module in COLD_START_MODULES.items():
            zip_path = build / f"{BUNDLE_OF[name]}.zip"
            if not zip_path.exists():
                out[f"{name}_import_error"] = f"{zip_path} missing (run scripts/build.py)"
                continue
            task = Path(tmp) / name
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(task)
                unzipped = sum(i.file_size for i in zf.infolist())
            out[f"{name}_zip_bytes"] = zip_path.stat().st_size
            out[f"{name}_unzipped_bytes"] = unzipped
            out[f"{name}_of_lambda_limit"] = round(unzipped / LAMBDA_UNZIPPED_LIMIT, 3)
            total_zip += zip_path.stat().st_size
            total_unzipped += unzipped
            env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": REGION_DEFAULT,
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(task)}
            times = []
            for _ in range(3):
                code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
                r = subprocess.run([str(py), "-c", code], env=env, capture_output=True, text=True, timeout=60,
                                   cwd=tmp)
                if r.returncode != 0:
                    out[f"{name}_import_error"] = r.stderr.strip().splitlines()[-1:] or ["?"]
                    break
                times.append(float(r.stdout.strip().splitlines()[-1]))
            if times:
                # Best of 3: a cold interpreter each time, the page cache warm (as on a reused Lambda host).
                out[f"{name}_import_ms"] = round(min(times) * 1000, 1)
    # Sums over the three packages (the layer is gone: layer_bytes stays in the line as 0 for comparison
    # with runs before the self-contained packages, when it was ~66.8 MB shared by all three).
    out["bundle_bytes"] = total_zip
    out["bundle_unzipped_bytes"] = total_unzipped
    out["layer_bytes"] = 0
    return out


def say_cold_start(cold: dict[str, Any]) -> None:
    for name in COLD_START_MODULES:
        if f"{name}_import_error" in cold:
            say(f"cold start: {name}: {cold[f'{name}_import_error']}")
            continue
        zipped, unzipped = cold[f"{name}_zip_bytes"] / 2**20, cold[f"{name}_unzipped_bytes"] / 2**20
        say(f"cold start: {name:9s} import {cold.get(f'{name}_import_ms', 'n/a')} ms, package "
            f"{zipped:.1f} MiB zipped / {unzipped:.1f} MiB unzipped "
            f"({100 * cold[f'{name}_of_lambda_limit']:.0f} % of Lambda's 250 MB)")
