"""The monthly bill: one function per service turns the month's traffic into priced lines.

Storage is priced at steady state for the configured retention: each reading pays for the bytes it leaves
behind for as long as they are kept. Metrics are EMF log lines on AWS (log ingestion, no PutMetricData
calls). The device registry is read through a cache (``DEVICE_CACHE_TTL_S``, 300 s): eventually
consistent BatchGetItem, 0.5 RRU per device per TTL. Free tiers are excluded.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

from iotpipe.cost.init_time import init_lines
from iotpipe.cost.prices import DEFAULT_PRICES, GB, HOURS_PER_MONTH, KB, SECONDS_PER_MONTH, Prices
from iotpipe.cost.sizing import batch_limit, kinesis_record_bytes, shards_for, span_shards
from iotpipe.cost.traffic import DAYS_PER_MONTH, Traffic, monthly_traffic, sagemaker_call_ms
from iotpipe.cost.workload import Measured, Workload

TARGET_USD_PER_MILLION = 0.10
# Issue 14's target: half of the 0.097 USD per million readings measured at 1,000 devices x 1 Hz.
HALVING_TARGET_USD_PER_MILLION = 0.05
UNCAPPED_UNITS = 10**9  # AggregatesMaxCapacity while finding what a fleet needs beyond the template's


@dataclass
class Line:
    component: str
    item: str
    quantity: float
    unit: str
    usd: float
    fixed: bool = False  # a monthly charge that does not grow with readings


@dataclass(frozen=True)
class AggregatesThroughput:
    """The aggregates table's consumed units per second (averaged over the month) and, when PROVISIONED,
    the capacity auto scaling keeps: consumed / target utilisation, within [minimum, maximum]; with
    auto scaling off, the fixed minimum (and ``short`` when the load needs more than that)."""

    wru_per_s: float
    rru_per_s: float
    wcu: float | None = None  # provisioned write capacity units (None: on-demand)
    rcu: float | None = None
    short: bool = False  # fixed capacity below consumed / target: the table would throttle


@dataclass
class Estimate:
    workload: Workload
    readings_per_month: float
    shards: int
    batch_records: float
    batch_seconds: float
    invocations_per_month: float
    processor_ms_per_invocation: float
    ddb_writes_per_reading: float
    ddb_reads_per_reading: float
    s3_puts_per_reading: float
    lines: list[Line] = field(default_factory=list)
    source: str = "formula"
    batch_limit: str = ""
    aggregates: AggregatesThroughput | None = None
    counted: dict[str, float] | None = None  # bench/calls.py's calls per 1,000 readings, when given
    # The shard counts the choice was between (``choose_shards``): what the write limits need and what
    # a batch spanning the batching window needs; empty when the shard count was given.
    shard_choice: dict[str, int] = field(default_factory=dict)

    @property
    def total(self) -> float:
        return sum(line.usd for line in self.lines)

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = {}
        for line in self.lines:
            out[line.component] = out.get(line.component, 0.0) + line.usd
        return out

    @property
    def per_million(self) -> float:
        return self.total / (self.readings_per_month / 1e6) if self.readings_per_month else 0.0

    @property
    def variable_per_million(self) -> float:
        """Per million readings without the fixed monthly charges (shard-hours, alarms, dashboard, key)."""
        variable = sum(line.usd for line in self.lines if not line.fixed)
        return variable / (self.readings_per_month / 1e6) if self.readings_per_month else 0.0

    @property
    def busy_per_shard(self) -> float:
        """Share of the time each shard's processor is running (one invocation at a time per shard):
        above 1 the shard fills faster than it is processed."""
        per_s = self.invocations_per_month / SECONDS_PER_MONTH
        return per_s * self.processor_ms_per_invocation / 1000 / max(1, self.shards)

    def dominant(self) -> str:
        parts = self.by_component()
        return max(parts, key=lambda k: parts[k]) if parts else ""


def shard_candidates(w: Workload) -> tuple[int, int, list[int]]:
    """(the write limits' shard count, the batching window's, the counts tried between them: both ends
    and geometric steps of ~10 %)."""
    rps = w.devices * w.rate_hz
    low = shards_for(rps, w.record_bytes, w.readings_per_record, w.compression)
    high = max(low, span_shards(w))
    counts = {low, high}
    n = float(low)
    while n < high:
        counts.add(min(high, math.ceil(n)))
        n *= 1.1
    return low, high, sorted(counts)


def _short(est: Estimate) -> bool:
    """The plan does not keep up: the aggregates table would throttle (its capacity capped below the
    load), or a shard's invocations take longer than the shard takes to fill (the stream falls behind)."""
    return bool(est.aggregates and est.aggregates.short) or est.busy_per_shard > 1.0


