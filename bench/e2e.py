"""Benchmark: the whole pipeline end to end on the embedded emulator (ministack).

    .venv/bin/python bench/e2e.py [--devices 200] [--rate 2] [--duration 30] [--malformed-rate 0.02]
                                  [--burst-records 12000] [--samples 8] [--seed 7]

In one run, on one emulator process:
1. capacity: the same backlog of simulator records (event times a few minutes old) is put on the
   pipeline's stream and on a second stream whose event source mapping invokes a no-op function; the
   drain rates give the sustained rate (processed through to DynamoDB) and its ratio to the emulator's
   no-op rate;
2. latency: N devices x R Hz paced in real time for the duration; for a few sample devices every valid
   reading's send time is recorded and the query API (through API Gateway) is polled until the window's
   count includes it: p50/p99 produce -> queryable;
3. conservation over both phases: produced = aggregated (DynamoDB sum of counts) + quarantined per reason
   (S3 quarantine lines) + duplicates (S3 processed lines with status duplicate), each compared with the
   simulator's own labels;
4. peak RSS of the emulator's process tree (Lambda workers included), from /proc;
5. cold start: import time of the processor, ingest and query handlers in a fresh emulator interpreter
   with only that function's unpacked code package on sys.path, and each package's sizes (zipped,
   unzipped, share of Lambda's 250 MB). ``--cold-start-only`` measures just this (seconds, no emulator).

Readable lines first; the last line is one JSON object (its ``cost_inputs`` feed ``iotpipe cost
--from-bench``). A PNG of the latency distribution goes to out/e2e-latency.png when matplotlib exists.
"""

from __future__ import annotations

import argparse
import gzip
import io
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
import zipfile
from collections import Counter, defaultdict
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotpipe.emulator import DEFAULT_VENV, Emulator, free_port  # noqa: E402
from iotpipe.stack import deploy, stack_outputs  # noqa: E402
from simulator.config import SimulatorConfig  # noqa: E402
from simulator.fleet import generate_fleet, register_fleet  # noqa: E402
from simulator.malformed import expected_outcome  # noqa: E402
from simulator.sinks import KinesisSink  # noqa: E402
from simulator.stream import Produced, generate_readings  # noqa: E402

UNTHROTTLED_SHARDS = 100
NOOP_SOURCE = '''
import os, time
def handler(event, context):
    # Appends one line per invocation so the benchmark can see the mapping drain; otherwise a no-op.
    with open(os.environ["NOOP_COUNT_FILE"], "a") as f:
        f.write(f"{len(event.get('Records') or [])} {time.time()}\\n")
    return {}
'''


def say(msg: str) -> None:
    print(msg, flush=True)


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


