"""AWS calls per 1,000 readings at the cost model's configuration, counted on the embedded emulator.

    .venv/bin/python bench/calls.py [--devices 200] [--seconds 480] [--pack 25] [--batch-seconds 0]
                                    [--metrics-sink emf] [--model-devices 1000] [--seed 11]
                                    [--param Key=Value ...]   (template parameters, as deploy.sh takes them)

Deploys the stack on a fresh ministack, registers a simulated fleet, then runs the real processor handler
(real adapters, detector included) in this process against the emulator's DynamoDB and S3, with botocore
hooks on its clients (bench/e2e/calls.py: calls per API, and the WCU/RCU DynamoDB reports with
``ReturnConsumedCapacity``). The readings are ``--seconds`` of a 1 Hz fleet, packed ``--pack`` per Kinesis
record as the simulator's sink packs them (one pack group per record), on one shard, cut into batches of
``--batch-seconds`` of stream each (by send time, as the mapping gathers them): by default the batch the
cost model computes for ``--model-devices`` devices (the 6 MB payload closes it after ~21.6 s at
1,000 x 1 Hz, iotpipe/cost/sizing.py). Window writes per reading depend on the seconds of stream per batch
and the window, not on the fleet size, so a 200-device fleet with 21.6-s batches counts the window writes
of 1,000 devices five times faster. Calls made once per batch (S3 PutObject, the prefetch's BatchGetItem
calls, not its keys) are per batch: at 1,000 devices they are a fifth of the figures per 1,000 readings.

Prints one line per API and a last line of JSON (``per_1000_readings``, ``consumed``, the cost model's
own figures for the same configuration beside them).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.e2e.calls import CallCounter, point_processor_at  # noqa: E402
from bench.e2e.measure import aggregated_totals  # noqa: E402
from iotpipe.console import run_app  # noqa: E402
from iotpipe.cost.estimate import estimate  # noqa: E402
from iotpipe.cost.workload import TRUE_ANOMALY_SHARE, Workload  # noqa: E402
from iotpipe.settings import use_endpoint  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def packed_batches(
    produced: list[Any], pack: int, batch_s: float, shard_id: str
) -> list[list[dict[str, Any]]]:
    """Batches of Kinesis event records, each ``batch_s`` seconds of stream by send time. Within a batch,
    good readings are packed ``pack`` per record within a pack group as the simulator's sink packs them (a
    malformed record goes alone and closes its group's open pack; bench/e2e/shard_feed.py); sequence numbers
    rise over the shard."""
    from bench.e2e.shard_feed import SEQ_BASE, Packer, event_records

    by_batch: dict[int, list[Any]] = {}
    start = produced[0].send_ms if produced else 0
    for p in produced:
        by_batch.setdefault(int((p.send_ms - start) / (batch_s * 1000)), []).append(p)
    seq = SEQ_BASE
    batches: list[list[dict[str, Any]]] = []
    for _, members in sorted(by_batch.items()):
        packer = Packer(pack)
        records = [r for p in members for r in packer.add(p)] + packer.flush()
        batches.append(event_records(records, seq, shard_id))
        seq += len(records)
    return batches


def model_batch_seconds(devices: int, pack: int) -> float:
    """Seconds of one shard's stream per batch, as the cost model computes them for ``devices`` x 1 Hz."""
    return estimate(Workload(devices=devices, rate_hz=1.0, readings_per_record=pack)).batch_seconds


