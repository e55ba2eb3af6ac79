"""Simulator benchmark: generation throughput on one core, and pacing accuracy at 10,000 devices.

1. generate + serialise: readings/s through ``generate_readings`` into the null sink (numpy per tick,
   orjson per record), 10,000 devices, 1 % anomalies, 1 % malformed;
2. paced loop: 10,000 devices x 1 Hz for a few seconds on the real clock with the null sink; the
   achieved / target rate ratio (1.0 = exact).

Last line: one JSON object with the figures.
"""

from __future__ import annotations

import sys
import time
from typing import Annotated

import orjson
import typer

from iotpipe.console import run_app
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.runner import run
from simulator.sinks import NullSink
from simulator.stream import generate_readings

DEVICES = 10_000
app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def bench_generate(fleet: list, count: int) -> tuple[float, float]:
    config = SimulatorConfig(
        devices=DEVICES, rate_hz=1.0, anomaly_rate=0.01, malformed_rate=0.01, count=count, seed=1
    )
    sink = NullSink()
    sink.setup()
    add = sink.add
    started = time.perf_counter()
    for produced in generate_readings(config, fleet):
        add(produced)
    elapsed = time.perf_counter() - started
    return sink.stats.sent / elapsed, sink.stats.bytes / sink.stats.sent


def bench_paced(fleet: list, seconds: float) -> dict:
    config = SimulatorConfig(devices=DEVICES, rate_hz=1.0, duration_s=seconds, anomaly_rate=0.01)
    stats = run(config, NullSink(), fleet=fleet)
    return stats.as_dict() | {"rate_ratio": stats.rate_ratio}


@app.command()
def simulator_bench(
    count: Annotated[int, typer.Option(envvar="BENCH_SIM_COUNT", help="readings generated")] = 1_000_000,
    seconds: Annotated[float, typer.Option(envvar="BENCH_SIM_SECONDS", help="paced loop seconds")] = 5.0,
) -> int:
    started = time.perf_counter()
    fleet = generate_fleet(DEVICES, 1)
    fleet_s = time.perf_counter() - started
    print(f"fleet: {DEVICES:,} devices generated in {fleet_s:.2f} s")
    readings_per_s, mean_bytes = bench_generate(fleet, count)
    target = 100_000
    print(
        f"generate+serialise: {readings_per_s:,.0f} readings/s on one core "
        f"({count:,} readings, mean {mean_bytes:.0f} B; target >= {target:,}: "
        f"{'ok' if readings_per_s >= target else 'BELOW TARGET'})"
    )
    paced = bench_paced(fleet, seconds)
    print(
        f"paced loop: {DEVICES:,} devices x 1 Hz for {seconds:g} s -> produced {paced['produced']:,}, "
        f"achieved {paced['achieved_rate_per_s']:,.1f}/s of {paced['target_rate_per_s']:,.0f}/s, "
        f"ratio {paced['rate_ratio']:.4f}, max lag {paced['max_lag_s']:.3f} s"
        + (" (could not keep up)" if paced["cannot_keep_up"] else "")
    )
    result = {
        "readings_per_s": round(readings_per_s, 1),
        "mean_record_bytes": round(mean_bytes, 1),
        "generate_target_ratio": round(readings_per_s / target, 3),
        "rate_ratio_10k_devices": round(paced["rate_ratio"], 5),
        "paced_achieved_rate_per_s": paced["achieved_rate_per_s"],
        "paced_max_lag_s": paced["max_lag_s"],
        "paced_duration_s": seconds,
        "fleet_generation_s": round(fleet_s, 3),
    }
    sys.stdout.write(orjson.dumps(result).decode() + "\n")
    return 0


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/simulator_throughput.py")


if __name__ == "__main__":
    raise SystemExit(main())
