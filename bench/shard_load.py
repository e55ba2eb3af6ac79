"""One shard of a large fleet at its true per-shard load, counted on the embedded emulator.

    .venv/bin/python bench/shard_load.py --fleets 1000,10000,100000,1000000 [--minutes 4] [--compress]
                                         [--flush-ms 0] [--workload Field=Value ...] [--param Key=Value ...]
                                         [--no-reuse] [--seed 11] [--out FILE]
    make bench-shards

Shards are independent on AWS (one mapping batch per shard at a time, each device on one shard), so the
calls and capacity per reading of a 1,000,000-device fleet are those of one of its shards. For each fleet
size N the cost model's plan is read from the model itself (``iotpipe.cost.estimate``: shards, readings
per record, BatchSize, batching window; ``--workload`` sets any other ``Workload`` field), and one shard
of it is replayed at its true load: N / shards real devices registered in the devices table, 1 Hz of
event time each for ``--minutes``, packed as the simulator's sink packs (bench/e2e/shard_feed.py; gzip per
record with ``--compress``), cut into invocations as the event source mapping cuts them (the first of
BatchSize records, the 6 MB payload counting base64 and the event envelope, the batching window of stream
time). The real processor handler (real adapters, detector included) runs in this process against the
emulator's DynamoDB and S3 with the call counter on its clients (bench/e2e/calls.py).

One emulator for the whole sweep, a fresh stack (own tables and bucket) per fleet size: no state carries
over between points, and the emulator starts once (its start and the first deploy are most of a small
point's time). A fleet whose per-shard plan equals an earlier one's (same devices per shard, packing,
batch limits) reuses that measurement (``measured_as`` says so; ``--no-reuse`` measures it again).

Counts per point: calls per API and consumed WCU/RCU per 1,000 readings, window writes per reading,
invocations per 1,000 readings and what closed each batch, processor milliseconds per invocation (wall
time in this process on this machine, emulator calls included: not Lambda's), S3 PUTs and bytes per
reading, the bytes of a whole window's item, and conservation (produced = aggregated + quarantined +
duplicates, and each as the simulator's labels expect): a point that does not conserve fails the run.

Prints progress and a table on stderr, then one JSON line (``points``: one per fleet size), also saved
to bench/results/shard-load-<date>.json (``--out``). ``iotpipe cost --devices N --rate 1
--from-shard-bench FILE`` prices fleet N with its point's counts.
"""

from __future__ import annotations

import json
import math
import sys
import tempfile
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, fields, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.calls import _stdout_to_stderr, full_window_item_bytes  # noqa: E402
from bench.e2e.calls import CallCounter, point_processor_at  # noqa: E402
from bench.e2e.measure import aggregated_totals, archive_totals, conservation, expected_from  # noqa: E402
from bench.e2e.shard_feed import CLOSED_BY, SEQ_BASE, cut_batches, event_records, packed_records  # noqa: E402
from iotpipe.console import run_app  # noqa: E402
from iotpipe.cost.estimate import estimate  # noqa: E402
from iotpipe.cost.sizing import kinesis_record_bytes  # noqa: E402
from iotpipe.cost.workload import TRUE_ANOMALY_SHARE, Workload  # noqa: E402
from iotpipe.settings import use_endpoint  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])
SHARD_ID = "shardId-000000000000"
HAND_BACK_RETRIES = 3  # the mapping retries a failed batch; this many in a row fails the run


@dataclass(frozen=True)
class Plan:
    """What the cost model plans for a fleet, and the one shard of it that is replayed."""

    fleet: int
    shards: int
    devices_per_shard: int
    readings_per_record: int
    record_bytes: float  # the model's bytes of one Kinesis record
    batch_size: int
    batching_window_s: float
    batch_records: float  # readings per batch, the model's
    batch_seconds: float
    batch_limit: str  # what closes a batch in the model: BatchSize, payload or window
    compression: str  # the model's record compression: gzip or none
    usd_per_million: float
    ddb_writes_per_reading: float

    def replay_key(self) -> tuple[Any, ...]:
        """What the replayed shard depends on: equal keys replay the same workload."""
        return (self.devices_per_shard, self.readings_per_record, self.batch_size, self.batching_window_s)


