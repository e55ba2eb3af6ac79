"""Calibrate every device that asked for it, from its first N archived readings (issue 13).

The one calibration path: the scheduled calibrator Lambda (``functions.calibrator.handler``), its
on-demand invocation and ``iotpipe model calibrate --pending`` / ``--from-archive`` all run these
functions, so the same rows give the same record.

A device is *pending* when its item has ``calibration_request`` (``{rows: N}``, optionally
``requested_at`` and ``from_device``) and no ``calibration``. For each pending device:

1. its aggregated readings (or those of ``from_device``: a replacement calibrated on its predecessor's
   readings, ``iotpipe model replay-eval``'s ``<id>-cal`` rows) in the archive's processed lines
   (``functions.core.archive_lines.ProcessedLine``, read through the archive's ``iter_objects``), read
   only from the partitions at or after its request (``requested_at``, else
   ``registered_at``; the archive is partitioned by arrival, and nothing of the device arrives before it
   is registered), one reading per event time, time-ordered;
2. the first N that carry every channel of the operating point, under their pipeline names
   (``PIPELINE_NAMES``);
3. when at least N exist: ``functions.detector.pca_fit.calibrate_columns`` with the shipped operating
   point, the record checked (``functions.detector.calibration_check``, the check the processor applies
   when it reads it), and ``DeviceStore.save_calibration`` (which removes the request and any carried
   alarm state); otherwise the device waits for the next run.

Each device is on its own: a request that is not valid (``rows`` not an integer in
[``MIN_ROWS_PER_CHANNEL`` x channels, ``MAX_ROWS``], ``from_device`` not a name) or rows that cannot give a
usable calibration (constant rows: a stuck sensor during its first minutes; a fit the check refuses) is
*refused*: ``DeviceStore.refuse_calibration`` removes the request and records ``calibration_refused``
(``reason``, ``at``, the request) on the item, and the device stays on the fleet model until someone
asks again. Any other error for one device (its write failing, say) is reported as *failed* for that
device and its request kept for the next run; the other devices are calibrated all the same.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import numpy as np

from functions.core.archive_layout import PROCESSED_PREFIX, floor_of, partition_of
from functions.core.archive_lines import AGGREGATED, ProcessedLine
from functions.core.ports import ArchiveReader, CalibrationWriter, DeviceReader, Key
from functions.core.timestamps import format_ms, parse_ms
from functions.detector.calibration_check import CalibrationInvalid, check, degenerate_rows, integer_in
from functions.detector.pca_fit import OperatingPoint, calibrate_columns
from functions.detector.pca_tq import PcaCalibration

logger = logging.getLogger(__name__)

DEFAULT_ROWS = 400
MIN_ROWS_PER_CHANNEL = 10  # a PCA fit on fewer rows than ~10x its channels is noise (design study, risk 6)
MAX_ROWS = 100_000  # a day at 1 Hz is 86,400; more is a typo, and the fit holds every row in memory
SCAN_PAGE = 200

# The operating point's source columns (SKAB names) under the names the processor gives them with the
# default replay mapping (simulator.replay.SKAB_MAPPING: ``extra.x`` -> ``x``; a unit test checks).
PIPELINE_NAMES: dict[str, str] = {
    "Temperature": "temperature",
    "Pressure": "pressure",
    "Volume Flow RateRMS": "humidity",
    "Accelerometer1RMS": "accel1_rms",
    "Accelerometer2RMS": "accel2_rms",
    "Current": "current",
    "Voltage": "voltage",
    "Thermocouple": "thermocouple",
}

Row = tuple[int, dict[str, float]]


class CalibrationDevices(DeviceReader, CalibrationWriter, Protocol):
    """What the calibrator needs of the devices table (``functions.core.ports.DeviceStore`` has it)."""


@dataclass(frozen=True)
class Request:
    rows: int
    since_ms: int | None  # read partitions from this time on; None = the whole processed/ prefix
    from_device: str | None = None  # whose readings to fit (None: the device's own)


def pipeline_names(op: OperatingPoint, names: Mapping[str, str] = PIPELINE_NAMES) -> tuple[str, ...]:
    missing = [c for c in op.channels if c not in names]
    if missing:
        raise ValueError(f"no pipeline name for the calibrated columns {missing}")
    return tuple(names[c] for c in op.channels)


def _since(item: Mapping[str, Any], request: Mapping[str, Any]) -> int | None:
    for value in (request.get("requested_at"), item.get("registered_at")):
        if value is None:
            continue
        try:
            return parse_ms(value if isinstance(value, str) else int(value))
        except (TypeError, ValueError):
            continue
    return None


def check_rows(rows: Any, channels: int) -> int:
    """The number of calibration rows asked for, if usable; else CalibrationInvalid saying why."""
    # MIN_ROWS_PER_CHANNEL rows per calibrated channel at least; the bounds are in the message.
    return integer_in(rows, "rows", MIN_ROWS_PER_CHANNEL * max(channels, 1), MAX_ROWS)


def parse_request(item: Mapping[str, Any], request: Mapping[str, Any], channels: int) -> Request:
    """The device's request, checked; CalibrationInvalid saying why it cannot be served."""
    rows = check_rows(request.get("rows", DEFAULT_ROWS), channels)
    source = request.get("from_device")
    if source is not None and not (isinstance(source, str) and source):
        raise CalibrationInvalid(f"from_device {source!r} is not a device id")
    return Request(rows, _since(item, request), source or None)