def cheapest_shards(w: Workload, counts: list[int], prices: Prices) -> int:
    """The cheapest of ``counts`` that keeps up; when none does, more shards (smaller batches, each
    finishing sooner) up to 100 times the most tried, and the cheapest count if even those fall short.
    A count that falls short is never chosen for its price: it is cheap only because what the load
    needs is not bought."""
    def rank(n: int) -> tuple[bool, float]:
        est = _estimate(replace(w, shards=n), prices)
        return (_short(est), est.total)

    best = min(counts, key=rank)
    n = float(max(counts))
    limit = 100 * n
    while rank(best)[0] and n < limit:
        n *= 1.1
        if not rank(math.ceil(n))[0]:
            best = math.ceil(n)
    return best


def estimate(w: Workload, prices: Prices = DEFAULT_PRICES, measured: Measured | None = None) -> Estimate:
    """The month's bill. Without a given shard count, the cheapest count (formula) between what the write
    limits need and what lets a batch span the batching window: more shards cost shard-hours and spread
    each batch over fewer readings per shard, so the 6 MB payload stops closing batches early and each
    covers more seconds of every device (fewer window writes per reading). Bench figures (``measured``)
    are applied at the count the formula chose (they were counted at that plan)."""
    if w.shards is not None:
        return _estimate(w, prices, measured)
    low, high, counts = shard_candidates(w)
    best = low if w.shard_sizing == "write_limits" else cheapest_shards(w, counts, prices)
    if _short(_estimate(replace(w, shards=best), prices)):
        # Short at every count: the fleet needs more than AggregatesMaxCapacity (the per-table quota by
        # default). Price the capacity it needs; the capacity plan names the increase.
        lifted = replace(w, aggregates_max_units=UNCAPPED_UNITS)
        if w.shard_sizing != "write_limits":
            best = cheapest_shards(lifted, counts, prices)
        need = _estimate(replace(lifted, shards=best), prices).aggregates
        units = [u for u in (need.wcu, need.rcu) if u is not None] if need else []
        w = replace(w, aggregates_max_units=math.ceil(max(units, default=float(w.aggregates_max_units))))
    est = _estimate(replace(w, shards=best), prices, measured)
    est.workload = w
    est.shard_choice = {"write_limits": low, "batching_window": high, "chosen": best}
    return est


def _estimate(w: Workload, prices: Prices = DEFAULT_PRICES, measured: Measured | None = None) -> Estimate:
    m = measured or Measured(source="formula")
    t = monthly_traffic(w, m)
    lines = [
        *kinesis_lines(t, prices),
        *lambda_lines(w, t, prices),
        *dynamodb_lines(w, t, prices),
        *s3_lines(w, t, m, prices),
        *cloudwatch_lines(w, t, m, prices),
        *edge_lines(t, prices),
        *iot_lines(w, t, prices),
        *athena_lines(w, t, prices),
        *compaction_lines(w, t, prices),
        *calibrator_lines(w, prices),
        *sagemaker_lines(w, t, prices),
        *init_lines(w, t.shards, prices),  # cold starts, billed since 2025-08-01 (init_time.py)
    ]
    return Estimate(
        workload=w,
        readings_per_month=t.readings,
        shards=t.shards,
        batch_records=t.per_invocation_records,
        batch_seconds=t.batch_seconds,
        invocations_per_month=t.invocations,
        processor_ms_per_invocation=t.processor_ms,
        ddb_writes_per_reading=t.writes_per_reading,
        ddb_reads_per_reading=t.reads_per_reading,
        s3_puts_per_reading=t.s3_puts_per_reading,
        lines=lines,
        source=m.source,
        batch_limit="measured" if m.invocations_per_reading else batch_limit(
            replace(w, record_bytes=int(t.record_bytes), compression=t.compression), t.shards),
        aggregates=aggregates_throughput(w, t),
        counted=m.counted,
    )


