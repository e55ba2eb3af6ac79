"""An estimate as the JSON object (``--json``, and the last line of every run) and as the readable table."""

from __future__ import annotations

from dataclasses import asdict, replace
from typing import Any

from iotpipe.cost.capacity import capacity
from iotpipe.cost.estimate import (
    HALVING_TARGET_USD_PER_MILLION,
    TARGET_USD_PER_MILLION,
    Estimate,
    athena_bytes_per_query,
)
from iotpipe.cost.init_time import init_facts
from iotpipe.cost.prices import DEFAULT_PRICES, PRICES_AS_OF, REGION
from iotpipe.cost.quotas import quota_plan
from iotpipe.cost.scale import latency_s, window_tradeoff
from iotpipe.cost.sizing import payload_cap
from iotpipe.cost.template_facts import DEFAULTS_FROM
from iotpipe.cost.traffic import monthly_traffic
from iotpipe.cost.workload import Measured


def to_json(est: Estimate, what_if: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    w = est.workload
    return {
        "capacity": capacity(est),
        "devices": w.devices,
        "rate_hz": w.rate_hz,
        "readings_per_month": round(est.readings_per_month),
        "shards": est.shards,
        "batch_size": w.batch_size,
        "batching_window_s": w.batching_window_s,
        "batch_records": round(est.batch_records, 1),
        "batch_seconds": round(est.batch_seconds, 3),
        "batch_limited_by": est.batch_limit,
        "readings_per_record": w.readings_per_record,
        "kinesis_records_per_month": round(est.readings_per_month / max(1, w.readings_per_record)),
        "compression": w.compression,
        "payload_cap_records": payload_cap(w.record_bytes, w.readings_per_record, w.compression),
        "payload_cap_readings": (
            payload_cap(w.record_bytes, w.readings_per_record, w.compression) * max(1, w.readings_per_record)
        ),
        "shard_choice": est.shard_choice,
        "quota_plan": quota_plan(est),
        "deploy_parameters": deploy_parameters(est),
        "latency_s": latency_s(est),
        "batching_window_tradeoff": window_tradeoff(w),
        "write_concurrency": w.write_concurrency,
        "flagged_share": w.anomaly_rate,
        "aggregates_retention_days": w.aggregates_retention_days,
        "processor_invocations_per_month": round(est.invocations_per_month),
        "processor_ms_per_invocation": round(est.processor_ms_per_invocation, 1),
        "ddb_writes_per_reading": round(est.ddb_writes_per_reading, 4),
        "s3_puts_per_reading": round(est.s3_puts_per_reading, 6),
        "components_usd_per_month": {k: round(v, 2) for k, v in est.by_component().items()},
        "items": [
            {**asdict(line), "quantity": round(line.quantity, 3), "usd": round(line.usd, 4)}
            for line in est.lines
        ],
        "total_usd_per_month": round(est.total, 2),
        "usd_per_million_readings": round(est.per_million, 4),
        "variable_usd_per_million_readings": round(est.variable_per_million, 4),
        "target_usd_per_million_readings": TARGET_USD_PER_MILLION,
        "target_met": est.per_million < TARGET_USD_PER_MILLION,
        "halving_target_usd_per_million_readings": HALVING_TARGET_USD_PER_MILLION,
        "halving_target_met": est.per_million <= HALVING_TARGET_USD_PER_MILLION,
        "halving_floor": halving_floor(est),
        "aggregates_billing_mode": w.aggregates_billing_mode,
        "detector_backend": w.detector_backend,
        "sagemaker_memory_mb": w.sagemaker_memory_mb if w.detector_backend == "sagemaker" else None,
        "counted_calls_per_1000_readings": est.counted,
        "dominant_component": est.dominant(),
        "prices_as_of": PRICES_AS_OF,
        "region": REGION,
        "free_tiers": "excluded",
        "source": est.source,
        "defaults_from": DEFAULTS_FROM,
        "what_if": what_if or [],
        "athena": athena_facts(est),
        "init": init_facts(w, est.shards),  # cold starts per function (iotpipe/cost/init_time.py)
    }


def deploy_parameters(est: Estimate) -> dict[str, Any]:
    """The template parameters that deploy this plan (``scripts/deploy.sh --param K=V``)."""
    w = est.workload
    params: dict[str, Any] = {"ShardCount": est.shards, "BatchingWindowSeconds": w.batching_window_s,
                              "BatchSize": w.batch_size}
    if w.aggregates_billing_mode == "PROVISIONED":
        params["AggregatesMaxCapacity"] = w.aggregates_max_units
    return params


# The aggregates table's throughput lines (either capacity mode): what the window writes and reads cost.
_AGGREGATE_THROUGHPUT = ("aggregates WCU", "aggregates RCU", "aggregate writes", "aggregate prefetch",
                         "query API reads")


def halving_floor(est: Estimate) -> dict[str, float]:
    """What the rest of the bill costs per million readings if every aggregate write and read were free,
    and the aggregates' storage + PITR within it: whether any cut of the window writes alone can reach
    the halving target."""
    million = est.readings_per_month / 1e6 if est.readings_per_month else 1.0
    throughput = sum(ln.usd for ln in est.lines if ln.item.startswith(_AGGREGATE_THROUGHPUT))
    retention = sum(ln.usd for ln in est.lines if ln.component == "dynamodb"
                    and ln.item.startswith(("storage", "point-in-time")))
    return {
        "aggregates_throughput_usd_per_month": round(throughput, 2),
        "usd_per_million_without_aggregates_throughput": round((est.total - throughput) / million, 4),
        "dynamodb_storage_and_pitr_usd_per_million": round(retention / million, 4),
    }


def athena_facts(est: Estimate) -> dict[str, Any]:
    """What one query over a day of archive scans and costs, whether or not queries are costed."""
    one_day = replace(est.workload, athena_days_per_query=1.0)
    traffic = monthly_traffic(one_day, Measured(source="formula"))
    scanned = athena_bytes_per_query(one_day, traffic, DEFAULT_PRICES)
    compacted = athena_bytes_per_query(replace(one_day, athena_table="processed_compacted"), traffic,
                                       DEFAULT_PRICES)
    return {
        "usd_per_tb_scanned": DEFAULT_PRICES.athena_per_tb_scanned,
        "table": est.workload.athena_table,
        "bytes_scanned_per_day_query": round(scanned),
        "usd_per_day_query": round(scanned / 1e12 * DEFAULT_PRICES.athena_per_tb_scanned, 4),
        "compacted_bytes_scanned_per_day_query": round(compacted),
        "compacted_usd_per_day_query": round(compacted / 1e12 * DEFAULT_PRICES.athena_per_tb_scanned, 6),
        "queries_per_day": est.workload.athena_queries_per_day,
        "days_per_query": est.workload.athena_days_per_query,
    }


def render(est: Estimate) -> str:
    w = est.workload
    out = [
        f"iotpipe monthly cost on AWS ({REGION}, prices as published {PRICES_AS_OF}, free tiers excluded)",
        f"  {w.devices} devices x {w.rate_hz:g} Hz = {est.readings_per_month / 1e6:,.1f} M readings/month; "
        f"{w.readings_per_record} reading(s)/Kinesis record; "
        f"{est.shards} shard(s); batches of {est.batch_records:,.0f} readings "
        f"({est.batch_seconds:.2f} s of stream, closed by {est.batch_limit}); "
        f"{est.ddb_writes_per_reading:.3f} DynamoDB writes/reading; "
        f"{est.processor_ms_per_invocation:,.0f} ms/invocation ({w.write_concurrency} writer threads); "
        f"{w.anomaly_rate:.2%} flagged  [{est.source}; defaults from {DEFAULTS_FROM}]",
        "",
        f"  {'component':<11} {'item':<45} {'quantity':>16} {'unit':<15} {'USD/month':>10}",
    ]
    for line in est.lines:
        out.append(f"  {line.component:<11} {line.item:<45} {line.quantity:>16,.1f} {line.unit:<15} "
                   f"{line.usd:>10,.2f}")
    out.append("")
    parts = est.by_component()
    for name, usd in sorted(parts.items(), key=lambda kv: -kv[1]):
        share = usd / est.total * 100 if est.total else 0.0
        out.append(f"  {name:<11} {usd:>10,.2f} USD/month  {share:5.1f} %")
    verdict = "met" if est.per_million < TARGET_USD_PER_MILLION else "NOT met"
    halving = "met" if est.per_million <= HALVING_TARGET_USD_PER_MILLION else "NOT met"
    out += [
        f"  {'total':<11} {est.total:>10,.2f} USD/month",
        "",
        f"  cost per million readings: {est.per_million:.4f} USD "
        f"(variable part {est.variable_per_million:.4f}); target < {TARGET_USD_PER_MILLION:.2f}: {verdict}; "
        f"halving target <= {HALVING_TARGET_USD_PER_MILLION:.2f}: {halving}; dominated by {est.dominant()}; "
        f"aggregates table {w.aggregates_billing_mode}",
    ]
    out += render_plan(est)
    athena = athena_facts(est)
    day_gb = athena["bytes_scanned_per_day_query"] / 1e9
    compacted_mb = athena["compacted_bytes_scanned_per_day_query"] / 1e6
    out.append(f"  Athena over the archive ({athena['table']}): a query over one day scans {day_gb:,.2f} GB "
               f"= "
               f"{athena['usd_per_day_query']:.4f} USD at {athena['usd_per_tb_scanned']:.2f} USD/TB; "
               f"over processed_compacted (Parquet) {compacted_mb:,.1f} MB = "
               f"{athena['compacted_usd_per_day_query']:.6f} USD (--athena-queries-per-day N costs N a day)")
    return "\n".join(out)


def render_plan(est: Estimate) -> list[str]:
    """The capacity plan against the default quotas, and the batching window's latency/cost trade-off."""
    plan = quota_plan(est)
    choice = est.shard_choice
    out = ["", f"  capacity plan ({plan['region']} default quotas); deploy with "
           + " ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}"
                      for k, v in deploy_parameters(est).items())]
    if choice:
        out.append(f"  shards: {choice['chosen']} (the write limits need {choice['write_limits']}, a batch "
                   f"spanning the whole window {choice['batching_window']}; the cheapest between is taken)")
    for row in plan["rows"]:
        flag = "ok" if row["within"] else f"RAISE to {row['increase']['to']:,} ({row['increase']['quota']})"
        out.append(f"    {row['resource']:<55} {row['needed']:>12,.1f} of {row['default_quota']:>9,}  {flag}")
    used = plan["hard_limits_used"]
    out.append(f"    per shard: {used['shard_records_per_s']:.1%} of 1,000 records/s, "
               f"{used['shard_bytes_per_s']:.1%} of 1 MiB/s; processor busy "
               f"{used['lambda_busy_per_shard']:.1%} of each shard's one-at-a-time invocations")
    out += ["", "  batching window: latency (AWS, modelled) against cost",
            f"    {'window s':>8} {'shards':>7} {'batch s':>8} {'writes/reading':>15} {'USD/M':>8} "
            f"{'latency mean/max s':>19}"]
    for row in window_tradeoff(est.workload):
        lat = row["latency_s"]
        out.append(f"    {row['batching_window_s']:>8g} {row['shards']:>7} {row['batch_seconds']:>8.1f} "
                   f"{row['ddb_writes_per_reading']:>15.4f} {row['usd_per_million_readings']:>8.4f} "
                   f"{lat['mean']:>9.1f} / {lat['max']:<7.1f}")
    return out
