"""Crash window: kill -9 the embedded emulator after N minutes at a fleet's load; count what it lost.

    .venv/bin/python bench/crash_window.py [--minutes 3] [--devices 50] [--rate 2] [--snapshot 30]

3 minutes by default (``make bench`` runs every script here); the measurement in
docs/troubleshooting.md is ``--minutes 30``. Exit status 1 if an acknowledged reading was lost.

An emulator with `iotpipe up`'s persistence (state snapshots every ``--snapshot`` s and the stream's
write-ahead log, iotpipe/local/ministack_launcher.py) gets the stack, a registered fleet and simulator
readings at the fleet's real pace, put 25 per PutRecords, each reading remembered once the stream
acknowledged it. Meanwhile it samples the snapshot marker: the interval between rounds and their
duration (the cadence that holds under this load). Then ``kill -9``, a restart on the same state,
``iotpipe rebuild`` (what `iotpipe up` does after an unclean stop) and a wait until the stream is
drained; the acknowledged readings missing from the aggregates (by device and event time, from each
window's event-time offsets) are the crash window. The last line is one JSON object.
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Annotated, Any

import typer

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from iotpipe.console import run_app  # noqa: E402
from iotpipe.local.emulator import Emulator, free_port, tree_bytes  # noqa: E402
from iotpipe.settings import use_endpoint  # noqa: E402

app = typer.Typer(add_completion=False, help=__doc__.splitlines()[0])


def say(msg: str) -> None:
    print(msg, flush=True)


def _produce(stream: str, endpoint: str, devices: int, rate: float, stop: threading.Event,
             acknowledged: list[tuple[str, int, float]], sent: list[tuple[str, int]]) -> None:
    """Readings at the fleet's pace; ``acknowledged`` gets (device, event ms, wall time of the answer)."""
    import boto3
    import botocore.config

    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    kinesis = boto3.client("kinesis", endpoint_url=endpoint,
                           config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=10))
    start_ms = int(time.time() * 1000)
    wall0 = time.time()
    config = SimulatorConfig(devices=devices, rate_hz=rate, seed=5, malformed_rate=0.0, anomaly_rate=0.02)
    readings = generate_readings(config, generate_fleet(devices, 5), start_ms=start_ms)
    while not stop.is_set():
        batch = [next(readings) for _ in range(25)]
        wait = wall0 + (batch[-1].send_ms - start_ms) / 1000.0 - time.time()
        if wait > 0:
            time.sleep(wait)
        sent.extend((r.device_id, r.event_ms) for r in batch)
        try:
            resp = kinesis.put_records(StreamName=stream, Records=[
                {"Data": r.payload, "PartitionKey": r.device_id} for r in batch])
        except Exception:  # the emulator is gone: this batch was not acknowledged
            if stop.is_set():
                return
            time.sleep(0.5)
            continue
        now = time.time()
        acknowledged.extend((r.device_id, r.event_ms, now)
                            for r, res in zip(batch, resp["Records"], strict=True)
                            if res.get("SequenceNumber") and not res.get("ErrorCode"))


def _applied(ddb: Any, table: str) -> set[tuple[str, int]]:
    from functions.adapters.aggregates import item_from_dynamo

    out: set[tuple[str, int]] = set()
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for raw in page["Items"]:
            item = item_from_dynamo(raw)
            base = int(item["window_start"]) * 1000
            out.update((str(item["device_id"]), base + int(o)) for o in item.get("seen_offsets_ms") or ())
        if "LastEvaluatedKey" not in page:
            return out
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


