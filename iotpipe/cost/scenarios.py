"""What-ifs: the same fleet under other settings (formula only), each one change from the workload."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from iotpipe.cost.estimate import TARGET_USD_PER_MILLION, estimate
from iotpipe.cost.prices import DEFAULT_PRICES, Prices
from iotpipe.cost.workload import Workload


def what_if_scenarios(w: Workload) -> list[tuple[str, dict[str, Any]]]:
    """Changes relative to ``w`` (the template's defaults unless flags changed them): what moves the cost."""
    window = w.batching_window_s
    return [
        (f"as configured (BatchSize {w.batch_size}, window {window:g} s, "
         f"{w.readings_per_record} readings/record)", {}),
        ("one reading per Kinesis record (unpacked, e.g. HTTP ingest)" if w.readings_per_record != 1
         else "25 readings per Kinesis record (the simulator's default pack)",
         {"readings_per_record": 1 if w.readings_per_record != 1 else 25}),
        ("BatchingWindowSeconds 10 (faster alerts)", {"batching_window_s": 10.0}),
        ("BatchSize 500, window 10 s (the first defaults)", {"batch_size": 500, "batching_window_s": 10.0}),
        ("IA transition without the 128 KB size filter" if w.archive_ia_min_object_filter
         else "IA transition only for objects >= 128 KB",
         {"archive_ia_min_object_filter": not w.archive_ia_min_object_filter}),
        ("simulator's 1 % injection all flagged", {"anomaly_rate": 0.01}),
        (f"BatchingWindowSeconds {max(60.0, window * 2):g}", {"batching_window_s": max(60.0, window * 2)}),
        ("aggregates table on-demand (PAY_PER_REQUEST)" if w.aggregates_billing_mode == "PROVISIONED"
         else "aggregates table PROVISIONED, auto scaled",
         {"aggregates_billing_mode": "PAY_PER_REQUEST" if w.aggregates_billing_mode == "PROVISIONED"
          else "PROVISIONED"}),
        ("aggregates kept 90 d with PITR" if not w.aggregates_pitr else "aggregates kept 30 d, no PITR",
         {"aggregates_retention_days": 90.0, "aggregates_pitr": True} if not w.aggregates_pitr
         else {"aggregates_retention_days": 30.0, "aggregates_pitr": False}),
        ("packed records not gzipped" if w.compression == "gzip" else "packed records gzipped",
         {"compression": "none" if w.compression == "gzip" else "gzip"}),
        ("aggregates table class Standard-IA (storage -60 %, throughput +25 %)"
         if w.aggregates_table_class == "STANDARD" else "aggregates table class Standard",
         {"aggregates_table_class": "STANDARD_INFREQUENT_ACCESS" if w.aggregates_table_class == "STANDARD"
          else "STANDARD"}),
        ("ArchiveCompaction disabled (no Parquet copy)" if w.archive_compaction
         else "ArchiveCompaction enabled (hourly Parquet copy)",
         {"archive_compaction": not w.archive_compaction}),
        ("shards sized by the write limits only (not for the batching window)",
         {"shard_sizing": "write_limits"}),
    ]


def what_if(w: Workload, prices: Prices = DEFAULT_PRICES) -> list[dict[str, Any]]:
    """The same fleet under other settings (formula only), each one change from ``w``."""
    rows = []
    for label, change in what_if_scenarios(w):
        est = estimate(replace(w, **change), prices)
        rows.append({"scenario": label, "change": change,
                     "usd_per_million_readings": round(est.per_million, 4),
                     "ddb_writes_per_reading": round(est.ddb_writes_per_reading, 4),
                     "total_usd_per_month": round(est.total, 2),
                     "target_met": est.per_million < TARGET_USD_PER_MILLION})
    return rows
