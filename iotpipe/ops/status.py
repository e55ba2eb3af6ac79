"""Pipeline status: stack outputs and counts (readings in, aggregated, quarantined, anomalies)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from iotpipe import aws
from iotpipe.ops.stack import stack_outputs

NAMESPACE = "IoTPipeline"


@dataclass
class PipelineStatus:
    stack: str
    stack_status: str = "UNKNOWN"
    api_url: str = ""
    api_key: str = ""
    readings_in: int = 0
    aggregated: int = 0  # sum of window counts in the aggregates table (exact)
    quarantined: int = 0
    quarantined_by_reason: dict[str, int] = field(default_factory=dict)
    # MQTT messages the topic rules kept off the stream (not of the publishing thing), by reason:
    # counted apart from the pipeline's readings (functions/ingest/mqtt.py)
    refused_by_reason: dict[str, int] = field(default_factory=dict)
    duplicates: int = 0
    # Failures (metric sums): readings handed back for redelivery (ministack drops them), readings that
    # came back after being put in the table, archive puts and alerts that failed.
    retried: int = 0
    # Readings handed back in the last 2 minutes, each once: the largest handed-back delivery (Maximum of
    # RecordsRetried); a batch retried every second adds its readings to `retried` every time.
    held_back_now: int = 0
    redelivered: int = 0
    archive_failures: int = 0
    alerts_failed: int = 0
    aggregated_metric: int = 0  # RecordsAggregated: equals `aggregated` unless an invocation crashed
    # Per-device isolation (metric sums by Reason): readings the fleet model scored instead of the device's
    # own calibration, and readings aggregated although detection failed for them.
    calibration_fallbacks: dict[str, int] = field(default_factory=dict)
    detection_failures: dict[str, int] = field(default_factory=dict)
    anomalies: int = 0
    windows: int = 0
    devices: int = 0
    throughput_per_s: float = 0.0  # RecordsIn over the last 60 s
    readings_in_since: int = 0  # RecordsIn since `collect(..., since=)` (what the status line's rate uses)
    window_lag_s: float | None = None  # latest WindowLagSeconds (processing time - event time)
    outputs: dict[str, str] = field(default_factory=dict)
    # The embedded emulator's last start: what its stream's write-ahead log restored after an unclean
    # stop and which acknowledged readings may be missing (iotpipe/local/ministack_launcher.py); None
    # elsewhere.
    crash_window: dict[str, Any] | None = None

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["api_key"] = self.api_key
        return data


def _metric_sum(cw: Any, name: str, start: dt.datetime, end: dt.datetime,
                dims: list[dict[str, str]] | None = None) -> float:
    resp = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName=name, Dimensions=dims or [], StartTime=start, EndTime=end,
        Period=max(60, int((end - start).total_seconds()) // 60 * 60 or 60), Statistics=["Sum"],
    )
    return float(sum(p.get("Sum", 0.0) for p in resp.get("Datapoints", [])))


def _by_reason(cw: Any, name: str, start: dt.datetime, end: dt.datetime) -> dict[str, int]:
    """Sum of each ``Reason`` series of a metric (zero series left out)."""
    out: dict[str, int] = {}
    for metric in cw.list_metrics(Namespace=NAMESPACE, MetricName=name).get("Metrics", []):
        dims = metric.get("Dimensions", [])
        reason = next((d["Value"] for d in dims if d["Name"] == "Reason"), None)
        if reason and len(dims) == 1:
            total = int(_metric_sum(cw, name, start, end, dims))
            if total:
                out[reason] = out.get(reason, 0) + total
    return out


def _scan(ddb: Any, table: str, projection: str, names: dict[str, str] | None = None) -> list[dict]:
    """Every item of a table (projected); fine for local stacks, not meant for AWS-sized tables."""
    kwargs: dict[str, Any] = {"TableName": table, "ProjectionExpression": projection}
    if names:
        kwargs["ExpressionAttributeNames"] = names
    items: list[dict] = []
    while True:
        page = ddb.scan(**kwargs)
        items.extend(page.get("Items", []))
        if "LastEvaluatedKey" not in page:
            return items
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def collect(stack: str, window_hours: float = 24.0, since: dt.datetime | None = None) -> PipelineStatus:
    status = PipelineStatus(stack=stack)
    outputs = stack_outputs(stack)
    status.outputs = outputs
    status.stack_status = outputs.get("StackStatus", "UNKNOWN")
    status.api_url = outputs.get("ApiUrl", "")
    status.api_key = outputs.get("ApiKey", "")

    ddb = aws.client("dynamodb")
    windows = _scan(ddb, outputs["AggregatesTableName"], "device_id, #c", {"#c": "count"})
    status.windows = len(windows)
    status.aggregated = sum(int(float(w["count"]["N"])) for w in windows if "count" in w)
    anomalies = _scan(ddb, outputs["AnomaliesTableName"], "device_id, ts_seq")
    # "~alert" rows are the alerter's cooldown bookkeeping, not anomalies.
    status.anomalies = sum(1 for a in anomalies if not a["ts_seq"]["S"].startswith("~"))
    status.devices = len(_scan(ddb, outputs["DevicesTableName"], "device_id"))

    cw = aws.client("cloudwatch")
    end = dt.datetime.now(dt.UTC) + dt.timedelta(minutes=1)
    start = end - dt.timedelta(hours=window_hours)
    status.readings_in = int(_metric_sum(cw, "RecordsIn", start, end))
    status.duplicates = int(_metric_sum(cw, "DuplicatesDropped", start, end))
    status.retried = int(_metric_sum(cw, "RecordsRetried", start, end))
    peak = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="RecordsRetried", StartTime=end - dt.timedelta(minutes=3),
        EndTime=end, Period=180, Statistics=["Maximum"],
    ).get("Datapoints", [])
    status.held_back_now = int(max((p.get("Maximum", 0.0) for p in peak), default=0))
    if since is not None:
        status.readings_in_since = int(_metric_sum(cw, "RecordsIn", since, end))
    status.redelivered = int(_metric_sum(cw, "RecordsRedelivered", start, end))
    status.archive_failures = int(_metric_sum(cw, "ArchiveWriteFailures", start, end))
    status.alerts_failed = int(_metric_sum(cw, "AlertsFailed", start, end))
    status.aggregated_metric = int(_metric_sum(cw, "RecordsAggregated", start, end))
    status.quarantined_by_reason = _by_reason(cw, "RecordsRejected", start, end)
    status.refused_by_reason = _by_reason(cw, "ReadingsRefused", start, end)
    status.calibration_fallbacks = _by_reason(cw, "CalibrationFallbacks", start, end)
    status.detection_failures = _by_reason(cw, "DetectionFailures", start, end)
    # Summed from the per-reason series: ministack answers a dimensionless query with every series
    # of the metric, so the dimensionless total would be counted twice there.
    status.quarantined = sum(status.quarantined_by_reason.values())
    recent_start = dt.datetime.now(dt.UTC) - dt.timedelta(seconds=60)
    status.throughput_per_s = round(_metric_sum(cw, "RecordsIn", recent_start, end) / 60.0, 2)
    lag = cw.get_metric_statistics(
        Namespace=NAMESPACE, MetricName="WindowLagSeconds", StartTime=end - dt.timedelta(minutes=5),
        EndTime=end, Period=60, Statistics=["Average"],
    ).get("Datapoints", [])
    if lag:
        status.window_lag_s = round(max(lag, key=lambda p: p["Timestamp"])["Average"], 2)
    return status


def _reasons(counts: dict[str, int]) -> str:
    return ", ".join(f"{k}={v}" for k, v in sorted(counts.items())) or "-"


RECOVERY_FILE = "iotpipe-recovery.json"  # written by iotpipe/local/ministack_launcher.py into STATE_DIR


def read_crash_window(state_dir: Path) -> dict[str, Any] | None:
    """The emulator's report of its last start (``<state dir>/state/iotpipe-recovery.json``), if any."""
    try:
        data = json.loads((state_dir / "state" / RECOVERY_FILE).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict):
        return None
    data["text"] = describe_crash_window(data)
    return data


