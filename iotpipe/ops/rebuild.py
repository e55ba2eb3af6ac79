"""``iotpipe rebuild``: re-derive the aggregates and anomalies tables from the S3 archive, exactly once.

The archive holds every reading the processor finished (``processed/``: status aggregated or duplicate)
and every quarantined item (``quarantine/``), each processed line with its shard id, sequence number and
index in a packed record. That is all the processor's exactly-once write needs, so the rebuild runs the
processor's own stages (``functions.processor``) over the archive instead of over a Kinesis batch, through
the same ports (``wiring.build_ports``, from settings made of the stack's outputs):

    archive lines -> Readings (deduplicated by (shard, sequence number, index))
      -> ``prepare.group_by_window``: per (device, window), each shard's readings in sequence order
      -> ``window_writes.prefetch_windows``: the stored items, a chunk of windows at a time
      -> ``anomaly_stage.detect_anomalies`` over the readings the table lacks (``split_fresh``), device by
         device in event time; anomalies stored idempotently (same ``ts#seq`` keys), no alerts re-sent
      -> ``window_writes.write_windows``: one conditional write per window (``exactly_once.apply_group``)

Why it is exactly once: the stored watermarks and seen offsets say what a window already holds, so a
reading the table has (restored from a snapshot, or written by a first rebuild) is a duplicate and a
second run writes nothing. Why it is all of a window at once: ``split_fresh`` drops every reading at or
below a shard's watermark, so applying a window's readings out of sequence order would lose some; the
rebuild therefore writes each window once with everything the archive has for it, and pauses the
stream's event source mappings meanwhile so that a live batch cannot advance a watermark past archived
readings not yet applied. Quarantined lines are counted, not aggregated (as in the processor).
"""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

from functions.adapters.archive import S3Archive
from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX
from functions.core.archive_lines import ProcessedLine, QuarantinedLine, decode_line
from functions.core.ports import AlertSummary, WindowKey, chunked
from functions.core.readings import DeviceInfo, Reading
from functions.processor.anomaly_stage import detect_anomalies
from functions.processor.batch import ProcessorConfig, ProcessorPorts, item_key
from functions.processor.exactly_once import WindowGroup
from functions.processor.prepare import group_by_window
from functions.processor.window_writes import Deadline, prefetch_windows, write_windows
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


@dataclass(frozen=True)
class _NoneSent:  # functions.core.ports.AlertSummary
    sent: int = 0
    suppressed: int = 0
    failed: int = 0


class NoAlerts:
    """A rebuild re-derives anomalies; the alerts for them were sent (or not) when they happened."""

    def notify(self, anomalies: Sequence[dict[str, Any]], now: float) -> AlertSummary:
        return _NoneSent()


# ------------------------------------------------------------------------------------------ pure
def readings_from_lines(
    lines: Iterable[bytes], report: RebuildReport, devices: dict[str, DeviceInfo] | None = None
) -> list[Reading]:
    """Archive lines (``functions.core.archive_lines``) -> unique Readings; quarantined lines are counted
    by reason."""
    seen: set[tuple[str, str, int | None]] = set()
    quarantined: Counter[str] = Counter(report.quarantined)
    out: list[Reading] = []
    for raw in lines:
        line = decode_line(raw)
        if isinstance(line, QuarantinedLine):
            quarantined[line.reason] += 1
            continue
        report.processed_lines += 1
        key = (line.shard_id, line.sequence_number, line.index)
        if key in seen:  # archived twice (a retried batch under another key): one reading
            continue
        seen.add(key)
        out.append(line.to_reading((devices or {}).get(line.device_id)))
    report.readings += len(out)
    report.quarantined = dict(quarantined)
    return out


def device_ids(lines: Iterable[bytes]) -> set[str]:
    """The devices the processed lines name."""
    return {line.device_id for line in map(decode_line, lines) if isinstance(line, ProcessedLine)}


def group_readings(
    readings: Iterable[Reading], window_s: int, report: RebuildReport | None = None
) -> dict[WindowKey, WindowGroup]:
    """Per (device, window), each shard's readings in (sequence number, index) order, event times once.

    The processor's grouping (``prepare.group_by_window``) over the archive's readings in shard and
    sequence order: the same device and event time counts once, the first by sequence number (the
    archive keeps the re-sent ones as status "duplicate").
    """
    ordered = sorted(readings, key=lambda r: (r.shard_id, len(r.sequence_number), r.sequence_number,
                                              -1 if r.index is None else r.index))
    infos: dict[str, DeviceInfo | None] = {}
    for r in ordered:
        infos.setdefault(r.device_id, r.device or DeviceInfo(device_id=r.device_id))
    grouped = group_by_window(ordered, infos, window_s)
    if report is not None:
        report.duplicates += len(grouped.duplicates)
    return grouped.groups


