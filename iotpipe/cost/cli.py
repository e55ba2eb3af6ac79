"""``iotpipe cost``: the monthly AWS cost of the pipeline, per component, and per million readings.

    iotpipe cost --devices 1000 --rate 1 [--json] [--batch-size N] [--batching-window S] [--shards N]
    iotpipe cost --devices 1000 --rate 1 --from-bench out/e2e.json

Everything is a flag with the default documented beside it. The output ends with one JSON object
(``--json``: only that line).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from iotpipe.cost.bench_input import measured_from_bench
from iotpipe.cost.estimate import estimate
from iotpipe.cost.render import render, to_json
from iotpipe.cost.scenarios import what_if
from iotpipe.cost.workload import Workload


def build_parser() -> argparse.ArgumentParser:
    d = Workload(devices=0, rate_hz=0)
    ap = argparse.ArgumentParser(prog="iotpipe cost", description="Monthly AWS cost of the pipeline.")
    ap.add_argument("--devices", type=int, required=True)
    ap.add_argument("--rate", type=float, required=True, help="readings per second per device (Hz)")
    ap.add_argument("--json", action="store_true", help="print only the JSON object")
    ap.add_argument("--from-bench", type=Path, metavar="FILE",
                    help="use per-reading counts from bench/e2e.py output instead of the formula")
    ap.add_argument("--shards", type=int, default=None, help="default: sized for 80%% of the shard limits")
    ap.add_argument("--batch-size", type=int, default=d.batch_size)
    ap.add_argument("--batching-window", type=float, default=d.batching_window_s, metavar="SECONDS")
    ap.add_argument("--record-bytes", type=int, default=d.record_bytes, help="bytes of one reading (JSON)")
    ap.add_argument("--readings-per-record", type=int, default=d.readings_per_record,
                    help="readings packed per Kinesis record (default: the simulator's SIM_PACK, 25; "
                         "1 = unpacked)")
    ap.add_argument("--malformed-rate", type=float, default=d.malformed_rate)
    ap.add_argument("--anomaly-rate", type=float, default=d.anomaly_rate)
    ap.add_argument("--archive-bytes-per-reading", type=float, default=d.archive_bytes_per_reading)
    ap.add_argument("--api-requests-per-day", type=float, default=d.api_requests_per_day)
    ap.add_argument("--aggregates-retention-days", type=float, default=d.aggregates_retention_days)
    ap.add_argument("--ia-small-object-filter", action=argparse.BooleanOptionalAction,
                    default=d.archive_ia_min_object_filter,
                    help="the lifecycle rule transitions only objects >= 128 KB to Standard-IA "
                         "(default: as in the template)")
    ap.add_argument("--no-pitr", action="store_true", help="tables without point-in-time recovery")
    ap.add_argument("--write-concurrency", type=int, default=d.write_concurrency,
                    help="processor threads writing windows "
                         "(default: the template's ProcessorWriteConcurrency)")
    ap.add_argument("--ingest-via-api", action="store_true",
                    help="devices POST /ingest instead of PutRecords")
    ap.add_argument("--ddb-write-ms", type=float, default=d.ddb_write_ms)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    d = Workload(devices=0, rate_hz=0)
    if args.devices <= 0 or args.rate <= 0:
        print("--devices and --rate must be positive", file=sys.stderr)
        return 2
    workload = Workload(
        devices=args.devices,
        rate_hz=args.rate,
        shards=args.shards,
        batch_size=args.batch_size,
        batching_window_s=args.batching_window,
        record_bytes=args.record_bytes,
        readings_per_record=max(1, args.readings_per_record),
        malformed_rate=args.malformed_rate,
        anomaly_rate=args.anomaly_rate,
        archive_bytes_per_reading=args.archive_bytes_per_reading,
        api_requests_per_day=args.api_requests_per_day,
        aggregates_retention_days=args.aggregates_retention_days,
        archive_ia_min_object_filter=args.ia_small_object_filter,
        ingest_via_api=args.ingest_via_api,
        aggregates_pitr=d.aggregates_pitr and not args.no_pitr,
        anomalies_pitr=d.anomalies_pitr and not args.no_pitr,
        write_concurrency=max(1, args.write_concurrency),
        ddb_write_ms=args.ddb_write_ms,
    )
    measured = None
    if args.from_bench:
        try:
            measured = measured_from_bench(args.from_bench)
        except (OSError, ValueError, KeyError) as exc:
            print(f"cannot read bench figures: {exc}", file=sys.stderr)
            return 2
    est = estimate(workload, measured=measured)
    doc = to_json(est, what_if(workload))
    if not args.json:
        print(render(est))
        for row in doc["what_if"]:
            print(f"  what if {row['scenario']:<50} {row['usd_per_million_readings']:.4f} USD/M readings "
                  f"({row['ddb_writes_per_reading']:.3f} writes/reading, "
                  f"{row['total_usd_per_month']:,.0f} USD/month)")
    print(json.dumps(doc, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
