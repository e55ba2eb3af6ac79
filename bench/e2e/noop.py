"""The no-op baseline: a stream whose event source mapping invokes a function that only counts records,
so the pipeline's drain rate can be set against what the emulator itself sustains."""

from __future__ import annotations

import io
import zipfile
from pathlib import Path

import boto3

from bench.e2e.measure import wait_until

NOOP_SOURCE = '''
import os, time
def handler(event, context):
    # Appends one line per invocation so the benchmark can see the mapping drain; otherwise a no-op.
    with open(os.environ["NOOP_COUNT_FILE"], "a") as f:
        f.write(f"{len(event.get('Records') or [])} {time.time()}\\n")
    return {}
'''


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
