"""Clocks: the real one and a fake one, so pacing and rate limits are testable without sleeping."""

from __future__ import annotations

import time
from typing import Protocol


class Clock(Protocol):
    def monotonic(self) -> float:
        """Seconds on a monotonic scale (pacing, rate limits)."""
        ...

    def time(self) -> float:
        """Epoch seconds (the simulated clock's default origin)."""
        ...

    def sleep(self, seconds: float) -> None: ...


class SystemClock:
    def monotonic(self) -> float:
        return time.monotonic()

    def time(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            time.sleep(seconds)


class FakeClock:
    """Time advances only when someone sleeps (or a test calls ``advance``)."""

    def __init__(self, start_epoch_s: float = 1_795_000_000.0) -> None:
        self._now = 0.0
        self._epoch0 = start_epoch_s
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self._now

    def time(self) -> float:
        return self._epoch0 + self._now

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.sleeps.append(seconds)
            self._now += seconds

    def advance(self, seconds: float) -> None:
        self._now += seconds
