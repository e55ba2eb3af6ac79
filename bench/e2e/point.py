"""One point of the scaling curve: a stack with N shards; capacity, latency and conservation on it.

1. capacity: the same backlog of simulator records (event times a few minutes old) is put on the
   pipeline's stream and on a second stream whose event source mapping invokes a no-op function; the
   drain rates give the sustained rate (processed through to DynamoDB) and its ratio to the emulator's
   no-op rate;
2. latency: N devices x R Hz paced in real time for the duration; for a few sample devices every valid
   reading's send time is recorded and the query API is polled until the window's count includes it;
3. conservation over both phases (``measure.conservation``).
"""

from __future__ import annotations

import statistics
import time
import uuid
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import boto3

from bench.e2e.load import generate, put_all, send_paced, unthrottled_sink
from bench.e2e.measure import (
    LatencyProbe,
    aggregated_totals,
    archive_totals,
    conservation,
    expected_of,
    pct,
    wait_until,
)
from bench.e2e.noop import create_noop, noop_progress
from bench.e2e.options import Options
from bench.e2e.report import say
from iotpipe.local.emulator import Emulator
from iotpipe.ops.stack import deploy, stack_outputs
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet, register_fleet
from simulator.sinks import KinesisSink
from simulator.stream import Produced


@dataclass
class Capacity:
    backlog: list[Produced]
    sink: KinesisSink  # the pipeline's stream, reused by the paced phase
    pipe_rate: float  # records/s drained through to DynamoDB
    noop_rate: float  # readings/s the no-op mapping drained


@dataclass
class Latency:
    paced: list[Produced]
    sent_s: float
    latencies: list[float]
    never_seen: int
    tail_sent_s: list[float]  # when (s into the paced phase) the slowest 1 % of samples were sent
    poll_round_s: float  # median seconds between two polls of one device (the figures' resolution)


def run_point(opts: Options, emulator: Emulator, state: Path, shards: int, build: bool) -> dict[str, Any]:
    """One point of the curve: a stack with ``shards`` shards; capacity, latency and conservation."""
    stack = f"bench-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    # Shards and parallelism are template parameters; the packages are built once, for the first point.
    deploy(stack, "embedded", quiet=True,
           extra_args=["--param", f"ShardCount={shards}",
                       "--param", f"ParallelizationFactor={opts.parallelization}",
                       *([] if build else ["--no-build"])])
    out = stack_outputs(stack)
    say(f"--- {shards} shard(s): stack {stack} deployed in {time.monotonic() - t0:.1f} s")
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")

    fleet = generate_fleet(opts.devices, opts.seed)
    register_fleet(fleet, out["DevicesTableName"], ddb)
    noop_stream = f"{stack}-noop"
    count_file = state / f"noop-{shards}.counts"
    create_noop(noop_stream, count_file, batch_size=500, shards=shards)
    say(f"registered {len(fleet)} devices; no-op function + mapping on stream {noop_stream}")

    base = SimulatorConfig(devices=opts.devices, rate_hz=opts.rate, seed=opts.seed,
                           malformed_rate=opts.malformed_rate, burst=True)
    cap = capacity_phase(opts, emulator, ddb, out, fleet, base, noop_stream, count_file)
    lat = latency_phase(opts, ddb, out, fleet, base, cap)

    # ---- 3. conservation
    time.sleep(2)  # let the last archive writes land
    agg_total, writes, items, item_bytes = aggregated_totals(ddb, out["AggregatesTableName"])
    arch = archive_totals(s3, out["ArchiveBucketName"])
    produced = len(cap.backlog) + len(lat.paced)
    quarantined = dict(arch["reasons"])
    exp_all = expected_of(cap.backlog + lat.paced)
    conserved, checks = conservation(agg_total, arch, produced, exp_all)
    say(f"conservation: produced {produced} = aggregated {agg_total} + quarantined "
        f"{sum(quarantined.values())} {quarantined} + duplicates {arch['duplicate_lines']} "
        f"-> {'OK' if conserved else 'MISMATCH'}")
    for name, (got, want) in checks.items():
        if got != want:
            say(f"  mismatch {name}: pipeline {got}, simulator labels {want}")

    kinesis_bytes = sum(len(p.payload) for p in cap.backlog) + sum(len(p.payload) for p in lat.paced)
    invocations = len(set(arch["ranges"]))  # one archive range per invocation with done records
    p50, p99 = pct(lat.latencies, 50), pct(lat.latencies, 99)
    return {
        "shards": shards,
        "outputs": out,
        "backlog": cap.backlog,
        "latencies": lat.latencies,
        "records_produced": produced,
        "sustained_records_per_s": round(cap.pipe_rate, 1),
        "noop_records_per_s": round(cap.noop_rate, 1),
        "sustained_to_noop_ratio": round(cap.pipe_rate / cap.noop_rate, 3) if cap.noop_rate else None,
        "paced_offered_records_per_s": round(len(lat.paced) / lat.sent_s, 1) if lat.sent_s else None,
        "latency_p50_s": round(p50, 3) if p50 is not None else None,
        "latency_p99_s": round(p99, 3) if p99 is not None else None,
        "latency_mean_s": round(statistics.fmean(lat.latencies), 3) if lat.latencies else None,
        "latency_samples": len(lat.latencies),
        "latency_samples_never_seen": lat.never_seen,
        "latency_tail_sent_s": lat.tail_sent_s,
        "latency_poll_round_s": round(lat.poll_round_s, 3),
        "conserved": conserved,
        "aggregated": agg_total,
        "quarantined": quarantined,
        "duplicates": arch["duplicate_lines"],
        "expected": exp_all,
        "cost_inputs": {
            "readings": produced,
            "kinesis_bytes": kinesis_bytes,
            "ddb_writes": writes,
            "ddb_reads": writes,  # one consistent BatchGetItem row per window write (prefetch)
            "ddb_item_bytes_avg": round(item_bytes / items, 1) if items else None,
            "s3_puts": arch["versions"],
            "s3_bytes": arch["bytes"],
            "processor_invocations": invocations,
            "note": "counted on ministack, which ignores the batching window: smaller batches than AWS",
        },
    }


