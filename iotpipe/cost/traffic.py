"""What the pipeline does in a month for a workload: readings, invocations, and the AWS calls per reading.

The per-reading API call counts follow what the code does (functions/processor), not a rule of thumb:

- Per batch, the processor prefetches every touched (device, window) with one strongly consistent
  BatchGetItem row (1 RRU each, items < 4 KB) and writes each once with a conditional PutItem
  (``exactly_once.apply_group``: read-modify-write). So DynamoDB writes per reading are
  ``(devices in the batch x windows each spans) / batch records``: about 1 when a batch holds less than
  one reading per device, ``1 / (rate x seconds per batch)`` when it holds several. This is the figure
  the batch size and batching window move. The writes run on the processor's thread pool
  (``WRITE_CONCURRENCY``, the template's ProcessorWriteConcurrency, 16), so their latency counts once per
  ``concurrency`` writes; the SDK's CPU time per call (GIL-bound) counts for every call.
- One S3 PUT per batch for processed records, plus one when the batch had any quarantined record.
- Anomalies: one item per flagged reading (BatchWriteItem) plus its ``by-day`` GSI write; per flagged
  device and batch one conditional cooldown UpdateItem and one ``ADD suppressed``; alerts are capped by
  the per-device cooldown; one SNS publish each.

A ``Measured`` figure (``--from-bench``) replaces the formula's wherever it is present.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

from iotpipe.cost.limits import BATCH_GET_MAX_KEYS, BATCH_WRITE_MAX_ITEMS
from iotpipe.cost.prices import HOURS_PER_MONTH, SECONDS_PER_MONTH
from iotpipe.cost.sizing import batch_shape, item_bytes, shards_for
from iotpipe.cost.workload import Measured, Workload

DAYS_PER_MONTH = HOURS_PER_MONTH / 24  # 30.4167, consistent with the 730-hour month


@dataclass(frozen=True)
class Traffic:
    """One month of the workload, as counts the services bill (see the module docstring)."""

    rps: float  # readings per second, the whole fleet
    readings: float  # readings per month
    record_bytes: float  # one reading's bytes (measured or the workload's)
    per_record: int  # readings per Kinesis record
    compression: str  # of a Kinesis record: "gzip" or "none" (a measured record size is as sent)
    shards: int
    batch_records: float  # readings per batch, from the batch shape (the formula's)
    valid: float  # share of readings that are not malformed
    invocations_per_reading: float
    invocations: float  # processor invocations per month
    per_invocation_records: float  # readings per invocation (measured or the formula's)
    batches: float  # readings / per_invocation_records (the alerting arithmetic's invocation count)
    writes_per_reading: float  # aggregate window writes (conditional PutItem)
    reads_per_reading: float  # prefetch rows (consistent BatchGetItem)
    p_quarantine: float  # probability that a batch has at least one quarantined record
    s3_puts_per_reading: float
    archive_bytes_per_reading: float
    aggregate_item_bytes: float
    anomalies: float  # flagged readings per month
    alerts: float  # SNS publishes per month
    cooldown_writes: float  # cooldown UpdateItems per month (granted or not)
    api_requests: float  # query API requests per month
    ingest_requests: float  # POST /ingest requests per month (0 unless ingest_via_api)
    processor_ms: float  # duration of one invocation
    wcu_per_write: float | None = None  # counted write units per aggregate PutItem (None: from the size)

    @property
    def batch_seconds(self) -> float:
        """Seconds of one shard's stream that one invocation holds."""
        return self.per_invocation_records / (self.rps / self.shards) if self.rps else 0.0