def kinesis_lines(t: Traffic, p: Prices) -> list[Line]:
    shard_hours = t.shards * HOURS_PER_MONTH
    # Billed per Kinesis record, in 25 KB units: a packed record of 25 readings (~5 KB) is one unit.
    kinesis_records = t.readings / t.per_record
    units = kinesis_records * math.ceil(
        kinesis_record_bytes(t.record_bytes, t.per_record, t.compression) / p.kinesis_put_payload_unit_bytes
    )
    return [
        Line("kinesis", "shard-hours", shard_hours, "shard-hour",
             t.shards * HOURS_PER_MONTH * p.kinesis_shard_hour, fixed=True),
        Line("kinesis", "PUT payload units", units, "unit",
             units / 1e6 * p.kinesis_put_payload_unit_per_million),
    ]


def lambda_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    """The processor, the query API and (with ``ingest_via_api``) the ingest function."""
    gb_s = t.invocations * t.processor_ms / 1000 * w.processor_memory_mb / 1024
    q_gb_s = t.api_requests * w.query_ms / 1000 * w.query_memory_mb / 1024
    lines = [
        Line("lambda", "processor requests", t.invocations, "request",
             t.invocations / 1e6 * p.lambda_request_per_million),
        Line("lambda", "processor duration", gb_s, "GB-s", gb_s * p.lambda_gb_second),
        Line("lambda", "query requests", t.api_requests, "request",
             t.api_requests / 1e6 * p.lambda_request_per_million),
        Line("lambda", "query duration", q_gb_s, "GB-s", q_gb_s * p.lambda_gb_second),
    ]
    if t.ingest_requests:
        i_gb_s = t.ingest_requests * w.ingest_ms / 1000 * w.ingest_memory_mb / 1024
        lines += [
            Line("lambda", "ingest requests", t.ingest_requests, "request",
                 t.ingest_requests / 1e6 * p.lambda_request_per_million),
            Line("lambda", "ingest duration", i_gb_s, "GB-s", i_gb_s * p.lambda_gb_second),
        ]
    return lines


def aggregates_throughput(w: Workload, t: Traffic) -> AggregatesThroughput:
    wru_s = t.readings * t.writes_per_reading * aggregate_wru_per_write(w, t) / SECONDS_PER_MONTH
    reads = t.readings * t.reads_per_reading * math.ceil(t.aggregate_item_bytes / (4 * KB))
    rru_s = (reads + t.api_requests * w.api_rru_per_request) / SECONDS_PER_MONTH
    if w.aggregates_billing_mode != "PROVISIONED":
        return AggregatesThroughput(wru_s, rru_s)
    target = min(1.0, max(0.01, w.aggregates_target_utilization))

    def units(consumed: float, floor: int) -> float:
        if not w.aggregates_autoscaling:
            return float(floor)
        return min(max(float(floor), consumed / target), float(max(floor, w.aggregates_max_units)))

    wcu, rcu = units(wru_s, w.aggregates_min_wcu), units(rru_s, w.aggregates_min_rcu)
    short = wru_s / target > wcu + 1e-9 or rru_s / target > rcu + 1e-9
    return AggregatesThroughput(wru_s, rru_s, wcu, rcu, short)


def aggregate_wru_per_write(w: Workload, t: Traffic) -> float:
    """Write units per aggregate PutItem: the counted figure (bench/calls.py), else 1 per started KB of
    the item (DynamoDB bills the larger of the old and the new item)."""
    return t.wcu_per_write if t.wcu_per_write is not None else math.ceil(t.aggregate_item_bytes / KB)


