"""How the cost moves with the fleet and the batching window: the latency/cost trade-off of
``BatchingWindowSeconds`` for one fleet, and USD per million readings across fleet sizes (modelled, and
measured where ``bench/shard_load.py`` counted that fleet's per-shard load), with its plot.

Latency here is AWS's, modelled: a reading waits in its shard until its batch closes (the batching
window, or sooner when the 6 MB payload or BatchSize fills first), Lambda polls each shard about once a
second, and the invocation runs for its duration. So it is at most ``batch seconds + 1 + duration`` and
half the batch on average. The emulators invoke as soon as records exist (local deploys use 1 s);
``bench/end_to_end.py`` measures their produce-to-queryable latency.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

from iotpipe.cost.estimate import Estimate, estimate
from iotpipe.cost.quotas import quota_plan
from iotpipe.cost.workload import Measured, Workload

WINDOWS_S = (1.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
FLEETS = (1_000, 10_000, 100_000, 1_000_000)
POLL_S = 1.0  # Lambda polls a shard about once a second


def latency_s(est: Estimate) -> dict[str, float]:
    """Modelled produce-to-queryable latency on AWS: mean and worst case, in seconds."""
    run_s = est.processor_ms_per_invocation / 1000
    return {"mean": round(est.batch_seconds / 2 + POLL_S / 2 + run_s, 1),
            "max": round(est.batch_seconds + POLL_S + run_s, 1)}


def window_tradeoff(w: Workload, windows: Sequence[float] = WINDOWS_S) -> list[dict[str, Any]]:
    """For each BatchingWindowSeconds: the cost (with the shard count chosen for it) and the latency."""
    rows = []
    for window in windows:
        est = estimate(replace(w, batching_window_s=window))
        rows.append({"batching_window_s": window, "shards": est.shards,
                     "batch_seconds": round(est.batch_seconds, 2), "batch_limited_by": est.batch_limit,
                     "ddb_writes_per_reading": round(est.ddb_writes_per_reading, 4),
                     "usd_per_million_readings": round(est.per_million, 4),
                     "latency_s": latency_s(est)})
    return rows


def fleet_sweep(w: Workload, fleets: Sequence[int] = FLEETS,
                measured_for: Callable[[int], Measured | None] | None = None) -> list[dict[str, Any]]:
    """USD per million readings at each fleet size (the workload's rate and settings), the plan's shards
    and quota increases, and the measured figure where ``measured_for(devices)`` has one."""
    rows = []
    for devices in fleets:
        est = estimate(replace(w, devices=devices))
        plan = quota_plan(est)
        row: dict[str, Any] = {
            "devices": devices, "shards": est.shards,
            "usd_per_million_readings": round(est.per_million, 4),
            "total_usd_per_month": round(est.total, 2),
            "ddb_writes_per_reading": round(est.ddb_writes_per_reading, 4),
            "batch_seconds": round(est.batch_seconds, 2),
            "latency_s": latency_s(est),
            "increases": plan["increases"],
        }
        measured = measured_for(devices) if measured_for else None
        if measured is not None:
            m_est = estimate(replace(w, devices=devices), measured=measured)
            row["measured_usd_per_million_readings"] = round(m_est.per_million, 4)
            row["measured_ddb_writes_per_reading"] = round(m_est.ddb_writes_per_reading, 4)
            row["measured_source"] = measured.source
        rows.append(row)
    return rows


def plot_sweep(rows: Sequence[dict[str, Any]], path: Path, rate_hz: float) -> Path:
    """USD per million readings against fleet size (log x): modelled line, measured points."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 4.2), dpi=120)
    xs = [r["devices"] for r in rows]
    ax.plot(xs, [r["usd_per_million_readings"] for r in rows], "o-", label="modelled (iotpipe cost)")
    measured = [(r["devices"], r["measured_usd_per_million_readings"]) for r in rows
                if "measured_usd_per_million_readings" in r]
    if measured:
        ax.plot(*zip(*measured, strict=True), "s", markersize=9, fillstyle="none",
                label="with per-shard counts measured (bench/shard_load.py)")
    for r in rows:
        ax.annotate(f"{r['shards']} shard{'s' if r['shards'] != 1 else ''}",
                    (r["devices"], r["usd_per_million_readings"]), textcoords="offset points",
                    xytext=(0, 8), ha="center", fontsize=8)
    ax.axhline(0.05, color="grey", linestyle="--", linewidth=1, label="target 0.05 USD/M")
    ax.set_xscale("log")
    ax.set_ylim(0, max(0.06, *(r["usd_per_million_readings"] for r in rows)) * 1.15)
    ax.set_xlabel(f"devices (each {rate_hz:g} Hz)")
    ax.set_ylabel("USD per million readings")
    ax.set_title("iotpipe on AWS: cost per reading against fleet size")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8, loc="lower left")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path)
    plt.close(fig)
    return path