def workload_overrides(pairs: list[str]) -> dict[str, Any]:
    """``Field=Value`` pairs as Workload fields, each value of its default's type."""
    defaults = Workload(devices=0, rate_hz=0)
    types = {f.name: type(getattr(defaults, f.name)) for f in fields(Workload)}
    out: dict[str, Any] = {}
    for pair in pairs:
        name, sep, value = pair.partition("=")
        if not sep or name not in types or name in ("devices", "rate_hz"):
            raise typer.BadParameter(f"--workload takes Field=Value of a Workload field, not {pair!r}")
        kind = types[name]
        if kind is bool:
            out[name] = value.lower() in ("1", "true", "yes")
        elif kind is type(None):  # an optional count (shards): empty keeps the model's choice
            out[name] = int(value) if value else None
        else:
            out[name] = kind(value)
    return out


def plan_for(fleet: int, overrides: dict[str, Any]) -> Plan:
    """The cost model's plan for ``fleet`` devices at 1 Hz (read from the model, not recomputed)."""
    w = replace(Workload(devices=fleet, rate_hz=1.0), **overrides)
    est = estimate(w)
    n = max(1, w.readings_per_record)
    return Plan(fleet=fleet, shards=est.shards, devices_per_shard=max(1, round(fleet / est.shards)),
                readings_per_record=n, record_bytes=kinesis_record_bytes(w.record_bytes, n, w.compression),
                batch_size=w.batch_size, batching_window_s=w.batching_window_s,
                batch_records=est.batch_records, batch_seconds=est.batch_seconds, batch_limit=est.batch_limit,
                compression=w.compression, usd_per_million=est.per_million,
                ddb_writes_per_reading=est.ddb_writes_per_reading)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


