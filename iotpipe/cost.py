"""``iotpipe cost``: the monthly AWS cost of the pipeline, per component, and per million readings.

    iotpipe cost --devices 1000 --rate 1 [--json] [--batch-size N] [--batching-window S] [--shards N]
    iotpipe cost --devices 1000 --rate 1 --from-bench out/e2e.json

The defaults that mirror template parameters (BatchSize, BatchingWindowSeconds, AlertCooldownSeconds,
AnomalyTtlDays, AggregatesTtlDays, Archive*Days, LogRetentionDays, the processor's MemorySize, PITR and
TTL per table, the archive lifecycle rules, the alarm count) are read from cloudformation/template.yaml
when this module is imported (``template_defaults``), so the model follows the template it costs.

The per-reading API call counts follow what the code does (functions/processor), not a rule of thumb:

- Producers pack ``readings_per_record`` readings into one Kinesis record (a JSON array, the packed
  record of docs/data-model.md; default 25, the simulator's SIM_PACK; 1 = one reading per record).
- Kinesis: provisioned shards sized for 80 % of the 1,000 records/s / 1 MiB/s per-shard write limits;
  PUT payload units per *record* (25 KB each: a 25-reading record of ~5 KB is one unit).
- The event source mapping hands the processor batches of ``min(BatchSize records, records per shard
  gathered in the batching window, what fits in the 6 MB invoke payload)``. Lambda polls each shard about
  once a second, so a window below 1 s gathers a second's worth. An event record is ~0.57 KB of envelope
  plus the base64 data: unpacked (~0.84 KB for a 200-byte reading) 6 MB holds ~7,500 readings; packed 25
  per record (~7.3 KB per event record) ~21,600 readings, so the batching window closes batches again.
- Per batch, the processor prefetches every touched (device, window) with one strongly consistent
  BatchGetItem row (1 RRU each, items < 4 KB) and writes each once with a conditional PutItem
  (``exactly_once.apply_group``: read-modify-write). So DynamoDB writes per reading are
  ``(devices in the batch x windows each spans) / batch records``: about 1 when a batch holds less than
  one reading per device, ``1 / (rate x seconds per batch)`` when it holds several. This is the figure
  the batch size and batching window move. The writes run on the processor's thread pool
  (``WRITE_CONCURRENCY`` in functions/processor/handler.py, 16), so their latency counts once per
  ``concurrency`` writes; the SDK's CPU time per call (GIL-bound) counts for every call.
- One S3 PUT per batch for processed records, plus one when the batch had any quarantined record.
- Metrics are EMF log lines on AWS (log ingestion, no PutMetricData calls).
- The device registry is read through a cache (``DEVICE_CACHE_TTL_S``, 300 s): eventually consistent
  BatchGetItem, 0.5 RRU per device per TTL.
- Anomalies: one item per flagged reading (BatchWriteItem) plus its ``by-day`` GSI write; per flagged
  device and batch one conditional cooldown UpdateItem and one ``ADD suppressed``; alerts are capped by
  the per-device cooldown; one SNS publish each. The flagged share defaults to the detector's measured
  false-alarm rate plus a small true-anomaly share (``FLAGGED_SHARE``); ``--anomaly-rate`` overrides it.

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
from iotpipe.template import TEMPLATE, load_template

TARGET_USD_PER_MILLION = 0.10
DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # 30.4167, consistent with the 730-hour month
SHARD_RECORDS_PER_S = 1000
SHARD_BYTES_PER_S = 1024 * 1024
SHARD_HEADROOM = 0.8  # size shards for 80 % of the write limits: bursts and hot devices need the rest
LAMBDA_PAYLOAD_BYTES = 6 * 1024 * 1024
# Per record in the Lambda event besides the base64 data: kinesisSchemaVersion, partitionKey (the device
# id), a 56-digit sequenceNumber, approximateArrivalTimestamp, eventSource/Version/Name, eventID
# (shard id + sequence number), invokeIdentityArn (the role), awsRegion, eventSourceARN. Measured on
# the documented record shape with this stack's names, compact JSON: 567 bytes
# (tests/unit/test_cost.py::test_event_envelope_matches_a_kinesis_event_record).
EVENT_ENVELOPE_BYTES = 570
BATCH_GET_MAX_KEYS = 100
BATCH_WRITE_MAX_ITEMS = 25
ROOT = Path(__file__).resolve().parent.parent
PROCESSOR_HANDLER = ROOT / "functions" / "processor" / "handler.py"

# Share of valid readings the detector flags in production (each costs an anomaly item, its GSI copy and
# cooldown writes). Not the simulator's injection rate (1 %, a what-if): the false-alarm rate measured for
# model/artifacts/iforest-v1.json is 0.103 % on held-back readings (validation.holdout_far) and
# 0.108-0.158 % streamed per anomaly kind (docs/model-card.md); take the worst, 0.16 %, and add 0.04 %
# of true anomalies (at 1 Hz about 35 flagged readings per device a day in all). A fleet's true anomaly
# share is unknown until it runs: pass --anomaly-rate to cost another.
DETECTOR_FALSE_ALARM_RATE = 0.0016
TRUE_ANOMALY_SHARE = 0.0004
FLAGGED_SHARE = DETECTOR_FALSE_ALARM_RATE + TRUE_ANOMALY_SHARE  # 0.002
# DynamoDB TTL deletes expired items in the background, typically within a few days: items stay billed
# (storage, PITR) until then.
TTL_DELETION_LAG_DAYS = 2.0

# The template's values when this was written: used only when the template cannot be read (an installed
# package without the repository, or no PyYAML), and reported as such in the JSON ("defaults_from").
FALLBACK_DEFAULTS: dict[str, Any] = {
    "batch_size": 10_000,
    "batching_window_s": 30.0,
    "alert_cooldown_s": 300,
    "anomaly_ttl_days": 30.0,
    "aggregates_retention_days": 90.0,
    "archive_ia_after_days": 30.0,
    "archive_expire_days": 365.0,
    "archive_ia_min_object_filter": True,
    "log_retention_days": 14.0,
    "processor_memory_mb": 1024,
    "aggregates_pitr": True,
    "anomalies_pitr": True,
    "alarms": 12,
}


# ------------------------------------------------------------------------------------------ template
def template_defaults(path: Path = TEMPLATE) -> dict[str, Any]:
    """Workload defaults that mirror the template: parameter defaults and resource properties.

    A property given as ``!Ref Param`` resolves to the parameter's default; a literal is taken as is.
    Raises (OSError, ImportError, KeyError, ValueError, TypeError) when the template cannot be read.
    """
    doc = load_template(path)
    params = doc.get("Parameters") or {}
    resources = doc["Resources"]

    def value(v: Any) -> Any:
        if isinstance(v, dict) and set(v) == {"Ref"} and v["Ref"] in params:
            return params[v["Ref"]]["Default"]
        return v

    def param(name: str) -> Any:
        return params[name]["Default"]

    def props(kind: str, name_hint: str) -> dict[str, Any]:
        found = [r.get("Properties") or {} for n, r in resources.items()
                 if r.get("Type") == kind and name_hint in n]
        if len(found) != 1:
            raise KeyError(f"expected one {kind} named like {name_hint!r}, found {len(found)}")
        return found[0]

    def pitr(table: dict[str, Any]) -> bool:
        spec = table.get("PointInTimeRecoverySpecification") or {}
        return str(value(spec.get("PointInTimeRecoveryEnabled", False))).lower() == "true"

    aggregates = props("AWS::DynamoDB::Table", "Aggregates")
    anomalies = props("AWS::DynamoDB::Table", "Anomalies")
    ttl = aggregates.get("TimeToLiveSpecification") or {}
    ttl_on = str(value(ttl.get("Enabled", False))).lower() == "true"
    if ttl_on and "AggregatesTtlDays" not in params:
        raise KeyError("aggregates table has a TTL but no AggregatesTtlDays parameter")

    rules = [r for r in (props("AWS::S3::Bucket", "Archive").get("LifecycleConfiguration") or {})
             .get("Rules", []) if str(r.get("Status")) == "Enabled"]
    ia_rules = [r for r in rules
                if any(t.get("StorageClass") == "STANDARD_IA" for t in r.get("Transitions") or [])]
    expiring = [r for r in rules if "ExpirationInDays" in r]
    if len(ia_rules) != 1 or len(expiring) != 1:
        raise KeyError("expected one STANDARD_IA transition rule and one expiration rule")
    ia_rule = ia_rules[0]
    ia_after = next(tr["TransitionInDays"] for tr in ia_rule["Transitions"]
                    if tr["StorageClass"] == "STANDARD_IA")
    min_size = int(value(ia_rule.get("ObjectSizeGreaterThan", 0)))
    processor = props("AWS::Lambda::Function", "Processor")
    return {
        "batch_size": int(param("BatchSize")),
        "batching_window_s": float(param("BatchingWindowSeconds")),
        "alert_cooldown_s": int(param("AlertCooldownSeconds")),
        "anomaly_ttl_days": float(param("AnomalyTtlDays")),
        # No TTL: the table grows without bound; the model then keeps the fallback's 90 days (see docs).
        "aggregates_retention_days": (
            float(param("AggregatesTtlDays")) if ttl_on else FALLBACK_DEFAULTS["aggregates_retention_days"]
        ),
        "archive_ia_after_days": float(value(ia_after)),
        "archive_expire_days": float(value(expiring[0]["ExpirationInDays"])),
        # Standard-IA bills objects as at least 128 KB: the filter keeps smaller objects in Standard.
        "archive_ia_min_object_filter": min_size >= 128 * KB,
        "log_retention_days": float(value(props("AWS::Logs::LogGroup", "Processor")["RetentionInDays"])),
        "processor_memory_mb": int(value(processor["MemorySize"])),
        "aggregates_pitr": pitr(aggregates),
        "anomalies_pitr": pitr(anomalies),
        "alarms": sum(1 for r in resources.values() if r.get("Type") == "AWS::CloudWatch::Alarm"),
    }


def _defaults() -> tuple[dict[str, Any], str]:
    try:
        return template_defaults(TEMPLATE), str(TEMPLATE.relative_to(ROOT))
    except (OSError, ImportError, KeyError, ValueError, TypeError, StopIteration) as exc:
        return dict(FALLBACK_DEFAULTS), f"built-in fallback ({type(exc).__name__}: {exc})"


def handler_write_concurrency(path: Path = PROCESSOR_HANDLER, fallback: int = 16) -> int:
    """The processor's concurrent window writers (``WRITE_CONCURRENCY = N`` in its handler)."""
    try:
        m = re.search(r"^WRITE_CONCURRENCY\s*(?::\s*int\s*)?=\s*(\d+)", path.read_text(), re.M)
    except OSError:
        return fallback
    return int(m.group(1)) if m else fallback


