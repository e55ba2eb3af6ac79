"""``iotpipe model replay-eval``: SKAB files through the deployed pipeline, scored against their labels.

Per file (one device each, ids ``skab-<folder>-<file>-<run>``):

1. register two devices: ``<id>-cal`` and ``<id>`` (the latter with
   ``calibration_request: {rows: N, from_device: <id>-cal}``);
2. replay the file's first N rows as ``<id>-cal`` through Kinesis (``simulator.replay`` +
   ``simulator.sinks.KinesisSink``) and wait until the archive holds them (processed lines);
3. invoke the stack's calibrator (``functions.calibrator``, the code its schedule runs; it may have
   been first) on the ``<id>`` devices and read each calibration back from its item: calibration as the
   pipeline does it, from exactly what the pipeline stored. A separate device id for the calibration rows
   keeps ``<id>`` out of the processor's device cache (5 min TTL) until its calibration is on its item;
4. replay the whole file as ``<id>``; wait until the archive holds every row; read ``<id>``'s anomalies
   back from the anomalies table; score rows N+ against the file's labels (``model.skab.Confusion``).

Event time is compressed (``step_ms`` between rows, 100 ms by default, against SKAB's 1 s): the
per-device detector counts readings (k of the last n), not seconds, so its verdicts do not depend on
the spacing, and compression keeps a 1,150-row file inside the processor's lateness window (600 s)
without pacing the replay in real time. The fleet forest (time-based features) is not involved: every
replayed device is calibrated.

The offline evaluation of the same files uses the same calibration record on the same channel values
(``functions.detector.pca_tq.alarms`` over all rows, persistence carried from the calibration rows, as
``model.select_report``), so the two must agree up to what the pipeline changes: readings quarantined
(counted), readings scored in a different order (none: one shard, ordered by time per device).
"""

from __future__ import annotations

import sys
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from functions.adapters.archive import S3Archive
from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX
from functions.core.archive_lines import AGGREGATED, ProcessedLine, QuarantinedLine
from model import device_calibration as dc
from model import operating_point
from model.pca_tq import calibrate
from model.select_report import summary
from model.skab import TRAIN_ROWS, Confusion, load_file

SITE = "skab-replay"


def _say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def _items(path: Path, device_id: str, start_ms: int, step_ms: int, limit: int | None) -> list[Any]:
    """The file's rows as readings of ``device_id`` (simulator replay), event times ``step_ms`` apart."""
    from simulator.malformed import format_timestamp
    from simulator.replay import replay_readings
    from simulator.stream import Produced

    out = []
    for i, p in enumerate(replay_readings(str(path), device_id=device_id, start_ms=start_ms)):
        if limit is not None and i >= limit:
            break
        ms = start_ms + i * step_ms
        doc = orjson.loads(p.payload)
        doc["timestamp"] = format_timestamp(ms, "iso")
        out.append(Produced(device_id, orjson.dumps(doc), p.kind, ms, ms))
    return out


def _send(sink: Any, items: Sequence[Any]) -> None:
    for item in items:
        sink.add(item)
    sink.flush()


def _archived(s3: Any, bucket: str, ids: set[str]) -> tuple[dict[str, dict[int, Any]], dict[str, int]]:
    """(device -> epoch ms -> channels of its aggregated lines, device -> quarantined readings)."""
    archive = S3Archive(bucket, s3)
    out: dict[str, dict[int, Any]] = {d: {} for d in ids}
    quarantined = dict.fromkeys(ids, 0)
    for line in archive.iter_lines(PROCESSED_PREFIX):
        if SITE.encode() not in line:  # other devices' lines: skipped undecoded
            continue
        processed = ProcessedLine.decode(line)
        if processed.device_id in ids and processed.status == AGGREGATED:
            out[processed.device_id].setdefault(processed.epoch_ms, dict(processed.channels))
    for line in archive.iter_lines(QUARANTINE_PREFIX):
        if b"skab-" not in line:
            continue
        device_id = QuarantinedLine.decode(line).device_id  # set when the reading got as far as its id
        if device_id in quarantined:
            quarantined[device_id] += 1
    return out, quarantined


