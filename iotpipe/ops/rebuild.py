"""``iotpipe rebuild``: re-derive the aggregates and anomalies tables from the S3 archive, exactly once.

The archive holds every reading the processor finished (``processed/``: status aggregated or duplicate)
and every quarantined item (``quarantine/``), each processed line with its shard id, sequence number and
index in a packed record. That is all the processor's exactly-once write needs, so the rebuild is the
processor's own tail run over the archive instead of over a Kinesis batch:

    archive lines -> Readings (deduplicated by (shard, sequence number, index))
      -> groups per (device, window), each shard's readings in sequence order   (as ``prepare_batch``)
      -> stored item per window, ``exactly_once.split_fresh``: drop what the table already holds
      -> the detector over the fresh readings, device by device in event time; anomalies stored
         idempotently (same ``ts#seq`` keys), no alerts re-sent
      -> ``exactly_once.apply_group``: one conditional write per window (the same fold and merge)

Why it is exactly once: the stored watermarks and seen offsets say what a window already holds, so a
reading the table has (restored from a snapshot, or written by a first rebuild) is a duplicate and a
second run writes nothing. Why it is all of a window at once: ``split_fresh`` drops every reading at or
below a shard's watermark, so applying a window's readings out of sequence order would lose some; the
rebuild therefore writes each window once with everything the archive has for it, and pauses the
stream's event source mappings meanwhile so that a live batch cannot advance a watermark past archived
readings not yet applied. Quarantined lines are counted, not aggregated (as in the processor).
"""

from __future__ import annotations

import gzip
import json
import os
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from typing import Any

import orjson

from functions.core.ports import AggregateStore, WindowKey, chunked
from functions.core.readings import DeviceInfo, Reading
from functions.processor import exactly_once
from functions.processor.archive_keys import PROCESSED_PREFIX, QUARANTINE_PREFIX
from functions.processor.exactly_once import WindowGroup
from iotpipe.console import progress, progress_callback
from iotpipe.cost.template_facts import WRITE_CONCURRENCY as TEMPLATE_WRITE_CONCURRENCY

PREFETCH_CHUNK = 500  # windows per get_many round (the adapter splits into BatchGetItem calls of 100)
# As the processor (the template's ProcessorWriteConcurrency): windows are independent items.
WRITE_CONCURRENCY = TEMPLATE_WRITE_CONCURRENCY


@dataclass
class RebuildReport:
    objects: int = 0
    processed_lines: int = 0
    readings: int = 0  # unique (shard, sequence number, index) among the processed lines
    duplicates: int = 0  # of those, repeats of a device's event time (counted once, as the processor does)
    windows: int = 0
    windows_written: int = 0
    readings_applied: int = 0  # newly aggregated by this run
    already_present: int = 0  # the table held them already (snapshot, live pipeline, an earlier run)
    anomalies_stored: int = 0
    quarantined: dict[str, int] = field(default_factory=dict)
    failed_windows: list[str] = field(default_factory=list)
    mappings_paused: list[str] = field(default_factory=list)
    duration_s: float = 0.0

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class _NoAlerts:
    """A rebuild re-derives anomalies; the alerts for them were sent (or not) when they happened."""

    @dataclass
    class _Outcome:
        sent: int = 0
        suppressed: int = 0
        failed: int = 0  # functions.core.ports.AlertSummary

    def notify(self, anomalies: Sequence[dict[str, Any]], now: float) -> _NoAlerts._Outcome:
        return self._Outcome()


# ------------------------------------------------------------------------------------------ pure
def readings_from_lines(
    lines: Iterable[bytes], report: RebuildReport, devices: dict[str, DeviceInfo] | None = None
) -> list[Reading]:
    """Processed archive lines -> unique Readings; quarantine lines are counted by reason."""
    seen: set[tuple[str, str, int | None]] = set()
    quarantined: Counter[str] = Counter(report.quarantined)
    out: list[Reading] = []
    for line in lines:
        if not line.strip():
            continue
        doc = orjson.loads(line)
        if "reason" in doc and "status" not in doc:
            quarantined[str(doc["reason"])] += 1
            continue
        report.processed_lines += 1
        key = (str(doc["shard_id"]), str(doc["sequence_number"]), doc.get("index"))
        if key in seen:  # archived twice (a retried batch under another key): one reading
            continue
        seen.add(key)
        device_id = str(doc["device_id"])
        device = (devices or {}).get(device_id) or DeviceInfo(
            device_id=device_id, site=str(doc.get("site") or ""), location=str(doc.get("location") or "")
        )
        out.append(Reading(
            device_id=device_id,
            epoch_ms=int(doc["epoch_ms"]),
            channels={k: float(v) for k, v in (doc.get("channels") or {}).items()},
            shard_id=key[0],
            sequence_number=key[1],
            device=device,
            ground_truth=doc.get("ground_truth"),
            index=key[2],
        ))
    report.readings += len(out)
    report.quarantined = dict(quarantined)
    return out


