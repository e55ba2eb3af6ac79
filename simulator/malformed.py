"""Malformed records: what a real fleet sends that the pipeline must reject, with the reason to expect.

The stream replaces a good reading with a malformed one (or, for ``duplicate``, sends the good reading
twice). The labels file records every malformed record's kind, and ``EXPECTED_REASON`` maps it onto
the quarantine reason from docs/data-model.md, so the pipeline's rejections can be checked one by one.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import orjson

from simulator.config import MALFORMED_KINDS

# Kind -> the processor's quarantine reason (docs/data-model.md). ``duplicate`` is not quarantined:
# the pipeline counts it once and drops the resend (metric DuplicatesDropped).
EXPECTED_REASON: dict[str, str] = {
    "invalid_json": "malformed_json",
    "missing_field": "schema_invalid",
    "extra_field": "schema_invalid",
    "wrong_type": "schema_invalid",
    "impossible_value": "out_of_range",
    "future_timestamp": "future_timestamp",
    "stale_timestamp": "late",
    "duplicate": "duplicate",
    "unknown_device": "unknown_device",
    "oversized": "oversized",
}


def expected_outcome(category: str, kind: str) -> str:
    """What the pipeline should do with a produced record, from its labels: "aggregated", "duplicate"
    (counted once, dropped) or the quarantine reason. Benchmarks and tests build references from it."""
    return EXPECTED_REASON[kind] if category == "malformed" else "aggregated"


LABELS: tuple[str, ...] = ("", *MALFORMED_KINDS)  # code 0 = not malformed
CODE: dict[str, int] = {label: i for i, label in enumerate(LABELS) if label}

REQUIRED_FIELDS: tuple[str, ...] = ("device_id", "timestamp", "temperature", "humidity", "pressure")
# Values no working sensor can report: above 100 %RH, below absolute zero, negative pressure...
IMPOSSIBLE: tuple[tuple[str, float], ...] = (
    ("humidity", 140.0),
    ("humidity", -12.5),
    ("temperature", -300.0),
    ("temperature", 412.0),
    ("pressure", -5.0),
    ("pressure", 5000.0),
)
OVERSIZED_MIN_BYTES = 8 * 1024 + 1
FUTURE_S = (3600, 86400)  # well past any allowed clock skew
STALE_S = (86400, 7 * 86400)  # well past the allowed lateness


class MalformedInjector:
    def __init__(self, rng: np.random.Generator, rate: float, mix: Mapping[str, float]) -> None:
        self.rng = rng
        self.set_rate(rate, mix)

    def set_rate(self, rate: float, mix: Mapping[str, float]) -> None:
        weights = np.array([max(float(mix.get(k, 0.0)), 0.0) for k in MALFORMED_KINDS])
        total = weights.sum()
        self.rate = rate if total > 0 else 0.0
        self._cumulative = np.cumsum(weights / total) if total > 0 else np.zeros(len(weights))

    def choose(self, n: int) -> np.ndarray:
        """Per record: 0 = keep it good, else the malformed kind's code."""
        codes = np.zeros(n, dtype=np.int8)
        if self.rate <= 0:
            return codes
        u = self.rng.random(n)
        hit = np.flatnonzero(u < self.rate)
        if hit.size:
            # Reuse the same uniform draw scaled back to [0, 1) to pick the kind.
            kinds = np.searchsorted(self._cumulative, u[hit] / self.rate, side="right") + 1
            codes[hit] = np.minimum(kinds, len(MALFORMED_KINDS))
        return codes

    def corrupt(self, kind: str, record: dict[str, Any], event_ms: int, fmt: str) -> tuple[bytes, int]:
        """The malformed payload derived from the good ``record``, and the timestamp it claims."""
        rng = self.rng
        bad = dict(record)
        if kind == "invalid_json":
            good = orjson.dumps(record)
            if rng.random() < 0.5:
                return good[: max(1, len(good) // 2)], event_ms  # truncated in transit
            return good[:-1] + b",}", event_ms  # trailing comma: not JSON
        if kind == "missing_field":
            del bad[REQUIRED_FIELDS[int(rng.integers(len(REQUIRED_FIELDS)))]]
        elif kind == "extra_field":
            bad["firmware_debug"] = {"build": "2.3.1-rc4", "uptime_s": int(rng.integers(1, 10**6))}
        elif kind == "wrong_type":
            choice = int(rng.integers(4))
            if choice == 0:
                bad["temperature"] = str(record["temperature"])
            elif choice == 1:
                bad["humidity"] = None
            elif choice == 2:
                bad["pressure"] = [record["pressure"]]
            else:
                bad["device_id"] = 42
        elif kind == "impossible_value":
            channel, value = IMPOSSIBLE[int(rng.integers(len(IMPOSSIBLE)))]
            bad[channel] = value
        elif kind in ("future_timestamp", "stale_timestamp"):
            lo, hi = FUTURE_S if kind == "future_timestamp" else STALE_S
            shift_ms = int(rng.integers(lo, hi)) * 1000
            event_ms = event_ms + shift_ms if kind == "future_timestamp" else event_ms - shift_ms
            bad["timestamp"] = format_timestamp(event_ms, fmt)
        elif kind == "unknown_device":
            bad["device_id"] = f"unregistered-{int(rng.integers(10**6)):06d}"
        elif kind == "oversized":
            # Valid JSON that passes the schema: only the size is wrong. The schema caps every field
            # (16 extra channels, short strings), so the bulk is insignificant whitespace, as a
            # firmware that pads its frames would send.
            good = orjson.dumps(record)
            return good[:-1] + b" " * (OVERSIZED_MIN_BYTES - len(good) + 64) + b"}", event_ms
        else:
            raise ValueError(f"unknown malformed kind {kind!r}")
        return orjson.dumps(bad), event_ms


def format_timestamp(event_ms: int, fmt: str) -> str | int:
    if fmt == "epoch_ms":
        return event_ms
    iso = np.datetime_as_string(np.datetime64(event_ms, "ms"), unit="ms")
    return f"{iso}Z"