def dynamodb_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    agg_item = t.aggregate_item_bytes
    rru_per_read = math.ceil(agg_item / (4 * KB))  # strongly consistent
    wru = t.readings * t.writes_per_reading * aggregate_wru_per_write(w, t)
    rru = t.readings * t.reads_per_reading * rru_per_read
    registry_rru = 0.5 * w.devices * SECONDS_PER_MONTH / w.device_cache_ttl_s
    anomaly_wru = t.anomalies * 2 * math.ceil(w.anomaly_item_bytes / KB)  # table + by-day GSI
    api_rru = t.api_requests * w.api_rru_per_request
    agg = aggregates_throughput(w, t)
    ia = w.aggregates_table_class == "STANDARD_INFREQUENT_ACCESS"
    f = p.ddb_ia_throughput_factor if ia else 1.0  # the aggregates table's throughput price factor
    if agg.wcu is not None and agg.rcu is not None:
        # Provisioned: capacity-hours, whatever is consumed; the consumed units are in ``capacity``.
        mode = f"{w.aggregates_target_utilization:.0%} used" if w.aggregates_autoscaling else "fixed"
        wcu_usd, rcu_usd = (units * HOURS_PER_MONTH * price * f
                            for units, price in ((agg.wcu, p.ddb_wcu_hour), (agg.rcu, p.ddb_rcu_hour)))
        aggregate_lines = [
            Line("dynamodb", f"aggregates WCU (provisioned, {mode})", agg.wcu * HOURS_PER_MONTH,
                 "WCU-hour", wcu_usd, fixed=not w.aggregates_autoscaling),
            Line("dynamodb", f"aggregates RCU (provisioned, {mode})", agg.rcu * HOURS_PER_MONTH,
                 "RCU-hour", rcu_usd, fixed=not w.aggregates_autoscaling),
        ]
        if w.scaling_policies:
            # Each DynamoDB target-tracking policy keeps CloudWatch alarms (high/low utilisation and
            # provisioned capacity: 4), billed as standard alarms.
            alarms = 4 * w.scaling_policies
            aggregate_lines.append(Line("cloudwatch", "auto scaling alarms (aggregates table)", alarms,
                                        "alarm-month", alarms * p.cw_alarm_month, fixed=True))
    else:
        aggregate_lines = [
            Line("dynamodb", "aggregate writes (conditional PutItem)", wru, "WRU",
                 wru / 1e6 * p.ddb_wru_per_million * f),
            Line("dynamodb", "aggregate prefetch (consistent BatchGetItem)", rru, "RRU",
                 rru / 1e6 * p.ddb_rru_per_million * f),
            Line("dynamodb", "query API reads", api_rru, "RRU", api_rru / 1e6 * p.ddb_rru_per_million * f),
        ]
    lines = [
        *aggregate_lines,
        Line("dynamodb", "device registry reads (cached)", registry_rru, "RRU",
             registry_rru / 1e6 * p.ddb_rru_per_million),
        Line("dynamodb", "anomaly writes (+GSI)", anomaly_wru, "WRU",
             anomaly_wru / 1e6 * p.ddb_wru_per_million),
        Line("dynamodb", "alert cooldown updates", t.cooldown_writes, "WRU",
             t.cooldown_writes / 1e6 * p.ddb_wru_per_million),
    ]
    windows_per_month = min(t.readings, w.devices * SECONDS_PER_MONTH / w.window_s)
    # Steady state: each month's items are kept for the TTL plus the background deletion lag.
    # +100 bytes per item: DynamoDB's per-item overhead.
    aggregates_gb = (windows_per_month * (agg_item + 100)
                     * (w.aggregates_retention_days + w.ttl_deletion_lag_days) / DAYS_PER_MONTH / GB)
    anomalies_gb = (t.anomalies * 2 * (w.anomaly_item_bytes + 100)
                    * (w.anomaly_ttl_days + w.ttl_deletion_lag_days) / DAYS_PER_MONTH / GB)
    table_gb = aggregates_gb + anomalies_gb
    aggregates_price = p.ddb_ia_storage_gb_month if ia else p.ddb_storage_gb_month
    lines.append(Line("dynamodb", "storage (steady state)" + (", aggregates Standard-IA" if ia else ""),
                      table_gb, "GB-month",
                      aggregates_gb * aggregates_price + anomalies_gb * p.ddb_storage_gb_month))
    pitr_gb = aggregates_gb * w.aggregates_pitr + anomalies_gb * w.anomalies_pitr
    if pitr_gb:
        lines.append(Line("dynamodb", "point-in-time recovery", pitr_gb, "GB-month",
                          pitr_gb * p.ddb_pitr_gb_month))
    return lines