def capacity_phase(opts: Options, emulator: Emulator, ddb: Any, out: dict[str, str], fleet: list[Any],
                   base: SimulatorConfig, noop_stream: str, count_file: Path) -> Capacity:
    """1. The same backlog to the no-op and to the pipeline, one after the other."""
    backlog_start = int((time.time() - 240) * 1000)  # 4 min old: inside the allowed lateness
    backlog = generate(replace(base, count=opts.burst_records), fleet, backlog_start)
    noop_sink = unthrottled_sink(noop_stream, emulator.endpoint, opts.pack)
    t_noop = time.time()
    put_s = put_all(noop_sink, backlog)
    # The no-op counts Kinesis records; with packing one record carries several readings, so the
    # rate is reported in readings (what the pipeline's figure counts) once every record drained.
    kinesis_records = noop_sink.stats.records
    wait_until(lambda: noop_progress(count_file)[0] >= kinesis_records, opts.timeout)
    n_noop, last_noop = noop_progress(count_file)
    drained = len(backlog) if n_noop >= kinesis_records else n_noop
    noop_rate = drained / max(last_noop - t_noop, 1e-9)
    say(f"no-op:    {n_noop}/{kinesis_records} Kinesis records ({len(backlog)} readings) drained at "
        f"{noop_rate:,.0f} readings/s (put took {put_s:.1f} s)")

    sink = unthrottled_sink(out["StreamName"], emulator.endpoint, opts.pack)
    exp_backlog = expected_of(backlog)
    t_pipe = time.monotonic()
    put_all(sink, backlog)
    done = wait_until(lambda: aggregated_totals(ddb, out["AggregatesTableName"])[0]
                      >= exp_backlog["aggregated"], opts.timeout, 0.25)
    drain_s = time.monotonic() - t_pipe
    agg_after_backlog = aggregated_totals(ddb, out["AggregatesTableName"])[0]
    pipe_rate = len(backlog) / drain_s
    say(f"pipeline: {agg_after_backlog}/{exp_backlog['aggregated']} valid readings aggregated, "
        f"{len(backlog)} records in {drain_s:.1f} s = {pipe_rate:,.0f} records/s"
        f"{'' if done else ' (TIMED OUT)'}; ratio to no-op {pipe_rate / noop_rate:.2f}")
    return Capacity(backlog=backlog, sink=sink, pipe_rate=pipe_rate, noop_rate=noop_rate)


def latency_phase(opts: Options, ddb: Any, out: dict[str, str], fleet: list[Any], base: SimulatorConfig,
                  cap: Capacity) -> Latency:
    """2. Paced N x R Hz in real time, sample devices timed through the API."""
    paced = generate(replace(base, duration_s=opts.duration, burst=False), fleet, int(time.time() * 1000))
    probe = LatencyProbe(out["ApiUrl"], out["ApiKey"], {d.device_id for d in fleet[: opts.samples]})
    warm_s = probe.start()
    say(f"latency:  query API warmed for the {len(probe.samples)} sample devices "
        f"(first request {warm_s:.2f} s)")
    t_send = time.time()
    sent_s = send_paced(cap.sink, paced, probe.sent)
    exp_all = expected_of(cap.backlog + paced)
    # The probe's last samples first: the totals below scan the whole table, load the emulator (the same
    # process that serves the processor's writes) and would lengthen the very latencies being timed.
    wait_until(probe.all_seen, 30, 0.2)
    probe.stop()
    wait_until(lambda: aggregated_totals(ddb, out["AggregatesTableName"])[0] >= exp_all["aggregated"],
               opts.timeout, 0.5)
    lost_samples = probe.never_seen
    latencies = probe.latencies
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    resolution = statistics.median(probe.rounds) if probe.rounds else float("nan")
    say(f"latency:  {len(paced)} records paced at {len(paced) / sent_s:,.0f}/s over {sent_s:.0f} s; "
        f"{len(latencies)} sample readings produce->queryable p50 {p50 or float('nan'):.2f} s, "
        f"p99 {p99 or float('nan'):.2f} s (each device polled every {resolution:.2f} s, median: up to that "
        f"much of a figure is the probe's)"
        f"{f'; {lost_samples} never seen' if lost_samples else ''}")
    slow = sorted(probe.timed, key=lambda t: -t[1])[: max(1, len(probe.timed) // 100)]
    tail = [round(sent - t_send, 1) for sent, _ in sorted(slow)]
    if slow:
        say(f"latency:  the slowest 1 % ({len(slow)}, >= {min(x for _, x in slow):.2f} s) were sent at "
            f"t+{', t+'.join(f'{t:g}' for t in tail)} s of the {sent_s:.0f}-s paced phase")
    return Latency(paced=paced, sent_s=sent_s, latencies=latencies, never_seen=lost_samples,
                   tail_sent_s=tail, poll_round_s=resolution)
