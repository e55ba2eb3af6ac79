"""``iotpipe cost``: the monthly AWS cost of the pipeline, per component, and per million readings.

    iotpipe cost --devices 1000 --rate 1 [--json] [--batch-size 500] [--batching-window 10] [--shards N]
    iotpipe cost --devices 1000 --rate 1 --from-bench out/e2e.json

The per-reading API call counts follow what the code does (functions/processor), not a rule of thumb:

- Kinesis: provisioned shards sized for 80 % of the 1,000 records/s / 1 MiB/s per-shard write limits;
  one PUT payload unit per record (records are far below 25 KB).
- The event source mapping hands the processor batches of ``min(BatchSize, records per shard gathered in
  the batching window, what fits in the 6 MB invoke payload)``. Lambda polls each shard about once a
  second, so a window below 1 s gathers a second's worth.
- Per batch, the processor prefetches every touched (device, window) with one strongly consistent
  BatchGetItem row (1 RRU each, items < 4 KB) and writes each once with a conditional PutItem
  (``exactly_once.apply_group``: read-modify-write). So DynamoDB writes per reading are
  ``(devices in the batch x windows each spans) / batch records``: about 1 when a batch holds less than
  one reading per device, ``1 / (rate x seconds per batch)`` when it holds several. This is the figure
  the batch size and batching window move, and it drives both DynamoDB and Lambda duration (the writes
  are sequential).
- One S3 PUT per batch for processed records, plus one when the batch had any quarantined record.
- Metrics are EMF log lines on AWS (log ingestion, no PutMetricData calls).
- The device registry is read through a cache (``DEVICE_CACHE_TTL_S``, 300 s): eventually consistent
  BatchGetItem, 0.5 RRU per device per TTL.
- Anomalies: one PutItem per flagged reading plus its ``by-day`` GSI write; alerts are capped by the
  per-device cooldown; one SNS publish each.

Everything is a flag with the default documented beside it; ``--from-bench FILE`` replaces the formula's
per-reading counts (invocations, durations, writes, reads, PUTs, bytes) with those counted by
``bench/e2e.py`` on the emulator. Storage is priced at steady state for the configured retention: each
reading pays for the bytes it leaves behind for as long as they are kept. Free tiers are excluded.

The output ends with one JSON object (``--json``: only that line).
"""

from __future__ import annotations

import argparse
import json
import math
import re
import sys
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from iotpipe.prices import (
    DEFAULT_PRICES,
    GB,
    HOURS_PER_MONTH,
    KB,
    PRICES_AS_OF,
    REGION,
    SECONDS_PER_MONTH,
    Prices,
)

TARGET_USD_PER_MILLION = 0.10
DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # 30.4167, consistent with the 730-hour month
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
SHARD_HEADROOM = 0.8  # size shards for 80 % of the write limits: bursts and hot devices need the rest
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
EVENT_ENVELOPE_BYTES = 250  # per record in the Lambda event: eventID, sequence number, ARN, ...
BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
TEMPLATE = Path(__file__).resolve().parent.parent / "cloudformation" / "template.yaml"