def _calibrate(
    outputs: dict[str, str], registry: Any, devices: dict[Path, str], rows: int,
    cal_lines: dict[str, dict[int, Any]], timeout_s: float, say: Callable[[str], None],
) -> dict[Path, dict[str, Any]]:
    """Each device's calibration as stored on its item by the deployed calibrator (invoked on the
    devices; its schedule may have been first). A stack without one: the same module, run here."""
    from iotpipe import aws

    function = outputs.get("CalibratorFunctionName")
    if not function:
        say("the stack has no calibrator: calibrating here (model.device_calibration)")
        return {p: dc.calibrate_device(d, sorted(cal_lines[f"{d}-cal"].items()), registry, rows,
                                       f"archive:{d}-cal") for p, d in devices.items()}
    say(f"calibrating with {function} ...")
    deadline = time.monotonic() + timeout_s
    while True:
        result = dc.invoke_calibrator(aws.client("lambda"), function, sorted(devices.values()))
        items = {p: registry.get(d) or {} for p, d in devices.items()}
        waiting = [devices[p] for p, item in items.items() if not item.get("calibration")]
        if not waiting:
            return {p: dict(item["calibration"]) for p, item in items.items()}
        if time.monotonic() > deadline:
            raise TimeoutError(f"not calibrated after {timeout_s:g} s: {waiting} ({result.get('devices')})")
        time.sleep(2)


def _wait_archived(
    s3: Any, bucket: str, want: dict[str, int], timeout_s: float, what: str, say: Callable[[str], None]
) -> tuple[dict[str, dict[int, Any]], dict[str, int]]:
    """Poll the archive until every reading sent is there, aggregated or quarantined."""
    deadline = time.monotonic() + timeout_s
    while True:
        got, quarantined = _archived(s3, bucket, set(want))
        counts = {d: len(got[d]) + quarantined[d] for d in want}
        done = sum(min(counts[d], n) for d, n in want.items())
        n_q = sum(quarantined.values())
        say(f"  {what}: {done}/{sum(want.values())} readings archived ({n_q} quarantined)")
        if all(counts[d] >= n for d, n in want.items()):
            return got, quarantined
        if time.monotonic() > deadline:
            raise TimeoutError(f"{what}: only {counts} of {want} readings archived after {timeout_s:.0f}s")
        time.sleep(5)


def _flagged(store: Any, device_id: str) -> set[int]:
    flagged: set[int] = set()
    start = None
    while True:
        page = store.query_device(device_id, "0", "9", 1, 1000, start)
        flagged.update(int(i["epoch_ms"]) for i in page.items)
        start = page.last_key
        if start is None:
            return flagged


def offline(path: Path, record: dict[str, Any], rows: int = TRAIN_ROWS) -> tuple[np.ndarray, np.ndarray]:
    """(alarms on rows N+, labels on rows N+) of ``path`` with ``record``, on the replayed channel values."""
    from functions.detector.pca_tq import PcaCalibration, alarms

    cal = PcaCalibration.from_dict(record)
    values = np.array([[ch[c] for c in cal.channels] for _, ch in dc.csv_rows(path)], dtype=np.float64)
    return alarms(cal, values)[rows:], load_file(path).labels[rows:]


def offline_raw(paths: Sequence[Path], rows: int = TRAIN_ROWS) -> Confusion:
    """The model card's offline figure: calibrated on the raw SKAB columns (no replay mapping)."""
    from functions.detector.pca_tq import alarms

    cfg, conf = operating_point.config(), Confusion()
    for p in paths:
        d = load_file(p)
        cal = calibrate(d.channels, d.values, cfg, rows)
        cols = [d.channels.index(c) for c in cal.channels]
        conf.add(d.labels[rows:], alarms(cal, d.values[:, cols])[rows:])
    return conf


