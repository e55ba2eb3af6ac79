"""Where an invocation's time goes on the embedded emulator, per processor stage and per AWS API.

    .venv/bin/python bench/latency_parts.py [--devices 200] [--rate 2] [--batches 100,200,400,800]
                                            [--repeat 4] [--pack 1] [--seed 13]

Produce -> queryable on ministack is (its one poller thread runs a shard's batches one after another and
wakes as soon as records arrive): the wait for the invocation in progress + the reading's own invocation
+ the API read. This measures the middle term, the one the pipeline owns: the real processor handler runs
in this process against a freshly deployed stack on a fresh ministack (as bench/calls.py), over batches of
each size in ``--batches`` Kinesis records of the e2e bench's load (200 devices x 2 Hz, one reading per
record by default), ``--repeat`` times each, with

- the stages of ``ingestion_processor._process_batch`` (prepare, prefetch, detect, write windows,
  archive, account, metrics) wrapped in timers here (the processor is not modified), and
- botocore ``before-call`` / ``after-call`` hooks timing every AWS call per API (wall time summed over
  the writer threads: more than the stage's wall time when calls overlap).

Prints a table per batch size (median over the repeats) and a last line of JSON. The metrics go through
PutMetricData as on the emulator (``METRICS_SINK=auto``). Timings on a shared machine are noisy: compare
the rows of one run, not runs.
"""

from __future__ import annotations

import contextlib
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calls import _stdout_to_stderr  # noqa: E402
from bench.e2e.calls import point_processor_at  # noqa: E402
from iotpipe.console import run_app  # noqa: E402
from iotpipe.settings import use_endpoint  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])

# ingestion_processor's module-level names of its stages (looked up at call time, so wrappable)
STAGES = ("prepare_batch", "prefetch_windows", "detect_anomalies", "write_windows", "archive_batch",
          "account", "emit_metrics")


class Timers:
    """Milliseconds per stage and per AWS API within the current batch (thread-safe)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._lock = threading.Lock()
        self._local = threading.local()

    def reset(self) -> None:
        with self._lock:
            self.ms.clear()
            self.calls.clear()

    def add(self, name: str, ms: float) -> None:
        with self._lock:
            self.ms[name] += ms
            self.calls[name] += 1

    def wrap(self, name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
        def timed(*args: Any, **kwargs: Any) -> Any:
            t0 = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.add(f"stage.{name}", (time.perf_counter() - t0) * 1000)
        return timed

    def before_call(self, model: Any, **_: Any) -> None:
        self._local.t0 = time.perf_counter()

    def after_call(self, model: Any, **_: Any) -> None:
        t0 = getattr(self._local, "t0", None)
        if t0 is not None:
            name = f"api.{model.service_model.service_name}.{model.name}"
            self.add(name, (time.perf_counter() - t0) * 1000)


@app.command()
def latency_parts(
    devices: int = 200,
    rate: float = 2.0,
    batches: Annotated[str, typer.Option(help="Kinesis records per batch, comma-separated")] = (
        "100,200,400,800"),
    repeat: int = 4,
    pack: Annotated[int, typer.Option(help="readings per Kinesis record (the e2e bench's default: 1)")] = 1,
    seed: int = 13,
) -> int:
    from iotpipe.local.emulator import Emulator, free_port
    from iotpipe.ops.stack import deploy, stack_outputs

    sizes = [int(n) for n in batches.split(",") if n.strip()]
    state = Path(tempfile.mkdtemp(prefix="iotpipe-latency-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    try:
        use_endpoint(emulator.client_env())
        stack = f"lat-{uuid.uuid4().hex[:6]}"
        deploy(stack, "embedded", quiet=True)
        out = stack_outputs(stack)
        rows = measure(out, devices, rate, sizes, repeat, pack, seed)
    finally:
        emulator.stop()
    for row in rows:
        parts = ", ".join(f"{k} {v:,.0f}" for k, v in row["median_ms"].items() if k != "handler")
        print(f"{row['batch_records']:>5} records: handler {row['median_ms']['handler']:,.0f} ms = {parts}",
              file=sys.stderr)
    print(json.dumps({"devices": devices, "rate_hz": rate, "pack": pack, "rows": rows}, sort_keys=True))
    return 0


def measure(out: dict[str, str], devices: int, rate: float, sizes: list[int], repeat: int, pack: int,
            seed: int) -> list[dict[str, Any]]:
    import boto3

    from bench.calls import packed_batches
    from functions.processor import ingestion_processor
    from functions.processor.handler import HandBack
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet, register_fleet
    from simulator.stream import generate_readings

    fleet = generate_fleet(devices, seed)
    register_fleet(fleet, out["DevicesTableName"], boto3.client("dynamodb"))
    processor = point_processor_at(out)  # METRICS_SINK auto: PutMetricData, as the emulator's functions run
    timers = Timers()
    for service in ("dynamodb", "s3", "sns", "cloudwatch"):
        events = processor.clients(service).meta.events
        events.register("before-call.*.*", timers.before_call)
        events.register("after-call.*.*", timers.after_call)
    for name in STAGES:
        setattr(ingestion_processor, name, timers.wrap(name, getattr(ingestion_processor, name)))
    need = sum(sizes) * repeat * pack + devices * 4
    config = SimulatorConfig(devices=devices, rate_hz=rate, seed=seed + 1, malformed_rate=0.02, burst=True,
                             count=need, pack=pack)
    produced = list(generate_readings(config, fleet, start_ms=int((time.time() - 600) * 1000)))
    # one "batch" of the whole stream, then cut by record count: consecutive sequence numbers throughout
    (records,) = packed_batches(produced, pack, 10**9, "shardId-000000000000")
    rows = []
    i = 0
    with _stdout_to_stderr():
        processor.invoke(records[i : i + 50])  # warm: imports, clients
        i += 50
        for size in sizes:
            samples: list[dict[str, float]] = []
            for _ in range(repeat):
                timers.reset()
                t0 = time.perf_counter()
                with contextlib.suppress(HandBack):
                    processor.invoke(records[i : i + size])
                handler_ms = (time.perf_counter() - t0) * 1000
                i += size
                samples.append({"handler": handler_ms, **timers.ms})
            names = sorted({k for s in samples for k in s})
            rows.append({
                "batch_records": size,
                "median_ms": {k: round(statistics.median(s.get(k, 0.0) for s in samples), 1) for k in
                              ["handler", *[n for n in names if n != "handler"]]},
                "calls_per_batch": {k: v for k, v in sorted(timers.calls.items()) if k.startswith("api.")},
            })
    return rows


if __name__ == "__main__":
    raise SystemExit(run_app(app))