@app.command()
def crash_window(
    minutes: Annotated[float, typer.Option(envvar="CRASH_MINUTES")] = 3.0,
    devices: int = 50,
    rate: float = 2.0,
    snapshot: float = 30.0,
    drain_s: float = 600.0,
    keep: Annotated[bool, typer.Option("--keep", help="keep the run directory")] = False,
) -> int:
    import boto3

    from iotpipe.ops.rebuild import rebuild_stack
    from iotpipe.ops.stack import deploy, stack_outputs
    from iotpipe.ops.status import read_crash_window
    from simulator.fleet import generate_fleet, register_fleet

    run_dir = Path(tempfile.mkdtemp(prefix="iotpipe-crash-"))
    state, port = run_dir / "emulator", free_port()
    emulator = Emulator(port=port, state_dir=state, persist=True, snapshot_s=snapshot).start()
    second: Emulator | None = None
    use_endpoint(emulator.client_env())
    result: dict[str, Any] = {"minutes": minutes, "devices": devices, "rate_hz": rate, "snapshot_s": snapshot}
    try:
        say(f"crash window: deploying on {emulator.endpoint} (state {state})")
        deploy("crash", "embedded", quiet=True)
        out = stack_outputs("crash")
        register_fleet(generate_fleet(devices, 5), out["DevicesTableName"], boto3.client("dynamodb"))
        acknowledged: list[tuple[str, int, float]] = []
        sent: list[tuple[str, int]] = []
        stop = threading.Event()
        producer = threading.Thread(target=_produce, daemon=True, args=(
            out["StreamName"], emulator.endpoint, devices, rate, stop, acknowledged, sent))
        producer.start()
        marker = state / "state" / "iotpipe-snapshot.json"
        rounds: dict[float, float] = {}  # finished at -> duration
        deadline = time.time() + minutes * 60
        next_say = time.time() + 60
        while time.time() < deadline:
            time.sleep(1)
            try:
                m = json.loads(marker.read_text())
                rounds[float(m["at"])] = float(m["duration_s"])
                result["last_round_slowest_services_s"] = m.get("slowest_services_s", {})
            except (OSError, ValueError, KeyError):
                pass
            if time.time() >= next_say:
                next_say += 60
                last = max(rounds) if rounds else 0.0
                say(f"  {len(acknowledged)} acknowledged; {len(rounds)} snapshot rounds, last took "
                    f"{rounds.get(last, 0.0):.2f} s; saved state {tree_bytes(state / 'state') / 1e6:.1f} MB")
        # WHEN kill -9 under load
        killed_at = time.time()
        assert emulator.pid is not None
        os.kill(emulator.pid, signal.SIGKILL)
        stop.set()
        producer.join(timeout=30)
        emulator.stop()
        stream_state = state / "state" / "kinesis.json"
        wal_dir = state / "state" / "iotpipe-wal"
        result["stream_state_bytes"] = stream_state.stat().st_size if stream_state.exists() else 0
        result["wal_bytes_at_kill"] = tree_bytes(wal_dir)
        ends = sorted(rounds)
        gaps = [b - a for a, b in itertools.pairwise(ends)]
        result["snapshot_rounds"] = len(ends)
        result["snapshot_interval_s"] = {"median": round(statistics.median(gaps), 1) if gaps else None,
                                         "max": round(max(gaps), 1) if gaps else None}
        took = list(rounds.values())
        result["snapshot_duration_s"] = {"median": round(statistics.median(took), 2) if took else None,
                                         "max": round(max(took), 2) if took else None}
        result["last_snapshot_age_at_kill_s"] = round(killed_at - ends[-1], 1) if ends else None
        result["acknowledged"] = len(acknowledged)
        say(f"killed after {minutes:g} min: {len(acknowledged)} readings acknowledged; restarting")
        second = Emulator(port=port, state_dir=state, persist=True, snapshot_s=snapshot).start()
        use_endpoint(second.client_env())
        window = read_crash_window(state)
        result["crash_window"] = window
        say(f"crash window: {window['text'] if window else '-'}")
        report = rebuild_stack("crash")
        result["rebuild_applied"] = report.readings_applied
        ddb = boto3.client("dynamodb")
        want = {(d, e) for d, e, _t in acknowledged}
        table = out["AggregatesTableName"]
        deadline = time.time() + drain_s
        got: set[tuple[str, int]] = set()
        while time.time() < deadline:
            got = _applied(ddb, table)
            if want <= got:
                break
            time.sleep(5)
        missing = want - got
        arrival = {(d, e): t for d, e, t in acknowledged}
        times = sorted(arrival[k] for k in missing)
        result["lost_acknowledged"] = len(missing)
        result["lost_window_s"] = round(killed_at - times[0], 1) if times else 0.0
        result["invented"] = len(got - set(sent))
        say(f"lost {len(missing)} of {len(want)} acknowledged readings")
    finally:
        for em in (second, emulator):
            if em is not None:
                em.stop()
        if not keep:
            shutil.rmtree(run_dir, ignore_errors=True)
    print(json.dumps(result, sort_keys=True, default=str))
    return 0 if result.get("lost_acknowledged") == 0 else 1


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="bench/crash_window.py")


if __name__ == "__main__":
    raise SystemExit(main())
