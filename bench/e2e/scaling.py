"""The scaling curve (``--shards 1,2,4,8``: one point per shard count, on one emulator) and its plots."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.e2e.options import Options
from bench.e2e.point import run_point
from bench.e2e.report import say
from iotpipe.local.emulator import Emulator

ROOT = Path(__file__).resolve().parents[2]


def run_curve(opts: Options, emulator: Emulator, state: Path) -> list[dict[str, Any]]:
    """One point per shard count; the packages are built for the first point only."""
    return [run_point(opts, emulator, state, shards, build=i == 0) for i, shards in enumerate(opts.shards)]


def make_plots(opts: Options, points: list[dict[str, Any]]) -> dict[str, str | None]:
    """out/e2e-latency.png (the last point's latency histogram) and out/e2e-scaling.png (the curve)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        say("(matplotlib not installed: no plots)")
        return {"latency_plot": None, "scaling_plot": None}
    (ROOT / "out").mkdir(exist_ok=True)
    out: dict[str, str | None] = {"latency_plot": None}
    last = points[-1]
    if last["latencies"]:
        fig, ax = plt.subplots(figsize=(7, 4))
        ax.hist(last["latencies"], bins=40)
        for q, color in (("p50", "k"), ("p99", "r")):
            value = last[f"latency_{q}_s"] or 0
            ax.axvline(value, color=color, linestyle="--", label=f"{q} {value} s")
        ax.set_xlabel("produce -> queryable through the API (s)")
        ax.set_ylabel("sample readings")
        ax.set_title(f"iotpipe e2e on ministack: {opts.devices} devices x {opts.rate:g} Hz, "
                     f"{last['shards']} shard(s)")
        ax.legend()
        out["latency_plot"] = str(ROOT / "out" / "e2e-latency.png")
        fig.savefig(out["latency_plot"], dpi=100, bbox_inches="tight")
        plt.close(fig)
    shards = [pt["shards"] for pt in points]
    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(11, 4))
    ax1.plot(shards, [pt["sustained_records_per_s"] for pt in points], "o-", label="pipeline (to DynamoDB)")
    ax1.plot(shards, [pt["noop_records_per_s"] for pt in points], "s--", label="no-op function")
    ax1.set_xscale("log", base=2)
    ax1.set_xticks(shards, [str(n) for n in shards])
    ax1.set_xlabel("Kinesis shards")
    ax1.set_ylabel("sustained records/s (backlog drain)")
    ax1.legend()
    ax2.plot(shards, [pt["latency_p50_s"] for pt in points], "o-", label="p50")
    ax2.plot(shards, [pt["latency_p99_s"] for pt in points], "o-", label="p99")
    ax2.set_xscale("log", base=2)
    ax2.set_xticks(shards, [str(n) for n in shards])
    ax2.set_xlabel("Kinesis shards")
    ax2.set_ylabel(f"produce -> queryable (s), paced {opts.devices} x {opts.rate:g} Hz")
    ax2.legend()
    fig.suptitle("iotpipe on ministack (one emulator, 2 shared cores)")
    out["scaling_plot"] = str(ROOT / "out" / "e2e-scaling.png")
    fig.savefig(out["scaling_plot"], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out