DEFAULTS, DEFAULTS_FROM = _defaults()
WRITE_CONCURRENCY = handler_write_concurrency()


@dataclass(frozen=True)
class Workload:
    """What is being costed. Defaults are the template's defaults and measured sizes (see each comment)."""

    devices: int
    rate_hz: float
    shards: int | None = None  # None: sized from the rate (SHARD_HEADROOM)
    batch_size: int = DEFAULTS["batch_size"]  # template BatchSize
    batching_window_s: float = DEFAULTS["batching_window_s"]  # template BatchingWindowSeconds
    window_s: int = 60  # aggregation window
    record_bytes: int = 200  # a simulator reading as JSON (~170-210 bytes)
    # Readings per Kinesis record (packed records, docs/data-model.md). Default: the simulator's default
    # pack (SIM_PACK = 25, simulator/config.py), what a gateway batching its devices' readings sends.
    # 1 = one reading per record (HTTP ingest, unpacked producers).
    readings_per_record: int = 25
    malformed_rate: float = 0.01  # simulator default SIM_MALFORMED_RATE
    anomaly_rate: float = FLAGGED_SHARE  # share of valid readings the detector flags (see FLAGGED_SHARE)
    alert_cooldown_s: int = DEFAULTS["alert_cooldown_s"]  # template AlertCooldownSeconds (per device)
    # Aggregate item: ~650 bytes + ~3.9 bytes per reading in the window (seen_offsets_ms grows), measured
    # by sizing exactly_once.build_item() items with DynamoDB's size rules (10 readings: 688 B, 60: 881 B),
    # + 16 bytes for expires_at (10-byte name, 10-digit number).
    item_base_bytes: int = 666
    item_bytes_per_reading: float = 3.9
    anomaly_item_bytes: int = 700
    archive_bytes_per_reading: float = 60.0  # gzip JSON line in processed/ (measured 28-60 B)
    quarantine_bytes_per_record: float = 300.0  # gzip line with raw_b64 + reason/stage/detail
    # Processor Lambda (template MemorySize). Duration = overhead + compute + SDK CPU per call
    # + sequential I/O (prefetch, anomalies, alerts, S3) + window writes / write_concurrency x latency.
    processor_memory_mb: int = DEFAULTS["processor_memory_mb"]
    processor_overhead_ms: float = 15.0
    compute_us_per_record: float = 20.0  # bench/processor.py core on ~0.58 vCPU (1 GB Lambda)
    write_concurrency: int = WRITE_CONCURRENCY  # functions/processor/handler.py WRITE_CONCURRENCY
    ddb_write_ms: float = 5.0  # one conditional PutItem, in-region (latency; overlaps across threads)
    sdk_cpu_ms_per_call: float = 1.0  # botocore serialise/sign/parse: CPU under the GIL, does not overlap
    ddb_batch_get_ms: float = 8.0  # one BatchGetItem of up to 100 keys (chunks are fetched in turn)
    s3_put_ms: float = 30.0
    sns_publish_ms: float = 15.0
    device_cache_ttl_s: float = 300.0  # DEVICE_CACHE_TTL_S
    # Storage retention (steady state).
    aggregates_retention_days: float = DEFAULTS["aggregates_retention_days"]  # template AggregatesTtlDays
    anomaly_ttl_days: float = DEFAULTS["anomaly_ttl_days"]  # template AnomalyTtlDays
    ttl_deletion_lag_days: float = TTL_DELETION_LAG_DAYS  # TTL deletes in the background, days late
    archive_ia_after_days: float = DEFAULTS["archive_ia_after_days"]  # template ArchiveTransitionDays
    archive_expire_days: float = DEFAULTS["archive_expire_days"]  # template ArchiveExpirationDays
    # template: the IA transition rule is filtered with ObjectSizeGreaterThan >= 128 KB
    archive_ia_min_object_filter: bool = DEFAULTS["archive_ia_min_object_filter"]
    aggregates_pitr: bool = DEFAULTS["aggregates_pitr"]  # template PointInTimeRecoveryEnabled, per table
    anomalies_pitr: bool = DEFAULTS["anomalies_pitr"]
    # Observability.
    log_bytes_per_invocation: int = 2200  # START/END/REPORT + summary JSON line + EMF lines
    log_retention_days: float = DEFAULTS["log_retention_days"]  # template LogRetentionDays
    custom_metrics: int = 20  # processor's metric names + RecordsRejected per reason + ingest's
    alarms: int = DEFAULTS["alarms"]  # counted in the template
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
    batch_limit: str = ""

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
def count_template_alarms(template: Path = TEMPLATE) -> int:  # kept for callers; template_defaults counts too
    """Alarms the template creates (each is a monthly charge); 5 if the template cannot be read."""
    try:
        return len(re.findall(r"^\s+Type:\s+AWS::CloudWatch::Alarm\s*$", template.read_text(), re.M))
    except OSError:
        return 5