def replay_eval(
    stack: str,
    files: Sequence[Path],
    rows: int = TRAIN_ROWS,
    step_ms: int = 100,
    pack: int = 25,
    timeout_s: float = 600.0,
    run_id: str | None = None,
    say: Callable[[str], None] = _say,
) -> dict[str, Any]:
    from functions.adapters.anomalies import DynamoAnomalyStore
    from functions.adapters.devices import DynamoDeviceRegistry
    from iotpipe import aws
    from iotpipe.ops.stack import stack_outputs
    from iotpipe.settings import tool_settings
    from simulator.sinks import KinesisSink

    started = time.monotonic()
    outputs = stack_outputs(stack)
    ddb, s3, bucket = aws.client("dynamodb"), aws.client("s3"), outputs["ArchiveBucketName"]
    registry = DynamoDeviceRegistry(outputs["DevicesTableName"], ddb)
    anomalies = DynamoAnomalyStore(outputs["AnomaliesTableName"], ddb)
    run_id = run_id or uuid.uuid4().hex[:6]
    devices = {p: f"skab-{p.parent.name}-{p.stem}-{run_id}" for p in files}
    for device_id in devices.values():
        request = {"calibration_request": {"M": {"rows": {"N": str(rows)},
                                                  "from_device": {"S": f"{device_id}-cal"}}}}
        for d, extra in ((f"{device_id}-cal", {}), (device_id, request)):
            ddb.put_item(TableName=outputs["DevicesTableName"],
                         Item={"device_id": {"S": d}, "name": {"S": d}, "site": {"S": SITE}, **extra})
    target = tool_settings()
    sink = KinesisSink(outputs["StreamName"], endpoint_url=target.endpoint_url, region=target.region,
                       pack=pack)
    sink.setup()
    try:
        say(f"replay-eval {run_id}: {len(files)} files; calibration rows as <device>-cal ...")
        base = int(time.time() * 1000) - 30_000
        for p, device_id in devices.items():
            _send(sink, _items(p, f"{device_id}-cal", base, step_ms, rows))
        cal_lines, _ = _wait_archived(s3, bucket, {f"{d}-cal": rows for d in devices.values()}, timeout_s,
                                      "calibration rows", say)
        records = _calibrate(outputs, registry, devices, rows, cal_lines, timeout_s, say)
        say(f"calibrated {len(records)} devices from the archive; replaying the files ...")
        base = int(time.time() * 1000) - 30_000
        lengths = {}
        for p, device_id in devices.items():
            items = _items(p, device_id, base, step_ms, None)
            lengths[device_id] = len(items)
            _send(sink, items)
        _, quarantined = _wait_archived(s3, bucket, lengths, timeout_s, "replayed rows", say)
    finally:
        sink.close()

    pipeline, same_offline = Confusion(), Confusion()
    per_file = []
    for p, device_id in devices.items():
        flagged = _flagged(anomalies, device_id)
        n = lengths[device_id]
        epoch = base + np.arange(n, dtype=np.int64) * step_ms
        got = np.isin(epoch, np.fromiter(flagged, dtype=np.int64, count=len(flagged)))[rows:]
        want, labels = offline(p, records[p], rows)
        pipeline.add(labels, got)
        same_offline.add(labels, want)
        one = Confusion()
        one.add(labels, got)
        item = registry.get(device_id) or {}
        state = item.get("detector_state") or {}
        per_file.append({"file": f"{p.parent.name}/{p.name}", "device_id": device_id,
                         "rows_scored": len(labels), "mismatched_rows": int(np.sum(got != want)),
                         "pipeline_f1": one.metrics()["f1"],
                         # the processor's persisted ring: its ts is the newest reading it folded in
                         "last_epoch_ms": int(epoch[-1]), "detector_state_ts": state.get("ts")})
    p_sum, o_sum = summary(pipeline), summary(same_offline)
    raw = summary(offline_raw(list(files), rows))
    return {
        "replay_eval": run_id,
        "stack": stack,
        "files": [f"{p.parent.name}/{p.name}" for p in files],
        "operating_point": operating_point.load()["label"],
        "calibration_rows": rows,
        "step_ms": step_ms,
        "f1": p_sum["f1"], "far_pct": p_sum["far_pct"], "mar_pct": p_sum["mar_pct"],
        "confusion": {k: p_sum[k] for k in ("tp", "fp", "fn", "tn")},
        "offline": o_sum,
        "f1_difference": round(p_sum["f1"] - o_sum["f1"], 4),
        "offline_raw_skab": raw,
        "mismatched_rows": sum(f["mismatched_rows"] for f in per_file),
        "quarantined": sum(quarantined.values()),
        "per_file": per_file,
        "duration_s": round(time.monotonic() - started, 1),
    }