@dataclass(frozen=True)
class Workload:
    """What is being costed. Defaults are the template's defaults and measured sizes (see each comment)."""

    devices: int
    rate_hz: float
    shards: int | None = None  # None: sized from the rate (SHARD_HEADROOM)
    batch_size: int = 500  # template BatchSize
    batching_window_s: float = 10.0  # template BatchingWindowSeconds
    window_s: int = 60  # aggregation window
    record_bytes: int = 200  # a simulator reading as JSON (~170-210 bytes)
    malformed_rate: float = 0.01  # simulator default SIM_MALFORMED_RATE
    anomaly_rate: float = 0.01  # share of readings the detector flags (upper bound: simulator injection rate)
    alert_cooldown_s: int = 300  # template AlertCooldownSeconds (per device)
    # Aggregate item: ~650 bytes + ~3.9 bytes per reading in the window (seen_offsets_ms grows), measured
    # by sizing exactly_once.build_item() items with DynamoDB's size rules (10 readings: 688 B, 60: 881 B).
    item_base_bytes: int = 650
    item_bytes_per_reading: float = 3.9
    anomaly_item_bytes: int = 700
    archive_bytes_per_reading: float = 60.0  # gzip JSON line in processed/ (measured 28-60 B)
    quarantine_bytes_per_record: float = 300.0  # gzip line with raw_b64 + reason/stage/detail
    # Processor Lambda (template MemorySize 1024). Duration = overhead + compute + sequential I/O.
    processor_memory_mb: int = 1024
    processor_overhead_ms: float = 15.0
    compute_us_per_record: float = 20.0  # bench/processor.py core on ~0.58 vCPU (1 GB Lambda)
    ddb_write_ms: float = 5.0  # one conditional PutItem, in-region
    ddb_batch_get_ms: float = 8.0  # one BatchGetItem of up to 100 keys
    s3_put_ms: float = 30.0
    device_cache_ttl_s: float = 300.0  # DEVICE_CACHE_TTL_S
    # Storage retention (steady state).
    aggregates_retention_days: float = 90.0  # NB: the aggregates table has no TTL yet (see docs)
    anomaly_ttl_days: float = 30.0  # template AnomalyTtlDays
    archive_ia_after_days: float = 30.0  # template ArchiveTransitionDays
    archive_expire_days: float = 365.0  # template ArchiveExpirationDays
    archive_ia_min_object_filter: bool = False  # lifecycle rule transitions only objects >= 128 KB
    pitr: bool = True  # template: PointInTimeRecoveryEnabled on every table
    # Observability.
    log_bytes_per_invocation: int = 2200  # START/END/REPORT + summary JSON line + EMF lines
    log_retention_days: float = 14.0  # template LogRetentionDays
    custom_metrics: int = 20  # processor's metric names + RecordsRejected per reason + ingest's
    alarms: int | None = None  # None: counted in the template
    dashboards: int = 1
    metrics_sink: str = "emf"  # "cloudwatch": one PutMetricData call per invocation (emulator behaviour)
    # Query API.
    api_requests_per_day: float = 10_000.0  # dashboards, the live view, scripts
    query_memory_mb: int = 512
    query_ms: float = 60.0
    api_rru_per_request: float = 8.0  # e.g. an hour of 1-minute aggregates, strongly consistent
    # Optional: devices POST /ingest through API Gateway instead of PutRecords.
    ingest_via_api: bool = False
    readings_per_ingest_request: int = 100
    ingest_memory_mb: int = 256
    ingest_ms: float = 40.0


@dataclass(frozen=True)
class Measured:
    """Per-reading figures counted by bench/e2e.py; each replaces the formula's value when present."""

    source: str
    invocations_per_reading: float | None = None
    processor_ms_per_invocation: float | None = None
    ddb_writes_per_reading: float | None = None
    ddb_reads_per_reading: float | None = None
    s3_puts_per_reading: float | None = None
    archive_bytes_per_reading: float | None = None
    record_bytes: float | None = None
    item_bytes: float | None = None
    metric_calls_per_invocation: float | None = None


@dataclass
class Line:
    component: str
    item: str
    quantity: float
    unit: str
    usd: float
    fixed: bool = False  # a monthly charge that does not grow with readings


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

    def dominant(self) -> str:
        parts = self.by_component()
        return max(parts, key=lambda k: parts[k]) if parts else ""


# ------------------------------------------------------------------------------------------ model
def count_template_alarms(template: Path = TEMPLATE) -> int:
    """Alarms the template creates (each is a monthly charge); 5 if the template cannot be read."""
    try:
        return len(re.findall(r"^\s+Type:\s+AWS::CloudWatch::Alarm\s*$", template.read_text(), re.M))
    except OSError:
        return 5


def shards_for(readings_per_s: float, record_bytes: float) -> int:
    by_records = readings_per_s / (SHARD_RECORDS_PER_S * SHARD_HEADROOM)
    by_bytes = readings_per_s * record_bytes / (SHARD_BYTES_PER_S * SHARD_HEADROOM)
    return max(1, math.ceil(max(by_records, by_bytes) - 1e-9))