def athena_bytes_per_query(w: Workload, t: Traffic, p: Prices) -> float:
    """Bytes one query over ``athena_days_per_query`` days of archive scans: gzip JSON is read whole
    (quarantine included, for a query without a table filter); the compacted Parquet only the columns
    a query names (the measured per-reading figure of the heaviest named query)."""
    if w.athena_table == "processed_compacted":
        day_bytes = t.readings / DAYS_PER_MONTH * w.compacted_scan_bytes_per_reading
    else:
        day_bytes = t.readings / DAYS_PER_MONTH * (t.archive_bytes_per_reading
                                                   + w.malformed_rate * w.quarantine_bytes_per_record)
    return max(float(p.athena_min_bytes_per_query), day_bytes * w.athena_days_per_query)


def athena_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    """Athena queries over the archive, priced per TB scanned (none unless queries are costed)."""
    if w.athena_queries_per_day <= 0:
        return []
    scanned_tb = w.athena_queries_per_day * DAYS_PER_MONTH * athena_bytes_per_query(w, t, p) / 1e12
    item = f"queries over {w.athena_days_per_query:g} day(s) of {w.athena_table}"
    return [Line("athena", item, scanned_tb, "TB scanned", scanned_tb * p.athena_per_tb_scanned)]


def sagemaker_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    """The serverless endpoint of DetectorBackend=sagemaker: one call per processor invocation.

    A call carries the batch's valid readings (features as JSON; a batch over the 4 MB request limit is
    split) and returns one score each; SageMaker bills its processing time at the configured memory, and
    the bytes both ways. Cold starts are not billed.
    """
    if w.detector_backend != "sagemaker":
        return []
    scored = t.readings * t.valid
    gb_s = t.invocations * sagemaker_call_ms(w, t.per_invocation_records * t.valid) / 1000 * (
        w.sagemaker_memory_mb / 1024)
    gb_in = scored * w.sagemaker_request_bytes_per_reading / GB
    gb_out = scored * w.sagemaker_response_bytes_per_reading / GB
    return [
        Line("sagemaker", f"serverless inference ({w.sagemaker_memory_mb} MB)", gb_s, "GB-s",
             gb_s * p.sagemaker_serverless_gb_second),
        Line("sagemaker", "data processed in (features)", gb_in, "GB", gb_in * p.sagemaker_data_in_per_gb),
        Line("sagemaker", "data processed out (scores)", gb_out, "GB", gb_out * p.sagemaker_data_out_per_gb),
    ]


def calibrator_lines(w: Workload, p: Prices) -> list[Line]:
    """The scheduled calibrator: a registry Scan per run (whether or not a device asked) and its Lambda
    time. Calibrating a device reads its archived readings too; that is per device once, not priced."""
    runs = SECONDS_PER_MONTH / w.calibration_every_s
    scan_bytes = w.devices * (w.device_item_bytes + 100)  # +100: DynamoDB's per-item overhead
    rru = runs * 0.5 * max(1, math.ceil(scan_bytes / (4 * KB)))
    pages = max(1, math.ceil(w.devices / 200))
    run_s = (w.calibrator_base_ms + w.calibrator_ms_per_page * pages) / 1000
    gb_s = runs * run_s * w.calibrator_memory_mb / 1024
    return [
        Line("dynamodb", "calibrator's registry scans", rru, "RRU", rru / 1e6 * p.ddb_rru_per_million),
        Line("lambda", "calibrator (scheduled)", gb_s, "GB-s",
             gb_s * p.lambda_gb_second + runs / 1e6 * p.lambda_request_per_million),
    ]