def monthly_traffic(w: Workload, m: Measured) -> Traffic:
    rps = w.devices * w.rate_hz
    readings = rps * SECONDS_PER_MONTH
    record_bytes = m.record_bytes or w.record_bytes
    # a measured size is the bytes the stream carried per reading: already compressed if it was
    compression = "none" if m.record_bytes else w.compression
    per_record = max(1, w.readings_per_record)
    shards = w.shards or shards_for(rps, record_bytes, per_record, compression)
    sized = replace(w, record_bytes=int(record_bytes), compression=compression)
    batch_records, _, groups = batch_shape(sized, shards)
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
    batches = readings / per_invocation_records
    flagged_device_batches = batches * devices_in_batch * p_flagged
    alerts = min(flagged_device_batches, w.devices * SECONDS_PER_MONTH / max(w.alert_cooldown_s, 1))
    cooldown_writes = flagged_device_batches + (flagged_device_batches - alerts)
    if m.processor_ms_per_invocation is not None:
        duration_ms = m.processor_ms_per_invocation
    else:
        duration_ms = processor_ms(w, per_invocation_records, writes_per_reading, valid,
                                   cooldown_writes / batches, alerts / batches,
                                   s3_puts_per_reading * per_invocation_records)
    return Traffic(
        rps=rps, readings=readings, record_bytes=record_bytes, per_record=per_record,
        compression=compression, shards=shards,
        batch_records=batch_records, valid=valid, invocations_per_reading=invocations_per_reading,
        invocations=invocations, per_invocation_records=per_invocation_records, batches=batches,
        writes_per_reading=writes_per_reading, reads_per_reading=reads_per_reading,
        p_quarantine=p_quarantine, s3_puts_per_reading=s3_puts_per_reading,
        archive_bytes_per_reading=archive_per_reading, aggregate_item_bytes=agg_item,
        anomalies=anomalies, alerts=alerts, cooldown_writes=cooldown_writes,
        api_requests=w.api_requests_per_day * DAYS_PER_MONTH,
        ingest_requests=readings / w.readings_per_ingest_request if w.ingest_via_api else 0.0,
        processor_ms=duration_ms,
        wcu_per_write=m.wcu_per_write,
    )


def processor_ms(w: Workload, batch_readings: float, writes_per_reading: float, valid: float,
                 cooldown_calls: float, alert_calls: float, s3_calls: float) -> float:
    """One invocation's duration: overhead + compute + SDK CPU per call + sequential I/O (prefetch,
    anomalies, alerts, S3) + window writes / write_concurrency x latency."""
    writes_per_batch = writes_per_reading * batch_readings
    gets = math.ceil(writes_per_batch / BATCH_GET_MAX_KEYS - 1e-9)
    anomalies_per_batch = batch_readings * valid * w.anomaly_rate
    anomaly_calls = (math.ceil(anomalies_per_batch / BATCH_WRITE_MAX_ITEMS) if anomalies_per_batch >= 1
                     else anomalies_per_batch)  # expected calls when most batches have none
    calls = writes_per_batch + gets + anomaly_calls + cooldown_calls + alert_calls + s3_calls
    return (
        w.processor_overhead_ms
        + batch_readings * w.compute_us_per_record / 1000
        + calls * w.sdk_cpu_ms_per_call
        # window writes run on the thread pool: their latency overlaps write_concurrency at a time
        + math.ceil(writes_per_batch / max(1, w.write_concurrency) - 1e-9) * w.ddb_write_ms
        + gets * w.ddb_batch_get_ms  # prefetch chunks, one after another
        + (anomaly_calls + cooldown_calls) * w.ddb_write_ms  # sequential
        + alert_calls * w.sns_publish_ms
        + s3_calls * w.s3_put_ms
        # the SageMaker backend: the processor waits for the endpoint's scores (one call per batch)
        + (sagemaker_call_ms(w, batch_readings * valid)
           + sagemaker_calls(w, batch_readings * valid) * (w.sagemaker_round_trip_ms + w.sdk_cpu_ms_per_call)
           if w.detector_backend == "sagemaker" else 0.0)
    )


def sagemaker_calls(w: Workload, readings: float) -> int:
    """InvokeEndpoint calls for one batch of ``readings`` (split under the request size limit)."""
    return max(1, math.ceil(readings / max(1, w.sagemaker_rows_per_call)))


def sagemaker_call_ms(w: Workload, readings: float) -> float:
    """The endpoint's billed time for scoring one batch of ``readings`` (inside the container)."""
    return sagemaker_calls(w, readings) * w.sagemaker_call_ms + readings * w.sagemaker_us_per_reading / 1000
