"""Per-device scoring where a device has its own calibration, the fleet forest everywhere else.

``CalibratedDetector`` wraps the fleet detector (the embedded forest or the SageMaker backend). For each
device in a batch:

- the device's item carries a ``calibration`` (a ``pca-t2q-v1`` record, ``functions.detector.pca_tq``)
  and every reading has all its channels (core fields or ``extra`` channels, both in
  ``Reading.channels``): scored by PCA T²+Q with k-of-n persistence;
- no calibration: the forest, exactly as before (simulator devices are never calibrated automatically,
  so the fleet's verdicts do not change);
- a device whose own parameters cannot be used goes to the forest, and the fallback is counted by reason
  (``drain_fallbacks``; the processor publishes it as the ``CalibrationFallbacks`` metric):
  ``unreadable_item`` (the registry could not read or decode the device's item), ``unreadable_calibration``
  (its ``calibration`` attribute did not decode), ``invalid_calibration`` (it decoded but
  ``functions.detector.calibration_check`` refuses it: not finite, out of bounds, degenerate),
  ``missing_channel`` (a reading lacks one of the calibrated channels), ``scoring_error`` (scoring raised)
  and ``nonfinite_score`` (a score came out NaN or infinite). Never an exception, never a lost reading.

Persistence state. k-of-n needs the last ``n - 1`` raw flags of the device across batches. They are kept
in an in-process LRU and, for a cold container or a shard moving to another container, persisted as a
small ``detector_state`` map on the device's item: ``ring`` (bitmask of the last n-1 raw flags, bit 0 =
most recent), ``ts`` (epoch ms of the newest reading folded in), ``bits`` (n - 1), ``cal`` (a
fingerprint of the calibration the flags were raised against; another calibration resets the ring) and,
for a dynamic-PCA calibration (``lags`` L > 0), ``past``: the device's last L readings in the
calibration's channel order, which the next reading's lag-augmented row needs.
A reading at or before ``ts`` was already folded in (a redelivery): it is scored against the ring but
does not advance it, so redelivery never counts a flag twice.

The processor writes a state only when its ring differs from the last one persisted: while the ring is
unchanged, a cold container that re-scores readings after the persisted ``ts`` starts from the same ring
they were first scored from and reaches the same verdicts (docs/processing.md has the argument and the
measured write rate).
"""

from __future__ import annotations

import logging
from collections import Counter, OrderedDict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from functions.core.readings import Reading
from functions.detector.calibration_check import CalibrationInvalid, check
from functions.detector.interface import Detector, FailureCountingDetector, Verdict
from functions.detector.pca_tq import FORMAT, PcaCalibration, k_of_n, statistics

logger = logging.getLogger(__name__)

MODEL_VERSION = FORMAT
SEVERITIES: tuple[str, ...] = ("none", "low", "medium", "high", "critical")
FALLBACK_MISSING_CHANNEL = "missing_channel"
FALLBACK_UNREADABLE_ITEM = "unreadable_item"
FALLBACK_UNREADABLE_CALIBRATION = "unreadable_calibration"
FALLBACK_BAD_CALIBRATION = "invalid_calibration"
FALLBACK_SCORING_ERROR = "scoring_error"
FALLBACK_NONFINITE_SCORE = "nonfinite_score"
FALLBACK_REASONS: tuple[str, ...] = (
    FALLBACK_UNREADABLE_ITEM,
    FALLBACK_UNREADABLE_CALIBRATION,
    FALLBACK_BAD_CALIBRATION,
    FALLBACK_MISSING_CHANNEL,
    FALLBACK_SCORING_ERROR,
    FALLBACK_NONFINITE_SCORE,
)


