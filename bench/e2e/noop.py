"""The no-op baseline: a stream whose event source mapping invokes a function that only counts records,
so the pipeline's drain rate can be set against what the emulator itself sustains."""

from __future__ import annotations

import io
import json
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


def noop_role(stream_arn: str) -> str:
    """The role the no-op function runs as: the emulator enforces IAM (AUTH=true), so CreateFunction needs
    a role that exists, and the mapping reads the stream as that role."""
    iam = boto3.client("iam")
    name = "bench-noop"
    trust = {"Version": "2012-10-17", "Statement": [
        {"Effect": "Allow", "Principal": {"Service": "lambda.amazonaws.com"}, "Action": "sts:AssumeRole"}]}
    try:
        arn = iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(trust))["Role"]["Arn"]
    except iam.exceptions.EntityAlreadyExistsException:
        arn = iam.get_role(RoleName=name)["Role"]["Arn"]
    read = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Resource": stream_arn, "Action": [
        "kinesis:GetRecords", "kinesis:GetShardIterator", "kinesis:DescribeStream",
        "kinesis:DescribeStreamSummary", "kinesis:ListShards"]}]}
    iam.put_role_policy(RoleName=name, PolicyName=stream_arn.rsplit("/", 1)[-1],
                        PolicyDocument=json.dumps(read))
    return str(arn)


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
        Role=noop_role(arn), Code={"ZipFile": buf.getvalue()},
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
