"""The benchmark's readable lines (stdout, before the one JSON line that ends every run)."""

from __future__ import annotations

from typing import Any


def say(msg: str) -> None:
    print(msg, flush=True)


def say_curve(points: list[dict[str, Any]]) -> None:
    say("curve:    shards | records/s | no-op/s | ratio | p50 s | p99 s | conserved")
    for pt in points:
        say(f"          {pt['shards']:6d} | {pt['sustained_records_per_s']:9,.0f} | "
            f"{pt['noop_records_per_s']:7,.0f} | {pt['sustained_to_noop_ratio'] or 0:5.2f} | "
            f"{pt['latency_p50_s'] or float('nan'):5.2f} | {pt['latency_p99_s'] or float('nan'):5.2f} | "
            f"{pt['conserved']}")


# Kept per point for the plots and the call counter, left out of the JSON line.
HIDDEN_POINT_KEYS = ("outputs", "backlog", "latencies")


def curve_of(points: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in pt.items() if k not in HIDDEN_POINT_KEYS} for pt in points]
