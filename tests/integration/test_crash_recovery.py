"""Issue 11, findings 2 and 5, against real ministack processes this module starts and kills.

- ``kill -9`` of the emulator lost every table and the stack; the redeploy then failed on
  ``ArchiveBucket ... already exists`` for good. Now: the archive bucket is adopted, the deploy
  succeeds, and ``iotpipe rebuild`` restores the aggregates exactly (a second rebuild writes nothing);
  with periodic snapshots the tables and the stack survive the kill themselves.
- ``iotpipe up`` kept printing "status unavailable" after the emulator died; now it says so and stops,
  and the next ``iotpipe up`` brings the pipeline back without ``--fresh``.
- Lambda worker folders (~80-90 MB each) of a stopped or killed emulator were never removed.

Each test starts its own emulator (a kill must not take the session's down with it).
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import zipfile
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import boto3
import botocore.config
import pytest

from iotpipe.local.emulator import ROOT, WORKER_DIR_PREFIX, Emulator, free_port, live_worker_dirs
from iotpipe.ops.stack import deploy, stack_outputs
from tests.integration.conftest import _clear_cached_clients
from tests.integration.polling import wait_for

pytestmark = pytest.mark.integration


@pytest.fixture
def own_env() -> Iterator[None]:
    """Restore the process environment (endpoint, table names) after a test that moved it."""
    saved = dict(os.environ)
    try:
        yield
    finally:
        os.environ.clear()
        os.environ.update(saved)
        _clear_cached_clients()


def _use(emulator: Emulator) -> None:
    os.environ.update(emulator.client_env())
    _clear_cached_clients()


def _kill9(emulator: Emulator) -> None:
    """What the issue did: SIGKILL to the emulator's process only (its Lambda workers are left over)."""
    assert emulator.pid is not None
    os.kill(emulator.pid, signal.SIGKILL)
    assert emulator.process is not None
    emulator.process.wait(timeout=10)


def _scan(ddb: Any, table: str) -> list[dict[str, Any]]:
    return [item for page in ddb.get_paginator("scan").paginate(TableName=table) for item in page["Items"]]


def _aggregates(ddb: Any, table: str) -> dict[tuple[str, str], tuple[str, str, str, str]]:
    """Per window: count, channel statistics, first and last event time (what a reader sees)."""
    return {
        (i["device_id"]["S"], i["window_start"]["N"]): (
            i["count"]["N"], json.dumps(i["channels"], sort_keys=True),
            i["first_event_at"]["S"], i["last_event_at"]["S"],
        )
        for i in _scan(ddb, table)
    }


def _produce(out: dict[str, str], endpoint: str, count: int, seed: int, age_s: float = 240) -> None:
    """Simulator readings (packed, with anomalies and malformed records) for 10 registered devices."""
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet, register_fleet
    from simulator.sinks import KinesisSink
    from simulator.stream import generate_readings

    fleet = generate_fleet(10, seed)
    register_fleet(fleet, out["DevicesTableName"], boto3.client("dynamodb"))
    config = SimulatorConfig(devices=10, rate_hz=1, seed=seed, malformed_rate=0.02, anomaly_rate=0.05,
                             burst=True, count=count)
    sink = KinesisSink(out["StreamName"], shard_count=100, endpoint_url=endpoint, pack=25)
    sink.setup()
    for produced in generate_readings(config, fleet, start_ms=int((time.time() - age_s) * 1000)):
        sink.add(produced)
    sink.flush()


def _settled(ddb: Any, table: str, timeout_s: float = 180) -> dict:
    """The aggregates once two reads 6 s apart agree and are not empty."""
    last: list[dict] = [{}]

    def stable() -> dict | None:
        now = _aggregates(ddb, table)
        same = bool(now) and now == last[0]
        last[0] = now
        return now if same else None

    result = wait_for(stable, timeout_s, interval_s=6)
    assert result, "the pipeline did not settle"
    return result