def group_readings(
    readings: Iterable[Reading], window_s: int, report: RebuildReport | None = None
) -> dict[WindowKey, WindowGroup]:
    """Per (device, window), each shard's readings in (sequence number, index) order, event times once."""
    groups: dict[WindowKey, WindowGroup] = {}
    repeats = 0
    window_ms = window_s * 1000
    for r in readings:
        key = (r.device_id, (r.epoch_ms // window_ms) * window_s)
        group = groups.get(key)
        if group is None:
            groups[key] = WindowGroup(r.device_id, key[1], [r], r.device)
        else:
            group.readings.append(r)
    for group in groups.values():
        group.readings.sort(key=lambda r: (r.shard_id, len(r.sequence_number), r.sequence_number,
                                           -1 if r.index is None else r.index))
        # Same device and event time counts once, the first by sequence number (``prepare_batch``'s rule;
        # the archive keeps the re-sent ones as status "duplicate").
        seen: set[int] = set()
        kept = []
        for r in group.readings:
            if r.epoch_ms not in seen:
                seen.add(r.epoch_ms)
                kept.append(r)
        repeats += len(group.readings) - len(kept)
        group.readings = kept
    if report is not None:
        report.duplicates += repeats
    return groups


def apply_groups(
    groups: dict[WindowKey, WindowGroup],
    aggregates: AggregateStore,
    report: RebuildReport,
    detect: Callable[[list[Reading]], set[int]] | None = None,
    now_s: float | None = None,
    window_s: int = 60,
    concurrency: int = WRITE_CONCURRENCY,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """Prefetch, keep what the table lacks, detect on it, then one conditional write per window.

    ``on_progress(windows done, windows in all)`` after each prefetch chunk (a progress display).
    """
    now_s = time.time() if now_s is None else now_s
    report.windows += len(groups)
    keys = sorted(groups)
    done = 0
    pool = ThreadPoolExecutor(max_workers=max(1, concurrency), thread_name_prefix="rebuild-write")
    try:
        for chunk in chunked(keys, PREFETCH_CHUNK):
            current = aggregates.get_many(list(chunk))
            fresh: list[Reading] = []
            for key in chunk:
                new, _ = exactly_once.split_fresh(current.get(key), groups[key].readings, key[1])
                fresh.extend(new)
            anomalous = detect(fresh) if (detect is not None and fresh) else set()

            def apply(key: WindowKey, current: dict = current, anomalous: set[int] = anomalous) -> Any:
                try:
                    return exactly_once.apply_group(
                        aggregates, groups[key], current.get(key), lambda r: id(r) in anomalous, now_s,
                        window_s,
                    )
                except Exception as exc:  # reported; the next run retries it (exactly once still)
                    return exc

            for key, result in zip(chunk, pool.map(apply, chunk), strict=True):
                if isinstance(result, BaseException):
                    report.failed_windows.append(f"{key[0]}/{key[1]}: {result!r}"[:200])
                    continue
                report.windows_written += int(result.written)
                report.readings_applied += len(result.applied)
                report.already_present += len(groups[key].readings) - len(result.applied)
            done += len(chunk)
            if on_progress is not None:
                on_progress(done, len(keys))
    finally:
        pool.shutdown(wait=True)


def make_detect(detector: Any, anomaly_store: Any, report: RebuildReport, now_s: float,
                handle: Callable[..., Any] | None = None) -> Callable[[list[Reading]], set[int]]:
    """The processor's anomaly stage over fresh readings (device by device, in event time)."""
    from functions.detector.pipeline_stage import handle_verdicts

    run_stage = handle or handle_verdicts

    def detect(fresh: list[Reading]) -> set[int]:
        readings = sorted(fresh, key=lambda r: (r.device_id, r.epoch_ms))
        verdicts = detector.detect(readings)
        stage = run_stage(readings, verdicts, anomaly_store, _NoAlerts(), now_s)
        report.anomalies_stored += len(stage.anomalies)
        return {id(r) for r, v in zip(readings, verdicts, strict=True) if v.is_anomaly}

    return detect


# ------------------------------------------------------------------------------------------ AWS side
def archive_lines(s3: Any, bucket: str, report: RebuildReport) -> Iterator[bytes]:
    """Every line of every archive object (processed and quarantine), in key order."""
    paginator = s3.get_paginator("list_objects_v2")
    for prefix in (PROCESSED_PREFIX, QUARANTINE_PREFIX):
        for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
            for obj in page.get("Contents", []):
                body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
                report.objects += 1
                yield from gzip.decompress(body).splitlines()


def _mappings(lam: Any, stream_arn: str) -> list[dict[str, Any]]:
    return lam.list_event_source_mappings(EventSourceArn=stream_arn).get("EventSourceMappings", [])


def pause_mappings(lam: Any, stream_arn: str, settle_s: float) -> list[str]:
    """Disable the stream's mappings; wait ``settle_s`` for a batch in flight to finish.

    Returns every mapping of the stream, disabled ones included: the template declares them enabled,
    so one found disabled is most likely left so by a rebuild that was killed before it resumed them.
    """
    uuids = []
    for mapping in _mappings(lam, stream_arn):
        if mapping.get("State") in ("Enabled", "Enabling", "Updating"):
            lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
        uuids.append(mapping["UUID"])
    if uuids:
        time.sleep(settle_s)
    return uuids


def resume_mappings(lam: Any, uuids: Sequence[str]) -> None:
    for uuid in uuids:
        lam.update_event_source_mapping(UUID=uuid, Enabled=True)


def rebuild_stack(
    stack: str, settle_s: float = 5.0, say: Callable[[str], None] | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> RebuildReport:
    """Rebuild the stack's aggregates and anomalies from its archive, with the real adapters.

    ``on_progress(windows done, windows in all)`` while the windows are written.
    """
    from iotpipe import aws
    from iotpipe.ops.stack import stack_outputs

    say = say or (lambda _m: None)
    started = time.monotonic()
    outputs = stack_outputs(stack)
    # The processor's adapters read their resources from the settings (environment), as in Lambda.
    os.environ.update({
        "DEVICES_TABLE": outputs["DevicesTableName"],
        "AGGREGATES_TABLE": outputs["AggregatesTableName"],
        "ANOMALIES_TABLE": outputs["AnomaliesTableName"],
        "ARCHIVE_BUCKET": outputs["ArchiveBucketName"],
        "STREAM_NAME": outputs["StreamName"],
    })
    from functions.adapters.aggregates import DynamoAggregateStore
    from functions.adapters.anomalies import DynamoAnomalyStore
    from functions.adapters.clients import client
    from functions.adapters.devices import DynamoDeviceRegistry
    from functions.settings import get_settings

    get_settings.cache_clear()
    client.cache_clear()
    settings = get_settings()
    report = RebuildReport()
    lam = aws.client("lambda")
    stream_arn = aws.client("kinesis").describe_stream_summary(
        StreamName=outputs["StreamName"])["StreamDescriptionSummary"]["StreamARN"]
    report.mappings_paused = pause_mappings(lam, stream_arn, settle_s)
    if report.mappings_paused:
        say(f"paused {len(report.mappings_paused)} event source mapping(s) while rebuilding")
    try:
        say(f"reading the archive s3://{outputs['ArchiveBucketName']} ...")
        lines = list(archive_lines(aws.client("s3"), outputs["ArchiveBucketName"], report))
        ids = {orjson.loads(line)["device_id"] for line in lines if b'"status"' in line}
        devices = DynamoDeviceRegistry().get_many(sorted(ids)) if ids else {}
        readings = readings_from_lines(lines, report, devices)
        del lines
        groups = group_readings(readings, settings.window_seconds, report)
        say(f"{report.objects} objects, {report.readings} readings in {len(groups)} windows; applying ...")
        now_s = time.time()
        detect = None
        try:
            from functions.detector.anomaly_detector import get_detector

            detect = make_detect(get_detector(), DynamoAnomalyStore(), report, now_s)
        except Exception as exc:  # as in the processor: aggregates do not wait for a broken model
            say(f"anomaly detection unavailable ({exc!r}); rebuilding aggregates only")
        apply_groups(groups, DynamoAggregateStore(), report, detect, now_s, settings.window_seconds,
                     on_progress=on_progress)
    finally:
        resume_mappings(lam, report.mappings_paused)
    report.duration_s = round(time.monotonic() - started, 2)
    return report


def main(stack: str, as_json: bool = False) -> int:
    def say(message: str) -> None:
        print(f"[iotpipe] {message}", file=sys.stderr, flush=True)

    with progress(transient=True) as bar:  # stderr: stdout keeps the report line
        report = rebuild_stack(stack, say=say, on_progress=progress_callback(bar, "rebuilding windows"))
    say(f"rebuilt: {report.readings_applied} readings applied to {report.windows_written} windows, "
        f"{report.already_present} already present, {report.anomalies_stored} anomalies stored, "
        f"{sum(report.quarantined.values())} quarantined in the archive; {report.duration_s:.1f} s")
    if report.failed_windows:
        say(f"{len(report.failed_windows)} window(s) failed; run 'iotpipe rebuild' again "
            f"(exactly once): {report.failed_windows[:3]}")
    print(json.dumps(report.to_json(), sort_keys=True) if as_json else
          f"applied {report.readings_applied}, already present {report.already_present}")
    return 1 if report.failed_windows else 0
