"""Physical signals for the whole fleet, one numpy evaluation per tick.

What is modelled (and why it is enough for an anomaly detector to have something to learn):
- temperature: per-device baseline plus a diurnal cosine peaking at 15:00 *local* time (device timezone);
- humidity: anti-correlated with temperature (relative humidity falls as air warms), clipped to 0..100;
- pressure: baseline plus a slow mean-reverting random walk (weather, hours to days) and the 12-hour
  atmospheric tide;
- measurement noise per sensor model; optional extra channels (co2 with an occupancy cycle, light).
Values are rounded to what real sensors report: 2 decimals °C, 1 decimal %RH, 2 decimals hPa.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import numpy as np

from simulator.fleet import Device

CORE_CHANNELS: tuple[str, ...] = ("temperature", "humidity", "pressure")
EXTRA_CHANNELS: tuple[str, ...] = ("co2", "light")
DECIMALS: dict[str, int] = {"temperature": 2, "humidity": 1, "pressure": 2, "co2": 1, "light": 1}

HUMIDITY_PER_DEGREE = 2.5  # %RH lost per °C of warming around the baseline
PRESSURE_WALK_SD_PER_SQRT_S = 0.5 / 60.0  # 0.5 hPa per sqrt(hour)
PRESSURE_REVERSION_S = 2 * 86400.0  # weather systems pass in days
PRESSURE_TIDE_HPA = 0.6
_HOUR_MS = 3_600_000


class SignalModel:
    """Stateful generator of clean-plus-noise channel values for ``fleet``."""

    def __init__(self, fleet: Sequence[Device], rng: np.random.Generator, extra: Sequence[str] = ()) -> None:
        unknown = set(extra) - set(EXTRA_CHANNELS)
        if unknown:
            raise ValueError(f"unknown extra channels {sorted(unknown)}; supported {list(EXTRA_CHANNELS)}")
        self.n = len(fleet)
        self.extra = tuple(extra)
        self.rng = rng
        self.base = {c: np.array([d.baseline[c] for d in fleet], dtype=np.float64) for c in CORE_CHANNELS}
        self.amplitude = np.array([d.diurnal_amplitude for d in fleet], dtype=np.float64)
        sensors = [d.sensor for d in fleet]
        self.noise_sd = {
            "temperature": np.array([s.temperature_noise for s in sensors]),
            "humidity": np.array([s.humidity_noise for s in sensors]),
            "pressure": np.array([s.pressure_noise for s in sensors]),
            "co2": np.array([s.co2_noise for s in sensors]),
            "light": np.full(self.n, 5.0),
        }
        self.co2_base = rng.uniform(420.0, 650.0, self.n)
        # Start inside the walk's stationary spread (sd = sigma * sqrt(tau / 2), about 2.5 hPa).
        stationary_sd = PRESSURE_WALK_SD_PER_SQRT_S * np.sqrt(PRESSURE_REVERSION_S / 2.0)
        self.pressure_walk = rng.normal(0.0, stationary_sd, self.n)
        # Timezone offsets are evaluated per distinct zone once per simulated hour (DST-correct, cheap).
        zones = [d.timezone for d in fleet]
        self._zone_names = sorted(set(zones))
        lookup = {z: i for i, z in enumerate(self._zone_names)}
        self._zone_index = np.array([lookup[z] for z in zones], dtype=np.int64)
        self._offset_hour: int | None = None
        self._offsets_s = np.zeros(self.n)

    def utc_offsets_s(self, t_ms: int) -> np.ndarray:
        hour = t_ms // _HOUR_MS
        if hour != self._offset_hour:
            when = datetime.fromtimestamp(hour * 3600, tz=UTC)
            per_zone = np.array([_utc_offset_s(z, when) for z in self._zone_names])
            self._offsets_s = per_zone[self._zone_index]
            self._offset_hour = hour
        return self._offsets_s

    def local_hour(self, t_ms: np.ndarray) -> np.ndarray:
        offsets = self.utc_offsets_s(int(t_ms[0]) if len(t_ms) else 0)
        return ((t_ms / 1000.0 + offsets) / 3600.0) % 24.0

    def sample(self, t_ms: np.ndarray, dt_s: float) -> dict[str, np.ndarray]:
        """Channel values (with noise, unrounded) for every device at its own time ``t_ms[i]``."""
        n, rng = self.n, self.rng
        hours = self.local_hour(t_ms)
        diurnal = np.cos(2.0 * np.pi * (hours - 15.0) / 24.0)
        warming = self.amplitude * diurnal
        # Mean-reverting walk: variance stays bounded however long the run.
        decay = np.exp(-dt_s / PRESSURE_REVERSION_S)
        step_sd = PRESSURE_WALK_SD_PER_SQRT_S * np.sqrt(dt_s)
        self.pressure_walk = self.pressure_walk * decay + rng.normal(0.0, step_sd, n)
        tide = PRESSURE_TIDE_HPA * np.cos(4.0 * np.pi * (hours - 10.0) / 24.0)
        noise = rng.standard_normal((3, n))
        values = {
            "temperature": self.base["temperature"] + warming + noise[0] * self.noise_sd["temperature"],
            "humidity": np.clip(
                self.base["humidity"] - HUMIDITY_PER_DEGREE * warming + noise[1] * self.noise_sd["humidity"],
                0.0,
                100.0,
            ),
            "pressure": self.base["pressure"]
            + self.pressure_walk
            + tide
            + noise[2] * self.noise_sd["pressure"],
        }
        if "co2" in self.extra:
            # Occupied hours (08-18 local) raise CO2 indoors.
            occupancy = np.clip(np.sin(np.pi * (hours - 8.0) / 10.0), 0.0, None)
            values["co2"] = self.co2_base + 350.0 * occupancy + rng.standard_normal(n) * self.noise_sd["co2"]
        if "light" in self.extra:
            daylight = np.clip(np.cos(2.0 * np.pi * (hours - 13.0) / 24.0), 0.0, None)
            values["light"] = np.clip(
                800.0 * daylight + rng.standard_normal(n) * self.noise_sd["light"], 0, None
            )
        return values


def round_channel(name: str, values: np.ndarray) -> list[float]:
    """Round to the sensor's precision and hand back Python floats (fast path for serialisation)."""
    rounded: list[float] = np.round(values, DECIMALS.get(name, 2)).tolist()
    return rounded


def _utc_offset_s(zone: str, when: datetime) -> float:
    try:
        offset = when.astimezone(ZoneInfo(zone)).utcoffset()
    except (ZoneInfoNotFoundError, ValueError):
        return 0.0  # no tz database: fall back to UTC rather than refuse to simulate
    return offset.total_seconds() if offset else 0.0