@dataclass(frozen=True)
class RingState:
    ring: int  # last ``bits`` raw flags, bit 0 = the most recent
    ts: int  # epoch ms of the newest reading folded in
    bits: int  # persist_n - 1
    cal: str  # fingerprint of the calibration
    past: tuple[tuple[float, ...], ...] = ()  # dynamic PCA: the last ``lags`` readings, oldest first

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"ring": self.ring, "ts": self.ts, "bits": self.bits, "cal": self.cal}
        if self.past:
            out["past"] = [list(row) for row in self.past]
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any] | None) -> RingState | None:
        try:
            if data is None:
                return None
            past = tuple(tuple(float(v) for v in row) for row in data.get("past") or ())
            if any(not np.all(np.isfinite(row)) for row in past):
                past = ()  # a non-finite remembered reading: start the lag history afresh
            return cls(int(data["ring"]), int(data["ts"]), int(data["bits"]), str(data["cal"]), past)
        except (KeyError, TypeError, ValueError):
            return None  # an unreadable state is a fresh start, not a failure

    def past_rows(self, lags: int, width: int) -> np.ndarray | None:
        """The carried readings as the lag history of the next ones (None: no usable history)."""
        if lags <= 0 or not self.past or any(len(row) != width for row in self.past):
            return None
        return np.asarray(self.past[-lags:], dtype=np.float64)

    def history(self) -> np.ndarray:
        """The carried raw flags, oldest first."""
        m = self.bits
        return np.array([(self.ring >> (m - 1 - j)) & 1 for j in range(m)], dtype=bool)


def fingerprint(cal: PcaCalibration) -> str:
    # Limits and the alarm rule identify a calibration well enough to know the flags belong to it.
    base = f"{cal.t2_limit:.9g}/{cal.q_limit:.9g}/{cal.persist_k}of{cal.persist_n}"
    return f"{base}/L{cal.lags}" if cal.lags else base


def fold(history: np.ndarray, flags: np.ndarray, bits: int) -> int:
    """The ring after appending ``flags`` to ``history`` (both oldest first)."""
    if bits <= 0:
        return 0
    tail = np.concatenate([history, np.asarray(flags, dtype=bool)])[-bits:]
    ring = 0
    for flag in tail.tolist():
        ring = (ring << 1) | int(flag)
    return ring


def _severity(ratio: float, alarm: bool, instant_factor: float) -> int:
    if not alarm:
        return 0
    if ratio > instant_factor:
        return 4
    if ratio >= 4.0:
        return 3
    if ratio >= 2.0:
        return 2
    return 1