def test_kill9_without_snapshot_redeploys_over_the_kept_archive_and_rebuild_restores_aggregates(
    own_env: None, tmp_path: Path,
) -> None:
    from iotpipe.ops.rebuild import rebuild_stack

    # GIVEN a deployed pipeline that processed simulator readings, on an emulator without snapshots
    state, port, stack = tmp_path / "emulator", free_port(), "crash"
    emulator = Emulator(port=port, state_dir=state, persist=True).start()
    second: Emulator | None = None
    try:
        _use(emulator)
        deploy(stack, "embedded", quiet=True)
        out = stack_outputs(stack)
        ddb, s3 = boto3.client("dynamodb"), boto3.client("s3")
        _produce(out, emulator.endpoint, count=1500, seed=3)
        reference = _settled(ddb, out["AggregatesTableName"])
        archived = s3.list_objects_v2(Bucket=out["ArchiveBucketName"])["KeyCount"]

        # WHEN the emulator is killed with SIGKILL and started again on the same state
        _kill9(emulator)
        emulator.stop()
        second = Emulator(port=port, state_dir=state, persist=True).start()
        _use(second)
        # THEN the stack and the tables are gone, the archive bucket is not (the finding's starting point)
        with pytest.raises(Exception, match="does not exist"):
            boto3.client("cloudformation").describe_stacks(StackName=stack)
        assert s3.list_objects_v2(Bucket=out["ArchiveBucketName"])["KeyCount"] == archived

        # AND the deploy succeeds anyway (it used to fail on "ArchiveBucket ... already exists")
        deploy(stack, "embedded", quiet=True)
        out = stack_outputs(stack)
        assert out["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE"), out["StackStatus"]
        assert s3.list_objects_v2(Bucket=out["ArchiveBucketName"])["KeyCount"] == archived
        assert _aggregates(ddb, out["AggregatesTableName"]) == {}

        # AND iotpipe rebuild restores every window exactly as it was before the kill
        report = rebuild_stack(stack)
        assert not report.failed_windows
        assert _aggregates(ddb, out["AggregatesTableName"]) == reference
        assert report.readings_applied == sum(int(v[0]) for v in reference.values())
        assert report.anomalies_stored > 0
        # AND a second rebuild finds everything present and writes nothing (exactly once)
        again = rebuild_stack(stack)
        assert (again.readings_applied, again.windows_written) == (0, 0)
        assert _aggregates(ddb, out["AggregatesTableName"]) == reference

        # AND the pipeline runs again: the mapping the rebuild paused is back, new readings aggregate
        total = sum(int(v[0]) for v in reference.values())
        _produce(out, second.endpoint, count=200, seed=4, age_s=60)
        grown = wait_for(lambda: sum(int(v[0]) for v in _aggregates(ddb, out["AggregatesTableName"]).values())
                         > total + 150, 120, interval_s=3)
        assert grown, "no new readings aggregated after the rebuild"
    finally:
        for em in (second, emulator):
            if em is not None:
                em.stop()


def test_kill9_keeps_the_last_periodic_snapshot(own_env: None, tmp_path: Path) -> None:
    # GIVEN an emulator that snapshots its state every 2 s (iotpipe up's default is 30 s)
    state, port = tmp_path / "emulator", free_port()
    emulator = Emulator(port=port, state_dir=state, persist=True, snapshot_s=2).start()
    second: Emulator | None = None
    try:
        _use(emulator)
        deploy("snap", "embedded", quiet=True)
        out = stack_outputs("snap")
        ddb = boto3.client("dynamodb")
        key = {"device_id": {"S": "dev-snapshot"}, "window_start": {"N": "60"}}
        ddb.put_item(TableName=out["AggregatesTableName"], Item={**key, "count": {"N": "7"}})
        time.sleep(5)  # at least one snapshot after the write

        # WHEN it is killed with SIGKILL (no shutdown hook runs) and started again
        _kill9(emulator)
        emulator.stop()
        second = Emulator(port=port, state_dir=state, persist=True, snapshot_s=2).start()
        _use(second)

        # THEN the stack and the table item are there
        stack = boto3.client("cloudformation").describe_stacks(StackName="snap")["Stacks"][0]
        assert stack["StackStatus"] in ("CREATE_COMPLETE", "UPDATE_COMPLETE")
        item = ddb.get_item(TableName=out["AggregatesTableName"], Key=key).get("Item")
        assert item is not None
        assert item["count"]["N"] == "7"
    finally:
        for em in (second, emulator):
            if em is not None:
                em.stop()