def kinesis_record_bytes(reading_bytes: float, readings_per_record: int = 1) -> float:
    """Bytes of one Kinesis record: the reading, or a JSON array of them (brackets and commas)."""
    n = max(1, readings_per_record)
    return reading_bytes if n == 1 else n * (reading_bytes + 1) + 1


def shards_for(readings_per_s: float, record_bytes: float, readings_per_record: int = 1) -> int:
    """Shards for 80 % of the per-shard limits; ``record_bytes`` is one reading's size."""
    n = max(1, readings_per_record)
    by_records = readings_per_s / n / (SHARD_RECORDS_PER_S * SHARD_HEADROOM)
    bytes_per_s = readings_per_s / n * kinesis_record_bytes(record_bytes, n)
    by_bytes = bytes_per_s / (SHARD_BYTES_PER_S * SHARD_HEADROOM)
    return max(1, math.ceil(max(by_records, by_bytes) - 1e-9))


def payload_cap(record_bytes: float, readings_per_record: int = 1) -> int:
    """Most event records (Kinesis records of ``readings_per_record`` readings of ``record_bytes``)
    that fit in the 6 MB invoke payload."""
    size = kinesis_record_bytes(record_bytes, readings_per_record)
    return LAMBDA_PAYLOAD_BYTES // (math.ceil(size * 4 / 3) + EVENT_ENVELOPE_BYTES)