def compaction_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    """The hourly compactor: its Lambda time, one GET per processed object, its PUTs, and the Parquet
    copy kept as long as the archive (Standard, then Standard-IA: an hour's file is far over 128 KB)."""
    if not w.archive_compaction:
        return []
    runs = 24 * DAYS_PER_MONTH
    gb_s = t.readings / 1e6 * w.compaction_s_per_million_readings * w.compactor_memory_mb / 1024
    gets = t.invocations  # one processed object per invocation, read once (again only if it changed)
    puts = 2 * runs  # the part and its manifest
    month_gb = t.readings * w.compacted_bytes_per_reading / GB
    std_days = min(w.archive_ia_after_days, w.archive_expire_days)
    ia_days = max(0.0, w.archive_expire_days - w.archive_ia_after_days)
    std_gb, ia_gb = month_gb * std_days / DAYS_PER_MONTH, month_gb * ia_days / DAYS_PER_MONTH
    return [
        Line("lambda", "compactor (hourly, DuckDB)", gb_s, "GB-s",
             gb_s * p.lambda_gb_second + runs / 1e6 * p.lambda_request_per_million),
        Line("s3", "GET (compactor reads each processed object)", gets, "request",
             gets / 1000 * p.s3_get_per_thousand + puts / 1000 * p.s3_put_per_thousand),
        Line("s3", "compacted Parquet, Standard (steady state)", std_gb, "GB-month",
             std_gb * p.s3_standard_gb_month),
        Line("s3", "compacted Parquet, Standard-IA (steady state)", ia_gb, "GB-month",
             ia_gb * p.s3_standard_ia_gb_month
             + (runs / 1000 * p.s3_transition_ia_per_thousand if ia_gb else 0.0)),
    ]


def s3_lines(w: Workload, t: Traffic, m: Measured, p: Prices) -> list[Line]:
    """PUTs, and the archive at steady state: Standard, then Standard-IA (128 KB billed minimum) unless
    the lifecycle rule's size filter keeps small objects in Standard."""
    puts = t.readings * t.s3_puts_per_reading
    month_bytes = t.readings * t.archive_bytes_per_reading
    std_days = min(w.archive_ia_after_days, w.archive_expire_days)
    ia_days = max(0.0, w.archive_expire_days - w.archive_ia_after_days)
    std_gb = month_bytes * std_days / DAYS_PER_MONTH / GB
    lines = [
        Line("s3", "PUT (processed + quarantine objects)", puts, "request",
             puts / 1000 * p.s3_put_per_thousand),
        Line("s3", "Standard storage (steady state)", std_gb, "GB-month", std_gb * p.s3_standard_gb_month),
    ]
    if ia_days <= 0:
        return lines
    if m.s3_puts_per_reading is None:  # formula: processed and quarantine objects differ in size
        processed_objects = t.invocations
        quarantine_objects = t.invocations * t.p_quarantine
        objects = [
            (processed_objects, t.batch_records * t.valid * w.archive_bytes_per_reading),
            (quarantine_objects,
             t.batch_records * w.malformed_rate * w.quarantine_bytes_per_record / max(t.p_quarantine, 1e-12)),
        ]
    else:
        objects = [(puts, month_bytes / puts if puts else 0.0)]
    kept_gb = ia_gb = transitions = 0.0
    for count, size in objects:
        if w.archive_ia_min_object_filter and size < p.s3_ia_min_object_bytes:
            kept_gb += count * size * ia_days / DAYS_PER_MONTH / GB  # never transitions
        else:
            ia_gb += count * max(size, p.s3_ia_min_object_bytes) * ia_days / DAYS_PER_MONTH / GB
            transitions += count
    if kept_gb:
        lines.append(Line("s3", "Standard storage (small objects kept)", kept_gb, "GB-month",
                          kept_gb * p.s3_standard_gb_month))
    if ia_gb:
        lines += [
            Line("s3", "Standard-IA storage (128 KB minimum/object)", ia_gb, "GB-month",
                 ia_gb * p.s3_standard_ia_gb_month),
            Line("s3", "lifecycle transitions to IA", transitions, "request",
                 transitions / 1000 * p.s3_transition_ia_per_thousand),
        ]
    return lines


