"""The decode stage's rules: physical plausibility bounds and the limits it enforces (from the settings)."""

from __future__ import annotations

from dataclasses import dataclass

from functions.processor.representable import LARGEST_MAGNITUDE, SMALLEST_MAGNITUDE
from functions.settings import ProcessorSettings, default

# Physical plausibility bounds (inclusive). Values outside cannot come from a working sensor, so they are
# quarantined as ``out_of_range`` instead of polluting window statistics. Plausible-but-unusual values
# (a simulated "out_of_range" anomaly, a heat wave) stay inside these bounds and reach the detector.
# - temperature: air temperatures recorded on Earth span -89.2..+56.7 degC; sensors in sun-heated
#   enclosures read higher, so -90..+100 degC.
# - humidity: relative humidity is 0..100 %RH by definition.
# - pressure: 300..1100 hPa is the range of common barometric sensors (BME280/BMP388), roughly
#   +9000 m to -500 m altitude.
# - extra channels: unknown physics; only |value| <= 1e9 so sums of squares stay finite.
PHYSICAL_BOUNDS: dict[str, tuple[float, float]] = {
    "temperature": (-90.0, 100.0),
    "humidity": (0.0, 100.0),
    "pressure": (300.0, 1100.0),
}
EXTRA_ABS_MAX = 1e9
# Physical bounds are the first filter; representable.py's magnitudes are the storage one, and every value
# inside the physical bounds must be within them on the large side (only tiny magnitudes can then fail).
assert max(EXTRA_ABS_MAX, *(abs(b) for pair in PHYSICAL_BOUNDS.values() for b in pair)) <= LARGEST_MAGNITUDE


@dataclass(frozen=True, slots=True)
class DecodeRules:
    """The settings the decode stage needs, precomputed in the units it uses (defaults: the settings')."""

    max_record_bytes: int = default("max_record_bytes")  # a record holding one reading (JSON object)
    allowed_lateness_ms: int = default("allowed_lateness_s") * 1000
    max_future_skew_ms: int = default("max_future_skew_s") * 1000
    max_packed_bytes: int = default("max_packed_bytes")  # a packed record (JSON array of readings)
    max_packed_readings: int = default("max_packed_readings")

    @classmethod
    def from_settings(cls, settings: ProcessorSettings) -> DecodeRules:
        return cls(
            max_record_bytes=settings.max_record_bytes,
            allowed_lateness_ms=settings.allowed_lateness_s * 1000,
            max_future_skew_ms=settings.max_future_skew_s * 1000,
            max_packed_bytes=settings.max_packed_bytes,
            max_packed_readings=settings.max_packed_readings,
        )


TEMP_LO, TEMP_HI = PHYSICAL_BOUNDS["temperature"]
HUM_LO, HUM_HI = PHYSICAL_BOUNDS["humidity"]
PRES_LO, PRES_HI = PHYSICAL_BOUNDS["pressure"]
TINY = SMALLEST_MAGNITUDE
# What the fast path's tiny-magnitude check relies on:
assert PRES_LO >= TINY
assert HUM_LO >= 0.0