def pending_and_refused(
    items: Iterable[Mapping[str, Any]], channels: int
) -> tuple[dict[str, Request], dict[str, tuple[str, Mapping[str, Any]]]]:
    """Devices whose item asks for calibration and has none yet: (id -> valid request,
    id -> (why the request is refused, the request as stored))."""
    out: dict[str, Request] = {}
    refused: dict[str, tuple[str, Mapping[str, Any]]] = {}
    for item in items:
        request = item.get("calibration_request")
        if request is None or item.get("calibration"):
            continue
        device_id = str(item["device_id"])
        if not isinstance(request, Mapping):
            refused[device_id] = ("calibration_request is not a map", {"value": str(request)[:100]})
            continue
        try:
            out[device_id] = parse_request(item, request, channels)
        except CalibrationInvalid as exc:
            refused[device_id] = (exc.reason, request)
    return out, refused


def pending(items: Iterable[Mapping[str, Any]], channels: int = 1) -> dict[str, Request]:
    """Devices whose item asks for calibration, has none yet and whose request is valid: id -> request."""
    return pending_and_refused(items, channels)[0]


def device_items(devices: DeviceReader, device_ids: Sequence[str] | None = None) -> list[Mapping[str, Any]]:
    """The named devices' items (GetItem each), or every item (Scan, page by page)."""
    if device_ids is not None:
        return [item for d in device_ids if (item := devices.get(d)) is not None]
    out: list[Mapping[str, Any]] = []
    start: Key | None = None
    while True:
        page = devices.scan(SCAN_PAGE, start)
        out.extend(page.items)
        start = page.last_key
        if start is None:
            return out


def rows_from_lines(lines: Iterable[bytes], ids: set[str]) -> dict[str, list[Row]]:
    """(epoch ms, channels) of the devices' aggregated readings, one per event time, time-ordered."""
    seen: dict[str, dict[int, dict[str, float]]] = {d: {} for d in ids}
    # Most lines are other devices': a byte search skips them without decoding.
    needles = [b'"' + d.encode() + b'"' for d in ids]
    for line in lines:
        if not any(n in line for n in needles):
            continue
        doc = ProcessedLine.decode(line)
        if doc.device_id in seen and doc.status == AGGREGATED:
            seen[doc.device_id].setdefault(doc.epoch_ms, dict(doc.channels))
    return {d: sorted(rows.items()) for d, rows in seen.items()}


def archive_rows(archive: ArchiveReader, requests: Mapping[str, Request]) -> dict[str, list[Row]]:
    """The rows each requesting device is fitted on (``rows_from_lines`` of the device, or of its
    ``from_device``), from the partitions at or after its request; every object is read once (from the
    earliest request's partition on: the listing starts there)."""
    if not requests:
        return {}
    since = [r.since_ms for r in requests.values()]
    earliest = None if any(s is None for s in since) else min(s for s in since if s is not None)
    floors: dict[str, str] = {}
    for device_id, r in requests.items():
        source = r.from_device or device_id
        floors[source] = min(floors.get(source, floor_of(r.since_ms)), floor_of(r.since_ms))
    out: dict[str, list[Row]] = {d: [] for d in floors}
    for obj, lines in archive.iter_objects(PROCESSED_PREFIX, earliest):
        ids = {d for d, f in floors.items() if partition_of(obj.key) >= f}
        for d, rows in rows_from_lines(lines, ids).items():
            out[d].extend(rows)
    # One reading per event time across objects (a redelivered batch is archived twice), time-ordered.
    by_source = {d: sorted(dict(reversed(rows)).items()) for d, rows in out.items()}
    return {d: by_source[r.from_device or d] for d, r in requests.items()}


def usable_rows(rows: Iterable[Row], names: Sequence[str]) -> list[dict[str, float]]:
    return [r for _, r in sorted(rows, key=lambda t: t[0]) if all(c in r for c in names)]