def cloudwatch_lines(w: Workload, t: Traffic, m: Measured, p: Prices) -> list[Line]:
    log_bytes = t.invocations * w.log_bytes_per_invocation + (t.api_requests + t.ingest_requests) * 600
    log_gb = log_bytes / GB
    stored_gb = log_gb * w.log_retention_days / DAYS_PER_MONTH
    lines = [
        Line("cloudwatch", "log ingestion (incl. EMF metrics)", log_gb, "GB", log_gb * p.cw_logs_ingest_gb),
        Line("cloudwatch", "log storage", stored_gb, "GB-month", stored_gb * p.cw_logs_storage_gb_month),
        Line("cloudwatch", "custom metrics", w.custom_metrics, "metric-month",
             w.custom_metrics * p.cw_custom_metric_month, fixed=True),
    ]
    calls_per_invocation = (
        m.metric_calls_per_invocation
        if m.metric_calls_per_invocation is not None
        else (1.0 if w.metrics_sink == "cloudwatch" else 0.0)
    )
    if w.metrics_sink == "cloudwatch" and calls_per_invocation:
        calls = t.invocations * calls_per_invocation
        lines.append(Line("cloudwatch", "PutMetricData", calls, "request",
                          calls / 1000 * p.cw_put_metric_data_per_thousand))
    lines += [
        Line("cloudwatch", "alarms", w.alarms, "alarm-month", w.alarms * p.cw_alarm_month, fixed=True),
        Line("cloudwatch", "dashboard", w.dashboards, "dashboard-month", w.dashboards * p.cw_dashboard_month,
             fixed=True),
    ]
    return lines


def iot_lines(w: Workload, t: Traffic, p: Prices) -> list[Line]:
    """IoT Core when devices publish over MQTT: always-on connections, messages, the readings rule."""
    if w.mqtt_ingest == "none":
        return []
    per_message = math.ceil(max(t.record_bytes, 1) / p.iot_message_bytes)  # 5 KB metering increments
    messages = t.readings * per_message  # one reading per message
    minutes = w.devices * HOURS_PER_MONTH * 60
    lines = [Line("iot", "connection minutes", minutes, "minute",
                  minutes / 1e6 * p.iot_connectivity_per_million_minutes)]
    if w.mqtt_ingest == "messaging":
        lines.append(Line("iot", "messages", messages, "message",
                          messages / 1e6 * p.iot_messages_per_million))
    lines += [
        Line("iot", "rules triggered", messages, "rule", messages / 1e6 * p.iot_rules_triggered_per_million),
        Line("iot", "actions executed (Kinesis)", messages, "action",
             messages / 1e6 * p.iot_actions_executed_per_million),
    ]
    return lines


def edge_lines(t: Traffic, p: Prices) -> list[Line]:
    """API Gateway, SNS alerts and the KMS key."""
    gw = t.api_requests + t.ingest_requests
    # Services reuse data keys for about 5 minutes (Kinesis, DynamoDB; S3 with a bucket key), per shard
    # producer and consumer and per table/bucket/topic/queue: a few hundred thousand requests a month.
    kms_requests = (2 * t.shards + 6) * 12 * HOURS_PER_MONTH
    return [
        Line("apigateway", "REST requests", gw, "request", gw / 1e6 * p.apigw_rest_per_million),
        Line("sns", "alert publishes", t.alerts, "publish", t.alerts / 1e6 * p.sns_publish_per_million),
        Line("kms", "customer managed key", 1, "key-month", p.kms_key_month, fixed=True),
        Line("kms", "requests (data-key reuse ~5 min)", kms_requests, "request",
             kms_requests / 10_000 * p.kms_requests_per_10k),
    ]