def _status_counts(text: str) -> list[int]:
    return [int(m) for m in re.findall(r"\| aggregated (\d+) in", text)]


def test_iotpipe_up_notices_the_emulator_died_and_the_next_up_brings_the_pipeline_back(
    own_env: None, tmp_path: Path,
) -> None:
    env = {**os.environ, "IOTPIPE_RUN_DIR": str(tmp_path)}
    env.pop("AWS_ENDPOINT_URL", None)
    emulator_port = free_port()

    def up(log: Path, *extra: str) -> subprocess.Popen[bytes]:
        cmd = [sys.executable, "-m", "iotpipe.cli", "up", "--port", str(emulator_port), "--control-port",
               str(free_port()), "--api-port", str(free_port()), "--devices", "10", "--rate", "2",
               "--interval", "2", "--snapshot", "5", *extra]
        return subprocess.Popen(cmd, env=env, cwd=ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT)

    # GIVEN `iotpipe up` running and aggregating
    first_log = tmp_path / "up1.log"
    first = up(first_log)
    try:
        counts = wait_for(lambda: [c for c in _status_counts(first_log.read_text()) if c > 0], 300, 2)
        assert counts, first_log.read_text()[-3000:]
        # a snapshot with data in it: one that finished after aggregation was seen (the launcher waits
        # max(--snapshot, 9 x the last round's duration) between rounds, so with the whole stack's code in
        # the Lambda state a round can take seconds and the next one come later than --snapshot)
        seen = time.time()
        marker = tmp_path / "emulator" / "state" / "iotpipe-snapshot.json"

        def snapshot_after_seen() -> bool:
            try:
                return float(json.loads(marker.read_text())["at"]) > seen
            except (OSError, ValueError, KeyError):
                return False

        assert wait_for(snapshot_after_seen, 180, 1), "no state snapshot after the pipeline aggregated"
        before = _status_counts(first_log.read_text())[-1]
        pid = json.loads((tmp_path / "emulator.json").read_text())["pid"]
        children = json.loads((tmp_path / "children.json").read_text())

        # WHEN the emulator is killed with SIGKILL
        os.kill(pid, signal.SIGKILL)

        # THEN `up` says so and stops everything it started, with its own exit status
        rc = first.wait(timeout=60)
        text = first_log.read_text()
        assert rc == 3, text[-3000:]
        assert "killed by SIGKILL" in text
        assert "run 'make up' again" in text
        assert "status unavailable" not in text.split("killed by SIGKILL")[-1]
        for child in children:  # gone (or a zombie nobody waits for)
            status = Path(f"/proc/{child}/status")
            assert not status.exists() or "zombie" in status.read_text()
    finally:
        if first.poll() is None:
            first.send_signal(signal.SIGINT)
            first.wait(timeout=60)

    # WHEN `iotpipe up` runs again (no --fresh)
    second_log = tmp_path / "up2.log"
    second = up(second_log, "--duration", "20")
    try:
        rc = second.wait(timeout=400)
    finally:
        if second.poll() is None:
            second.send_signal(signal.SIGINT)
            second.wait(timeout=60)
    text = second_log.read_text()
    # THEN it recovers: state restored, archive rebuilt into it, and the pipeline runs and aggregates
    assert rc == 0, text[-3000:]
    assert "did not stop cleanly" in text
    assert "crash window: none missing after the unclean stop" in text  # the stream's log covered the kill
    assert "rebuilt:" in text
    # AND on the port it was asked for, not a replacement (the killed emulator's connections in TIME_WAIT
    # do not make it busy), so the URLs it prints are the live ones
    assert f"starting the embedded emulator (ministack) on 127.0.0.1:{emulator_port} " in text
    assert f"through the emulator's API Gateway: http://127.0.0.1:{emulator_port}/" in text
    after = _status_counts(text)
    assert after, text[-3000:]
    assert after[-1] > before, (before, after)


