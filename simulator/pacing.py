"""Pacing: release records when their simulated send time comes due on an injectable clock.

Simulated milliseconds map onto the clock as ``t0 + (send_ms - origin_ms) / 1000 / speed``. Records
due within ``min_sleep_s`` go out at once instead of one sleep each: at 10,000 records/s a sleep per
record would cost more than the sleep itself, while the rate over any interval longer than a few
milliseconds stays exact.
"""

from __future__ import annotations

from collections.abc import Callable

from simulator.clock import Clock


class Pacer:
    def __init__(
        self,
        clock: Clock,
        origin_ms: int,
        *,
        speed: float = 1.0,
        unpaced: bool = False,
        min_sleep_s: float = 0.002,
        on_idle: Callable[[float], None] | None = None,
        max_slice_s: float = 0.25,
    ) -> None:
        if speed <= 0:
            raise ValueError("speed must be > 0")
        self.clock = clock
        self.origin_ms = origin_ms
        self.speed = speed
        self.unpaced = unpaced
        self.min_sleep_s = min_sleep_s
        self.max_slice_s = max_slice_s  # longest uninterrupted sleep when a wait can be interrupted
        self.on_idle = on_idle  # housekeeping (flush, progress) runs while we would sleep anyway
        self.t0 = clock.monotonic()
        self.now = self.t0
        self.max_lag_s = 0.0

    def due(self, send_ms: float) -> float:
        return self.t0 + (send_ms - self.origin_ms) / 1000.0 / self.speed

    def wait(self, send_ms: float, interrupted: Callable[[], bool] | None = None) -> bool:
        """Return when the record sent at ``send_ms`` is due (at once if already late or unpaced): True.

        With ``interrupted``, the wait is cut into slices of at most ``max_slice_s`` and ends early,
        returning False, once ``interrupted()`` is true: at 0.01 Hz the next record is 100 s away, and a
        live configuration change must not wait for it.
        """
        if self.unpaced:
            return True
        due = self.due(send_ms)
        if due <= self.now + self.min_sleep_s:
            return True
        self.now = self.clock.monotonic()
        while due - self.now > self.min_sleep_s:
            if self.on_idle is not None:
                self.on_idle(self.now)
                self.now = self.clock.monotonic()
            if interrupted is not None and interrupted():
                return False
            if due > self.now:
                step = due - self.now if interrupted is None else min(due - self.now, self.max_slice_s)
                self.clock.sleep(step)
            self.now = self.clock.monotonic()
            if interrupted is None:
                break
        return True

    def sim_now_ms(self) -> int:
        """The simulated time that is due now."""
        return int(self.origin_ms + (self.clock.monotonic() - self.t0) * 1000.0 * self.speed)

    def sleep_until(self, send_ms: float) -> None:
        """Exactly until ``send_ms`` is due (no early release): used to end a timed run on time."""
        remaining = self.due(send_ms) - self.clock.monotonic()
        if remaining > 0 and not self.unpaced:
            self.clock.sleep(remaining)
        self.now = self.clock.monotonic()

    def lag(self, send_ms: float) -> float:
        """Seconds behind schedule for a record sent at ``send_ms`` (negative = ahead)."""
        self.now = self.clock.monotonic()
        lag = self.now - self.due(send_ms)
        self.max_lag_s = max(self.max_lag_s, lag)
        return lag

    def elapsed(self) -> float:
        return self.clock.monotonic() - self.t0