def fit(rows: Iterable[Row], names: Sequence[str], n: int, op: OperatingPoint) -> PcaCalibration:
    """The calibration from the first ``n`` time-ordered rows that carry every channel in ``names``,
    checked as the processor will check it; CalibrationInvalid (a ValueError) when it cannot be usable."""
    n = check_rows(n, len(names))
    usable = usable_rows(rows, names)[:n]
    if len(usable) < n:
        raise ValueError(f"{len(usable)} readings with channels {list(names)}; calibration needs {n}")
    values = np.array([[r[c] for c in names] for r in usable], dtype=np.float64)
    why = degenerate_rows(values, names)
    if why:
        raise CalibrationInvalid(why)
    cal = calibrate_columns(names, values, op, rows=n)
    return check(cal.to_dict())


def record(cal: PcaCalibration, source: str, op: OperatingPoint, now_ms: int) -> dict[str, Any]:
    """What goes on the device item: the calibration plus where it came from."""
    return {
        **cal.to_dict(),
        "operating_point": op.label,
        "source": source,
        "calibrated_at": format_ms(now_ms)[:19] + "Z",
    }


def calibrate_device(
    device_id: str,
    rows: Iterable[Row],
    store: CalibrationWriter,
    n: int,
    source: str,
    op: OperatingPoint,
    now_ms: int,
    names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Fit, check and store; returns the stored record (CalibrationInvalid: nothing stored)."""
    cal = fit(rows, names if names is not None else pipeline_names(op), n, op)
    stored = record(cal, source, op, now_ms)
    check(stored)  # what is written is what the processor will accept
    store.save_calibration(device_id, stored)
    return stored


def calibrate_pending(
    devices: CalibrationDevices,
    archive: ArchiveReader,
    op: OperatingPoint,
    now_ms: int,
    device_ids: Sequence[str] | None = None,
    names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """``calibrate_items`` over every device item (Scan) or the named ones (GetItem each)."""
    return calibrate_items(device_items(devices, device_ids), devices, archive, op, now_ms, names)


def calibrate_items(
    items: Iterable[Mapping[str, Any]],
    store: CalibrationWriter,
    archive: ArchiveReader,
    op: OperatingPoint,
    now_ms: int,
    names: Sequence[str] | None = None,
) -> dict[str, dict[str, Any]]:
    """Calibrate every pending device among ``items`` whose first N readings are archived; the others
    wait; refuse (and record on the item) what cannot be served. One device's failure is its own.

    Returns device id -> {"status": "calibrated" | "waiting" | "refused" | "failed", "archived": usable
    readings found, "rows": N, "reason": why (refused and failed only)}.
    """
    channel_names = tuple(names) if names is not None else pipeline_names(op)
    requests, refused = pending_and_refused(items, len(channel_names))
    out: dict[str, dict[str, Any]] = {}
    for device_id, (reason, stored) in sorted(refused.items()):
        out[device_id] = _refuse(store, device_id, reason, stored, now_ms)
    if not requests:
        return out
    rows_by_device = archive_rows(archive, requests)
    for device_id, request in sorted(requests.items()):
        rows = rows_by_device[device_id]
        usable = len(usable_rows(rows, channel_names))
        result: dict[str, Any] = {"status": "waiting", "archived": usable, "rows": request.rows}
        if usable >= request.rows:
            source = f"archive:{request.from_device}" if request.from_device else "archive"
            try:
                calibrate_device(device_id, rows, store, request.rows, source, op, now_ms, channel_names)
                result["status"] = "calibrated"
            except CalibrationInvalid as exc:
                asked = {"rows": request.rows, **({"from_device": request.from_device}
                                                  if request.from_device else {})}
                result = {**_refuse(store, device_id, exc.reason, asked, now_ms), "archived": usable}
            except Exception as exc:  # this device's write or fit: the others go on, it retries next run
                logger.warning("calibration of %s failed: %r", device_id, exc)
                result.update(status="failed", reason=f"{type(exc).__name__}: {exc}"[:200])
        out[device_id] = result
    return out


def _refuse(
    store: CalibrationWriter, device_id: str, reason: str, request: Mapping[str, Any], now_ms: int
) -> dict[str, Any]:
    """Record the refusal on the item (which drops the request); the result line for the device."""
    rows = request.get("rows")
    result: dict[str, Any] = {"status": "refused", "reason": reason, "archived": 0,
                              "rows": rows if isinstance(rows, int) and not isinstance(rows, bool) else None}
    refusal = {"reason": reason, "at": format_ms(now_ms)[:19] + "Z",
               "request": {str(k): _plain(v) for k, v in request.items()}}
    try:
        store.refuse_calibration(device_id, refusal)
    except Exception as exc:  # reported; the request stays and the next run refuses it again
        logger.warning("refusal of %s not recorded: %r", device_id, exc)
        result["recorded"] = False
    return result


def _plain(value: Any) -> Any:
    """A request value as it can be stored back (strings and finite numbers; anything else as text)."""
    if isinstance(value, str | bool) or (isinstance(value, int | float) and np.isfinite(value)):
        return value
    return str(value)[:100]
