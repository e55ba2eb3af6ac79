"""Benchmark: devices publishing over MQTT (mTLS, a certificate each) into the pipeline, embedded emulator.

Starts an embedded emulator of its own, deploys the stack (IotCoreIngest=enabled, IotRuleAction=sqs:
the readings rule queues each message, the IoT ingest function puts them on the stream in batches), provisions
``--devices`` identities with `iotpipe devices`' code, registers the same fleet in the devices table,
and runs the simulator's MQTT sink paced at ``--rate`` Hz per device for ``--seconds``. It then waits
until the aggregates hold every acknowledged reading (or ``--drain`` seconds pass).

Prints the publish rate the broker acknowledged (PUBACK), the rate the pipeline aggregated at (from the
first publish to the last aggregated reading), and conservation: sent = aggregated (no malformed or
anomalous readings are generated; the devices table knows every device).

    .venv/bin/python bench/mqtt_throughput.py [--devices 100] [--rate 2] [--seconds 60]

Readable lines first; the last line is one JSON object.
"""

from __future__ import annotations

import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

HERE = Path(__file__).resolve().parent
# Run as ``python bench/mqtt_throughput.py``, this folder is first on sys.path and bench/simulator.py
# would shadow the ``simulator`` package.
sys.path[:] = [p for p in sys.path if Path(p or ".").resolve() != HERE]
sys.path.insert(0, str(HERE.parent))

from iotpipe.devices import provision as prov  # noqa: E402
from iotpipe.devices.registry import IotRegistry  # noqa: E402
from iotpipe.local.emulator import Emulator, free_port  # noqa: E402
from iotpipe.ops.stack import deploy, stack_outputs  # noqa: E402
from iotpipe.settings import use_endpoint  # noqa: E402
from simulator.config import SimulatorConfig  # noqa: E402
from simulator.fleet import generate_fleet, register_fleet  # noqa: E402
from simulator.mqtt_sink import MqttSink  # noqa: E402
from simulator.runner import run  # noqa: E402


def _aggregated(ddb: Any, table: str) -> int:
    total = 0
    kwargs = {"TableName": table, "ProjectionExpression": "#c", "ExpressionAttributeNames": {"#c": "count"}}
    while True:
        page = ddb.scan(**kwargs)
        total += sum(int(float(i["count"]["N"])) for i in page.get("Items", []) if "count" in i)
        if "LastEvaluatedKey" not in page:
            return total
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def main(
    devices: Annotated[int, typer.Option(help="devices, each with its own certificate and connection")] = 100,
    rate: Annotated[float, typer.Option(help="readings per second per device")] = 2.0,
    seconds: Annotated[float, typer.Option(help="how long the devices publish")] = 60.0,
    drain: Annotated[float, typer.Option(help="seconds to wait for the pipeline afterwards")] = 180.0,
) -> None:
    import boto3

    state = Path(tempfile.mkdtemp(prefix="iotpipe-mqtt-bench-"))
    emulator = Emulator(port=free_port(), state_dir=state).start()
    use_endpoint(emulator.client_env())
    try:
        stack = f"mqtt-{uuid.uuid4().hex[:6]}"
        t0 = time.monotonic()
        deploy(stack, target="embedded", quiet=True)
        outputs = stack_outputs(stack)
        print(f"deployed {stack} in {time.monotonic() - t0:.0f} s", flush=True)
        fleet = generate_fleet(devices, seed=42)
        ddb = boto3.client("dynamodb")
        register_fleet(fleet, outputs["DevicesTableName"], ddb)
        key_dir = state / "devices"
        t0 = time.monotonic()
        prov.provision(IotRegistry(), key_dir, [d.device_id for d in fleet], outputs["IotDevicePolicyName"],
                       outputs["IotReadingsTopicPrefix"])
        provision_s = time.monotonic() - t0
        print(f"provisioned {devices} devices in {provision_s:.1f} s", flush=True)

        config = SimulatorConfig(devices=devices, rate_hz=rate, duration_s=seconds, sink="mqtt",
                                 mqtt_key_dir=str(key_dir), anomaly_rate=0.0, malformed_rate=0.0,
                                 include_ground_truth=False)
        sink = MqttSink(key_dir)
        sink.setup()
        start = time.monotonic()
        stats = run(config, sink)
        sink.close()
        publish_s = time.monotonic() - start
        sent = sink.stats.sent
        print(f"published {stats.produced}, acknowledged {sent} in {publish_s:.1f} s "
              f"({sent / publish_s:.0f} msg/s; target {devices * rate:.0f})", flush=True)

        deadline = time.monotonic() + drain
        aggregated, last_change, seen = 0, time.monotonic(), -1
        while time.monotonic() < deadline:
            aggregated = _aggregated(ddb, outputs["AggregatesTableName"])
            if aggregated != seen:
                seen, last_change = aggregated, time.monotonic()
            if aggregated >= sent:
                break
            time.sleep(2)
        pipeline_s = last_change - start
        result = {
            "bench": "mqtt_throughput", "target": "embedded", "devices": devices, "rate_hz": rate,
            "seconds": seconds, "provision_s": round(provision_s, 1), "produced": stats.produced,
            "acknowledged": sent, "failed": sink.stats.failed, "rejected": sink.stats.rejected,
            "publish_msg_per_s": round(sent / publish_s, 1), "target_msg_per_s": devices * rate,
            "aggregated": aggregated, "aggregated_per_s": round(aggregated / pipeline_s, 1),
            "drain_s": round(last_change - start - publish_s, 1), "conserved": aggregated == sent,
        }
        print(orjson.dumps(result).decode(), flush=True)
    finally:
        emulator.stop()


if __name__ == "__main__":
    typer.run(main)