def _lambda_role() -> str:
    """A role a function may run as (with AUTH=true, CreateFunction refuses a role that does not exist)."""
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    role = boto3.client("iam").create_role(RoleName="slow", AssumeRolePolicyDocument=json.dumps(trust))
    return str(role["Role"]["Arn"])


def test_worker_folders_of_a_stopped_or_killed_emulator_are_removed(own_env: None, tmp_path: Path) -> None:
    # GIVEN a function whose concurrent invocations give it several warm workers, each with a folder
    state, port = tmp_path / "emulator", free_port()
    emulator = Emulator(port=port, state_dir=state).start()
    second: Emulator | None = None
    tmp = state / "tmp"

    def folders() -> list[str]:
        return sorted(p.name for p in tmp.iterdir() if p.name.startswith(WORKER_DIR_PREFIX))

    try:
        _use(emulator)
        code = io.BytesIO()
        with zipfile.ZipFile(code, "w") as zf:
            zf.writestr("f.py", "import time\ndef handler(event, context):\n    time.sleep(1)\n")
        lam = boto3.client("lambda")
        lam.create_function(FunctionName="slow", Runtime="python3.12", Handler="f.handler",
                            Role=_lambda_role(), Code={"ZipFile": code.getvalue()}, Timeout=10)
        with ThreadPoolExecutor(4) as pool:
            list(pool.map(lambda _: lam.invoke(FunctionName="slow", Payload=b"{}"), range(4)))
        assert len(folders()) >= 2

        # WHEN the emulator and then its workers are killed with SIGKILL (as when `iotpipe up` is killed
        # too): their folders stay (ministack removes a folder only when it reaps the worker itself) ...
        _kill9(emulator)
        assert emulator.pid is not None
        with contextlib.suppress(ProcessLookupError):
            os.killpg(emulator.pid, signal.SIGKILL)
        assert wait_for(lambda: not live_worker_dirs(tmp), 10, 0.2) is not None
        assert len(folders()) >= 2
        # ... until the next emulator starts on this state directory
        second = Emulator(port=port, state_dir=state).start()
        # THEN none of the dead workers' folders is left
        assert folders() == []
        # AND a live worker's folder is kept by the janitor's sweep
        _use(second)
        boto3.client("lambda").create_function(
            FunctionName="slow", Runtime="python3.12", Handler="f.handler",
            Role=_lambda_role(), Code={"ZipFile": code.getvalue()}, Timeout=10)
        boto3.client("lambda").invoke(FunctionName="slow", Payload=b"{}")
        from iotpipe.local.emulator import sweep_worker_dirs

        assert sweep_worker_dirs(tmp, min_age_s=0) == []
        assert len(folders()) == 1
    finally:
        emulator.pid = None  # its process group is gone already
        emulator.stop()
        if second is not None:
            second.stop()
        assert not tmp.exists() or folders() == []


def _acknowledged_load(stream: str, endpoint: str, devices: int, stop: threading.Event,
                       acknowledged: list[tuple[str, int]], sent: list[tuple[str, int]]) -> None:
    """Simulator readings, 25 per PutRecords every 50 ms, until ``stop`` or the emulator is gone.

    ``acknowledged`` gets (device, event ms) of every reading the stream answered with a sequence number.
    """
    from simulator.config import SimulatorConfig
    from simulator.fleet import generate_fleet
    from simulator.stream import generate_readings

    kinesis = boto3.client("kinesis", endpoint_url=endpoint,
                           config=botocore.config.Config(retries={"max_attempts": 1}, read_timeout=10))
    config = SimulatorConfig(devices=devices, rate_hz=5, seed=11, malformed_rate=0.0, anomaly_rate=0.02)
    start_ms = int((time.time() - 120) * 1000)
    readings = generate_readings(config, generate_fleet(devices, 11), start_ms=start_ms)
    while not stop.is_set():
        batch = [next(readings) for _ in range(25)]
        sent.extend((r.device_id, r.event_ms) for r in batch)
        try:
            resp = kinesis.put_records(StreamName=stream, Records=[
                {"Data": r.payload, "PartitionKey": r.device_id} for r in batch])
        except Exception:  # the emulator was killed: this batch was never acknowledged
            return
        acknowledged.extend((r.device_id, r.event_ms) for r, res in zip(batch, resp["Records"], strict=True)
                            if res.get("SequenceNumber") and not res.get("ErrorCode"))
        time.sleep(0.05)


