"""``iotpipe cost``: the monthly AWS cost of the pipeline, per component, and per million readings.

    iotpipe cost --devices 1000 --rate 1 [--json] [--batch-size N] [--batching-window S] [--shards N]
    iotpipe cost --devices 1000 --rate 1 --from-bench out/e2e.json
    iotpipe cost --devices 1000 --rate 1 --from-calls out/calls.json     # bench/calls.py's counts
    iotpipe cost --devices 1000000 --rate 1 --from-shard-bench bench/results/shard-load-DATE.json
    iotpipe cost --devices 1000 --rate 1 --aggregates-billing-mode PAY_PER_REQUEST
    iotpipe cost --devices 1000 --rate 1 --athena-queries-per-day 50 --athena-days-per-query 1
    iotpipe cost --devices 1000 --rate 1 --detector sagemaker [--sagemaker-memory-mb 2048]
    iotpipe cost --devices 1000 --rate 1 --sweep [--plot out/cost-vs-fleet.png]   # 1k to 1M devices

Everything is a flag with the default documented beside it. The output ends with one JSON object
(``--json``: only that line).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import typer

from iotpipe.console import run_app
from iotpipe.cost.bench_input import measured_from_bench, measured_from_calls, measured_from_shard_bench
from iotpipe.cost.estimate import estimate
from iotpipe.cost.render import render, to_json
from iotpipe.cost.scale import FLEETS, fleet_sweep, plot_sweep
from iotpipe.cost.scenarios import what_if
from iotpipe.cost.workload import Measured, Workload

D = Workload(devices=0, rate_hz=0)  # the defaults every option shows
app = typer.Typer(add_completion=False, help="Monthly AWS cost of the pipeline.")


@app.command()
def cost(
    devices: Annotated[int, typer.Option(help="devices in the fleet")],
    rate: Annotated[float, typer.Option(help="readings per second per device (Hz)")],
    json_only: Annotated[bool, typer.Option("--json", help="print only the JSON object")] = False,
    from_bench: Annotated[Path | None, typer.Option(
        metavar="FILE", help="use per-reading counts from bench/end_to_end.py output instead of the formula")
    ] = None,
    from_calls: Annotated[Path | None, typer.Option(
        metavar="FILE", help="use the DynamoDB calls per reading counted by bench/calls.py")] = None,
    from_shard_bench: Annotated[Path | None, typer.Option(
        metavar="FILE", help="use bench/shard_load.py's counts for the point of --devices")] = None,
    aggregates_billing_mode: Annotated[str, typer.Option(
        help="PROVISIONED (auto scaled) or PAY_PER_REQUEST (default: the template's AggregatesBillingMode)")
    ] = D.aggregates_billing_mode,
    shards: Annotated[int | None, typer.Option(
        show_default=False, help="default: sized for 80% of the shard limits")] = None,
    batch_size: int = D.batch_size,
    batching_window: Annotated[float, typer.Option(metavar="SECONDS")] = D.batching_window_s,
    record_bytes: Annotated[int, typer.Option(help="bytes of one reading (JSON)")] = D.record_bytes,
    readings_per_record: Annotated[int, typer.Option(
        help="readings packed per Kinesis record (default: the simulator's SIM_PACK, 25; 1 = unpacked)")
    ] = D.readings_per_record,
    malformed_rate: float = D.malformed_rate,
    anomaly_rate: float = D.anomaly_rate,
    archive_bytes_per_reading: float = D.archive_bytes_per_reading,
    api_requests_per_day: float = D.api_requests_per_day,
    aggregates_retention_days: float = D.aggregates_retention_days,
    ia_small_object_filter: Annotated[bool, typer.Option(
        "--ia-small-object-filter/--no-ia-small-object-filter",
        help="the lifecycle rule transitions only objects >= 128 KB to Standard-IA (default: as in the "
             "template)")] = D.archive_ia_min_object_filter,
    no_pitr: Annotated[bool, typer.Option("--no-pitr", help="tables without point-in-time recovery")] = False,
    write_concurrency: Annotated[int, typer.Option(
        help="processor threads writing windows (default: the template's ProcessorWriteConcurrency)")
    ] = D.write_concurrency,
    ingest_via_api: Annotated[bool, typer.Option(
        "--ingest-via-api", help="devices POST /ingest instead of PutRecords")] = False,
    mqtt: Annotated[str, typer.Option(
        help="devices publish over MQTT to IoT Core: messaging (to their topic), basic-ingest (to the "
             "rule's $aws/rules/ topic: no messaging charge) or none (PutRecords)")] = "none",
    ddb_write_ms: float = D.ddb_write_ms,
    athena_queries_per_day: Annotated[float, typer.Option(
        help="Athena queries a day over the archive (docs/querying.md; default 0: not costed)")
    ] = D.athena_queries_per_day,
    athena_days_per_query: Annotated[float, typer.Option(
        help="days of archive each of those queries scans")] = D.athena_days_per_query,
    athena_table: Annotated[str, typer.Option(
        help="the table they read: processed (gzip JSON) or processed_compacted (Parquet)")] = D.athena_table,
    detector: Annotated[str, typer.Option(
        help="embedded (in the processor) or sagemaker (the serverless endpoint; default: the template's "
             "DetectorBackend)")] = D.detector_backend,
    sagemaker_memory_mb: Annotated[int, typer.Option(
        help="the endpoint's memory (default: the template's SageMakerServerlessMemoryMB)")
    ] = D.sagemaker_memory_mb,
    compression: Annotated[str, typer.Option(
        help="gzip (packed records gzipped by the producer, the simulator's default) or none")
    ] = D.compression,
    sweep: Annotated[bool, typer.Option(
        "--sweep", help="also cost the same settings at 1k, 10k, 100k and 1M devices, and plot them")
    ] = False,
    plot: Annotated[Path, typer.Option(metavar="FILE", help="where --sweep writes its plot")
    ] = Path("out/cost-vs-fleet.png"),
) -> int:
    if devices <= 0 or rate <= 0:
        print("--devices and --rate must be positive", file=sys.stderr)
        return 2
    if aggregates_billing_mode not in ("PROVISIONED", "PAY_PER_REQUEST"):
        print("--aggregates-billing-mode must be PROVISIONED or PAY_PER_REQUEST", file=sys.stderr)
        return 2
    if sum(f is not None for f in (from_bench, from_calls, from_shard_bench)) > 1:
        print("--from-bench, --from-calls and --from-shard-bench are exclusive", file=sys.stderr)
        return 2
    if detector not in ("embedded", "sagemaker"):
        print(f"--detector is embedded or sagemaker, not {detector!r}", file=sys.stderr)
        return 2
    if sagemaker_memory_mb not in (1024, 2048, 3072, 4096, 5120, 6144):
        print("--sagemaker-memory-mb is one of 1024, 2048, ... 6144 (serverless sizes)", file=sys.stderr)
        return 2
    if mqtt not in ("none", "messaging", "basic-ingest"):
        print(f"--mqtt is none, messaging or basic-ingest, not {mqtt!r}", file=sys.stderr)
        return 2
    if compression not in ("gzip", "none"):
        print(f"--compression is gzip or none, not {compression!r}", file=sys.stderr)
        return 2
    if athena_table not in ("processed", "processed_compacted"):
        print(f"--athena-table is processed or processed_compacted, not {athena_table!r}", file=sys.stderr)
        return 2
    workload = Workload(
        devices=devices,
        rate_hz=rate,
        shards=shards,
        batch_size=batch_size,
        batching_window_s=batching_window,
        record_bytes=record_bytes,
        # Over MQTT the readings rule stores each message (one reading) as one Kinesis record.
        readings_per_record=1 if mqtt != "none" else max(1, readings_per_record),
        compression=compression,
        malformed_rate=malformed_rate,
        anomaly_rate=anomaly_rate,
        archive_bytes_per_reading=archive_bytes_per_reading,
        api_requests_per_day=api_requests_per_day,
        aggregates_retention_days=aggregates_retention_days,
        archive_ia_min_object_filter=ia_small_object_filter,
        ingest_via_api=ingest_via_api,
        mqtt_ingest=mqtt,
        aggregates_pitr=D.aggregates_pitr and not no_pitr,
        anomalies_pitr=D.anomalies_pitr and not no_pitr,
        write_concurrency=max(1, write_concurrency),
        ddb_write_ms=ddb_write_ms,
        athena_queries_per_day=max(0.0, athena_queries_per_day),
        athena_days_per_query=max(0.0, athena_days_per_query),
        athena_table=athena_table,
        aggregates_billing_mode=aggregates_billing_mode,
        detector_backend=detector,
        sagemaker_memory_mb=sagemaker_memory_mb,
    )
    measured = None
    try:
        if from_bench:
            measured = measured_from_bench(from_bench)
        elif from_calls:
            measured = measured_from_calls(from_calls)
        elif from_shard_bench:
            measured = measured_from_shard_bench(from_shard_bench, devices)
    except (OSError, ValueError, KeyError) as exc:
        print(f"cannot read bench figures: {exc}", file=sys.stderr)
        return 2
    est = estimate(workload, measured=measured)
    doc = to_json(est, what_if(workload))
    if sweep:
        doc["fleet_sweep"] = fleet_sweep(workload, sorted({*FLEETS, devices}),
                                         shard_bench_points(from_shard_bench) if from_shard_bench else None)
        doc["fleet_sweep_plot"] = str(plot_sweep(doc["fleet_sweep"], plot, rate))
    if not json_only:
        print(render(est))
        for row in doc["what_if"]:
            print(f"  what if {row['scenario']:<50} {row['usd_per_million_readings']:.4f} USD/M readings "
                  f"({row['ddb_writes_per_reading']:.3f} writes/reading, "
                  f"{row['total_usd_per_month']:,.0f} USD/month)")
        if sweep:
            print(render_sweep(doc["fleet_sweep"], doc["fleet_sweep_plot"]))
    print(json.dumps(doc, sort_keys=True))
    return 0


def shard_bench_points(path: Path) -> Callable[[int], Measured | None]:
    """The measured figures of each fleet size the per-shard bench counted (None for the others)."""
    def measured_for(devices: int) -> Measured | None:
        try:
            return measured_from_shard_bench(path, devices)
        except ValueError:
            return None
    return measured_for


def render_sweep(rows: list[dict[str, Any]], plot_path: str) -> str:
    out = ["", "  the same settings across fleet sizes (modelled; increases: default quotas to raise)",
           f"    {'devices':>9} {'shards':>6} {'USD/M':>7} {'USD/month':>11} {'writes/reading':>15} "
           f"{'latency mean/max s':>19}  increases"]
    for r in rows:
        lat = r["latency_s"]
        raise_ = "; ".join(f"{i['quota']} to {i['to']:,}" for i in r["increases"]) or "none"
        measured = (f"  [measured {r['measured_usd_per_million_readings']:.4f}]"
                    if "measured_usd_per_million_readings" in r else "")
        out.append(f"    {r['devices']:>9,} {r['shards']:>6} {r['usd_per_million_readings']:>7.4f} "
                   f"{r['total_usd_per_month']:>11,.0f} {r['ddb_writes_per_reading']:>15.4f} "
                   f"{lat['mean']:>9.1f} / {lat['max']:<7.1f}  {raise_}{measured}")
    out.append(f"  plot: {plot_path}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    return run_app(app, argv, prog_name="iotpipe cost")


if __name__ == "__main__":
    raise SystemExit(main())