def apply_groups(
    groups: dict[WindowKey, WindowGroup],
    ports: ProcessorPorts,
    config: ProcessorConfig,
    report: RebuildReport,
    now_s: float | None = None,
    on_progress: Callable[[int, int], None] | None = None,
) -> None:
    """The processor's stages over the windows, a chunk at a time: prefetch, detect on what the table
    lacks, then one conditional write per window. A window not written is reported, not raised: the
    next run retries it (exactly once still).

    ``on_progress(windows done, windows in all)`` after each chunk (a progress display).
    """
    now_s = time.time() if now_s is None else now_s
    report.windows += len(groups)
    keys = sorted(groups)
    deadline = Deadline(None, 0)  # a tool run has no invocation time limit
    done = 0
    for chunk in chunked(keys, PREFETCH_CHUNK):
        prefetched = prefetch_windows(ports.aggregates, {key: groups[key] for key in chunk})
        detection = detect_anomalies(ports, prefetched.groups, prefetched.current, now_s, deadline)
        writes = write_windows(ports.aggregates, detection.groups, prefetched.current, detection.anomalous,
                               now_s, config, deadline)
        report.anomalies_stored += detection.anomalies
        report.windows_written += writes.windows_written
        report.readings_applied += len(writes.applied)
        why = "; ".join([*prefetched.errors, *detection.errors]) or "not written"
        for key in chunk:
            failure = None if key in detection.groups else why  # handed back before its write
            failure = failure or writes.failed_windows.get(key)
            if failure is not None:
                report.failed_windows.append(f"{key[0]}/{key[1]}: {failure}"[:200])
                continue
            readings = groups[key].readings
            report.already_present += sum(1 for r in readings if item_key(r) not in writes.applied)
        done += len(chunk)
        if on_progress is not None:
            on_progress(done, len(keys))


def rebuild_ports(ports: ProcessorPorts) -> ProcessorPorts:
    """The processor's ports as a rebuild uses them: no alert is re-sent, and the per-device detector's
    carried state is not written back (it reflects the archive, not the live stream)."""
    return replace(ports, alerter=NoAlerts() if ports.detector is not None else None, detector_state=None)


# ------------------------------------------------------------------------------------------ AWS side
def archive_lines(s3: Any, bucket: str, report: RebuildReport) -> Iterator[bytes]:
    """Every line of every archive object (processed and quarantine), in key order."""
    archive = S3Archive(bucket, s3)
    for prefix in (PROCESSED_PREFIX, QUARANTINE_PREFIX):
        for _, lines in archive.iter_objects(prefix):
            report.objects += 1
            yield from lines


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

    The processor's ports and config are built from settings made of the stack's outputs (the process's
    environment and settings are left alone). ``on_progress(windows done, windows in all)`` while the
    windows are written.
    """
    from functions.adapters.clients import clients_for
    from functions.processor.wiring import build_config, build_ports
    from functions.settings import settings_for_stack
    from iotpipe import aws
    from iotpipe.ops.stack import stack_outputs

    say = say or (lambda _m: None)
    started = time.monotonic()
    outputs = stack_outputs(stack)
    settings = settings_for_stack(outputs)
    ports = rebuild_ports(build_ports(settings, clients_for(settings)))
    if ports.detector is None:  # as in the processor: aggregates do not wait for a broken model
        say("anomaly detection unavailable; rebuilding aggregates only")
    config = replace(build_config(settings), write_concurrency=WRITE_CONCURRENCY)
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
        ids = device_ids(lines)
        known = ports.devices.resolve(sorted(ids)) if ids else {}
        devices = {device_id: info for device_id, info in known.items() if info is not None}
        readings = readings_from_lines(lines, report, devices)
        del lines
        groups = group_readings(readings, config.window_s, report)
        say(f"{report.objects} objects, {report.readings} readings in {len(groups)} windows; applying ...")
        apply_groups(groups, ports, config, report, time.time(), on_progress=on_progress)
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