def _applied(ddb: Any, table: str) -> set[tuple[str, int]]:
    """(device, event ms) of every reading the aggregates hold (each window's event-time offsets)."""
    from functions.adapters.aggregates import item_from_dynamo

    out: set[tuple[str, int]] = set()
    for raw in _scan(ddb, table):
        item = item_from_dynamo(raw)
        base = int(item["window_start"]) * 1000
        out.update((str(item["device_id"]), base + int(o)) for o in item.get("seen_offsets_ms") or ())
    return out


def test_kill9_under_load_loses_no_acknowledged_reading(own_env: None, tmp_path: Path) -> None:
    from iotpipe.ops.rebuild import rebuild_stack
    from iotpipe.ops.status import read_crash_window

    # GIVEN a deployed pipeline on an emulator with snapshots (and so the stream's write-ahead log)
    state, port, stack = tmp_path / "emulator", free_port(), "wal"
    emulator = Emulator(port=port, state_dir=state, persist=True, snapshot_s=2).start()
    second: Emulator | None = None
    try:
        _use(emulator)
        deploy(stack, "embedded", quiet=True)
        out = stack_outputs(stack)
        from simulator.fleet import generate_fleet, register_fleet

        register_fleet(generate_fleet(10, 11), out["DevicesTableName"], boto3.client("dynamodb"))
        marker = state / "state" / "iotpipe-snapshot.json"
        deployed = time.time()
        assert wait_for(lambda: marker.exists() and json.loads(marker.read_text())["at"] > deployed, 60, 0.5)

        # WHEN readings flow (~500/s), the processor falls behind (its mapping paused for the last 3 s:
        # acknowledged readings wait on the stream, as in a backlog) and the emulator is killed with
        # SIGKILL in the middle of it, then started again on the same state
        acknowledged: list[tuple[str, int]] = []
        sent: list[tuple[str, int]] = []
        stop = threading.Event()
        producer = threading.Thread(target=_acknowledged_load, args=(
            out["StreamName"], emulator.endpoint, 10, stop, acknowledged, sent))
        producer.start()
        time.sleep(5)
        lam = boto3.client("lambda")
        stream_arn = boto3.client("kinesis").describe_stream_summary(
            StreamName=out["StreamName"])["StreamDescriptionSummary"]["StreamARN"]
        for mapping in lam.list_event_source_mappings(EventSourceArn=stream_arn)["EventSourceMappings"]:
            lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        time.sleep(3)
        _kill9(emulator)
        stop.set()
        producer.join(timeout=30)
        emulator.stop()
        assert len(acknowledged) > 1000, len(acknowledged)
        second = Emulator(port=port, state_dir=state, persist=True, snapshot_s=2).start()
        _use(second)

        # THEN the emulator reports that every logged record is back and none is missing
        window = read_crash_window(state)
        assert window is not None
        assert window["unplaceable"] == 0, window
        assert window["restored"] > 0, window  # some were acknowledged after the last snapshot
        assert window["text"].startswith("none missing"), window["text"]
        # AND once the archive is rebuilt into the tables (what `iotpipe up` does after an unclean stop)
        # and the stream drained, every acknowledged reading is aggregated, none twice, none invented
        rebuild_stack(stack)
        ddb = boto3.client("dynamodb")
        want = set(acknowledged)
        held = wait_for(lambda: (got := _applied(ddb, out["AggregatesTableName"])) >= want and got, 120, 3)
        got = _applied(ddb, out["AggregatesTableName"])
        assert held, f"{len(want - got)} of {len(want)} acknowledged readings missing after the restart"
        assert got <= set(sent)
        counted = sum(int(i["count"]["N"]) for i in _scan(ddb, out["AggregatesTableName"]))
        assert counted == len(got)
    finally:
        for em in (second, emulator):
            if em is not None:
                em.stop()