# ------------------------------------------------------------------------------------------ /proc RSS
class RssSampler(threading.Thread):
    """Peak resident memory of a process and all its descendants (the emulator + Lambda workers)."""

    def __init__(self, root_pid: int, interval_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.root_pid = root_pid
        self.interval_s = interval_s
        self.peak_bytes = 0
        self.peak_processes = 0
        self._stop = threading.Event()

    @staticmethod
    def _children() -> dict[int, list[int]]:
        tree: dict[int, list[int]] = defaultdict(list)
        for entry in os.listdir("/proc"):
            if not entry.isdigit():
                continue
            try:
                with open(f"/proc/{entry}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            tree[ppid].append(int(entry))
        return tree

    def sample(self) -> tuple[int, int]:
        tree = self._children()
        todo, total, count = [self.root_pid], 0, 0
        while todo:
            pid = todo.pop()
            todo.extend(tree.get(pid, []))
            try:
                with open(f"/proc/{pid}/status") as f:
                    for line in f:
                        if line.startswith("VmRSS:"):
                            total += int(line.split()[1]) * 1024
                            count += 1
                            break
            except OSError:
                continue
        return total, count

    def run(self) -> None:
        while not self._stop.is_set():
            total, count = self.sample()
            if total > self.peak_bytes:
                self.peak_bytes, self.peak_processes = total, count
            self._stop.wait(self.interval_s)

    def stop(self) -> None:
        self._stop.set()


# ------------------------------------------------------------------------------------------ helpers
def generate(config: SimulatorConfig, fleet: list[Any], start_ms: int) -> list[Produced]:
    return list(generate_readings(config, fleet, start_ms=start_ms))


def expected_of(records: list[Produced]) -> dict[str, Any]:
    """What the pipeline should do with these records, from the simulator's own labels."""
    outcomes = Counter(expected_outcome(p.category, p.kind) for p in records)
    aggregated, duplicates = outcomes.pop("aggregated", 0), outcomes.pop("duplicate", 0)
    return {"aggregated": aggregated, "duplicates": duplicates, "quarantined": dict(outcomes)}


def ddb_size(attr: dict[str, Any]) -> int:
    """Bytes DynamoDB bills for one AttributeValue (names + values; numbers ~1 byte per 2 digits)."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        digits = len(value.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "NS":
        return sum(ddb_size({"N": v}) for v in value)
    if kind == "M":
        return 3 + sum(len(k) + ddb_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(ddb_size(v) + 1 for v in value)
    return 1


def aggregated_totals(ddb: Any, table: str) -> tuple[int, int, int, int]:
    """(sum of counts, sum of versions = successful writes, items, total billed item bytes)."""
    total = writes = items = size = 0
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page.get("Items", []):
            total += int(item["count"]["N"])
            writes += int(item.get("version", {"N": "1"})["N"])
            items += 1
            size += sum(len(name) + ddb_size(value) for name, value in item.items())
        if "LastEvaluatedKey" not in page:
            return total, writes, items, size
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def archive_totals(s3: Any, bucket: str) -> dict[str, Any]:
    """Lines per status / reason from every archived object (all versions: retries overwrite)."""
    out: dict[str, Any] = {"objects": 0, "versions": 0, "bytes": 0, "reasons": Counter(),
                           "aggregated_lines": 0, "duplicate_lines": 0, "ranges": set()}
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket):
        for obj in page.get("Contents", []):
            out["objects"] += 1
            out["bytes"] += int(obj["Size"])
            key = obj["Key"]
            out["ranges"].add(key.rsplit("/", 1)[-1])
            body = gzip.decompress(s3.get_object(Bucket=bucket, Key=key)["Body"].read())
            for line in body.splitlines():
                doc = json.loads(line)
                if key.startswith("quarantine/"):
                    out["reasons"][doc["reason"]] += 1
                elif doc.get("status") == "duplicate":
                    out["duplicate_lines"] += 1
                else:
                    out["aggregated_lines"] += 1
    try:
        versions = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += len(page.get("Versions", []))
        out["versions"] = versions or out["objects"]
    except Exception:  # versions listing unsupported: count objects
        out["versions"] = out["objects"]
    return out


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


def put_all(sink: KinesisSink, records: list[Produced]) -> float:
    started = time.monotonic()
    for p in records:
        sink.add(p)
    sink.flush()
    return time.monotonic() - started


# ------------------------------------------------------------------------------------------ no-op
def create_noop(stream_name: str, count_file: Path, batch_size: int, shards: int = 1) -> None:
    kinesis, lam = boto3.client("kinesis"), boto3.client("lambda")
    kinesis.create_stream(StreamName=stream_name, ShardCount=shards)
    wait_until(lambda: kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"][
        "StreamStatus"] == "ACTIVE", 30)
    arn = kinesis.describe_stream_summary(StreamName=stream_name)["StreamDescriptionSummary"]["StreamARN"]
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("noop.py", NOOP_SOURCE)
    lam.create_function(
        FunctionName=f"{stream_name}-fn", Runtime="python3.12", Handler="noop.handler",
        Role="arn:aws:iam::000000000000:role/bench-noop", Code={"ZipFile": buf.getvalue()},
        Timeout=60, MemorySize=128, Environment={"Variables": {"NOOP_COUNT_FILE": str(count_file)}},
    )
    lam.create_event_source_mapping(EventSourceArn=arn, FunctionName=f"{stream_name}-fn",
                                    StartingPosition="TRIM_HORIZON", BatchSize=batch_size)


def noop_progress(count_file: Path) -> tuple[int, float]:
    if not count_file.exists():
        return 0, 0.0
    total, last = 0, 0.0
    for line in count_file.read_text().splitlines():
        n, ts = line.split()
        total += int(n)
        last = max(last, float(ts))
    return total, last


# ------------------------------------------------------------------------------------------ cold start
# Handler modules per function package (template: Code: ../build/<name>.zip).
COLD_START_MODULES = {"processor": "functions.processor.handler", "ingest": "functions.ingest.handler",
                      "query": "functions.api.lambda_handler"}
BUNDLE_OF = {"processor": "processor", "ingest": "ingest", "query": "api"}
LAMBDA_UNZIPPED_LIMIT = 250 * 1024 * 1024


def cold_start() -> dict[str, Any]:
    """Each function's import time from its own unpacked zip (as Lambda runs it), and its sizes.

    The interpreter is the emulator's CPython 3.12 (boto3 included, as in the Lambda runtime); each
    package is unpacked into a fresh folder that is the only project path on sys.path.
    """
    build = ROOT / "build"
    py = DEFAULT_VENV / "bin" / "python"
    out: dict[str, Any] = {}
    total_zip = total_unzipped = 0
    with tempfile.TemporaryDirectory(prefix="iotpipe-coldstart-") as tmp:
        for name, module in COLD_START_MODULES.items():
            zip_path = build / f"{BUNDLE_OF[name]}.zip"
            if not zip_path.exists():
                out[f"{name}_import_error"] = f"{zip_path} missing (run scripts/build.py)"
                continue
            task = Path(tmp) / name
            with zipfile.ZipFile(zip_path) as zf:
                zf.extractall(task)
                unzipped = sum(i.file_size for i in zf.infolist())
            out[f"{name}_zip_bytes"] = zip_path.stat().st_size
            out[f"{name}_unzipped_bytes"] = unzipped
            out[f"{name}_of_lambda_limit"] = round(unzipped / LAMBDA_UNZIPPED_LIMIT, 3)
            total_zip += zip_path.stat().st_size
            total_unzipped += unzipped
            env = {"PATH": os.environ.get("PATH", ""), "AWS_REGION": "us-east-1",
                   "PYTHONDONTWRITEBYTECODE": "1", "PYTHONPATH": str(task)}
            times = []
            for _ in range(3):
                code = f"import time; t=time.perf_counter(); import {module}; print(time.perf_counter()-t)"
                r = subprocess.run([str(py), "-c", code], env=env, capture_output=True, text=True, timeout=60,
                                   cwd=tmp)
                if r.returncode != 0:
                    out[f"{name}_import_error"] = r.stderr.strip().splitlines()[-1:] or ["?"]
                    break
                times.append(float(r.stdout.strip().splitlines()[-1]))
            if times:
                # Best of 3: a cold interpreter each time, the page cache warm (as on a reused Lambda host).
                out[f"{name}_import_ms"] = round(min(times) * 1000, 1)
    # Sums over the three packages (the layer is gone: layer_bytes stays in the line as 0 for comparison
    # with runs before the self-contained packages, when it was ~66.8 MB shared by all three).
    out["bundle_bytes"] = total_zip
    out["bundle_unzipped_bytes"] = total_unzipped
    out["layer_bytes"] = 0
    return out


def say_cold_start(cold: dict[str, Any]) -> None:
    for name in COLD_START_MODULES:
        if f"{name}_import_error" in cold:
            say(f"cold start: {name}: {cold[f'{name}_import_error']}")
            continue
        zipped, unzipped = cold[f"{name}_zip_bytes"] / 2**20, cold[f"{name}_unzipped_bytes"] / 2**20
        say(f"cold start: {name:9s} import {cold.get(f'{name}_import_ms', 'n/a')} ms, package "
            f"{zipped:.1f} MiB zipped / {unzipped:.1f} MiB unzipped "
            f"({100 * cold[f'{name}_of_lambda_limit']:.0f} % of Lambda's 250 MB)")


# ------------------------------------------------------------------------------------------ one point
def run_point(args: argparse.Namespace, emulator: Emulator, state: Path, shards: int,
              build: bool) -> dict[str, Any]:
    """One point of the curve: a stack with ``shards`` shards; capacity, latency and conservation."""
    stack = f"bench-{uuid.uuid4().hex[:6]}"
    t0 = time.monotonic()
    # Shards and parallelism are template parameters; the packages are built once, for the first point.
    deploy(stack, "embedded", quiet=True,
           extra_args=["--param", f"ShardCount={shards}",
                       "--param", f"ParallelizationFactor={args.parallelization}",
                       *([] if build else ["--no-build"])])
    out = stack_outputs(stack)
    say(f"--- {shards} shard(s): stack {stack} deployed in {time.monotonic() - t0:.1f} s")
    ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")

    fleet = generate_fleet(args.devices, args.seed)
    register_fleet(fleet, out["DevicesTableName"], ddb)
    noop_stream = f"{stack}-noop"
    count_file = state / f"noop-{shards}.counts"
    create_noop(noop_stream, count_file, batch_size=500, shards=shards)
    say(f"registered {len(fleet)} devices; no-op function + mapping on stream {noop_stream}")

    # ---- 1. capacity: the same backlog to the no-op and to the pipeline, one after the other
    base = SimulatorConfig(devices=args.devices, rate_hz=args.rate, seed=args.seed,
                           malformed_rate=args.malformed_rate, burst=True)
    backlog_start = int((time.time() - 240) * 1000)  # 4 min old: inside the allowed lateness
    backlog = generate(replace(base, count=args.burst_records), fleet, backlog_start)
    # The sinks' token buckets keep a real stream under its shard limits; the emulator has none, and
    # the backlog must go in faster than it drains, so tell the sink the stream is wide.
    noop_sink = KinesisSink(noop_stream, shard_count=UNTHROTTLED_SHARDS, endpoint_url=emulator.endpoint,
                            pack=args.pack)
    noop_sink.setup()
    t_noop = time.time()
    put_s = put_all(noop_sink, backlog)
    # The no-op counts Kinesis records; with packing one record carries several readings, so the
    # rate is reported in readings (what the pipeline's figure counts) once every record drained.
    kinesis_records = noop_sink.stats.records
    wait_until(lambda: noop_progress(count_file)[0] >= kinesis_records, args.timeout)
    n_noop, last_noop = noop_progress(count_file)
    drained = len(backlog) if n_noop >= kinesis_records else n_noop
    noop_rate = drained / max(last_noop - t_noop, 1e-9)
    say(f"no-op:    {n_noop}/{kinesis_records} Kinesis records ({len(backlog)} readings) drained at "
        f"{noop_rate:,.0f} readings/s (put took {put_s:.1f} s)")

    sink = KinesisSink(out["StreamName"], shard_count=UNTHROTTLED_SHARDS, endpoint_url=emulator.endpoint,
                       pack=args.pack)
    sink.setup()
    exp_backlog = expected_of(backlog)
    t_pipe = time.monotonic()
    put_all(sink, backlog)
    done = wait_until(lambda: aggregated_totals(ddb, out["AggregatesTableName"])[0]
                      >= exp_backlog["aggregated"], args.timeout, 0.25)
    drain_s = time.monotonic() - t_pipe
    agg_after_backlog = aggregated_totals(ddb, out["AggregatesTableName"])[0]
    pipe_rate = len(backlog) / drain_s
    say(f"pipeline: {agg_after_backlog}/{exp_backlog['aggregated']} valid readings aggregated, "
        f"{len(backlog)} records in {drain_s:.1f} s = {pipe_rate:,.0f} records/s"
        f"{'' if done else ' (TIMED OUT)'}; ratio to no-op {pipe_rate / noop_rate:.2f}")

    # ---- 2. latency: paced N x R Hz in real time, sample devices timed through the API
    paced = generate(replace(base, duration_s=args.duration, burst=False), fleet, int(time.time() * 1000))
    samples = {d.device_id for d in fleet[: args.samples]}
    pending: dict[str, list[tuple[int, int, float]]] = defaultdict(list)  # dev -> (window, n-th, sent)
    seen_per_window: Counter[tuple[str, int]] = Counter()
    latencies: list[float] = []
    api = f"{out['ApiUrl']}/devices/{{}}/aggregates"
    headers = {"x-api-key": out["ApiKey"]}
    stop_polling = threading.Event()
    lock = threading.Lock()

    def poll() -> None:
        with httpx.Client(timeout=10) as http:
            while not stop_polling.is_set():
                with lock:
                    devices = [d for d, lst in pending.items() if lst]
                if not devices:
                    if stop_polling.wait(0.2):
                        return
                    continue
                for dev in devices:
                    now = datetime.now(UTC)
                    params = {"from": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                              "to": (now + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}
                    try:
                        r = http.get(api.format(dev), params=params, headers=headers)
                    except httpx.HTTPError:
                        continue
                    seen_at = time.time()
                    if r.status_code != 200:
                        continue
                    counts = {int(datetime.fromisoformat(i["window_start"].replace("Z", "+00:00"))
                                  .timestamp()): int(i["count"]) for i in r.json().get("items", [])}
                    with lock:
                        keep = []
                        for window, nth, sent in pending[dev]:
                            if counts.get(window, 0) >= nth:
                                latencies.append(seen_at - sent)
                            else:
                                keep.append((window, nth, sent))
                        pending[dev] = keep

    poller = threading.Thread(target=poll, daemon=True)
    poller.start()
    t_paced = time.time()
    start_ms = paced[0].send_ms if paced else 0
    i = 0
    while i < len(paced):
        # Send everything due by now (the simulator's own send times, relative to the wall clock).
        due_ms = start_ms + (time.time() - t_paced) * 1000
        j = i
        while j < len(paced) and paced[j].send_ms <= due_ms:
            j += 1
        if j == i:
            time.sleep(0.02)
            continue
        chunk = paced[i:j]
        for p in chunk:
            sink.add(p)
        sink.flush()
        sent_at = time.time()
        with lock:
            for p in chunk:
                if p.device_id in samples and p.category != "malformed":
                    window = p.event_ms // 60_000 * 60
                    seen_per_window[(p.device_id, window)] += 1
                    pending[p.device_id].append((window, seen_per_window[(p.device_id, window)], sent_at))
        i = j
    sent_s = time.time() - t_paced
    exp_all = expected_of(backlog + paced)
    wait_until(lambda: aggregated_totals(ddb, out["AggregatesTableName"])[0] >= exp_all["aggregated"],
               args.timeout, 0.5)
    wait_until(lambda: not any(pending.values()), 30, 0.5)
    stop_polling.set()
    poller.join(timeout=15)
    lost_samples = sum(len(v) for v in pending.values())
    p50, p99 = pct(latencies, 50), pct(latencies, 99)
    say(f"latency:  {len(paced)} records paced at {len(paced) / sent_s:,.0f}/s over {sent_s:.0f} s; "
        f"{len(latencies)} sample readings produce->queryable p50 {p50 or float('nan'):.2f} s, "
        f"p99 {p99 or float('nan'):.2f} s (API polled ~1/s per device: +-1 s resolution)"
        f"{f'; {lost_samples} never seen' if lost_samples else ''}")

    # ---- 3. conservation
    time.sleep(2)  # let the last archive writes land
    agg_total, writes, items, item_bytes = aggregated_totals(ddb, out["AggregatesTableName"])
    arch = archive_totals(s3, out["ArchiveBucketName"])
    produced = len(backlog) + len(paced)
    quarantined = dict(arch["reasons"])
    accounted = agg_total + sum(quarantined.values()) + arch["duplicate_lines"]
    checks = {
        "aggregated": (agg_total, exp_all["aggregated"]),
        "duplicates": (arch["duplicate_lines"], exp_all["duplicates"]),
        **{f"quarantined.{r}": (quarantined.get(r, 0), n) for r, n in
           sorted({**dict.fromkeys(quarantined, 0), **exp_all["quarantined"]}.items())},
    }
    conserved = accounted == produced and all(a == b for a, b in checks.values())
    say(f"conservation: produced {produced} = aggregated {agg_total} + quarantined "
        f"{sum(quarantined.values())} {quarantined} + duplicates {arch['duplicate_lines']} "
        f"-> {'OK' if conserved else 'MISMATCH'}")
    for name, (got, want) in checks.items():
        if got != want:
            say(f"  mismatch {name}: pipeline {got}, simulator labels {want}")

    kinesis_bytes = sum(len(p.payload) for p in backlog) + sum(len(p.payload) for p in paced)
    invocations = len(set(arch["ranges"]))  # one archive range per invocation with done records
    return {
        "shards": shards,
        "outputs": out,
        "backlog": backlog,
        "latencies": latencies,
        "records_produced": produced,
        "sustained_records_per_s": round(pipe_rate, 1),
        "noop_records_per_s": round(noop_rate, 1),
        "sustained_to_noop_ratio": round(pipe_rate / noop_rate, 3) if noop_rate else None,
        "paced_offered_records_per_s": round(len(paced) / sent_s, 1) if sent_s else None,
        "latency_p50_s": round(p50, 3) if p50 is not None else None,
        "latency_p99_s": round(p99, 3) if p99 is not None else None,
        "latency_mean_s": round(statistics.fmean(latencies), 3) if latencies else None,
        "latency_samples": len(latencies),
        "latency_samples_never_seen": lost_samples,
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


# ------------------------------------------------------------------------------------------ main
def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--devices", type=int, default=200)
    ap.add_argument("--rate", type=float, default=2.0, help="Hz per device in the paced phase")
    ap.add_argument("--duration", type=float, default=30.0, help="seconds of paced sending")
    ap.add_argument("--burst-records", type=int, default=12_000, help="backlog for the capacity phase")
    ap.add_argument("--malformed-rate", type=float, default=0.02)
    ap.add_argument("--samples", type=int, default=8, help="devices whose readings are timed via the API")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--shards", default="1",
                    help="comma-separated shard counts, one point of the scaling curve each (e.g. 1,2,4,8)")
    ap.add_argument("--parallelization", type=int, default=1,
                    help="ParallelizationFactor of every point's mapping (both emulators run 1 regardless)")
    ap.add_argument("--calls-batch", type=int, default=0,
                    help="Kinesis records per in-process batch when counting AWS calls (0: the first "
                         "point's mean records per invocation)")
    ap.add_argument("--pack", type=int, default=1,
                    help="readings per Kinesis record for both phases and the no-op (the simulator's "
                         "default is 25; 1 measures the per-record path, the pipeline's worst case)")
    ap.add_argument("--timeout", type=float, default=180.0, help="max seconds to wait for draining")
    ap.add_argument("--cold-start-only", action="store_true",
                    help="only the packages' sizes and import times (builds them first; no emulator)")
    args = ap.parse_args(argv)
    if args.cold_start_only:
        subprocess.run([sys.executable, str(ROOT / "scripts" / "build.py")], check=True,
                       stdout=subprocess.DEVNULL)
        cold = cold_start()
        say_cold_start(cold)
        print(json.dumps({"benchmark": "e2e_cold_start", **cold}))
        return 0

    shard_counts = [int(n) for n in args.shards.split(",") if n.strip()]
    t_run = time.monotonic()
    state = Path(tempfile.mkdtemp(prefix="iotpipe-bench-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    os.environ.update(emulator.client_env())
    assert emulator.pid is not None
    say(f"emulator {emulator.endpoint} (pid {emulator.pid}); shard counts {shard_counts}")
    rss = RssSampler(emulator.pid)
    rss.start()
    figures: dict[str, Any] = {"devices": args.devices, "rate_hz": args.rate, "duration_s": args.duration,
                               "parallelization_factor": args.parallelization}
    points: list[dict[str, Any]] = []
    try:
        for i, shards in enumerate(shard_counts):
            points.append(run_point(args, emulator, state, shards, build=i == 0))
        first = points[0]
        inputs = first["cost_inputs"]
        per_invocation = inputs["readings"] / max(1, inputs["processor_invocations"])
        calls = count_calls(first["outputs"], args, int(args.calls_batch or max(1, round(per_invocation))))
        say_calls(calls)

        # ---- memory, cold start, sizes
        rss.stop()
        cold = cold_start()
        say(f"memory:   peak RSS of the emulator tree {rss.peak_bytes / 2**20:,.0f} MiB "
            f"({rss.peak_processes} processes)")
        say_cold_start(cold)
        say("curve:    shards | records/s | no-op/s | ratio | p50 s | p99 s | conserved")
        for pt in points:
            say(f"          {pt['shards']:6d} | {pt['sustained_records_per_s']:9,.0f} | "
                f"{pt['noop_records_per_s']:7,.0f} | {pt['sustained_to_noop_ratio'] or 0:5.2f} | "
                f"{pt['latency_p50_s'] or float('nan'):5.2f} | {pt['latency_p99_s'] or float('nan'):5.2f} | "
                f"{pt['conserved']}")
        plots = make_plots(args, points)
        hidden = ("outputs", "backlog", "latencies")
        curve = [{k: v for k, v in pt.items() if k not in hidden} for pt in points]
        # The first point's figures stay at the top level (earlier runs' keys, `iotpipe cost --from-bench`).
        figures.update({k: v for k, v in curve[0].items() if k != "shards"})
        figures.update({
            "shards": shard_counts,
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


def make_plots(args: argparse.Namespace, points: list[dict[str, Any]]) -> dict[str, str | None]:
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
        ax.set_title(f"iotpipe e2e on ministack: {args.devices} devices x {args.rate:g} Hz, "
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
    ax2.set_ylabel(f"produce -> queryable (s), paced {args.devices} x {args.rate:g} Hz")
    ax2.legend()
    fig.suptitle("iotpipe on ministack (one emulator, 2 shared cores)")
    out["scaling_plot"] = str(ROOT / "out" / "e2e-scaling.png")
    fig.savefig(out["scaling_plot"], dpi=100, bbox_inches="tight")
    plt.close(fig)
    return out


# ------------------------------------------------------------------------------------------ AWS calls
def count_calls(outputs: dict[str, str], args: argparse.Namespace, batch_records: int) -> dict[str, Any]:
    """AWS calls per 1,000 readings, counted on the emulator with botocore event hooks.

    The processor's calls happen inside the emulator's Lambda workers, where a hook in this process cannot
    see them; so the real handler (real adapters, detector included) runs here, in-process, against the
    first point's stack, on fresh simulator records (new device ids, so every window is new) cut into
    batches of ``batch_records`` Kinesis records of one shard, as the mapping delivered them.
    """
    import math

    from functions.adapters.clients import client
    from functions.processor import handler as processor
    from functions.settings import get_settings
    from testkit.events import SEQ_BASE, FakeLambdaContext, kinesis_event_record

    os.environ.update({"STREAM_NAME": outputs["StreamName"], "DEVICES_TABLE": outputs["DevicesTableName"],
                       "AGGREGATES_TABLE": outputs["AggregatesTableName"],
                       "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
                       "ARCHIVE_BUCKET": outputs["ArchiveBucketName"],
                       "ALERTS_TOPIC_ARN": outputs["AlertsTopicArn"],
                       "PARTIAL_BATCH_RESPONSE": "raise"})
    get_settings.cache_clear()
    client.cache_clear()
    processor._ports = processor._config = None
    counts: Counter[str] = Counter()
    wcu = 0
    lock = threading.Lock()

    def on_call(model: Any, params: dict[str, Any], **_: Any) -> None:
        nonlocal wcu
        name = model.name
        with lock:
            if name == "PutItem":
                table = "aggregates" if params["TableName"] == outputs["AggregatesTableName"] else "other"
                counts[f"dynamodb.PutItem.{table}"] += 1
                # 1 WCU per started KB of the item written (standard tables, on-demand bills the same WRU)
                wcu += math.ceil(sum(len(k) + ddb_size(v) for k, v in params["Item"].items()) / 1024)
            elif name == "BatchGetItem":
                counts["dynamodb.BatchGetItem"] += 1
                keys = sum(len(r["Keys"]) for r in params["RequestItems"].values())
                counts["dynamodb.BatchGetItem.keys"] += keys
            elif name in ("UpdateItem", "BatchWriteItem"):
                counts[f"dynamodb.{name}"] += 1
                wcu += 1
            else:
                counts[f"{model.service_model.service_name}.{name}"] += 1

    for service in ("dynamodb", "s3", "sns", "cloudwatch"):
        # before-parameter-build hands over the API parameters (before-call only the wire request)
        client(service).meta.events.register("before-parameter-build.*.*", on_call)
    fleet = generate_fleet(args.devices, args.seed)
    prefix = "calls-"
    ddb = boto3.client("dynamodb")
    items = []
    for d in fleet:
        item = d.to_dynamodb_item()
        item["device_id"] = {"S": prefix + d.device_id}
        items.append({"PutRequest": {"Item": item}})
    for i in range(0, len(items), 25):
        ddb.batch_write_item(RequestItems={outputs["DevicesTableName"]: items[i : i + 25]})
    config = SimulatorConfig(devices=args.devices, rate_hz=args.rate, seed=args.seed + 1,
                             malformed_rate=args.malformed_rate, burst=True, count=args.burst_records)
    records = generate(config, fleet, int((time.time() - 200) * 1000))
    payloads = [p.payload.replace(b'"dev-', f'"{prefix}dev-'.encode()) for p in records]
    events = [kinesis_event_record(data, SEQ_BASE + i, "shardId-000000000000", time.time(),
                                   prefix + records[i].device_id) for i, data in enumerate(payloads)]
    counts.clear()
    wcu = 0
    t0 = time.perf_counter()
    invocations = 0
    handed_back: list[str] = []
    for i in range(0, len(events), batch_records):
        try:
            processor.handler({"Records": events[i : i + batch_records]}, FakeLambdaContext())
        except processor.HandBack as exc:  # counted, not fatal: the curve above is already measured
            handed_back.append(str(exc))
        invocations += 1
    elapsed = time.perf_counter() - t0
    readings = len(payloads)
    per_k = {k: round(v * 1000 / readings, 2) for k, v in sorted(counts.items())}
    return {"readings": readings, "batch_records": batch_records, "invocations": invocations,
            "per_1000_readings": per_k, "wcu_per_1000_readings": round(wcu * 1000 / readings, 2),
            "in_process_records_per_s": round(readings / elapsed, 1), "handed_back": handed_back,
            "note": "the real handler in-process against ministack's DynamoDB/S3; one shard, batches of "
                    "batch_records as the mapping delivered them in the first point"}


def say_calls(calls: dict[str, Any]) -> None:
    per_k = ", ".join(f"{k} {v}" for k, v in calls["per_1000_readings"].items())
    say(f"calls:    per 1,000 readings (batches of {calls['batch_records']} records, {calls['invocations']} "
        f"invocations, in-process): {per_k}; ~{calls['wcu_per_1000_readings']} WCU")

if __name__ == "__main__":
    raise SystemExit(main())
