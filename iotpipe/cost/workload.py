"""What is being costed (``Workload``) and what a benchmark measured instead of the formula (``Measured``).

Each default is the template's (``template_facts.DEFAULTS``) or a measured size, with its source beside it.
"""

from __future__ import annotations

from dataclasses import dataclass

from iotpipe.cost.template_facts import DEFAULTS

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


@dataclass(frozen=True)
class Workload:
    """What is being costed. Defaults are the template's defaults and measured sizes (see each comment)."""

    devices: int
    rate_hz: float
    shards: int | None = None  # None: sized from the rate (``shard_sizing``)
    # "cheapest": the cheapest count between the write limits' and the batching window's
    # (iotpipe.cost.estimate.estimate); "write_limits": 80 % of the per-shard write limits only.
    shard_sizing: str = "cheapest"
    batch_size: int = DEFAULTS["batch_size"]  # template BatchSize
    batching_window_s: float = DEFAULTS["batching_window_s"]  # template BatchingWindowSeconds
    window_s: int = 60  # aggregation window
    record_bytes: int = 200  # a simulator reading as JSON (~170-210 bytes)
    # Readings per Kinesis record (packed records, docs/data-model.md). Default: the simulator's default
    # pack (SIM_PACK = 25, simulator/config.py), what a gateway batching its devices' readings sends.
    # 1 = one reading per record (HTTP ingest, unpacked producers).
    readings_per_record: int = 25
    # "gzip": producers gzip each packed record (the simulator's sink does for packed records; the
    # processor inflates it, docs/data-model.md), ~17 % of the JSON at 25 per record
    # (iotpipe.cost.sizing.GZIP_RATIO_BY_PACK); "none": plain JSON.
    compression: str = "gzip"
    malformed_rate: float = 0.01  # simulator default SIM_MALFORMED_RATE
    anomaly_rate: float = FLAGGED_SHARE  # share of valid readings the detector flags (see FLAGGED_SHARE)
    alert_cooldown_s: int = DEFAULTS["alert_cooldown_s"]  # template AlertCooldownSeconds (per device)
    # Aggregate item: ~666 bytes + one varint per reading in the window (seen_offsets_ms, packed as LEB128
    # deltas: 2 bytes at 1 Hz, 1 at 10 Hz; iotpipe.cost.sizing.item_bytes). The base was measured by sizing
    # exactly_once.build_item() items with DynamoDB's size rules, + 16 bytes for expires_at; bench/calls.py
    # counts whole-window items of 730 B at 1 Hz (838 B with the number set it replaced), the model 786 B.
    item_base_bytes: int = 666
    anomaly_item_bytes: int = 700
    archive_bytes_per_reading: float = 60.0  # gzip JSON line in processed/ (measured 28-60 B)
    quarantine_bytes_per_record: float = 300.0  # gzip line with raw_b64 + reason/stage/detail
    # Processor Lambda (template MemorySize). Duration = overhead + compute + SDK CPU per call
    # + sequential I/O (prefetch, anomalies, alerts, S3) + window writes / write_concurrency x latency.
    processor_memory_mb: int = DEFAULTS["processor_memory_mb"]
    processor_overhead_ms: float = 15.0
    compute_us_per_record: float = 20.0  # bench/processor.py core on ~0.58 vCPU (1 GB Lambda)
    # template ProcessorWriteConcurrency (the processor's WRITE_CONCURRENCY): threads writing windows
    write_concurrency: int = DEFAULTS["write_concurrency"]
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
    # Aggregates table capacity (template AggregatesBillingMode and its auto scaling): PROVISIONED bills
    # capacity-hours sized to consumed units / target utilisation (never below the minimum); on-demand
    # (PAY_PER_REQUEST) bills each request. The other tables stay on-demand (small, spiky).
    aggregates_billing_mode: str = DEFAULTS["aggregates_billing_mode"]
    # template TableClass of the aggregates table: STANDARD or STANDARD_INFREQUENT_ACCESS (Prices says how
    # the second is billed)
    aggregates_table_class: str = DEFAULTS["aggregates_table_class"]
    aggregates_min_wcu: int = DEFAULTS["aggregates_min_wcu"]  # template AggregatesWriteCapacity
    aggregates_min_rcu: int = DEFAULTS["aggregates_min_rcu"]  # template AggregatesReadCapacity
    aggregates_max_units: int = DEFAULTS["aggregates_max_units"]  # template AggregatesMaxCapacity
    aggregates_target_utilization: float = DEFAULTS["aggregates_target_utilization"]  # template, / 100
    aggregates_autoscaling: bool = DEFAULTS["aggregates_autoscaling"]  # AggregatesCapacityScaling enabled
    scaling_policies: int = DEFAULTS["scaling_policies"]  # target-tracking policies (4 alarms each)
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
    # SQL over the archive (docs/querying.md): Athena queries a day, each over this many days of archive.
    # Athena reads every byte of the gzip JSON objects in the partitions a query touches (measured
    # 55.9 B per reading in processed/, docs/scalability-and-cost.md); 0 queries: no Athena line.
    athena_queries_per_day: float = 0.0
    athena_days_per_query: float = 1.0
    # "processed" (gzip JSON, read whole) or "processed_compacted" (the compactor's Parquet: a query reads
    # only its columns). Measured with bench/archive_layout.py (1,000 devices x 900 s): the named query
    # reading the most of it, device-readings, scans 1.34 B per archived reading (the site-level
    # anomalies-per-site-per-day 0.05 B); docs/scalability-and-cost.md.
    athena_table: str = "processed"
    compacted_scan_bytes_per_reading: float = 1.34
    # The archive compactor (functions/compactor, hourly): one Parquet copy of processed/, 13.8 B per
    # reading, written in 9.4 s per 900,000 readings at 1 GB (bench/archive_layout.py, 2026-12-02).
    archive_compaction: bool = DEFAULTS["archive_compaction"]  # template ArchiveCompaction
    compacted_bytes_per_reading: float = 13.8
    compaction_s_per_million_readings: float = 10.4
    compactor_memory_mb: int = 1024
    # The calibrator (functions/calibrator), scheduled every calibration_every_s: a Scan of the device
    # registry each run (eventually consistent: 0.5 RRU per 4 KB) and a short Lambda run. Assumed, not
    # measured: a device item of 400 B (registry fields; a calibrated device's stored model is larger)
    # and 100 ms + 30 ms per Scan page of 200 items.
    calibration_every_s: float = DEFAULTS["calibration_every_s"]  # template CalibrationSchedule
    calibrator_memory_mb: int = DEFAULTS["calibrator_memory_mb"]  # template CalibratorFunction
    device_item_bytes: int = 400
    calibrator_base_ms: float = 100.0
    calibrator_ms_per_page: float = 30.0
    # The detector: "embedded" (scored inside the processor; its cost is in compute_us_per_record) or
    # "sagemaker" (template DetectorBackend): one InvokeEndpoint per processor invocation carrying the batch's
    # valid readings' features, on the serverless endpoint the template creates. Measured by
    # bench/detector_backends.py (2026-12-06, 10 features, the serving process on a shared 2-core
    # machine): a request row is ~198 bytes of JSON, a response score ~19; the server takes ~2.1 ms per call
    # (a one-row request over loopback, client included: an upper bound) plus ~3.6 us per reading (parse,
    # score, encode). The processor waits a network round trip on top (assumed 15 ms in-region: not
    # measurable here).
    detector_backend: str = DEFAULTS["detector_backend"]
    sagemaker_memory_mb: int = DEFAULTS["sagemaker_memory_mb"]  # template SageMakerServerlessMemoryMB
    sagemaker_call_ms: float = 2.1
    sagemaker_us_per_reading: float = 3.6
    sagemaker_request_bytes_per_reading: float = 198.0
    sagemaker_response_bytes_per_reading: float = 19.0
    sagemaker_round_trip_ms: float = 15.0
    # Rows per call: the client splits a batch to stay under the 4 MB serverless request limit
    # (functions.detector.anomaly_detector.MAX_REQUEST_BYTES // (24 B x 10 features + 4)).
    sagemaker_rows_per_call: int = 14_344
    # Optional: devices publish over MQTT to IoT Core, whose readings rule puts each message on the stream
    # (Kinesis action, one record per message): "messaging" to the device topic, "basic-ingest" to the
    # rule's $aws/rules/... topic (no messaging charge); "none": devices use PutRecords.
    mqtt_ingest: str = "none"
    # Optional: devices POST /ingest through API Gateway instead of PutRecords.
    ingest_via_api: bool = False
    readings_per_ingest_request: int = 100
    ingest_memory_mb: int = 256
    ingest_ms: float = 40.0


@dataclass(frozen=True)
class Measured:
    """Per-reading figures counted by bench/end_to_end.py; each replaces the formula's value when present."""

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
    # bench/calls.py: write units DynamoDB reported per aggregate write (1 while items stay under 1 KB)
    wcu_per_write: float | None = None
    counted: dict[str, float] | None = None  # the counted calls per 1,000 readings, reported as they are
