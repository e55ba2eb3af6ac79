"""The SageMaker backend end to end: the deployed processor's real sagemaker-runtime client calls the real
model server (serving/, a process on 127.0.0.1, found through AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME).

One stack with ``DetectorBackend=sagemaker`` serves every test here (deployed once for the module), with
``SageMakerFailurePolicy=fail`` as its own setting: a processor that could not reach the server would then
aggregate nothing, so a test that sees its readings aggregated knows the server scored them. The failure
policy tests switch the policy through the function's environment and stop or stall the server
mid-stream: readings before, during and after the outage are all conserved (aggregates equal the
reference computed from the simulator's records, every record archived once), and the
``DetectorBackendFailures`` metric counts the failures under the policy that handled them.
"""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from iotpipe.local.model_server import ModelServer
from iotpipe.ops.stack import deploy, stack_outputs
from simulator.config import SimulatorConfig
from simulator.fleet import generate_fleet
from simulator.stream import generate_readings
from tests.integration.archive_objects import archived_lines
from tests.integration.fault_support import Batch, _set_environment, check_pipeline, register
from tests.integration.polling import wait_for
from tests.integration.stacks import delete_stack
from tests.integration.streams import put_records

TARGET = os.environ.get("IOTPIPE_TARGET", "embedded")
# (device id without the batch prefix, epoch ms) -> (anomaly, score, severity)
Verdicts = dict[tuple[str, int], tuple[bool, float, str]]


@pytest.fixture(scope="module")
def sagemaker_stack(emulator_endpoint: str) -> Iterator[tuple[dict[str, str], ModelServer]]:
    # GIVEN the model server on 127.0.0.1 (inside LocalStack's network namespace on that target, where the
    # suite and the functions run) and a stack whose processor calls it
    server = ModelServer(endpoint_name=f"sm-{uuid.uuid4().hex[:6]}").start()
    name = f"sm-{uuid.uuid4().hex[:8]}"
    try:
        # A 1 s batching window keeps each phase short on LocalStack (it honours the window); retries
        # that outlast a short outage let the "fail" policy's redelivery succeed there (ministack retries
        # a failed invocation for ever).
        deploy(name, target=TARGET, quiet=True, extra_args=[
            *server.deploy_params(failure_policy="fail"),
            "--param", "BatchingWindowSeconds=1", "--param", "MaximumRetryAttempts=100"])
        outputs = stack_outputs(name)
        outputs["StackName"] = name
        yield outputs, server
    finally:
        if os.environ.get("IOTPIPE_KEEP_STACK") != "1":
            delete_stack(name)
        server.stop()


def _batch(devices: int, count: int, seed: int, anomaly_rate: float = 0.05) -> Batch:
    prefix = f"s{uuid.uuid4().hex[:6]}-"
    config = SimulatorConfig(devices=devices, rate_hz=1.0, seed=seed, malformed_rate=0.05,
                             anomaly_rate=anomaly_rate, count=count, burst=True)
    fleet = generate_fleet(devices, seed)
    start = int((time.time() - 170) * 1000)  # inside the allowed lateness, windows already closed
    return Batch(prefix, fleet, list(generate_readings(config, fleet, start_ms=start)))


def _send(outputs: dict[str, str], batch: Batch) -> None:
    register(boto3.client("dynamodb"), outputs["DevicesTableName"], batch)
    put_records(boto3.client("kinesis"), outputs["StreamName"], batch.payloads())


def _verdicts(outputs: dict[str, str], batch: Batch) -> Verdicts:
    """The verdict the archive recorded for each aggregated reading of the batch."""
    out: Verdicts = {}
    for line in archived_lines(boto3.client("s3"), outputs["ArchiveBucketName"], "processed/"):
        doc = line.doc
        if doc.get("device_id", "").startswith(batch.prefix) and doc.get("status") == "aggregated":
            key = (doc["device_id"].removeprefix(batch.prefix), int(doc["epoch_ms"]))
            out[key] = (bool(doc["anomaly"]), float(doc["anomaly_score"]), str(doc["severity"]))
    return out


def _unscored(verdicts: Verdicts) -> int:
    # The skip policy's verdict: not an anomaly, score 0.0, severity none (a real score is never 0.0)
    return sum(1 for anomaly, score, severity in verdicts.values()
               if not anomaly and score == 0.0 and severity == "none")


