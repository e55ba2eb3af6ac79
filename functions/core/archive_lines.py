"""The archive's line types (pure): what the processor writes into an archive object and every reader decodes.

The layout (prefixes, keys, partitions, the reading path ``iter_lines``/``iter_objects``) is
``functions.core.archive_layout``. The processor writes lines with ``encode`` and every reader (rebuild,
the calibrator, replay-eval, the model tools, the e2e bench) reads them with ``decode``: one writer, one
parser. The bytes are those the processor has always written (sorted keys, the same fields), so objects
archived before this module existed decode unchanged (a unit test keeps old lines). The JSON Schemas
``processed.schema.json`` and ``quarantined.schema.json`` describe the same lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import orjson

from functions.core.readings import DeviceInfo, Reading
from functions.core.timestamps import format_ms, parse_ms

AGGREGATED = "aggregated"
DUPLICATE = "duplicate"


class ArchiveLineError(ValueError):
    """An archive line that is not a line of its type (not JSON, a field missing or of the wrong type)."""


# ------------------------------------------------------------------------------------------ lines
def _load(line: bytes, kind: str) -> dict[str, Any]:
    try:
        doc = orjson.loads(line)
    except orjson.JSONDecodeError as exc:
        raise ArchiveLineError(f"{kind} line is not JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ArchiveLineError(f"{kind} line is not a JSON object: {line[:80]!r}")
    return doc


# Not frozen: a frozen dataclass's __init__ goes through object.__setattr__ per field, and the processor
# builds one of these per reading on its hot path (slots alone keep it close to building the dict).
@dataclass(slots=True)
class ProcessedLine:
    """One reading the processor finished (processed.schema.json): aggregated, or a duplicate.

    ``anomaly``/``anomaly_score``/``severity`` are present together when detection ran on the reading
    (absent: detector disabled, a duplicate, a reading an earlier delivery applied). ``index`` names an
    element of a packed record. ``timestamp`` is not stored here: it is ``epoch_ms`` formatted.
    """

    device_id: str
    epoch_ms: int
    channels: Mapping[str, float]
    site: str
    location: str
    shard_id: str
    sequence_number: str
    status: str  # AGGREGATED | DUPLICATE
    anomaly: bool | None = None
    anomaly_score: float | None = None
    severity: str | None = None
    ground_truth: str | None = None
    index: int | None = None

    @classmethod
    def of(cls, reading: Reading, status: str, anomaly: bool | None = None,
           anomaly_score: float | None = None, severity: str | None = None) -> ProcessedLine:
        device = reading.device
        return cls(reading.device_id, reading.epoch_ms, reading.channels, device.site if device else "",
                   device.location if device else "", reading.shard_id, reading.sequence_number, status,
                   anomaly, anomaly_score, severity, reading.ground_truth, reading.index)

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "device_id": self.device_id,
            "timestamp": format_ms(self.epoch_ms),
            "epoch_ms": self.epoch_ms,
            "channels": self.channels,
            "site": self.site,
            "location": self.location,
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "status": self.status,
        }
        if self.anomaly is not None:
            doc["anomaly"] = self.anomaly
            doc["anomaly_score"] = float(self.anomaly_score or 0.0)
            doc["severity"] = self.severity
        if self.ground_truth is not None:
            doc["ground_truth"] = self.ground_truth
        if self.index is not None:
            doc["index"] = self.index
        # Sorted keys: the same reading gives the same bytes (deterministic objects, same ETag on retry).
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def decode(cls, line: bytes) -> ProcessedLine:
        doc = _load(line, "processed")
        try:
            anomaly = doc.get("anomaly")
            score = doc.get("anomaly_score")
            index = doc.get("index")
            return cls(
                device_id=str(doc["device_id"]),
                epoch_ms=int(doc["epoch_ms"]),
                channels={str(k): float(v) for k, v in doc["channels"].items()},
                site=str(doc.get("site") or ""),
                location=str(doc.get("location") or ""),
                shard_id=str(doc["shard_id"]),
                sequence_number=str(doc["sequence_number"]),
                status=str(doc["status"]),
                anomaly=None if anomaly is None else bool(anomaly),
                anomaly_score=None if score is None else float(score),
                severity=None if doc.get("severity") is None else str(doc["severity"]),
                ground_truth=None if doc.get("ground_truth") is None else str(doc["ground_truth"]),
                index=None if index is None else int(index),
            )
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise ArchiveLineError(f"processed line without a usable {exc}: {line[:120]!r}") from None

    def to_reading(self, device: DeviceInfo | None = None) -> Reading:
        """The Reading the processor archived (``device``: the registry's; else the line's site/location)."""
        return Reading(
            device_id=self.device_id,
            epoch_ms=self.epoch_ms,
            channels=dict(self.channels),
            shard_id=self.shard_id,
            sequence_number=self.sequence_number,
            device=device or DeviceInfo(device_id=self.device_id, site=self.site, location=self.location),
            ground_truth=self.ground_truth,
            index=self.index,
        )


@dataclass(slots=True)
class QuarantinedLine:
    """One quarantined item (quarantined.schema.json): the raw bytes, why and where it was rejected.

    ``raw_b64`` is the record's data as received, or for one element of a packed record (``index``) the
    element re-serialised; ``device_id`` when the item decoded far enough to name its device.
    """

    reason: str
    stage: str
    detail: str
    shard_id: str
    sequence_number: str
    approximate_arrival_ms: int
    raw_b64: str
    device_id: str | None = None
    index: int | None = None

    def encode(self) -> bytes:
        doc: dict[str, Any] = {
            "reason": self.reason,
            "stage": self.stage,
            "detail": self.detail,
            "shard_id": self.shard_id,
            "sequence_number": self.sequence_number,
            "approximate_arrival": format_ms(self.approximate_arrival_ms),
            "raw_b64": self.raw_b64,
        }
        if self.device_id is not None:
            doc["device_id"] = self.device_id
        if self.index is not None:
            doc["index"] = self.index
        return orjson.dumps(doc, option=orjson.OPT_SORT_KEYS)

    @classmethod
    def decode(cls, line: bytes) -> QuarantinedLine:
        doc = _load(line, "quarantined")
        try:
            index = doc.get("index")
            return cls(
                reason=str(doc["reason"]),
                stage=str(doc["stage"]),
                detail=str(doc["detail"]),
                shard_id=str(doc["shard_id"]),
                sequence_number=str(doc["sequence_number"]),
                approximate_arrival_ms=parse_ms(doc["approximate_arrival"]),
                raw_b64=str(doc["raw_b64"]),
                device_id=None if doc.get("device_id") is None else str(doc["device_id"]),
                index=None if index is None else int(index),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveLineError(f"quarantined line without a usable {exc}: {line[:120]!r}") from None


def decode_line(line: bytes) -> ProcessedLine | QuarantinedLine:
    """Either kind of line, told apart as the schemas do: a processed line has ``status``, a quarantined
    one ``reason`` and no ``status``."""
    if b'"status"' in line:
        return ProcessedLine.decode(line)
    return QuarantinedLine.decode(line)
