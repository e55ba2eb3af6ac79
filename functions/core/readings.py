"""The in-memory shapes that flow between the processor's stages and the detector."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

CORE_CHANNELS: tuple[str, ...] = ("temperature", "humidity", "pressure")


@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """Registry metadata used for enrichment (devices table item)."""

    device_id: str
    name: str = ""
    site: str = ""
    location: str = ""
    latitude: float | None = None
    longitude: float | None = None
    model: str = ""
    timezone: str = "UTC"
    # Per-channel baseline means the device was registered with (optional).
    baseline: dict[str, float] = field(default_factory=dict)
    # The device's own detector calibration (a ``pca-t2q-v1`` record, functions.detector.pca_tq), as
    # stored on its item; None: the fleet forest scores it. Kept as plain data: the core knows no model.
    calibration: dict[str, Any] | None = None
    # The per-device detector's carried alarm state ({"ring": bitmask, "ts": epoch ms, ...}) as last
    # persisted; the detector prefers its in-memory copy when that is newer.
    detector_state: dict[str, Any] | None = None
    # Parts of the item the registry could not read or decode: "item" (the whole item: only the id is
    # known) or attribute names ("calibration", "detector_state", "baseline", ...). The device's readings
    # are still aggregated; the detector scores it with the fleet model and counts why.
    faults: tuple[str, ...] = ()


@dataclass(slots=True)
class Reading:
    """A validated, enriched reading: what the window fold and the detector consume."""

    device_id: str
    epoch_ms: int
    channels: dict[str, float]  # temperature, humidity, pressure + optional extra channels
    shard_id: str
    sequence_number: str
    device: DeviceInfo | None = None
    ground_truth: str | None = None  # carried to the archive, never used to decide
    # Position in a packed Kinesis record (a JSON array of readings); None for a record holding one
    # reading. (sequence_number, index) orders the readings of a shard.
    index: int | None = None

    @property
    def window_start(self) -> int:
        """Epoch seconds of the 1-minute window this reading belongs to."""
        return (self.epoch_ms // 60_000) * 60
