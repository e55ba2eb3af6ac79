"""Calibrate one device with the shipped operating point and store it on the device's item.

The same steps whatever the source of the device's first readings, so a calibration made from a CSV
(``--csv``) and one made from what the pipeline archived (``--from-archive``) of the same rows are the
same numbers:

1. the device's first ``rows`` readings, time-ordered, each as the processor sees its channels (core
   fields plus ``extra`` channels, flattened: ``Reading.channels``);
2. the operating point's channels under their pipeline names (SKAB's ``Current`` is ``current``, an
   extra channel, under ``simulator.replay.SKAB_MAPPING``; a ``--mapping`` renames them);
3. ``functions.detector.pca_fit.calibrate_columns`` with ``model.operating_point``'s configuration;
4. ``DeviceStore.save_calibration``: the record on the device item (clears any carried alarm state).

Reading the archive, fitting and storing are ``functions.calibrator.calibration``'s functions: the code
the in-stack calibrator Lambda runs, so ``--from-archive`` and the calibrator give the same record for
the same rows (a unit test compares them). What stays here is what the Lambda does not ship: CSV input
and the simulator's channel mappings (``--mapping``).
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import orjson

from functions.calibrator import calibration as calib
from functions.core.ports import ArchiveReader, CalibrationWriter
from functions.detector.pca_fit import OperatingPoint
from functions.detector.pca_tq import PcaCalibration
from model import operating_point
from simulator.replay import SKAB_MAPPING, ChannelMap, replay_readings

MIN_ROWS_PER_CHANNEL = calib.MIN_ROWS_PER_CHANNEL


def pipeline_names(
    skab_channels: Sequence[str], mapping: Mapping[str, ChannelMap] = SKAB_MAPPING
) -> tuple[str, ...]:
    """The names the processor gives the operating point's source columns (``extra.x`` -> ``x``)."""
    missing = [c for c in skab_channels if c not in mapping]
    if missing:
        raise ValueError(f"the mapping does not map the calibrated columns {missing}")
    return tuple(mapping[c].channel.removeprefix("extra.") for c in skab_channels)


def reading_channels(doc: Mapping[str, Any]) -> dict[str, float]:
    """A reading document's channels as ``Reading.channels`` holds them (core fields + extra)."""
    channels = {k: float(doc[k]) for k in ("temperature", "humidity", "pressure") if k in doc}
    channels.update({str(k): float(v) for k, v in (doc.get("extra") or {}).items()})
    return channels


def csv_rows(
    path: Path, mapping: Mapping[str, ChannelMap] = SKAB_MAPPING
) -> list[tuple[int, dict[str, float]]]:
    """(epoch ms, channels) of every row of a recording, as ``simulator replay`` would send it."""
    return [
        (p.event_ms, reading_channels(orjson.loads(p.payload)))
        for p in replay_readings(str(path), device_id="calibration", mapping=mapping)
    ]


def archive_rows(archive: ArchiveReader, device_id: str) -> list[tuple[int, dict[str, float]]]:
    """(epoch ms, channels) of the device's aggregated readings in the archive's processed lines."""
    return archive_rows_of(archive, {device_id})[device_id]


def archive_rows_of(archive: ArchiveReader, ids: set[str]) -> dict[str, list[tuple[int, dict[str, float]]]]:
    """``archive_rows`` for several devices in one pass (``functions.calibrator.calibration.archive_rows``
    over the whole processed/ prefix: the archive is partitioned by arrival, not by device)."""
    return calib.archive_rows(archive, {d: calib.Request(0, None) for d in ids})


def _op(artifact: dict[str, Any] | None) -> OperatingPoint:
    return OperatingPoint.from_artifact(artifact if artifact is not None else operating_point.load())


def pending(items: Iterable[Mapping[str, Any]]) -> dict[str, int | None]:
    """Devices whose registration asks for calibration and that have none yet: id -> rows requested
    (None: a request the calibrator will refuse, saying why)."""
    ok, refused = calib.pending_and_refused(items, len(_op(None).channels))
    return {**{d: r.rows for d, r in ok.items()}, **dict.fromkeys(refused)}


def calibrate_pending(
    items: Iterable[Mapping[str, Any]],
    archive: ArchiveReader,
    store: CalibrationWriter,
    mapping: Mapping[str, ChannelMap] = SKAB_MAPPING,
    artifact: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Calibrate every pending device whose first N readings are archived; the others wait (the
    calibrator Lambda's ``calibrate_pending``, run here with a ``mapping`` of the caller's choice).

    Returns device id -> {"status": "calibrated" | "waiting", "archived": readings found, "rows": N}.
    """
    op = _op(artifact)
    return calib.calibrate_items(items, store, archive, op, int(time.time() * 1000),
                                 pipeline_names(op.channels, mapping))


class CalibratorError(RuntimeError):
    """The deployed calibrator failed or refused the request."""


def invoke_calibrator(lambda_client: Any, function: str, device_ids: Sequence[str] | None) -> dict[str, Any]:
    """Run the deployed calibrator (``functions.calibrator.handler``) on ``device_ids`` (None: every
    pending device, as its schedule does); its answer: ``{"devices": {id: result}, "calibrated": n, ...}``."""
    event: dict[str, Any] = {} if device_ids is None else {"device_ids": list(device_ids)}
    response = lambda_client.invoke(FunctionName=function, Payload=orjson.dumps(event))
    body = orjson.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = body.get("errorMessage", body) if isinstance(body, dict) else body
        raise CalibratorError(f"the calibrator failed: {message}")
    if not isinstance(body, dict) or "error" in body:
        raise CalibratorError(str(body.get("error") if isinstance(body, dict) else body))
    return body


def fit(
    rows: Iterable[tuple[int, Mapping[str, float]]],
    names: Sequence[str],
    n: int,
    artifact: dict[str, Any] | None = None,
) -> PcaCalibration:
    """The calibration from the first ``n`` time-ordered rows that carry every channel in ``names``."""
    return calib.fit(((t, dict(r)) for t, r in rows), names, n, _op(artifact))


def record(cal: PcaCalibration, source: str, artifact: dict[str, Any] | None = None) -> dict[str, Any]:
    """What goes on the device item: the calibration plus where it came from."""
    return calib.record(cal, source, _op(artifact), int(time.time() * 1000))


def calibrate_device(
    device_id: str,
    rows: Iterable[tuple[int, Mapping[str, float]]],
    store: CalibrationWriter,
    n: int,
    source: str,
    mapping: Mapping[str, ChannelMap] = SKAB_MAPPING,
    artifact: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Fit and store; returns the stored record."""
    op = _op(artifact)
    return calib.calibrate_device(device_id, ((t, dict(r)) for t, r in rows), store, n, source, op,
                                  int(time.time() * 1000), pipeline_names(op.channels, mapping))
