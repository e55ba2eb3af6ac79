"""A whole benchmark run, in order: the curve, the call counter, memory, cold start, plots, the JSON line."""

from __future__ import annotations

import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.e2e.calls import count_calls, say_calls
from bench.e2e.cold_start import cold_start, say_cold_start
from bench.e2e.memory import RssSampler
from bench.e2e.options import Options
from bench.e2e.report import curve_of, say, say_curve
from bench.e2e.scaling import make_plots, run_curve
from iotpipe.local.emulator import Emulator, free_port
from iotpipe.settings import use_endpoint

ROOT = Path(__file__).resolve().parents[2]


def run_cold_start_only() -> int:
    """Only the packages' sizes and import times (builds them first; no emulator)."""
    subprocess.run([sys.executable, str(ROOT / "scripts" / "build.py")], check=True,
                   stdout=subprocess.DEVNULL)
    cold = cold_start()
    say_cold_start(cold)
    print(json.dumps({"benchmark": "e2e_cold_start", **cold}))
    return 0


def run(opts: Options) -> int:
    """Every point on one emulator; the last stdout line is the JSON object. 0 when all conserved."""
    t_run = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="iotpipe-bench-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    use_endpoint(emulator.client_env())
    assert emulator.pid is not None
    say(f"emulator {emulator.endpoint} (pid {emulator.pid}); shard counts {list(opts.shards)}")
    rss = RssSampler(emulator.pid)
    rss.start()
    figures: dict[str, Any] = {"devices": opts.devices, "rate_hz": opts.rate, "duration_s": opts.duration,
                               "parallelization_factor": opts.parallelization}
    try:
        points = run_curve(opts, emulator, state)
        first = points[0]
        inputs = first["cost_inputs"]
        per_invocation = inputs["readings"] / max(1, inputs["processor_invocations"])
        calls = count_calls(first["outputs"], opts, int(opts.calls_batch or max(1, round(per_invocation))))
        say_calls(calls)

        # ---- memory, cold start, sizes
        rss.stop()
        cold = cold_start()
        say(f"memory:   peak RSS of the emulator tree {rss.peak_bytes / 2**20:,.0f} MiB "
            f"({rss.peak_processes} processes)")
        say_cold_start(cold)
        say_curve(points)
        plots = make_plots(opts, points)
        curve = curve_of(points)
        # The first point's figures stay at the top level (earlier runs' keys, `iotpipe cost --from-bench`).
        figures.update({k: v for k, v in curve[0].items() if k != "shards"})
        figures.update({
            "shards": list(opts.shards),
            "curve": curve,
            "conserved": all(pt["conserved"] for pt in points),
            "calls": calls,
            "peak_rss_bytes": rss.peak_bytes,
            "peak_rss_processes": rss.peak_processes,
            **cold,
            **plots,
            "run_s": round(time.monotonic() - t_run, 1),
        })
    finally:
        rss.stop()
        emulator.stop()
    print(json.dumps(figures, sort_keys=True, default=str))
    return 0 if figures.get("conserved") else 1
