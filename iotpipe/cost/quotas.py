"""The capacity plan against AWS's default quotas: what a fleet needs of each limited resource, the default
quota in the priced region (``iotpipe.cost.prices.REGION``, us-east-1), and the increase to request
where the need is above it.

Quotas are the published defaults (Service Quotas, 2026-11) for us-east-1; several are lower elsewhere
(Kinesis shards: 200; IoT Core publishes: 2,000/s), so check the deployment region's. Per-shard and
per-invocation limits (1,000 records/s, 1 MiB/s, the 6 MB payload) are hard: the sizing keeps within them
(``iotpipe.cost.sizing``) and the plan shows how much of each is used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from iotpipe.cost.estimate import Estimate
from iotpipe.cost.sizing import kinesis_record_bytes

# name -> (default quota, adjustable, the Service Quotas name to ask for)
KINESIS_SHARDS = 500  # shards per account and region (us-east-1, us-west-2, eu-west-1; 200 elsewhere)
LAMBDA_CONCURRENCY = 1000  # concurrent executions per account and region
DDB_TABLE_UNITS = 40_000  # per-table read and write capacity (provisioned) or throughput (on-demand)
DDB_ACCOUNT_UNITS = 80_000  # account-level provisioned read and write capacity, each
DDB_PARTITION_WCU = 1000  # per partition (hard): one device's windows share a partition key
IOT_PUBLISH_PER_S = 20_000  # inbound publish requests per second per account (us-east-1)
IOT_CONNECTIONS = 500_000  # concurrent client connections per account (us-east-1)
IOT_RULE_EXECUTIONS_PER_S = 20_000  # rule executions per second per account (us-east-1)
APIGW_RPS = 10_000  # REST API requests per second per account and region (steady-state throttle)
# Concurrency the query API, the calibrator and the compactor may take at once beside the processor's
# (one per shard); an assumption, not measured: the API's peak depends on its clients.
OTHER_CONCURRENCY = 50


@dataclass(frozen=True)
class QuotaRow:
    resource: str
    needed: float
    quota: float
    adjustable: bool
    ask: str  # the quota to raise (Service Quotas name), when ``needed`` is above ``quota``

    @property
    def within(self) -> bool:
        return self.needed <= self.quota

    def as_json(self) -> dict[str, Any]:
        row: dict[str, Any] = {"resource": self.resource, "needed": round(self.needed, 1),
                               "default_quota": self.quota,
                               "share_of_quota": round(self.needed / self.quota, 4),
                               "within": self.within, "adjustable": self.adjustable}
        if not self.within:
            # Round the request up to a figure a support case would name (two significant digits).
            digits = max(0, len(str(math.ceil(self.needed))) - 2)
            row["increase"] = {"quota": self.ask, "to": math.ceil(self.needed / 10**digits) * 10**digits}
        return row


def quota_rows(est: Estimate) -> list[QuotaRow]:
    """Each limited resource the estimate's workload uses, against its default quota."""
    w = est.workload
    agg = est.aggregates
    rows = [
        QuotaRow("Kinesis shards", est.shards, KINESIS_SHARDS, True,
                 "Kinesis Data Streams: Shards per Region"),
        QuotaRow("Lambda concurrent executions", est.shards + OTHER_CONCURRENCY, LAMBDA_CONCURRENCY, True,
                 "AWS Lambda: Concurrent executions"),
    ]
    if agg is not None:
        wcu = agg.wcu if agg.wcu is not None else agg.wru_per_s
        rcu = agg.rcu if agg.rcu is not None else agg.rru_per_s
        mode = "capacity" if agg.wcu is not None else "throughput"
        rows += [
            QuotaRow(f"DynamoDB aggregates table write {mode}", wcu, DDB_TABLE_UNITS, True,
                     "Amazon DynamoDB: Table-level write throughput limit"),
            QuotaRow(f"DynamoDB aggregates table read {mode}", rcu, DDB_TABLE_UNITS, True,
                     "Amazon DynamoDB: Table-level read throughput limit"),
        ]
        if agg.wcu is not None:
            rows += [
                QuotaRow("DynamoDB account provisioned write capacity", wcu, DDB_ACCOUNT_UNITS, True,
                         "Amazon DynamoDB: Account-level write throughput limit (Provisioned mode)"),
                QuotaRow("DynamoDB account provisioned read capacity", agg.rcu or 0.0, DDB_ACCOUNT_UNITS,
                         True,
                         "Amazon DynamoDB: Account-level read throughput limit (Provisioned mode)"),
            ]
        # One device's windows share its partition key: its write rate is rate x writes per reading.
        rows.append(QuotaRow("DynamoDB writes per second to one device's partition",
                             w.rate_hz * est.ddb_writes_per_reading, DDB_PARTITION_WCU, False, "none (hard)"))
    if w.mqtt_ingest != "none":
        readings_per_s = w.devices * w.rate_hz
        rows += [
            QuotaRow("IoT Core concurrent connections", w.devices, IOT_CONNECTIONS, True,
                     "AWS IoT Core: Maximum concurrent client connections per account"),
            QuotaRow("IoT Core inbound publishes per second", readings_per_s, IOT_PUBLISH_PER_S, True,
                     "AWS IoT Core: Inbound publish requests per second per account"),
            QuotaRow("IoT Core rule executions per second", readings_per_s, IOT_RULE_EXECUTIONS_PER_S, True,
                     "AWS IoT Core: Rule executions per second per account"),
        ]
    if w.ingest_via_api:
        rows.append(QuotaRow("API Gateway requests per second (ingest)",
                             w.devices * w.rate_hz / w.readings_per_ingest_request, APIGW_RPS, True,
                             "Amazon API Gateway: Throttle rate"))
    return rows


def shard_use(est: Estimate) -> dict[str, float]:
    """Share of each hard per-shard and per-invocation limit the plan uses (the sizing keeps them < 1)."""
    w = est.workload
    per_shard_readings = w.devices * w.rate_hz / max(1, est.shards)
    n = max(1, w.readings_per_record)
    record = kinesis_record_bytes(w.record_bytes, n, w.compression)
    return {
        "shard_records_per_s": round(per_shard_readings / n / 1000, 4),
        "shard_bytes_per_s": round(per_shard_readings / n * record / (1024 * 1024), 4),
        "lambda_busy_per_shard": round(est.busy_per_shard, 4),
    }


def quota_plan(est: Estimate) -> dict[str, Any]:
    """The JSON of the plan: every row, the increases to request, and the per-shard limits used."""
    rows = [r.as_json() for r in quota_rows(est)]
    return {"region": "us-east-1", "rows": rows,
            "increases": [{"resource": r["resource"], **r["increase"]} for r in rows if "increase" in r],
            "hard_limits_used": shard_use(est)}
