"""``--from-bench FILE``: the per-reading figures counted by ``bench/end_to_end.py`` on the emulator, which
replace the formula's (invocations, durations, writes, reads, PUTs, bytes); ``--from-calls FILE``: the AWS
calls per 1,000 readings counted by ``bench/calls.py`` at the model's configuration (window writes,
prefetch rows, write units per write, item size), which replace the formula's DynamoDB figures;
``--from-shard-bench FILE``: one shard of the fleet at its per-shard load, counted by
``bench/shard_load.py`` (the point whose fleet size is ``--devices``)."""

from __future__ import annotations

import json
from pathlib import Path

from iotpipe.cost.workload import Measured


def measured_from_bench(path: Path) -> Measured:
    """Per-reading figures from the last JSON line of a bench/end_to_end.py run (its ``cost_inputs``)."""
    text = [ln for ln in path.read_text().splitlines() if ln.strip().startswith("{")]
    if not text:
        raise ValueError(f"{path}: no JSON line")
    doc = json.loads(text[-1])
    c = doc.get("cost_inputs", doc)
    readings = float(c["readings"])
    if readings <= 0:
        raise ValueError(f"{path}: cost_inputs.readings must be positive")
    invocations = float(c.get("processor_invocations") or 0)

    def per_reading(key: str) -> float | None:
        return float(c[key]) / readings if c.get(key) is not None else None

    return Measured(
        source=f"bench:{path}",
        invocations_per_reading=invocations / readings if invocations else None,
        processor_ms_per_invocation=(
            float(c["processor_duration_ms"]) / invocations
            if invocations and c.get("processor_duration_ms") is not None
            else None
        ),
        ddb_writes_per_reading=per_reading("ddb_writes"),
        ddb_reads_per_reading=per_reading("ddb_reads"),
        s3_puts_per_reading=per_reading("s3_puts"),
        archive_bytes_per_reading=per_reading("s3_bytes"),
        record_bytes=per_reading("kinesis_bytes"),
        item_bytes=float(c["ddb_item_bytes_avg"]) if c.get("ddb_item_bytes_avg") else None,
        metric_calls_per_invocation=(
            float(c["metric_calls"]) / invocations
            if invocations and c.get("metric_calls") is not None
            else None
        ),
    )


def measured_from_calls(path: Path) -> Measured:
    """DynamoDB figures from the last JSON line of a bench/calls.py run.

    Only what does not depend on the counting fleet's size is taken: aggregate writes and prefetch rows per
    reading (set by the seconds of stream per batch and the window), write units per write and the item
    size. Per-batch calls (S3 PUTs, invocations) scale with the fleet and stay the formula's. Every
    counted figure is reported as it was counted (``counted``)."""
    text = [ln for ln in path.read_text().splitlines() if ln.strip().startswith("{")]
    if not text:
        raise ValueError(f"{path}: no JSON line")
    doc = json.loads(text[-1])
    per_k = doc["per_1000_readings"]
    consumed = doc.get("consumed_per_1000_readings") or {}
    writes = float(per_k["dynamodb.PutItem.aggregates"])
    if writes <= 0:
        raise ValueError(f"{path}: no aggregate writes counted")
    counted = {**{k: float(v) for k, v in per_k.items()},
               **{f"consumed.{k}": float(v) for k, v in consumed.items()},
               "batch_seconds": float(doc["batch_seconds"]), "readings": float(doc["readings"])}
    return Measured(
        source=f"calls:{path}",
        ddb_writes_per_reading=writes / 1000,
        ddb_reads_per_reading=float(per_k.get("dynamodb.BatchGetItem.aggregates.keys", 0.0)) / 1000,
        # the steady state's item (a whole window); the run's first and last windows are partial
        item_bytes=float(doc["full_window_item_bytes"]) if doc.get("full_window_item_bytes") else None,
        wcu_per_write=(float(consumed["PutItem.aggregates"]) / writes
                       if consumed.get("PutItem.aggregates") is not None else None),
        counted=counted,
    )


def measured_from_shard_bench(path: Path, devices: int) -> Measured:
    """The counted figures of the point for a ``devices``-device fleet in a bench/shard_load.py run.

    One shard of that fleet replayed at its per-shard load, so every per-reading figure is the fleet's:
    invocations, window writes and prefetch rows, S3 PUTs and bytes, write units per window write and a
    whole window's item size. The processor's milliseconds are this machine's wall time against the
    emulator, not Lambda's: reported in ``counted``, the model keeps its own duration. A point that did not
    conserve its readings is refused."""
    text = [ln for ln in path.read_text().splitlines() if ln.strip().startswith("{")]
    if not text:
        raise ValueError(f"{path}: no JSON line")
    points = json.loads(text[-1]).get("points")
    if not isinstance(points, list):
        raise ValueError(f"{path}: not a bench/shard_load.py result (no points)")
    match = [p for p in points if int(p["fleet_devices"]) == devices]
    if not match:
        sizes = ", ".join(f"{int(p['fleet_devices']):,}" for p in points)
        raise ValueError(f"{path}: no point for {devices:,} devices (it measured {sizes})")
    p = match[0]
    if not p.get("conserved"):
        raise ValueError(f"{path}: the {devices:,}-device point did not conserve its readings")
    readings = float(p["readings"])
    per_k = p["per_1000_readings"]
    consumed = p.get("consumed_per_1000_readings") or {}
    writes = float(per_k.get("dynamodb.PutItem.aggregates", 0.0))
    if readings <= 0 or writes <= 0:
        raise ValueError(f"{path}: the {devices:,}-device point counted no readings or no window writes")
    counted = {**{k: float(v) for k, v in per_k.items()},
               **{f"consumed.{k}": float(v) for k, v in consumed.items()},
               "readings": readings, "fleet_devices": float(devices),
               "devices_per_shard": float(p["devices_per_shard"]),
               "mean_batch_seconds": float(p["mean_batch_seconds"]),
               "processor_ms_per_invocation_this_machine": float(p["processor_ms_per_invocation"]["mean"])}
    return Measured(
        source=f"shard-bench:{path}#{devices}",
        invocations_per_reading=float(p["invocations_per_1000_readings"]) / 1000,
        ddb_writes_per_reading=writes / 1000,
        ddb_reads_per_reading=float(per_k.get("dynamodb.BatchGetItem.aggregates.keys", 0.0)) / 1000,
        s3_puts_per_reading=float(p["s3_puts_per_reading"]),
        archive_bytes_per_reading=float(p["s3_bytes_per_reading"]),
        item_bytes=float(p["full_window_item_bytes"]) if p.get("full_window_item_bytes") else None,
        wcu_per_write=(float(consumed["PutItem.aggregates"]) / writes
                       if consumed.get("PutItem.aggregates") is not None else None),
        counted=counted,
    )
