"""Benchmark: the whole pipeline end to end on the embedded emulator (ministack).

    .venv/bin/python bench/end_to_end.py [--devices 200] [--rate 2] [--duration 30] [--malformed-rate 0.02]
                                  [--burst-records 12000] [--samples 8] [--seed 7] [--shards 1,2,4]
                                  [--parallelization 1] [--calls-batch 0] [--pack 1] [--timeout 180]
    .venv/bin/python bench/end_to_end.py --cold-start-only

In one run, on one emulator process, per shard count (bench/e2e/point.py): capacity (the backlog drain
rate against a no-op function's), latency (produce -> queryable through the API for sample devices) and
conservation (produced = aggregated + quarantined per reason + duplicates, against the simulator's own
labels); then the AWS calls per 1,000 readings (bench/e2e/calls.py), the emulator tree's peak RSS, and
the cold start: each function's import time from its own unpacked package, and the packages' sizes.
``--cold-start-only`` measures just the cold start (seconds, no emulator).

Readable lines first; the last line is one JSON object (its ``cost_inputs`` feed ``iotpipe cost
--from-bench``). Plots go to out/e2e-latency.png and out/e2e-scaling.png when matplotlib exists.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e.options import Options, parse_shards  # noqa: E402
from bench.e2e.run import run, run_cold_start_only  # noqa: E402
from iotpipe.console import run_app  # noqa: E402

D = Options()
app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


@app.command()
def e2e(
    devices: int = D.devices,
    rate: Annotated[float, typer.Option(help="Hz per device in the paced phase")] = D.rate,
    duration: Annotated[float, typer.Option(help="seconds of paced sending")] = D.duration,
    burst_records: Annotated[int, typer.Option(help="backlog for the capacity phase")] = D.burst_records,
    malformed_rate: float = D.malformed_rate,
    samples: Annotated[int, typer.Option(help="devices whose readings are timed via the API")] = D.samples,
    seed: int = D.seed,
    shards: Annotated[str, typer.Option(
        help="comma-separated shard counts, one point of the scaling curve each (e.g. 1,2,4,8)")] = "1",
    parallelization: Annotated[int, typer.Option(
        help="ParallelizationFactor of every point's mapping (both emulators run 1 regardless)")
    ] = D.parallelization,
    calls_batch: Annotated[int, typer.Option(
        help="Kinesis records per in-process batch when counting AWS calls (0: the first point's mean "
             "records per invocation)")] = D.calls_batch,
    pack: Annotated[int, typer.Option(
        help="readings per Kinesis record for both phases and the no-op (the simulator's default is 25; "
             "1 measures the per-record path, the pipeline's worst case)")] = D.pack,
    timeout: Annotated[float, typer.Option(help="max seconds to wait for draining")] = D.timeout,
    cold_start_only: Annotated[bool, typer.Option(
        "--cold-start-only",
        help="only the packages' sizes and import times (builds them first; no emulator)")] = False,
) -> int:
    if cold_start_only:
        return run_cold_start_only()
    return run(Options(devices=devices, rate=rate, duration=duration, burst_records=burst_records,
                       malformed_rate=malformed_rate, samples=samples, seed=seed, shards=parse_shards(shards),
                       parallelization=parallelization, calls_batch=calls_batch, pack=pack, timeout=timeout))


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/end_to_end.py")


if __name__ == "__main__":
    raise SystemExit(main())
