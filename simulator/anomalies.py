"""Anomaly injection with ground truth, vectorised over the fleet.

Each device runs a small state machine: idle, or inside an episode of one kind for a number of
consecutive readings. Start probabilities are chosen so that, in steady state, the fraction of good
readings inside an episode equals ``rate`` and each kind's share follows ``mix``
(see ``start_probabilities``).

Kinds (what the detector should find):
- ``spike``: one reading, one channel jumps by many sigmas (temperature ±8-15 °C, humidity ±20-35 %RH,
  pressure ±10-25 hPa);
- ``drift``: 20-60 readings, one channel walks away linearly (up to ±4-10 °C, ±15-30 %RH, ±8-20 hPa);
- ``stuck``: 10-40 readings repeat the exact values of the first one (frozen sensor, zero variance);
- ``dropout``: 1-5 readings where temperature or humidity reads exactly 0.0 (sensor element lost);
- ``noise_burst``: 10-30 readings with 8-15 times the model's noise on every channel;
- ``out_of_range``: 1-3 readings outside the normal operating range yet physically possible
  (temperature 50-60 °C or -40..-25 °C, pressure 1060-1080 or 930-950 hPa), so they pass validation.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from simulator.config import ANOMALY_KINDS

LABELS: tuple[str, ...] = ("normal", *ANOMALY_KINDS)
CODE: dict[str, int] = {label: i for i, label in enumerate(LABELS)}
CHANNELS: tuple[str, ...] = ("temperature", "humidity", "pressure")

EPISODE_LENGTH: dict[str, tuple[int, int]] = {
    "spike": (1, 1),
    "drift": (20, 60),
    "stuck": (10, 40),
    "dropout": (1, 5),
    "noise_burst": (10, 30),
    "out_of_range": (1, 3),
}
# (low, high) per channel: temperature, humidity, pressure.
_SPIKE = np.array([[8.0, 15.0], [20.0, 35.0], [10.0, 25.0]])
_DRIFT = np.array([[4.0, 10.0], [15.0, 30.0], [8.0, 20.0]])
_NOISE_MULTIPLIER = (8.0, 15.0)
_OUT_OF_RANGE = {  # channel -> ((low range), (high range))
    0: ((-40.0, -25.0), (50.0, 60.0)),
    2: ((930.0, 950.0), (1060.0, 1080.0)),
}


def start_probabilities(rate: float, mix: Mapping[str, float]) -> np.ndarray:
    """Per-reading probability that an idle device starts an episode of each kind.

    With p_k the start probability and L_k the mean length, an idle reading starts some episode with
    P = sum p_k; the anomalous fraction is A / (A + 1 - P) where A = sum p_k L_k. Choosing
    p_k = w_k A / L_k and solving for A gives A = r / (1 - r + r c) with c = sum w_k / L_k.
    """
    weights = np.array([max(float(mix.get(k, 0.0)), 0.0) for k in ANOMALY_KINDS])
    if rate <= 0 or weights.sum() == 0:
        return np.zeros(len(ANOMALY_KINDS))
    weights = weights / weights.sum()
    mean_len = np.array([sum(EPISODE_LENGTH[k]) / 2.0 for k in ANOMALY_KINDS])
    c = float((weights / mean_len).sum())
    a = rate / (1.0 - rate + rate * c)
    return weights * a / mean_len


class AnomalyInjector:
    def __init__(self, n: int, rng: np.random.Generator, rate: float, mix: Mapping[str, float]) -> None:
        self.n = n
        self.rng = rng
        self.kind = np.zeros(n, dtype=np.int8)
        self.remaining = np.zeros(n, dtype=np.int32)
        self.step = np.zeros(n, dtype=np.int32)
        self.length = np.ones(n, dtype=np.int32)
        self.channel = np.zeros(n, dtype=np.int8)
        self.target = np.zeros(n)  # signed magnitude, multiplier or target value depending on the kind
        self.frozen = np.zeros((3, n))
        self.set_rate(rate, mix)

    def set_rate(self, rate: float, mix: Mapping[str, float]) -> None:
        """Change rate and mix in place (live tuning); running episodes finish undisturbed."""
        self._cumulative = np.cumsum(start_probabilities(rate, mix))

    def apply(self, values: dict[str, np.ndarray], noise_sd: Mapping[str, np.ndarray]) -> np.ndarray:
        """Modify ``values`` in place; return each device's label code for this reading."""
        idle = self.remaining == 0
        if self._cumulative[-1] > 0:
            u = self.rng.random(self.n)
            starting = np.flatnonzero(idle & (u < self._cumulative[-1]))
            if starting.size:
                kinds = np.searchsorted(self._cumulative, u[starting], side="right") + 1
                self._start(starting, kinds.astype(np.int8), values)
        active = np.flatnonzero(self.remaining > 0)
        labels = np.zeros(self.n, dtype=np.int8)
        if active.size == 0:
            return labels
        labels[active] = self.kind[active]
        self._effect(active, values, noise_sd)
        self.step[active] += 1
        self.remaining[active] -= 1
        return labels

    def _start(self, idx: np.ndarray, kinds: np.ndarray, values: dict[str, np.ndarray]) -> None:
        rng, m = self.rng, idx.size
        self.kind[idx] = kinds
        lows = np.array([EPISODE_LENGTH[LABELS[k]][0] for k in kinds])
        highs = np.array([EPISODE_LENGTH[LABELS[k]][1] for k in kinds])
        self.length[idx] = rng.integers(lows, highs + 1)
        self.remaining[idx] = self.length[idx]
        self.step[idx] = 0
        channel = rng.integers(0, 3, m)
        sign = np.where(rng.random(m) < 0.5, -1.0, 1.0)
        u = rng.random(m)
        target = np.zeros(m)
        for j, (k, ch) in enumerate(zip(kinds.tolist(), channel.tolist(), strict=True)):
            label = LABELS[k]
            if label == "spike":
                lo, hi = _SPIKE[ch]
                target[j] = sign[j] * (lo + u[j] * (hi - lo))
            elif label == "drift":
                lo, hi = _DRIFT[ch]
                target[j] = sign[j] * (lo + u[j] * (hi - lo))
            elif label == "noise_burst":
                lo, hi = _NOISE_MULTIPLIER
                target[j] = lo + u[j] * (hi - lo)
            elif label == "dropout":
                channel[j] = ch % 2  # temperature or humidity; a 0 hPa pressure would be impossible
            elif label == "out_of_range":
                channel[j] = 0 if ch != 2 else 2
                lo, hi = _OUT_OF_RANGE[int(channel[j])][int(sign[j] > 0)]
                target[j] = lo + u[j] * (hi - lo)
        self.channel[idx] = channel
        self.target[idx] = target
        for c, name in enumerate(CHANNELS):
            self.frozen[c, idx] = values[name][idx]

    def _effect(
        self, active: np.ndarray, values: dict[str, np.ndarray], noise_sd: Mapping[str, np.ndarray]
    ) -> None:
        kinds = self.kind[active]
        for label in ANOMALY_KINDS:
            idx = active[kinds == CODE[label]]
            if idx.size == 0:
                continue
            if label == "stuck":
                for c, name in enumerate(CHANNELS):
                    values[name][idx] = self.frozen[c, idx]
                continue
            if label == "noise_burst":
                for name in CHANNELS:
                    extra = self.rng.standard_normal(idx.size) * noise_sd[name][idx] * self.target[idx]
                    values[name][idx] += extra
                continue
            for c, name in enumerate(CHANNELS):
                sel = idx[self.channel[idx] == c]
                if sel.size == 0:
                    continue
                if label == "spike":
                    values[name][sel] += self.target[sel]
                elif label == "drift":
                    values[name][sel] += self.target[sel] * (self.step[sel] + 1) / self.length[sel]
                elif label == "dropout":
                    values[name][sel] = 0.0
                elif label == "out_of_range":
                    values[name][sel] = self.target[sel]
        np.clip(values["humidity"], 0.0, 100.0, out=values["humidity"])