def batch_shape(w: Workload, shards: int) -> tuple[float, float, float]:
    """(records per batch, seconds of stream per batch, (device, window) groups per batch), one shard."""
    per_shard_rate = w.devices * w.rate_hz / shards
    devices_per_shard = w.devices / shards
    gather_s = max(w.batching_window_s, 1.0)  # Lambda polls a shard about once a second
    by_payload = LAMBDA_PAYLOAD_BYTES // (math.ceil(w.record_bytes * 4 / 3) + EVENT_ENVELOPE_BYTES)
    records = max(1.0, min(float(w.batch_size), per_shard_rate * gather_s, float(by_payload)))
    seconds = records / per_shard_rate
    per_device = w.rate_hz * seconds  # readings of one device in one batch
    devices_in_batch = devices_per_shard * min(1.0, per_device)
    # A device's readings in a batch span one window, plus a boundary with probability seconds/window.
    windows_each = min(max(1.0, per_device), 1.0 + seconds / w.window_s)
    return records, seconds, devices_in_batch * windows_each


def item_bytes(w: Workload) -> float:
    readings_in_window = max(1.0, w.rate_hz * w.window_s)
    return w.item_base_bytes + w.item_bytes_per_reading * readings_in_window


def estimate(w: Workload, prices: Prices = DEFAULT_PRICES, measured: Measured | None = None) -> Estimate:
    p = prices
    m = measured or Measured(source="formula")
    rps = w.devices * w.rate_hz
    readings = rps * SECONDS_PER_MONTH
    record_bytes = m.record_bytes or w.record_bytes
    shards = w.shards or shards_for(rps, record_bytes)
    batch_records, _, groups = batch_shape(replace(w, record_bytes=int(record_bytes)), shards)
    valid = 1.0 - w.malformed_rate

    invocations_per_reading = m.invocations_per_reading or 1.0 / batch_records
    invocations = readings * invocations_per_reading
    writes_per_reading = m.ddb_writes_per_reading or groups / batch_records * valid
    reads_per_reading = m.ddb_reads_per_reading or writes_per_reading  # one prefetch row per write
    p_quarantine = 1.0 - valid**batch_records  # the batch has at least one quarantined record
    s3_puts_per_reading = m.s3_puts_per_reading or (1.0 + p_quarantine) * invocations_per_reading
    archive_per_reading = m.archive_bytes_per_reading or (
        valid * w.archive_bytes_per_reading + w.malformed_rate * w.quarantine_bytes_per_record
    )
    agg_item = m.item_bytes or item_bytes(w)
    wru_per_write = math.ceil(agg_item / KB)  # a PutItem is billed on the larger of old and new item
    rru_per_read = math.ceil(agg_item / (4 * KB))  # strongly consistent

    anomalies = readings * valid * w.anomaly_rate
    alerts = min(anomalies, w.devices * SECONDS_PER_MONTH / max(w.alert_cooldown_s, 1))
    per_invocation_records = 1.0 / invocations_per_reading
    if m.processor_ms_per_invocation is not None:
        duration_ms = m.processor_ms_per_invocation
    else:
        writes_per_batch = writes_per_reading * per_invocation_records
        anomaly_batches = math.ceil(per_invocation_records * valid * w.anomaly_rate / BATCH_WRITE_MAX_ITEMS)
        duration_ms = (
            w.processor_overhead_ms
            + per_invocation_records * w.compute_us_per_record / 1000
            + writes_per_batch * w.ddb_write_ms
            + math.ceil(writes_per_batch / BATCH_GET_MAX_KEYS) * w.ddb_batch_get_ms
            + anomaly_batches * w.ddb_write_ms
            + s3_puts_per_reading * per_invocation_records * w.s3_put_ms
        )

    lines: list[Line] = []

    def add(component: str, item: str, quantity: float, unit: str, usd: float, fixed: bool = False) -> None:
        lines.append(Line(component, item, quantity, unit, usd, fixed))

    # Kinesis
    add("kinesis", "shard-hours", shards * HOURS_PER_MONTH, "shard-hour",
        shards * HOURS_PER_MONTH * p.kinesis_shard_hour, fixed=True)
    units = readings * math.ceil(record_bytes / p.kinesis_put_payload_unit_bytes)
    add("kinesis", "PUT payload units", units, "unit", units / 1e6 * p.kinesis_put_payload_unit_per_million)

    # Lambda: processor, query API, ingest
    gb_s = invocations * duration_ms / 1000 * w.processor_memory_mb / 1024
    add("lambda", "processor requests", invocations, "request",
        invocations / 1e6 * p.lambda_request_per_million)
    add("lambda", "processor duration", gb_s, "GB-s", gb_s * p.lambda_gb_second)
    api_requests = w.api_requests_per_day * DAYS_PER_MONTH
    q_gb_s = api_requests * w.query_ms / 1000 * w.query_memory_mb / 1024
    add("lambda", "query requests", api_requests, "request",
        api_requests / 1e6 * p.lambda_request_per_million)
    add("lambda", "query duration", q_gb_s, "GB-s", q_gb_s * p.lambda_gb_second)
    ingest_requests = readings / w.readings_per_ingest_request if w.ingest_via_api else 0.0
    if ingest_requests:
        i_gb_s = ingest_requests * w.ingest_ms / 1000 * w.ingest_memory_mb / 1024
        add("lambda", "ingest requests", ingest_requests, "request",
            ingest_requests / 1e6 * p.lambda_request_per_million)
        add("lambda", "ingest duration", i_gb_s, "GB-s", i_gb_s * p.lambda_gb_second)

    # DynamoDB
    wru = readings * writes_per_reading * wru_per_write
    add("dynamodb", "aggregate writes (conditional PutItem)", wru, "WRU", wru / 1e6 * p.ddb_wru_per_million)
    rru = readings * reads_per_reading * rru_per_read
    add("dynamodb", "aggregate prefetch (consistent BatchGetItem)", rru, "RRU",
        rru / 1e6 * p.ddb_rru_per_million)
    registry_rru = 0.5 * w.devices * SECONDS_PER_MONTH / w.device_cache_ttl_s
    add("dynamodb", "device registry reads (cached)", registry_rru, "RRU",
        registry_rru / 1e6 * p.ddb_rru_per_million)
    anomaly_wru = anomalies * 2 * math.ceil(w.anomaly_item_bytes / KB)  # table + by-day GSI
    add("dynamodb", "anomaly writes (+GSI)", anomaly_wru, "WRU", anomaly_wru / 1e6 * p.ddb_wru_per_million)
    api_rru = api_requests * w.api_rru_per_request
    add("dynamodb", "query API reads", api_rru, "RRU", api_rru / 1e6 * p.ddb_rru_per_million)
    windows_per_month = min(readings, w.devices * SECONDS_PER_MONTH / w.window_s)
    table_gb = (
        windows_per_month * (agg_item + 100) * w.aggregates_retention_days / DAYS_PER_MONTH
        + anomalies * 2 * (w.anomaly_item_bytes + 100) * w.anomaly_ttl_days / DAYS_PER_MONTH
    ) / GB  # +100 bytes per item: DynamoDB's per-item overhead
    add("dynamodb", "storage (steady state)", table_gb, "GB-month", table_gb * p.ddb_storage_gb_month)
    if w.pitr:
        add("dynamodb", "point-in-time recovery", table_gb, "GB-month", table_gb * p.ddb_pitr_gb_month)

    # S3
    puts = readings * s3_puts_per_reading
    add("s3", "PUT (processed + quarantine objects)", puts, "request", puts / 1000 * p.s3_put_per_thousand)
    month_bytes = readings * archive_per_reading
    std_days = min(w.archive_ia_after_days, w.archive_expire_days)
    ia_days = max(0.0, w.archive_expire_days - w.archive_ia_after_days)
    std_gb = month_bytes * std_days / DAYS_PER_MONTH / GB
    add("s3", "Standard storage (steady state)", std_gb, "GB-month", std_gb * p.s3_standard_gb_month)
    if ia_days > 0:
        if m.s3_puts_per_reading is None:  # formula: processed and quarantine objects differ in size
            processed_objects = invocations
            quarantine_objects = invocations * p_quarantine
            objects = [
                (processed_objects, batch_records * valid * w.archive_bytes_per_reading),
                (quarantine_objects,
                 batch_records * w.malformed_rate * w.quarantine_bytes_per_record / max(p_quarantine, 1e-12)),
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
            add("s3", "Standard storage (small objects kept)", kept_gb, "GB-month",
                kept_gb * p.s3_standard_gb_month)
        if ia_gb:
            add("s3", "Standard-IA storage (128 KB minimum/object)", ia_gb, "GB-month",
                ia_gb * p.s3_standard_ia_gb_month)
            add("s3", "lifecycle transitions to IA", transitions, "request",
                transitions / 1000 * p.s3_transition_ia_per_thousand)

    # CloudWatch
    log_bytes = invocations * w.log_bytes_per_invocation + (api_requests + ingest_requests) * 600
    log_gb = log_bytes / GB
    add("cloudwatch", "log ingestion (incl. EMF metrics)", log_gb, "GB", log_gb * p.cw_logs_ingest_gb)
    stored_gb = log_gb * w.log_retention_days / DAYS_PER_MONTH
    add("cloudwatch", "log storage", stored_gb, "GB-month", stored_gb * p.cw_logs_storage_gb_month)
    add("cloudwatch", "custom metrics", w.custom_metrics, "metric-month",
        w.custom_metrics * p.cw_custom_metric_month, fixed=True)
    calls_per_invocation = (
        m.metric_calls_per_invocation
        if m.metric_calls_per_invocation is not None
        else (1.0 if w.metrics_sink == "cloudwatch" else 0.0)
    )
    if w.metrics_sink == "cloudwatch" and calls_per_invocation:
        calls = invocations * calls_per_invocation
        add("cloudwatch", "PutMetricData", calls, "request", calls / 1000 * p.cw_put_metric_data_per_thousand)
    alarms = count_template_alarms() if w.alarms is None else w.alarms
    add("cloudwatch", "alarms", alarms, "alarm-month", alarms * p.cw_alarm_month, fixed=True)
    add("cloudwatch", "dashboard", w.dashboards, "dashboard-month", w.dashboards * p.cw_dashboard_month,
        fixed=True)

    # API Gateway, SNS, KMS
    gw = api_requests + ingest_requests
    add("apigateway", "REST requests", gw, "request", gw / 1e6 * p.apigw_rest_per_million)
    add("sns", "alert publishes", alerts, "publish", alerts / 1e6 * p.sns_publish_per_million)
    add("kms", "customer managed key", 1, "key-month", p.kms_key_month, fixed=True)
    # Services reuse data keys for about 5 minutes (Kinesis, DynamoDB; S3 with a bucket key), per shard
    # producer and consumer and per table/bucket/topic/queue: a few hundred thousand requests a month.
    kms_requests = (2 * shards + 6) * 12 * HOURS_PER_MONTH
    add("kms", "requests (data-key reuse ~5 min)", kms_requests, "request",
        kms_requests / 10_000 * p.kms_requests_per_10k)

    return Estimate(
        workload=w,
        readings_per_month=readings,
        shards=shards,
        batch_records=per_invocation_records,
        batch_seconds=per_invocation_records / (rps / shards) if rps else 0.0,
        invocations_per_month=invocations,
        processor_ms_per_invocation=duration_ms,
        ddb_writes_per_reading=writes_per_reading,
        ddb_reads_per_reading=reads_per_reading,
        s3_puts_per_reading=s3_puts_per_reading,
        lines=lines,
        source=m.source,
    )


# ------------------------------------------------------------------------------------------ bench input
def measured_from_bench(path: Path) -> Measured:
    """Per-reading figures from the last JSON line of a bench/e2e.py run (its ``cost_inputs`` object)."""
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


# ------------------------------------------------------------------------------------------ output
def to_json(est: Estimate, what_if: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    w = est.workload
    return {
        "devices": w.devices,
        "rate_hz": w.rate_hz,
        "readings_per_month": round(est.readings_per_month),
        "shards": est.shards,
        "batch_size": w.batch_size,
        "batching_window_s": w.batching_window_s,
        "batch_records": round(est.batch_records, 1),
        "batch_seconds": round(est.batch_seconds, 3),
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
        "dominant_component": est.dominant(),
        "prices_as_of": PRICES_AS_OF,
        "region": REGION,
        "free_tiers": "excluded",
        "source": est.source,
        "what_if": what_if or [],
    }


def render(est: Estimate) -> str:
    w = est.workload
    out = [
        f"iotpipe monthly cost on AWS ({REGION}, prices as published {PRICES_AS_OF}, free tiers excluded)",
        f"  {w.devices} devices x {w.rate_hz:g} Hz = {est.readings_per_month / 1e6:,.1f} M readings/month; "
        f"{est.shards} shard(s); batches of {est.batch_records:,.0f} records "
        f"({est.batch_seconds:.2f} s of stream); {est.ddb_writes_per_reading:.3f} DynamoDB writes/reading; "
        f"{est.processor_ms_per_invocation:,.0f} ms/invocation  [{est.source}]",
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
    out += [
        f"  {'total':<11} {est.total:>10,.2f} USD/month",
        "",
        f"  cost per million readings: {est.per_million:.4f} USD "
        f"(variable part {est.variable_per_million:.4f}); target < {TARGET_USD_PER_MILLION:.2f}: {verdict}; "
        f"dominated by {est.dominant()}",
    ]
    return "\n".join(out)


WHAT_IF: tuple[tuple[str, dict[str, Any]], ...] = (
    ("template defaults (BatchSize 500, window 10 s)", {"batch_size": 500, "batching_window_s": 10.0}),
    ("+ IA transition only for objects >= 128 KB",
     {"batch_size": 500, "batching_window_s": 10.0, "archive_ia_min_object_filter": True}),
    ("BatchSize 10000, window 30 s", {"batch_size": 10_000, "batching_window_s": 30.0}),
    ("BatchSize 10000, window 60 s, 4 shards",
     {"batch_size": 10_000, "batching_window_s": 60.0, "shards": 4}),
    ("... + aggregates kept 30 d, no PITR, 0.2 % flagged",
     {"batch_size": 10_000, "batching_window_s": 60.0, "shards": 4, "aggregates_retention_days": 30.0,
      "pitr": False, "anomaly_rate": 0.002}),
)


def what_if(w: Workload, prices: Prices = DEFAULT_PRICES) -> list[dict[str, Any]]:
    """The same fleet under other batching settings (formula only): what moves the cost per reading."""
    rows = []
    for label, change in WHAT_IF:
        est = estimate(replace(w, **change), prices)
        rows.append({"scenario": label, "usd_per_million_readings": round(est.per_million, 4),
                     "ddb_writes_per_reading": round(est.ddb_writes_per_reading, 4),
                     "total_usd_per_month": round(est.total, 2)})
    return rows


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
    ap.add_argument("--record-bytes", type=int, default=d.record_bytes)
    ap.add_argument("--malformed-rate", type=float, default=d.malformed_rate)
    ap.add_argument("--anomaly-rate", type=float, default=d.anomaly_rate)
    ap.add_argument("--archive-bytes-per-reading", type=float, default=d.archive_bytes_per_reading)
    ap.add_argument("--api-requests-per-day", type=float, default=d.api_requests_per_day)
    ap.add_argument("--aggregates-retention-days", type=float, default=d.aggregates_retention_days)
    ap.add_argument("--ia-small-object-filter", action="store_true",
                    help="model a lifecycle rule that transitions only objects >= 128 KB to Standard-IA")
    ap.add_argument("--no-pitr", action="store_true", help="tables without point-in-time recovery")
    ap.add_argument("--ingest-via-api", action="store_true",
                    help="devices POST /ingest instead of PutRecords")
    ap.add_argument("--ddb-write-ms", type=float, default=d.ddb_write_ms)
    return ap


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
        malformed_rate=args.malformed_rate,
        anomaly_rate=args.anomaly_rate,
        archive_bytes_per_reading=args.archive_bytes_per_reading,
        api_requests_per_day=args.api_requests_per_day,
        aggregates_retention_days=args.aggregates_retention_days,
        archive_ia_min_object_filter=args.ia_small_object_filter,
        ingest_via_api=args.ingest_via_api,
        pitr=not args.no_pitr,
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
            print(f"  what if {row['scenario']:<48} {row['usd_per_million_readings']:.4f} USD/M readings "
                  f"({row['ddb_writes_per_reading']:.3f} writes/reading)")
    print(json.dumps(doc, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
