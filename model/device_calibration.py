"""Calibrate one device with the shipped operating point and store it on the device's item.

The same steps whatever the source of the device's first readings, so a calibration made from a CSV
(``--csv``) and one made from what the pipeline archived (``--from-archive``) of the same rows are the
same numbers:

1. the device's first ``rows`` readings, time-ordered, each as the processor sees its channels (core
   fields plus ``extra`` channels, flattened: ``Reading.channels``);
2. the operating point's channels under their pipeline names (SKAB's ``Current`` is ``current``, an
   extra channel, under ``simulator.replay.SKAB_MAPPING``; a ``--mapping`` renames them);
3. ``model.pca_tq.calibrate_columns`` with ``model.operating_point``'s configuration;
4. ``DeviceStore.save_calibration``: the record on the device item (clears any carried alarm state).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from functions.core.ports import CalibrationWriter
from functions.detector.pca_tq import PcaCalibration
from functions.processor.archive_keys import PROCESSED_PREFIX
from model import operating_point
from model.pca_tq import calibrate_columns
from simulator.replay import SKAB_MAPPING, ChannelMap, replay_readings

MIN_ROWS_PER_CHANNEL = 10  # a PCA fit on fewer rows than ~10x its channels is noise (design study, risk 6)


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


def archive_rows(s3: Any, bucket: str, device_id: str) -> list[tuple[int, dict[str, float]]]:
    """(epoch ms, channels) of the device's aggregated readings in the archive's processed lines."""
    return archive_rows_of(s3, bucket, {device_id})[device_id]


def archive_rows_of(s3: Any, bucket: str, ids: set[str]) -> dict[str, list[tuple[int, dict[str, float]]]]:
    """``archive_rows`` for several devices in one pass.

    Reads every processed object (the archive is partitioned by arrival, not by device): fine for the
    emulator and for small stacks; on a large archive use ``--csv`` or an Athena export instead.
    """
    seen: dict[str, dict[int, dict[str, float]]] = {d: {} for d in ids}
    needles = [b'"' + d.encode() + b'"' for d in ids]
    for line in _processed_lines(s3, bucket):
        if not any(n in line for n in needles):
            continue
        doc = orjson.loads(line)
        device_id = doc.get("device_id")
        if device_id in seen and doc.get("status") == "aggregated":
            channels = {k: float(v) for k, v in doc["channels"].items()}
            seen[device_id].setdefault(int(doc["epoch_ms"]), channels)
    return {d: sorted(rows.items()) for d, rows in seen.items()}


def pending(items: Iterable[Mapping[str, Any]]) -> dict[str, int]:
    """Devices whose registration asks for calibration and that have none yet: id -> rows requested."""
    out: dict[str, int] = {}
    for item in items:
        request = item.get("calibration_request")
        if isinstance(request, Mapping) and not item.get("calibration"):
            out[str(item["device_id"])] = int(request.get("rows", 400))
    return out


def calibrate_pending(
    items: Iterable[Mapping[str, Any]],
    s3: Any,
    bucket: str,
    store: CalibrationWriter,
    mapping: Mapping[str, ChannelMap] = SKAB_MAPPING,
    artifact: dict[str, Any] | None = None,
) -> dict[str, dict[str, Any]]:
    """Calibrate every pending device whose first N readings are archived; the others wait.

    Returns device id -> {"status": "calibrated" | "waiting", "archived": readings found, "rows": N}.
    """
    wanted = pending(items)
    if not wanted:
        return {}
    rows_by_device = archive_rows_of(s3, bucket, set(wanted))
    op = artifact if artifact is not None else operating_point.load()
    names = pipeline_names(op["channels"], mapping)
    out: dict[str, dict[str, Any]] = {}
    for device_id, n in sorted(wanted.items()):
        rows = rows_by_device[device_id]
        usable = sum(1 for _, ch in rows if all(c in ch for c in names))
        status = "waiting"
        if usable >= n:
            calibrate_device(device_id, rows, store, n, "archive", mapping, op)
            status = "calibrated"
        out[device_id] = {"status": status, "archived": usable, "rows": n}
    return out


def _processed_lines(s3: Any, bucket: str, prefix: str = PROCESSED_PREFIX) -> Iterator[bytes]:
    paginator = s3.get_paginator("list_objects_v2")
    for page in paginator.paginate(Bucket=bucket, Prefix=f"{prefix}/"):
        for obj in page.get("Contents", []):
            body = s3.get_object(Bucket=bucket, Key=obj["Key"])["Body"].read()
            yield from gzip.decompress(body).splitlines()


def fit(
    rows: Iterable[tuple[int, Mapping[str, float]]],
    names: Sequence[str],
    n: int,
    artifact: dict[str, Any] | None = None,
) -> PcaCalibration:
    """The calibration from the first ``n`` time-ordered rows that carry every channel in ``names``."""
    usable = [r for _, r in sorted(rows, key=lambda t: t[0]) if all(c in r for c in names)][:n]
    if len(usable) < max(n, MIN_ROWS_PER_CHANNEL * len(names)):
        raise ValueError(f"{len(usable)} readings with channels {list(names)}; calibration needs {n}")
    values = np.array([[r[c] for c in names] for r in usable], dtype=np.float64)
    return calibrate_columns(names, values, operating_point.config(artifact), rows=n)


def record(cal: PcaCalibration, source: str, artifact: dict[str, Any] | None = None) -> dict[str, Any]:
    """What goes on the device item: the calibration plus where it came from."""
    op = artifact if artifact is not None else operating_point.load()
    return {
        **cal.to_dict(),
        "operating_point": op["label"],
        "source": source,
        "calibrated_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
    }


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
    op = artifact if artifact is not None else operating_point.load()
    cal = fit(rows, pipeline_names(op["channels"], mapping), n, op)
    stored = record(cal, source, op)
    store.save_calibration(device_id, stored)
    return stored
