"""The capacity plan behind an estimate: shards, Lambda concurrency, DynamoDB throughput."""

from __future__ import annotations

from typing import Any

from iotpipe.cost.estimate import Estimate
from iotpipe.cost.limits import DDB_TABLE_DEFAULT_UNITS_PER_S
from iotpipe.cost.prices import SECONDS_PER_MONTH


def capacity(est: Estimate) -> dict[str, Any]:
    """The capacity plan behind the estimate: shards, Lambda concurrency, DynamoDB throughput.

    Lambda: the mapping runs at most one batch per shard (ParallelizationFactor 1, the default), so the
    concurrency *reserved* is the shard count; the concurrency *busy* on average is invocations/s x
    seconds per invocation (Little's law), which must stay below it or the stream falls behind.
    DynamoDB: the average WRU/s and RRU/s consumed, against the table default of 40,000 each and 1,000
    WCU/s per partition (aggregates are keyed by device, so a partition holds many devices' windows);
    for a PROVISIONED aggregates table also the capacity auto scaling keeps (consumed / target).
    """
    def per_s(item_prefix: str) -> float:
        quantity = sum(line.quantity for line in est.lines if line.item.startswith(item_prefix))
        return quantity / SECONDS_PER_MONTH

    invocations_per_s = est.invocations_per_month / SECONDS_PER_MONTH
    busy = invocations_per_s * est.processor_ms_per_invocation / 1000
    agg = est.aggregates
    agg_wru = agg.wru_per_s if agg else per_s("aggregate writes")
    agg_rru = agg.rru_per_s if agg else per_s("aggregate prefetch") + per_s("query API reads")
    wru_s = agg_wru + per_s("anomaly writes") + per_s("alert cooldown")
    rru_s = agg_rru + per_s("device registry")
    provisioned = {}
    if agg and agg.wcu is not None:
        provisioned = {"aggregates_wcu_provisioned": round(agg.wcu, 1),
                       "aggregates_rcu_provisioned": round(agg.rcu or 0.0, 1),
                       "aggregates_capacity_short": agg.short}
    return {
        **provisioned,
        "aggregates_billing_mode": est.workload.aggregates_billing_mode,
        "aggregates_wru_per_s": round(agg_wru, 1),
        "aggregates_rru_per_s": round(agg_rru, 1),
        "readings_per_s": round(est.workload.devices * est.workload.rate_hz, 1),
        "shards": est.shards,
        "lambda_concurrency_reserved": est.shards,
        "lambda_concurrency_busy": round(busy, 2),
        "lambda_utilisation": round(busy / est.shards, 3) if est.shards else None,
        "ddb_wru_per_s": round(wru_s, 1),
        "ddb_rru_per_s": round(rru_s, 1),
        "ddb_share_of_table_default": round(max(wru_s, rru_s) / DDB_TABLE_DEFAULT_UNITS_PER_S, 4),
    }
