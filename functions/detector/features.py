"""Streaming feature builder shared by training (``model/``) and the Lambda detector.

One code path turns per-device, time-ordered channel values into the model's feature matrix, so a model
trained offline sees exactly the features it will see online. Per channel the features are:

- ``raw``   the (optionally median-smoothed) value;
- ``dev``   deviation from the device's baseline, in units of the training deviation spread (σ);
- ``roc``   rate of change versus the previous reading of the same device, in units of its training spread;
- ``wmean`` mean of the current tumbling window so far (including this reading), as a deviation in σ;
- ``wstd``  standard deviation of the current window so far, in units of the channel's noise level;
- ``wz``    z-score of this reading against the earlier readings of its window;
- ``flat``  how many consecutive previous readings had exactly this value (a stuck sensor repeats itself).

The builder is vectorised over a whole batch: rows are grouped by device (contiguous), every cumulative
statistic is computed with ``cumsum`` and reset at device and window boundaries, and only the per-device
state (previous reading, window sums, run lengths, smoothing history) is touched in Python, once per
device. That state lives in a bounded LRU so a long-lived Lambda container keeps context between
invocations; a device missing from the LRU (cold start, eviction) starts fresh: its first reading has
``roc = wz = flat = 0`` and window statistics begin at that reading.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

FEATURE_KINDS: tuple[str, ...] = ("raw", "dev", "roc", "wmean", "wstd", "wz", "flat")


@dataclass(frozen=True)
class FeatureSpec:
    """Which features to build and the per-channel scales fitted on training data (in the artifact)."""

    channels: tuple[str, ...]
    kinds: tuple[str, ...]
    center: tuple[float, ...]  # baseline used when a device has none of its own
    dev_scale: tuple[float, ...]  # spread of (value - baseline) in training
    roc_scale: tuple[float, ...]  # spread of reading-to-reading differences in training
    window_s: int = 60
    smooth: int = 1  # rolling smoothing length in readings (1 = off; spikes must stay visible)
    smooth_stat: str = "median"  # "median" (robust to single glitches) or "mean" (averages noise down)
    max_gap_s: float = 300.0  # a previous reading older than this does not count for roc / flat
    flat_cap: int = 60
    # One more column, ``all:flat``: the shortest run over all channels. A stuck sensor freezes every
    # channel at once, which no single channel's run length shows as clearly.
    joint_flat: bool = False

    def __post_init__(self) -> None:
        n = len(self.channels)
        if not (len(self.center) == len(self.dev_scale) == len(self.roc_scale) == n):
            raise ValueError("center, dev_scale and roc_scale need one entry per channel")
        unknown = set(self.kinds) - set(FEATURE_KINDS)
        if unknown:
            raise ValueError(f"unknown feature kinds: {sorted(unknown)}")
        if self.smooth < 1:
            raise ValueError("smooth must be >= 1")
        if self.smooth_stat not in ("median", "mean"):
            raise ValueError("smooth_stat must be 'median' or 'mean'")

    @property
    def feature_names(self) -> list[str]:
        names = [f"{ch}:{kind}" for ch in self.channels for kind in self.kinds]
        return [*names, "all:flat"] if self.joint_flat else names

    def to_dict(self) -> dict[str, Any]:
        return {
            "channels": list(self.channels),
            "kinds": list(self.kinds),
            "center": list(self.center),
            "dev_scale": list(self.dev_scale),
            "roc_scale": list(self.roc_scale),
            "window_s": self.window_s,
            "smooth": self.smooth,
            "smooth_stat": self.smooth_stat,
            "max_gap_s": self.max_gap_s,
            "flat_cap": self.flat_cap,
            "joint_flat": self.joint_flat,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> FeatureSpec:
        return cls(
            channels=tuple(data["channels"]),
            kinds=tuple(data["kinds"]),
            center=tuple(float(v) for v in data["center"]),
            dev_scale=tuple(float(v) for v in data["dev_scale"]),
            roc_scale=tuple(float(v) for v in data["roc_scale"]),
            window_s=int(data["window_s"]),
            smooth=int(data["smooth"]),
            smooth_stat=str(data.get("smooth_stat", "median")),
            max_gap_s=float(data["max_gap_s"]),
            flat_cap=int(data["flat_cap"]),
            joint_flat=bool(data.get("joint_flat", False)),
        )


@dataclass
class DeviceState:
    """What the builder remembers about one device between batches."""

    prev: np.ndarray  # last (smoothed) value per channel
    prev_ms: int
    win_id: int
    win_n: float
    win_sum: np.ndarray  # sums of (value - baseline) in the current window
    win_sumsq: np.ndarray
    run: np.ndarray  # current run length of identical values per channel
    hist: np.ndarray = field(default_factory=lambda: np.empty((0, 0)))  # raw values for smoothing


def _rolling(ext: np.ndarray, k: int, n_hist: int, stat: str) -> np.ndarray:
    """Median or mean of the last ``k`` rows (fewer at the very start) for each row after the history."""
    if stat == "mean":
        cs = np.concatenate([np.zeros((1, ext.shape[1])), np.cumsum(ext, axis=0)])
        idx = np.arange(1, len(ext) + 1)
        lo = np.maximum(idx - k, 0)
        means = (cs[idx] - cs[lo]) / (idx - lo)[:, None]
        return means[n_hist:]
    pad = np.full((k - 1, ext.shape[1]), np.nan)
    padded = np.concatenate([pad, ext])
    windows = np.lib.stride_tricks.sliding_window_view(padded, k, axis=0)  # (rows, c, k)
    return np.nanmedian(windows[n_hist:], axis=2)


class FeatureBuilder:
    """Turns batches of readings into feature rows, carrying per-device state across calls."""

    def __init__(self, spec: FeatureSpec, max_devices: int = 20_000) -> None:
        self.spec = spec
        self.max_devices = max_devices
        self._states: OrderedDict[str, DeviceState] = OrderedDict()
        c = len(spec.channels)
        self._center = np.asarray(spec.center, dtype=np.float64)
        self._dev_scale = np.asarray(spec.dev_scale, dtype=np.float64)
        self._roc_scale = np.asarray(spec.roc_scale, dtype=np.float64)
        # Noise level of one reading: differences of two independent readings have sqrt(2) times its spread.
        self._noise = self._roc_scale / np.sqrt(2.0)
        self._window_ms = spec.window_s * 1000
        self._max_gap_ms = spec.max_gap_s * 1000.0
        self._n_channels = c

    @property
    def n_devices(self) -> int:
        return len(self._states)

    def reset(self) -> None:
        self._states.clear()

    def transform(
        self,
        keys: Sequence[str],
        epoch_ms: np.ndarray,
        values: np.ndarray,
        baselines: np.ndarray | None = None,
    ) -> np.ndarray:
        """Feature matrix (rows x features) for rows grouped by device (contiguous), time-ordered within.

        ``values`` is (rows x channels) in ``spec.channels`` order; ``baselines`` the same shape (per-row
        device baseline), or None to use ``spec.center``. Updates the per-device state.
        """
        n = len(keys)
        c = self._n_channels
        if n == 0:
            return np.empty((0, len(self.spec.feature_names)))
        values = np.asarray(values, dtype=np.float64).reshape(n, c)
        ms = np.asarray(epoch_ms, dtype=np.int64).reshape(n)
        base = (
            np.broadcast_to(self._center, (n, c))
            if baselines is None
            else np.asarray(baselines, dtype=np.float64).reshape(n, c)
        )

        starts = [0]
        starts.extend(i for i in range(1, n) if keys[i] != keys[i - 1])
        seg_keys = [keys[i] for i in starts]
        starts_a = np.asarray(starts, dtype=np.int64)
        ends_a = np.append(starts_a[1:], n) - 1
        states = [self._states.get(k) for k in seg_keys]

        x = self._smooth(values, starts, states) if self.spec.smooth > 1 else values

        # Previous reading of the same device: the row before, or the remembered one at a segment start.
        prev = np.empty_like(x)
        prev[1:] = x[:-1]
        prev_ms = np.empty_like(ms)
        prev_ms[1:] = ms[:-1]
        seg_prev = np.full((len(starts), c), np.nan)
        seg_prev_ms = np.zeros(len(starts), dtype=np.int64)
        for j, st in enumerate(states):
            if st is not None:
                seg_prev[j] = st.prev
                seg_prev_ms[j] = st.prev_ms
        prev[starts_a] = seg_prev
        prev_ms[starts_a] = seg_prev_ms
        has_prev = ~np.isnan(prev[:, 0]) & (np.abs(ms - prev_ms) <= self._max_gap_ms)
        prev = np.where(has_prev[:, None], prev, x)

        dev_raw = x - base
        seg_start = np.zeros(n, dtype=bool)
        seg_start[starts_a] = True

        # Window statistics so far, with cumulative sums reset at every device or window boundary.
        wid = ms // self._window_ms
        gstart = seg_start.copy()
        gstart[1:] |= wid[1:] != wid[:-1]
        gidx = np.maximum.accumulate(np.where(gstart, np.arange(n), 0))
        carry = np.zeros((n, 1 + 2 * c))
        for j, st in enumerate(states):
            if st is not None and st.win_id == wid[starts[j]]:
                carry[starts[j], 0] = st.win_n
                carry[starts[j], 1 : 1 + c] = st.win_sum
                carry[starts[j], 1 + c :] = st.win_sumsq
        inc = np.concatenate([np.ones((n, 1)), dev_raw, dev_raw * dev_raw], axis=1)
        cs = np.cumsum(inc, axis=0)
        before = cs - inc
        excl = before - before[gidx] + carry[gidx]
        incl = excl + inc
        n_ex, s_ex, q_ex = excl[:, :1], excl[:, 1 : 1 + c], excl[:, 1 + c :]
        n_in, s_in, q_in = incl[:, :1], incl[:, 1 : 1 + c], incl[:, 1 + c :]

        # Runs of identical values (stuck sensor), continuing the remembered run at a segment start.
        eq = has_prev[:, None] & (x == prev)
        run_inc = eq.astype(np.float64)
        for j, st in enumerate(states):
            if st is not None:
                row = starts[j]
                run_inc[row] = np.where(eq[row], st.run + 1.0, 0.0)
        run_cs = np.cumsum(run_inc, axis=0)
        reset = ~eq | seg_start[:, None]
        base_at_reset = np.where(reset, run_cs - run_inc, 0.0)
        run = run_cs - np.maximum.accumulate(base_at_reset, axis=0)

        cols = self._columns(x, prev, dev_raw, n_ex, s_ex, q_ex, n_in, s_in, q_in, run)
        features = np.stack([cols[kind] for kind in self.spec.kinds], axis=2).reshape(n, -1)
        if self.spec.joint_flat:
            joint = np.minimum(run.min(axis=1), float(self.spec.flat_cap))
            features = np.concatenate([features, joint[:, None]], axis=1)

        self._remember(seg_keys, ends_a, x, values, ms, wid, incl, run, starts, states)
        return features

    def _columns(
        self,
        x: np.ndarray,
        prev: np.ndarray,
        dev_raw: np.ndarray,
        n_ex: np.ndarray,
        s_ex: np.ndarray,
        q_ex: np.ndarray,
        n_in: np.ndarray,
        s_in: np.ndarray,
        q_in: np.ndarray,
        run: np.ndarray,
    ) -> dict[str, np.ndarray]:
        with np.errstate(invalid="ignore", divide="ignore"):
            mean_ex = np.where(n_ex > 0, s_ex / np.maximum(n_ex, 1.0), 0.0)
            var_ex = np.maximum(q_ex / np.maximum(n_ex, 1.0) - mean_ex * mean_ex, 0.0)
            mean_in = s_in / n_in
            var_in = np.maximum(q_in / n_in - mean_in * mean_in, 0.0)
            # The z-score needs a spread; two earlier readings give a poor one, so it is floored at the
            # channel's noise level (a window of identical values must not make every change infinite).
            spread = np.maximum(np.sqrt(var_ex), self._noise)
            wz = np.where(n_ex >= 2, (dev_raw - mean_ex) / spread, 0.0)
        return {
            "raw": x,
            "dev": dev_raw / self._dev_scale,
            "roc": (x - prev) / self._roc_scale,
            "wmean": mean_in / self._dev_scale,
            "wstd": np.sqrt(var_in) / self._noise,
            "wz": wz,
            "flat": np.minimum(run, float(self.spec.flat_cap)),
        }

    def _smooth(self, values: np.ndarray, starts: list[int], states: list[DeviceState | None]) -> np.ndarray:
        k = self.spec.smooth
        out = np.empty_like(values)
        bounds = [*starts, len(values)]
        for j, st in enumerate(states):
            seg = values[bounds[j] : bounds[j + 1]]
            hist = st.hist if st is not None and st.hist.size else np.empty((0, values.shape[1]))
            ext = np.concatenate([hist, seg])
            out[bounds[j] : bounds[j + 1]] = _rolling(ext, k, len(hist), self.spec.smooth_stat)
        return out

    def _remember(
        self,
        seg_keys: list[str],
        ends: np.ndarray,
        x: np.ndarray,
        values: np.ndarray,
        ms: np.ndarray,
        wid: np.ndarray,
        incl: np.ndarray,
        run: np.ndarray,
        starts: list[int],
        states: list[DeviceState | None],
    ) -> None:
        c = self._n_channels
        k = self.spec.smooth
        for j, key in enumerate(seg_keys):
            e = int(ends[j])
            hist = np.empty((0, c))
            if k > 1:
                state = states[j]
                old = state.hist if state is not None else np.empty((0, c))
                if old.size == 0:
                    old = np.empty((0, c))
                hist = np.concatenate([old, values[starts[j] : e + 1]])[-(k - 1) :].copy()
            self._states[key] = DeviceState(
                prev=x[e].copy(),
                prev_ms=int(ms[e]),
                win_id=int(wid[e]),
                win_n=float(incl[e, 0]),
                win_sum=incl[e, 1 : 1 + c].copy(),
                win_sumsq=incl[e, 1 + c :].copy(),
                run=run[e].copy(),
                hist=hist,
            )
            self._states.move_to_end(key)
        while len(self._states) > self.max_devices:
            self._states.popitem(last=False)