@app.command()
def calls(
    devices: Annotated[int, typer.Option(help="simulated devices (1 Hz each)")] = 200,
    seconds: Annotated[float, typer.Option(help="seconds of stream to process")] = 480.0,
    pack: Annotated[int, typer.Option(help="readings per Kinesis record (the simulator's SIM_PACK)")] = 25,
    batch_seconds: Annotated[float, typer.Option(
        help="seconds of stream per batch (0: the cost model's batch for --model-devices)")] = 0.0,
    model_devices: Annotated[int, typer.Option(help="fleet whose batch length the model gives")] = 1000,
    metrics_sink: Annotated[str, typer.Option(
        help="emf (AWS: metrics are log lines) or cloudwatch (the emulator's PutMetricData)")] = "emf",
    seed: int = 11,
    param: Annotated[list[str] | None, typer.Option(help="a template parameter Key=Value")] = None,
) -> int:
    from iotpipe.local.emulator import Emulator, free_port
    from iotpipe.ops.stack import deploy, stack_outputs

    t_batch = batch_seconds or model_batch_seconds(model_devices, pack)
    model = estimate(Workload(devices=model_devices, rate_hz=1.0, readings_per_record=pack))
    state = Path(tempfile.mkdtemp(prefix="iotpipe-calls-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    try:
        use_endpoint(emulator.client_env())
        stack = f"calls-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        deploy(stack, "embedded", quiet=True,
               extra_args=[arg for p in (param or []) for arg in ("--param", p)])
        out = stack_outputs(stack)
        print(f"stack {stack} deployed in {time.monotonic() - t0:.0f} s", file=sys.stderr)
        result = count(out, devices, seconds, pack, t_batch, metrics_sink, seed)
    finally:
        emulator.stop()
    result["template_params"] = param or []
    result["model"] = {
        "devices": model_devices, "batch_seconds": round(model.batch_seconds, 2),
        "ddb_writes_per_1000_readings": round(model.ddb_writes_per_reading * 1000, 2),
        "ddb_prefetch_rows_per_1000_readings": round(model.ddb_reads_per_reading * 1000, 2),
        "s3_puts_per_1000_readings": round(model.s3_puts_per_reading * 1000, 4),
        "usd_per_million_readings": round(model.per_million, 4),
    }
    for name, value in result["per_1000_readings"].items():
        print(f"  {name:<34} {value:>9}", file=sys.stderr)
    for name, value in result["consumed_per_1000_readings"].items():
        print(f"  consumed {name:<25} {value:>9}", file=sys.stderr)
    print(json.dumps(result, sort_keys=True))
    return 0


def count(out: dict[str, str], devices: int, seconds: float, pack: int, t_batch: float,
          metrics_sink: str, seed: int) -> dict[str, Any]:
    """Runs the handler over the batches with the counter on its clients; figures per 1,000 readings."""
    import boto3

    from functions.processor.handler import HandBack
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet, register_fleet
    from simulator.stream import generate_readings

    ddb = boto3.client("dynamodb")
    fleet = generate_fleet(devices, seed)
    register_fleet(fleet, out["DevicesTableName"], ddb)
    processor = point_processor_at(out, metrics_sink=metrics_sink)
    counter = CallCounter(out["AggregatesTableName"])
    for service in ("dynamodb", "s3", "sns", "cloudwatch"):
        counter.attach(processor.clients(service))
    # The model's workload: 1 % malformed, and only its true anomaly share injected (the detector's own
    # false alarms come on top, as in production; the simulator's default 1 % is a what-if).
    config = replace(SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed + 1, malformed_rate=0.01,
                                     anomaly_rate=TRUE_ANOMALY_SHARE, burst=True, pack=pack),
                     duration_s=seconds)
    # The stream starts on a minute boundary, so that runs cut their batches at the same phase of the
    # windows (a batch spanning a boundary writes two windows per device): before/after compare alike.
    start_ms = int((time.time() - seconds - 120) // 60 * 60_000)
    produced = list(generate_readings(config, fleet, start_ms=start_ms))
    batches = packed_batches(produced, pack, t_batch, "shardId-000000000000")
    counter.clear()
    handed_back = 0
    t0 = time.perf_counter()
    with _stdout_to_stderr():  # the handler's log and EMF lines; stdout keeps the one JSON line
        for records in batches:
            try:
                processor.invoke(records)
            except HandBack:
                handed_back += 1
    elapsed = time.perf_counter() - t0
    readings = len(produced)
    aggregated, writes, items, item_bytes = aggregated_totals(ddb, out["AggregatesTableName"])
    full_sizes = full_window_item_bytes(ddb, out["AggregatesTableName"])
    k = 1000 / readings
    return {
        "devices": devices, "seconds_of_stream": seconds, "pack": pack, "batch_seconds": round(t_batch, 2),
        "readings": readings, "kinesis_records": sum(len(b) for b in batches),
        "invocations": len(batches), "handed_back": handed_back, "metrics_sink": metrics_sink,
        "per_1000_readings": {name: round(n * k, 3) for name, n in sorted(counter.counts.items())},
        "consumed_per_1000_readings": {name: round(n * k, 3) for name, n in sorted(counter.consumed.items())},
        "aggregate_items": items, "aggregated_readings": aggregated, "successful_window_writes": writes,
        "mean_item_bytes": round(item_bytes / max(1, items), 1),
        # the steady state's item: a window the run covered whole (the first and last are partial)
        "full_window_items": len(full_sizes),
        "full_window_item_bytes": round(sum(full_sizes) / max(1, len(full_sizes)), 1),
        "in_process_readings_per_s": round(readings / elapsed, 1),
    }


def full_window_item_bytes(ddb: Any, table: str, min_count: int = 57) -> list[int]:
    """Billed bytes of each stored window holding at least ``min_count`` readings (a whole minute at 1 Hz
    less the 1 % malformed and a jittered reading or two)."""
    from bench.e2e.measure import ddb_size

    sizes: list[int] = []
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page.get("Items", []):
            if int(item["count"]["N"]) >= min_count:
                sizes.append(sum(len(name) + ddb_size(value) for name, value in item.items()))
        if "LastEvaluatedKey" not in page:
            return sizes
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@contextlib.contextmanager
def _stdout_to_stderr() -> Iterator[None]:
    """File descriptor 1 points at stderr meanwhile (loggers hold their own reference to sys.stdout)."""
    sys.stdout.flush()
    saved = os.dup(1)
    os.dup2(2, 1)
    try:
        yield
    finally:
        sys.stdout.flush()
        os.dup2(saved, 1)
        os.close(saved)


if __name__ == "__main__":
    raise SystemExit(run_app(app))
