"""Cold start: each function's import time from its own unpacked code package, and the packages' sizes."""

from __future__ import annotations

import tempfile
import zipfile
from pathlib import Path
from typing import Any

from bench.e2e.report import say
from bench.import_times import FUNCTIONS, import_seconds, runtime_python, runtime_site

ROOT = Path(__file__).resolve().parents[2]

# The e2e line's names for the functions bench/import_times.py measures (its FUNCTIONS: zip, handler).
COLD_START_MODULES = {"processor": "processor", "ingest": "ingest", "query": "api"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def cold_start() -> dict[str, Any]:
    """Each function's import time from its own unpacked zip (as Lambda runs it), and its sizes.

    Measured as bench/import_times.py measures it (a fresh runtime-like CPython 3.12 per import, the
    unpacked zip as the task root, its shipped bytecode); that bench adds the other functions, the
    source-only variant, median/p90 and a baseline.
    """
    build = ROOT / "build"
    out: dict[str, Any] = {}
    total_zip = total_unzipped = 0
    with tempfile.TemporaryDirectory(prefix="iotpipe-coldstart-") as tmp:
        site = runtime_site(Path(tmp) / "site", runtime_python())
        for name, function in COLD_START_MODULES.items():
            bundle, module = FUNCTIONS[function]
            zip_path = build / f"{bundle}.zip"
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
            try:
                times = [import_seconds(task, site, module) for _ in range(3)]
            except RuntimeError as error:
                out[f"{name}_import_error"] = str(error).splitlines()[-1:] or ["?"]
                continue
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