def _batch_limits(w: Workload, shards: int) -> dict[str, float]:
    """Readings per batch allowed by each limit (BatchSize and the payload count Kinesis records)."""
    n = max(1, w.readings_per_record)
    per_shard_rate = w.devices * w.rate_hz / shards
    return {"BatchSize": float(w.batch_size) * n,
            "payload": float(payload_cap(w.record_bytes, n)) * n,
            "window": per_shard_rate * max(w.batching_window_s, 1.0)}  # Lambda polls about once a second


def batch_limit(w: Workload, shards: int) -> str:
    """What closes a batch first: "BatchSize", "payload" (6 MB) or "window" (the batching window)."""
    limits = _batch_limits(w, shards)
    return min(limits, key=lambda k: limits[k])


def batch_shape(w: Workload, shards: int) -> tuple[float, float, float]:
    """(readings per batch, seconds of stream per batch, (device, window) groups per batch), one shard."""
    per_shard_rate = w.devices * w.rate_hz / shards
    devices_per_shard = w.devices / shards
    records = max(1.0, min(_batch_limits(w, shards).values()))
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
    per_record = max(1, w.readings_per_record)
    shards = w.shards or shards_for(rps, record_bytes, per_record)
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
    per_invocation_records = 1.0 / invocations_per_reading
    # Alerting works per flagged device and batch: one conditional cooldown UpdateItem (billed even when
    # its condition fails) and, unless granted, an ``ADD suppressed``; a granted one is an SNS publish,
    # at most one per device per cooldown.
    rps_shard = rps / shards
    batch_s = per_invocation_records / rps_shard if rps_shard else 0.0
    per_device = w.rate_hz * batch_s  # readings of one device in one batch
    devices_in_batch = w.devices / shards * min(1.0, per_device)
    p_flagged = 1.0 - (1.0 - valid * w.anomaly_rate) ** max(1.0, per_device)
    invocations_f = readings / per_invocation_records
    flagged_device_batches = invocations_f * devices_in_batch * p_flagged
    alerts = min(flagged_device_batches, w.devices * SECONDS_PER_MONTH / max(w.alert_cooldown_s, 1))
    cooldown_writes = flagged_device_batches + (flagged_device_batches - alerts)
    if m.processor_ms_per_invocation is not None:
        duration_ms = m.processor_ms_per_invocation
    else:
        writes_per_batch = writes_per_reading * per_invocation_records
        gets = math.ceil(writes_per_batch / BATCH_GET_MAX_KEYS - 1e-9)
        anomalies_per_batch = per_invocation_records * valid * w.anomaly_rate
        anomaly_calls = (math.ceil(anomalies_per_batch / BATCH_WRITE_MAX_ITEMS) if anomalies_per_batch >= 1
                         else anomalies_per_batch)  # expected calls when most batches have none
        cooldown_calls = cooldown_writes / invocations_f
        alert_calls = alerts / invocations_f
        s3_calls = s3_puts_per_reading * per_invocation_records
        calls = writes_per_batch + gets + anomaly_calls + cooldown_calls + alert_calls + s3_calls
        duration_ms = (
            w.processor_overhead_ms
            + per_invocation_records * w.compute_us_per_record / 1000
            + calls * w.sdk_cpu_ms_per_call
            # window writes run on the thread pool: their latency overlaps write_concurrency at a time
            + math.ceil(writes_per_batch / max(1, w.write_concurrency) - 1e-9) * w.ddb_write_ms
            + gets * w.ddb_batch_get_ms  # prefetch chunks, one after another
            + (anomaly_calls + cooldown_calls) * w.ddb_write_ms  # sequential
            + alert_calls * w.sns_publish_ms
            + s3_calls * w.s3_put_ms
        )

    lines: list[Line] = []

    def add(component: str, item: str, quantity: float, unit: str, usd: float, fixed: bool = False) -> None:
        lines.append(Line(component, item, quantity, unit, usd, fixed))

    # Kinesis
    add("kinesis", "shard-hours", shards * HOURS_PER_MONTH, "shard-hour",
        shards * HOURS_PER_MONTH * p.kinesis_shard_hour, fixed=True)
    # Billed per Kinesis record, in 25 KB units: a packed record of 25 readings (~5 KB) is one unit.
    kinesis_records = readings / per_record
    units = kinesis_records * math.ceil(
        kinesis_record_bytes(record_bytes, per_record) / p.kinesis_put_payload_unit_bytes
    )
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
    add("dynamodb", "alert cooldown updates", cooldown_writes, "WRU",
        cooldown_writes / 1e6 * p.ddb_wru_per_million)
    api_rru = api_requests * w.api_rru_per_request
    add("dynamodb", "query API reads", api_rru, "RRU", api_rru / 1e6 * p.ddb_rru_per_million)
    windows_per_month = min(readings, w.devices * SECONDS_PER_MONTH / w.window_s)
    # Steady state: each month's items are kept for the TTL plus the background deletion lag.
    # +100 bytes per item: DynamoDB's per-item overhead.
    aggregates_gb = (windows_per_month * (agg_item + 100)
                     * (w.aggregates_retention_days + w.ttl_deletion_lag_days) / DAYS_PER_MONTH / GB)
    anomalies_gb = (anomalies * 2 * (w.anomaly_item_bytes + 100)
                    * (w.anomaly_ttl_days + w.ttl_deletion_lag_days) / DAYS_PER_MONTH / GB)
    table_gb = aggregates_gb + anomalies_gb
    add("dynamodb", "storage (steady state)", table_gb, "GB-month", table_gb * p.ddb_storage_gb_month)
    pitr_gb = aggregates_gb * w.aggregates_pitr + anomalies_gb * w.anomalies_pitr
    if pitr_gb:
        add("dynamodb", "point-in-time recovery", pitr_gb, "GB-month", pitr_gb * p.ddb_pitr_gb_month)

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
    alarms = w.alarms
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
        batch_limit="measured" if m.invocations_per_reading else batch_limit(
            replace(w, record_bytes=int(record_bytes)), shards),
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
def capacity(est: Estimate) -> dict[str, Any]:
    """The capacity plan behind the estimate: shards, Lambda concurrency, DynamoDB throughput.

    Lambda: the mapping runs at most one batch per shard (ParallelizationFactor 1, the default), so the
    concurrency *reserved* is the shard count; the concurrency *busy* on average is invocations/s x
    seconds per invocation (Little's law), which must stay below it or the stream falls behind.
    DynamoDB (on-demand, so no capacity to provision): the average WRU/s and RRU/s the estimate bills,
    against the table default of 40,000 each and 1,000 WCU/s per partition (aggregates are keyed by
    device, so a partition holds many devices' windows).
    """
    def per_s(item_prefix: str) -> float:
        quantity = sum(line.quantity for line in est.lines if line.item.startswith(item_prefix))
        return quantity / SECONDS_PER_MONTH

    invocations_per_s = est.invocations_per_month / SECONDS_PER_MONTH
    busy = invocations_per_s * est.processor_ms_per_invocation / 1000
    wru_s = per_s("aggregate writes") + per_s("anomaly writes") + per_s("alert cooldown")
    rru_s = per_s("aggregate prefetch") + per_s("device registry") + per_s("query API reads")
    return {
        "readings_per_s": round(est.workload.devices * est.workload.rate_hz, 1),
        "shards": est.shards,
        "lambda_concurrency_reserved": est.shards,
        "lambda_concurrency_busy": round(busy, 2),
        "lambda_utilisation": round(busy / est.shards, 3) if est.shards else None,
        "ddb_wru_per_s": round(wru_s, 1),
        "ddb_rru_per_s": round(rru_s, 1),
        "ddb_share_of_table_default": round(max(wru_s, rru_s) / 40_000, 4),
    }


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
        "payload_cap_records": payload_cap(w.record_bytes, w.readings_per_record),
        "payload_cap_readings": (
            payload_cap(w.record_bytes, w.readings_per_record) * max(1, w.readings_per_record)
        ),
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
        "dominant_component": est.dominant(),
        "prices_as_of": PRICES_AS_OF,
        "region": REGION,
        "free_tiers": "excluded",
        "source": est.source,
        "defaults_from": DEFAULTS_FROM,
        "what_if": what_if or [],
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
    out += [
        f"  {'total':<11} {est.total:>10,.2f} USD/month",
        "",
        f"  cost per million readings: {est.per_million:.4f} USD "
        f"(variable part {est.variable_per_million:.4f}); target < {TARGET_USD_PER_MILLION:.2f}: {verdict}; "
        f"dominated by {est.dominant()}",
    ]
    return "\n".join(out)


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
        ("aggregates TTL 30 d, no PITR on aggregates",
         {"aggregates_retention_days": 30.0, "aggregates_pitr": False}),
        # More shards: fewer records per shard per second, so a payload-capped batch spans more seconds.
        ("4 shards, BatchingWindowSeconds 60", {"shards": 4, "batching_window_s": 60.0}),
        ("4 shards, window 60 s, aggregates TTL 30 d, no PITR on aggregates",
         {"shards": 4, "batching_window_s": 60.0, "aggregates_retention_days": 30.0,
          "aggregates_pitr": False}),
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
                    help="processor threads writing windows (default: WRITE_CONCURRENCY in its handler)")
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