class CalibratedDetector:
    """Detector: per-device PCA T²+Q for calibrated devices, ``fallback`` (the fleet forest) otherwise."""

    def __init__(self, fallback: Detector, max_devices: int = 20_000) -> None:
        self.fallback = fallback
        self.max_devices = max_devices
        self._calibrations: dict[str, tuple[dict[str, Any], PcaCalibration | None]] = {}
        self._states: OrderedDict[str, RingState] = OrderedDict()  # LRU, newest last
        self._persisted: dict[str, RingState] = {}  # what the device item holds, as far as we know
        self._dirty: dict[str, RingState] = {}
        self._fallbacks: Counter[str] = Counter()

    # --- what the processor collects after a batch ------------------------------------------------

    def drain_states(self) -> dict[str, dict[str, Any]]:
        """States to persist (device id -> ``detector_state``) since the last call."""
        out = {d: s.to_dict() for d, s in self._dirty.items()}
        self._dirty.clear()
        return out

    def mark_persisted(self, device_id: str, state: Mapping[str, Any]) -> None:
        parsed = RingState.from_dict(state)
        if parsed is not None:
            self._persisted[device_id] = parsed

    def drain_fallbacks(self) -> Counter[str]:
        out = self._fallbacks
        self._fallbacks = Counter()
        return out

    def drain_backend_failures(self) -> dict[str, int]:
        """The fleet backend's failures since the last call, by policy (only the SageMaker one has any)."""
        if isinstance(self.fallback, FailureCountingDetector):
            return dict(self.fallback.drain_failures())
        return {}

    # --- scoring -----------------------------------------------------------------------------------

    def detect(self, readings: Sequence[Reading]) -> list[Verdict]:
        out: list[Verdict | None] = [None] * len(readings)
        by_device: dict[str, list[int]] = {}
        for i, r in enumerate(readings):
            by_device.setdefault(r.device_id, []).append(i)
        forest: list[int] = []  # indexes the fleet model scores instead
        for device_id, idx in by_device.items():
            forest.extend(self._detect_device(device_id, idx, readings, out))
        if forest:
            forest.sort(key=lambda i: (readings[i].device_id, readings[i].epoch_ms))
            verdicts = self.fallback.detect([readings[i] for i in forest])
            if len(verdicts) != len(forest):
                raise ValueError(f"fallback returned {len(verdicts)} verdicts for {len(forest)} readings")
            for i, v in zip(forest, verdicts, strict=True):
                out[i] = v
        return [v for v in out if v is not None]

    def _detect_device(
        self, device_id: str, idx: list[int], readings: Sequence[Reading], out: list[Verdict | None]
    ) -> list[int]:
        """Score one device's readings (``idx`` into ``readings``) into ``out``; returns the indexes left
        for the fleet model, each counted under its fallback reason."""
        cal, why = self._calibration(readings[idx[0]])
        if cal is None:
            if why:
                self._fallbacks[why] += len(idx)
            return idx
        idx = sorted(idx, key=lambda i: readings[i].epoch_ms)
        usable = [i for i in idx if all(ch in readings[i].channels for ch in cal.channels)]
        forest: list[int] = []
        if len(usable) < len(idx):
            self._fallbacks[FALLBACK_MISSING_CHANNEL] += len(idx) - len(usable)
            kept = set(usable)
            forest.extend(i for i in idx if i not in kept)
        if not usable:
            return forest
        try:
            scored = self._score_device(device_id, cal, [readings[i] for i in usable])
        except Exception as exc:  # this device's parameters, not the batch: the forest scores it
            logger.warning("per-device scoring failed for %s, fleet model instead: %r", device_id, exc)
            self._fallbacks[FALLBACK_SCORING_ERROR] += len(usable)
            return forest + usable
        for i, v in zip(usable, scored, strict=True):
            if v is None:
                self._fallbacks[FALLBACK_NONFINITE_SCORE] += 1
                forest.append(i)
            else:
                out[i] = v
        return forest

    def _calibration(self, reading: Reading) -> tuple[PcaCalibration | None, str | None]:
        """(the device's usable calibration or None, the fallback reason when it has one that is not)."""
        device = reading.device
        faults = device.faults if device is not None else ()
        if "item" in faults:
            return None, FALLBACK_UNREADABLE_ITEM
        if "calibration" in faults:
            return None, FALLBACK_UNREADABLE_CALIBRATION
        raw = device.calibration if device is not None else None
        if not raw:
            self._calibrations.pop(reading.device_id, None)
            return None, None
        cached = self._calibrations.get(reading.device_id)
        # Identity first: the device cache hands the same dict until its entry expires (and a NaN in it
        # would make == false forever).
        if cached is not None and (cached[0] is raw or cached[0] == raw):
            cal = cached[1]
        else:
            try:
                cal = check(raw)
            except CalibrationInvalid as exc:
                # Logged once per calibration seen (the cache remembers the verdict), counted per reading.
                logger.warning("calibration of %s not used: %s", reading.device_id, exc.reason)
                cal = None
            if len(self._calibrations) >= self.max_devices:
                self._calibrations.clear()
            self._calibrations[reading.device_id] = (raw, cal)
        return cal, None if cal is not None else FALLBACK_BAD_CALIBRATION

    def _state(self, device_id: str, cal: PcaCalibration, stored: Mapping[str, Any] | None) -> RingState:
        """The newest of the in-memory and the persisted state, if it belongs to this calibration."""
        fp, bits = fingerprint(cal), cal.persist_n - 1
        candidates = [s for s in (self._states.get(device_id), RingState.from_dict(stored)) if s is not None]
        candidates = [s for s in candidates if s.cal == fp and s.bits == bits]
        if stored is not None and device_id not in self._persisted:
            loaded = RingState.from_dict(stored)
            if loaded is not None:
                self._persisted[device_id] = loaded
        if not candidates:
            return RingState(0, -1, bits, fp)
        return max(candidates, key=lambda s: s.ts)

    def _score_device(
        self, device_id: str, cal: PcaCalibration, rs: list[Reading]
    ) -> list[Verdict | None]:
        """Verdicts in ``rs`` order; None where a score is not finite (the caller asks the forest)."""
        device = rs[0].device
        state = self._state(device_id, cal, device.detector_state if device is not None else None)
        values = np.array([[r.channels[ch] for ch in cal.channels] for r in rs], dtype=np.float64)
        epoch = np.fromiter((r.epoch_ms for r in rs), dtype=np.int64, count=len(rs))
        fresh = epoch > state.ts
        past = state.past_rows(cal.lags, len(cal.channels))
        t2 = np.empty(len(rs))
        q = np.empty(len(rs))
        # Readings come time-ordered; fresh ones continue the carried lag history, and a redelivered one
        # (at or before ``ts``) is judged against that history too: it cannot rewind it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):  # non-finite: checked below
            for part in (fresh, ~fresh):
                if part.any():
                    t2[part], q[part] = statistics(cal, values[part], past)
            t2r, qr = t2 / cal.t2_limit, q / cal.q_limit
        if cal.statistic == "t2":
            ratio = t2r
        elif cal.statistic == "q":
            ratio = qr
        else:
            ratio = np.maximum(t2r, qr)
        finite = np.isfinite(ratio)
        raw = ratio > 1.0
        history = state.history()
        persistent = np.zeros(len(rs), dtype=bool)
        if fresh.any():
            persistent[fresh] = k_of_n(raw[fresh], cal.persist_k, cal.persist_n, history)
            ring = fold(history, raw[fresh], state.bits)
            carried = state.past
            if cal.lags:
                tail = values[fresh][-cal.lags :]
                rows = [*(past if past is not None else np.zeros((0, len(cal.channels)))), *tail]
                carried = tuple(tuple(float(v) for v in row) for row in rows[-cal.lags :])
            state = RingState(ring, int(epoch[fresh].max()), state.bits, state.cal, carried)
        if (~fresh).any():  # redelivered: judged against the carried ring, which they do not advance
            persistent[~fresh] = k_of_n(raw[~fresh], cal.persist_k, cal.persist_n, history)
        alarm = persistent | (ratio > cal.instant_factor)
        self._remember(device_id, state)
        c = len(cal.channels)  # z of the current reading: the first block of a lag-augmented row
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            z = (values - np.asarray(cal.mean[:c])) / np.asarray(cal.scale[:c])
        return [
            self._verdict(cal, float(ratio[i]), float(t2r[i]), float(qr[i]), bool(alarm[i]), z[i])
            if finite[i]
            else None
            for i in range(len(rs))
        ]

    def _remember(self, device_id: str, state: RingState) -> None:
        self._states[device_id] = state
        self._states.move_to_end(device_id)
        while len(self._states) > self.max_devices:
            evicted, _ = self._states.popitem(last=False)
            self._persisted.pop(evicted, None)
        persisted = self._persisted.get(device_id)
        if (persisted is None or persisted.ring != state.ring or persisted.cal != state.cal
                or persisted.past != state.past):
            self._dirty[device_id] = state
        else:
            self._dirty.pop(device_id, None)

    @staticmethod
    def _verdict(
        cal: PcaCalibration, ratio: float, t2r: float, qr: float, alarm: bool, z: np.ndarray
    ) -> Verdict:
        rank = _severity(ratio, alarm, cal.instant_factor)
        j = int(np.argmax(np.abs(z)))
        channel, zj = cal.channels[j], float(z[j])
        stat = "T²" if (cal.statistic == "t2" or (cal.statistic == "t2q" and t2r >= qr)) else "Q"
        reason = ""
        if rank == 4:
            reason = f"{stat} {ratio:.1f}x its calibrated limit; {channel} {zj:+.1f} σ from calibration"
        elif rank:
            reason = (
                f"{cal.persist_k}+ of the last {cal.persist_n} readings beyond the calibrated limits; "
                f"{channel} {zj:+.1f} σ from calibration"
            )
        return Verdict(
            score=ratio,
            is_anomaly=alarm,
            severity=SEVERITIES[rank],
            severity_rank=rank,
            top_feature=f"{channel}:{'t2' if stat == 'T²' else 'q'}",
            reason=reason,
            threshold=1.0,
            model_version=MODEL_VERSION,
        )