def _utc(epoch_s: float | None) -> str:
    if epoch_s is None:
        return "-"
    return dt.datetime.fromtimestamp(float(epoch_s), dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def describe_crash_window(data: dict[str, Any]) -> str:
    """One line: which acknowledged readings the last restart of the emulator may have lost."""
    started = _utc(data.get("started_at"))
    if data.get("previous_snapshot_at") is None and not data.get("logged"):
        return f"none missing (started {started} on empty state)"
    if data.get("previous_stop_clean") and not data.get("logged"):
        return f"none missing (started {started} after a clean stop)"
    restored = (f"{data.get('restored', 0)} acknowledged records restored from the stream's write-ahead "
                f"log, {data.get('in_snapshot', 0)} were in the snapshot of "
                f"{_utc(data.get('previous_snapshot_at'))}")
    paused = ""
    if data.get("mappings_paused"):
        paused = (f"; the stream's {len(data['mappings_paused'])} mapping(s) started paused until "
                  "`iotpipe rebuild` (run by `iotpipe up`) applied the archive")
    if data.get("unplaceable"):
        return (f"acknowledged readings that arrived {_utc(data.get('unplaceable_first_at'))} .. "
                f"{_utc(data.get('unplaceable_last_at'))} may be missing: {data['unplaceable']} records "
                f"had no stream to return to (the last snapshot lacks it); {restored}{paused}")
    return f"none missing after the unclean stop before {started}: {restored}{paused}"


def render(status: PipelineStatus) -> str:
    reasons = _reasons(status.quarantined_by_reason)
    lag = "-" if status.window_lag_s is None else f"{status.window_lag_s:.1f} s"
    return "\n".join([
        f"stack        {status.stack} ({status.stack_status})",
        f"api          {status.api_url}   (x-api-key: {status.api_key})",
        f"devices      {status.devices}",
        f"readings in  {status.readings_in}   ({status.throughput_per_s:.1f}/s over the last minute)",
        f"aggregated   {status.aggregated} in {status.windows} windows   (window lag {lag})",
        f"quarantined  {status.quarantined}   [{reasons}]",
        f"duplicates   {status.duplicates}",
        *([f"refused      {sum(status.refused_by_reason.values())} MQTT messages kept off the stream   "
           f"[{_reasons(status.refused_by_reason)}]"] if status.refused_by_reason else []),
        f"failures     held back now {status.held_back_now} (hand-backs {status.retried}, every retry "
        f"counted)   archive writes {status.archive_failures}   alerts {status.alerts_failed}   "
        f"(redelivered {status.redelivered})",
        f"anomalies    {status.anomalies}",
        f"fleet model  {sum(status.calibration_fallbacks.values())} readings instead of their calibration   "
        f"[{_reasons(status.calibration_fallbacks)}]",
        f"unscored     {sum(status.detection_failures.values())} aggregated, detection failed   "
        f"[{_reasons(status.detection_failures)}]",
        *([f"crash window {status.crash_window['text']}"] if status.crash_window else []),
    ])



QUARANTINE_WARN = 0.05  # share of readings quarantined that the status line calls out


def problems(status: PipelineStatus) -> list[str]:
    """What is wrong, in a few words each (empty: nothing the counters show)."""
    found: list[str] = []
    if status.readings_in and status.quarantined / status.readings_in >= QUARANTINE_WARN:
        top = max(status.quarantined_by_reason.items(), key=lambda kv: kv[1])[0]
        hint = " (unregistered devices: python -m simulator register)" if top == "unknown_device" else ""
        found.append(f"{100 * status.quarantined / status.readings_in:.0f}% of readings quarantined, "
                     f"mostly {top}{hint}")
    if status.held_back_now:
        found.append(f"a batch is failing: {status.held_back_now} readings held back and retried")
    if status.archive_failures:
        found.append(f"{status.archive_failures} archive writes failed")
    if status.alerts_failed:
        found.append(f"{status.alerts_failed} alerts not sent")
    return found


def _refused(status: PipelineStatus) -> str:
    """MQTT messages the topic rules kept off the stream: sent, never `in` (only where there are some)."""
    if not status.refused_by_reason:
        return ""
    return f" | refused {sum(status.refused_by_reason.values())} [{_reasons(status.refused_by_reason)}]"


def status_line(status: PipelineStatus, sent: object, rate_per_s: float) -> str:
    """The line `iotpipe up` prints every few seconds: the counts, then what is wrong after `!!`."""
    reasons = ", ".join(f"{k} {v}" for k, v in sorted(status.quarantined_by_reason.items(),
                                                      key=lambda kv: -kv[1]))
    # RecordsIn counts every delivery: while a batch is retried, `in` runs ahead of what was sent.
    redeliveries = ", redeliveries included" if status.held_back_now else ""
    line = (f"sent {sent} | in {status.readings_in} ({rate_per_s:.1f}/s{redeliveries}) | "
            f"aggregated {status.aggregated} "
            f"in {status.windows} windows | duplicates {status.duplicates} | quarantined {status.quarantined}"
            f"{f' [{reasons}]' if reasons else ''}{_refused(status)} | held back {status.held_back_now} | "
            f"archive failures {status.archive_failures} | anomalies {status.anomalies}")
    wrong = problems(status)
    return line + (f"  !! {'; '.join(wrong)}" if wrong else "")


class RateMeter:
    """Readings per second over the last ``span_s`` from a count that only grows (RecordsIn since the
    watch began, which is 0 at its start): right from the first sample, not ramping over a minute as a
    trailing-minute sum divided by 60 does while the pipeline is younger than a minute."""

    def __init__(self, start: float, span_s: float = 60.0) -> None:
        self.span_s = span_s
        self.samples: list[tuple[float, int]] = [(start, 0)]

    def add(self, at: float, count: int) -> float:
        self.samples.append((at, count))
        while len(self.samples) > 2 and at - self.samples[1][0] >= self.span_s:
            self.samples.pop(0)
        t0, c0 = self.samples[0]
        return (count - c0) / (at - t0) if at > t0 else 0.0