def _failures(policy: str, since: datetime) -> float:
    """DetectorBackendFailures{Policy} summed since ``since`` (the processor publishes it per batch)."""
    cw = boto3.client("cloudwatch")
    stats = cw.get_metric_statistics(
        Namespace="IoTPipeline", MetricName="DetectorBackendFailures",
        Dimensions=[{"Name": "Policy", "Value": policy}], StartTime=since - timedelta(minutes=1),
        EndTime=datetime.now(tz=UTC) + timedelta(minutes=1), Period=60, Statistics=["Sum"])
    return sum(float(p["Sum"]) for p in stats["Datapoints"])


@contextmanager
def _policy(outputs: dict[str, str], policy: str) -> Iterator[None]:
    """The processor's SAGEMAKER_FAILURE_POLICY for the block (the update recycles its workers)."""
    lam = boto3.client("lambda")
    function = outputs["ProcessorFunctionName"]
    original = dict(lam.get_function_configuration(FunctionName=function)["Environment"]["Variables"])
    _set_environment(lam, function, {**original, "SAGEMAKER_FAILURE_POLICY": policy})
    try:
        yield
    finally:
        _set_environment(lam, function, original)


def test_the_sagemaker_backend_gives_the_embedded_backends_verdicts(
    deployed_stack: dict[str, str], sagemaker_stack: tuple[dict[str, str], ModelServer],
) -> None:
    outputs, _server = sagemaker_stack
    # GIVEN the same simulator records, with anomalies, sent to the embedded stack and the SageMaker one
    batch = _batch(devices=8, count=240, seed=26, anomaly_rate=0.08)
    _send(deployed_stack, batch)
    _send(outputs, batch)
    # WHEN both pipelines have processed them (the SageMaker stack's policy is "fail": without the server
    # its batches would be handed back, never aggregated)
    check_pipeline(deployed_stack, batch)
    check_pipeline(outputs, batch)
    # THEN every reading has the same verdict, score included, through both backends
    embedded, sagemaker = _verdicts(deployed_stack, batch), _verdicts(outputs, batch)
    assert embedded
    assert sagemaker == embedded
    assert any(anomaly for anomaly, _, _ in sagemaker.values()), "the batch should flag some anomalies"
    assert _unscored(sagemaker) == 0


@pytest.mark.parametrize(("policy", "outage"), [("fallback", "stop"), ("skip", "stall"), ("fail", "stop")])
def test_a_failure_policy_when_the_server_stops_or_stalls_mid_stream(
    sagemaker_stack: tuple[dict[str, str], ModelServer], policy: str, outage: str,
) -> None:
    outputs, server = sagemaker_stack
    since = datetime.now(tz=UTC)
    before, during, after = (_batch(devices=5, count=60, seed=s) for s in (1, 2, 3))
    with _policy(outputs, policy):
        # GIVEN readings scored by the server
        _send(outputs, before)
        check_pipeline(outputs, before)
        assert _unscored(_verdicts(outputs, before)) == 0
        # WHEN the server stops (connections refused) or stalls (connections never answered) and more
        # readings arrive
        if outage == "stop":
            server.stop()
        else:
            server.pause()
        try:
            _send(outputs, during)
            if policy == "fail":
                # the batch is handed back for redelivery while the server is down: nothing aggregated yet
                time.sleep(6)
                assert not _verdicts(outputs, during)
            else:
                check_pipeline(outputs, during)
        finally:
            if outage == "stop":
                server.start()  # the same port: the function's AWS_ENDPOINT_URL_SAGEMAKER_RUNTIME
            else:
                server.resume()
        if policy == "fail":
            check_pipeline(outputs, during, timeout_s=120, redelivered=True)
        # AND the server is back for the last readings
        _send(outputs, after)
        check_pipeline(outputs, after)

    # THEN nothing was lost (check_pipeline: aggregates equal the reference, every record archived once)
    # AND the readings of the outage got the policy's verdicts
    during_verdicts = _verdicts(outputs, during)
    if policy == "skip":
        assert during_verdicts
        assert _unscored(during_verdicts) == len(during_verdicts)  # kept, not scored
    else:
        assert _unscored(during_verdicts) == 0  # fallback: the embedded model; fail: the server, later
    assert _unscored(_verdicts(outputs, after)) == 0  # the server scores again
    # AND the failures were counted under this policy
    counted = wait_for(lambda: _failures(policy, since), 30, 2)
    assert counted, f"DetectorBackendFailures{{Policy={policy}}} = {counted}"