@app.command()
def shard_load(
    fleets: Annotated[str, typer.Option(help="fleet sizes, comma-separated")] = "1000,10000,100000,1000000",
    minutes: Annotated[float, typer.Option(help="minutes of event time per point")] = 4.0,
    compress: Annotated[bool | None, typer.Option(
        "--compress/--no-compress",
        help="gzip each record of good readings (mtime 0); default: as the model's plan (its compression)")
    ] = None,
    flush_ms: Annotated[int, typer.Option(
        help="also close open packs every this many ms of send time (the simulator's runner: 250); "
             "0: packs close when full, as the cost model assumes")] = 0,
    workload: Annotated[list[str] | None, typer.Option(
        help="a cost-model Workload field, Field=Value")] = None,
    param: Annotated[list[str] | None, typer.Option(help="a template parameter Key=Value")] = None,
    reuse: Annotated[bool, typer.Option(help="reuse a point whose per-shard plan was measured")] = True,
    seed: int = 11,
    out: Annotated[Path | None, typer.Option(help="default: bench/results/shard-load-<date>.json")] = None,
) -> int:
    from iotpipe.local.emulator import Emulator, free_port

    sizes = [int(s) for s in fleets.split(",") if s.strip()]
    overrides = workload_overrides(workload or [])
    plans = [plan_for(n, overrides) for n in sizes]
    if compress is None:
        compress = all(p.compression == "gzip" for p in plans)
    for p in plans:
        say(f"plan {p.fleet:>9,} devices: {p.shards} shards, {p.devices_per_shard} devices/shard, "
            f"{p.readings_per_record} readings/record, batch {p.batch_records:,.0f} readings "
            f"({p.batch_seconds:.1f} s, closed by {p.batch_limit})")
    t_start = time.monotonic()
    points: list[dict[str, Any]] = []
    measured: dict[tuple[Any, ...], dict[str, Any]] = {}
    state = Path(tempfile.mkdtemp(prefix="iotpipe-shards-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    try:
        use_endpoint(emulator.client_env())
        for plan in plans:
            key = (*plan.replay_key(), compress, flush_ms, minutes)
            if reuse and key in measured:
                point = {**measured[key], "measured_as": measured[key]["fleet_devices"]}
                say(f"fleet {plan.fleet:,}: the same per-shard plan as {point['measured_as']:,}: reused")
            else:
                point = measure(plan, minutes, compress, flush_ms, seed, param or [])
                measured[key] = point
            points.append({**point, "fleet_devices": plan.fleet, "plan": plan_json(plan)})
    finally:
        emulator.stop()
    wall = round(time.monotonic() - t_start, 1)
    print_table(points)
    doc = {"bench": "shard_load", "date": datetime.now(UTC).strftime("%Y-%m-%d"), "minutes": minutes,
           "compress": compress, "flush_ms": flush_ms, "workload": overrides, "template_params": param or [],
           "seed": seed, "wall_s": wall,
           "note": "one shard per fleet at its per-shard load, the real processor handler in-process against "
                   "the embedded emulator; processor_ms is this machine's wall time, not Lambda's; Kinesis "
                   "itself is not in the loop (records are cut into batches as the mapping would)",
           "points": points}
    path = out or ROOT / "bench" / "results" / f"shard-load-{doc['date']}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    line = json.dumps(doc, sort_keys=True)
    path.write_text(line + "\n")
    say(f"saved {path} ({wall:.0f} s)")
    print(line)
    failed = [p["fleet_devices"] for p in points if not p["conserved"]]
    if failed:
        say(f"CONSERVATION FAILED for fleets {failed}: see produced/aggregated/quarantined in the JSON")
        return 1
    return 0


def plan_json(p: Plan) -> dict[str, Any]:
    return {"shards": p.shards, "devices_per_shard": p.devices_per_shard,
            "readings_per_record": p.readings_per_record, "record_bytes": round(p.record_bytes, 1),
            "batch_size": p.batch_size, "batching_window_s": p.batching_window_s,
            "batch_records": round(p.batch_records, 1), "batch_seconds": round(p.batch_seconds, 3),
            "batch_limit": p.batch_limit, "usd_per_million_readings": round(p.usd_per_million, 4),
            "ddb_writes_per_reading": round(p.ddb_writes_per_reading, 4)}


def measure(plan: Plan, minutes: float, compress: bool, flush_ms: int, seed: int,
            params: list[str]) -> dict[str, Any]:
    """One point: a fresh stack, the shard's fleet registered, the stream replayed through the handler."""
    import boto3

    from functions.processor.handler import HandBack
    from iotpipe.ops.stack import deploy, stack_outputs
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet, register_fleet
    from simulator.malformed import expected_outcome
    from simulator.stream import Produced, generate_readings

    t0 = time.monotonic()
    stack = f"shard-{plan.fleet}-{uuid.uuid4().hex[:4]}"
    deploy(stack, "embedded", quiet=True, extra_args=[arg for p in params for arg in ("--param", p)])
    out = stack_outputs(stack)
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
    fleet = generate_fleet(plan.devices_per_shard, seed)
    register_fleet(fleet, out["DevicesTableName"], ddb)
    say(f"fleet {plan.fleet:,}: stack {stack} deployed, {len(fleet)} devices registered "
        f"in {time.monotonic() - t0:.0f} s")
    processor = point_processor_at(out, metrics_sink="emf")
    counter = CallCounter(out["AggregatesTableName"])
    for service in ("dynamodb", "s3", "sns", "cloudwatch"):
        counter.attach(processor.clients(service))
    seconds = minutes * 60
    # The model's workload: 1 % malformed and only its true anomaly share injected (the detector's false
    # alarms come on top, as in production). Event time starts on a minute boundary, so every run cuts its
    # batches at the same phase of the windows.
    config = replace(SimulatorConfig(devices=len(fleet), rate_hz=1.0, seed=seed + 1, malformed_rate=0.01,
                                     anomaly_rate=TRUE_ANOMALY_SHARE, burst=True,
                                     pack=plan.readings_per_record),
                     duration_s=seconds)
    start_ms = int((time.time() - seconds - 120) // 60 * 60_000)
    outcomes: Counter[str] = Counter()

    def tallied() -> Iterator[Produced]:
        for p in generate_readings(config, fleet, start_ms=start_ms):
            outcomes[expected_outcome(p.category, p.kind)] += 1
            yield p

    closed_by: Counter[str] = Counter()
    durations: list[float] = []
    kinesis_records = kinesis_bytes = handed_back = 0
    batch_seconds: list[float] = []
    seq = SEQ_BASE
    counter.clear()  # the registration above is not the processor's
    t_run = last_say = time.monotonic()
    with _stdout_to_stderr():  # the handler's log lines; stdout keeps the one JSON line
        records = packed_records(tallied(), plan.readings_per_record, compress=compress, flush_ms=flush_ms)
        for batch, why in cut_batches(records, plan.batch_size, plan.batching_window_s):
            closed_by[why] += 1
            kinesis_records += len(batch)
            kinesis_bytes += sum(len(r.data) for r in batch)
            batch_seconds.append((batch[-1].sent_ms - batch[0].sent_ms) / 1000)
            event = event_records(batch, seq, SHARD_ID)
            seq += len(batch)
            for attempt in range(HAND_BACK_RETRIES + 1):
                t = time.perf_counter()
                try:
                    processor.invoke(event)
                    break
                except HandBack:  # redelivered whole, as the mapping retries a failed invocation
                    handed_back += 1
                    if attempt == HAND_BACK_RETRIES:
                        raise
                finally:
                    durations.append((time.perf_counter() - t) * 1000)
            if time.monotonic() - last_say >= 15:
                last_say = time.monotonic()
                done = (batch[-1].sent_ms - start_ms) / 1000
                say(f"fleet {plan.fleet:,}: {done:.0f} of {seconds:.0f} s of stream, "
                    f"{sum(outcomes.values()):,} readings, {len(durations)} invocations, "
                    f"{time.monotonic() - t_run:.0f} s")
    run_s = time.monotonic() - t_run
    readings = sum(outcomes.values())
    aggregated, writes, items, _ = aggregated_totals(ddb, out["AggregatesTableName"])
    arch = archive_totals(s3, out["ArchiveBucketName"])
    conserved, checks = conservation(aggregated, arch, readings, expected_from(outcomes))
    quarantined = sum(arch["reasons"].values())
    say(f"fleet {plan.fleet:,}: {readings:,} readings in {run_s:.0f} s; produced {readings:,} = aggregated "
        f"{aggregated:,} + quarantined {quarantined:,} + duplicates {arch['duplicate_lines']:,} -> "
        f"{'conserved' if conserved else 'NOT CONSERVED ' + str(checks)}")
    full = full_window_item_bytes(ddb, out["AggregatesTableName"])
    k = 1000 / readings
    per_k = {name: round(n * k, 4) for name, n in sorted(counter.counts.items())}
    consumed = {name: round(n * k, 4) for name, n in sorted(counter.consumed.items())}
    wcu = sum(n for name, n in counter.consumed.items() if name.split(".")[0] in _WRITE_OPS)
    rcu: float = sum(n for name, n in counter.consumed.items() if name.split(".")[0] not in _WRITE_OPS)
    rcu_source = "reported"
    if not rcu:
        # ministack reports no capacity on BatchGetItem: the read units from the keys read, as DynamoDB
        # bills them: the prefetch is strongly consistent (1 RCU per 4 KB of each aggregate item), the
        # device registry eventually consistent (0.5 RCU per item under 4 KB)
        item_units = math.ceil(max(full or [1]) / 4096)
        rcu = (counter.counts["dynamodb.BatchGetItem.aggregates.keys"] * item_units
               + counter.counts["dynamodb.BatchGetItem.devices.keys"] * 0.5
               + counter.counts["dynamodb.GetItem.aggregates"] * item_units)
        rcu_source = "keys read (the emulator reports no read capacity)"
    invocations = len(batch_seconds)
    durations_sorted = sorted(durations)
    return {
        "fleet_devices": plan.fleet, "devices_per_shard": len(fleet), "stack": stack, "minutes": minutes,
        "compress": compress, "flush_ms": flush_ms, "readings": readings,
        "kinesis_records": kinesis_records,
        "readings_per_record": round(readings / max(1, kinesis_records), 2),
        "kinesis_bytes_per_reading": round(kinesis_bytes / readings, 2),
        "invocations": invocations, "handed_back": handed_back,
        "batches_closed_by": {why: closed_by.get(why, 0) for why in CLOSED_BY},
        "mean_batch_readings": round(readings / invocations, 1),
        "mean_batch_seconds": round(sum(batch_seconds) / invocations, 3),
        "invocations_per_1000_readings": round(invocations * k, 4),
        "per_1000_readings": per_k,
        "consumed_per_1000_readings": consumed,
        "wcu_per_1000_readings": round(wcu * k, 4), "rcu_per_1000_readings": round(rcu * k, 4),
        "rcu_source": rcu_source,
        "window_writes_per_reading": round(counter.counts["dynamodb.PutItem.aggregates"] / readings, 5),
        "successful_window_writes": writes, "aggregate_items": items,
        "s3_puts_per_reading": round(counter.counts["s3.PutObject"] / readings, 6),
        "s3_bytes_per_reading": round(counter.body_bytes["s3.PutObject"] / readings, 2),
        "full_window_items": len(full),
        "full_window_item_bytes": round(sum(full) / max(1, len(full)), 1),
        "processor_ms_per_invocation": {
            "mean": round(sum(durations) / len(durations), 1),
            "p50": round(durations_sorted[len(durations_sorted) // 2], 1),
            "max": round(durations_sorted[-1], 1),
            "where": "this machine, in-process wall time (emulator calls included): not Lambda's"},
        "aggregated": aggregated, "quarantined": dict(arch["reasons"]),
        "duplicates": arch["duplicate_lines"], "conserved": conserved,
        "in_process_readings_per_s": round(readings / run_s, 1),
        "point_wall_s": round(time.monotonic() - t0, 1),
    }


_WRITE_OPS = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})


def print_table(points: list[dict[str, Any]]) -> None:
    say(f"{'fleet':>9} {'shards':>6} {'dev/shard':>9} {'readings':>9} {'inv/1k':>7} {'batch s':>7} "
        f"{'closed by':>10} {'writes/rd':>9} {'WCU/1k':>7} {'RCU/1k':>7} {'S3 PUT/1k':>9} {'S3 B/rd':>7} "
        f"{'item B':>6} {'ms/inv*':>7} conserved")
    for p in points:
        closed = max(p["batches_closed_by"], key=lambda k: p["batches_closed_by"][k])
        say(f"{p['fleet_devices']:>9,} {p['plan']['shards']:>6} {p['devices_per_shard']:>9} "
            f"{p['readings']:>9,} "
            f"{p['invocations_per_1000_readings']:>7.3f} {p['mean_batch_seconds']:>7.2f} {closed:>10} "
            f"{p['window_writes_per_reading']:>9.4f} {p['wcu_per_1000_readings']:>7.1f} "
            f"{p['rcu_per_1000_readings']:>7.1f} {p['s3_puts_per_reading'] * 1000:>9.3f} "
            f"{p['s3_bytes_per_reading']:>7.1f} {p['full_window_item_bytes']:>6.0f} "
            f"{p['processor_ms_per_invocation']['mean']:>7.0f} {p['conserved']}"
            + (f" (measured as {p['measured_as']:,})" if p.get("measured_as") else ""))
    say("* processor ms per invocation: wall time in this process on this machine (emulator included), "
        "not Lambda's")


if __name__ == "__main__":
    raise SystemExit(run_app(app))
