"""A token bucket on an injectable clock (Kinesis per-shard limits, HTTP pacing)."""

from __future__ import annotations

from simulator.clock import Clock


class TokenBucket:
    """``rate`` tokens per second, at most ``capacity`` saved up; taking more than is there sleeps.

    Taking more than the capacity at once is allowed (it runs into debt and sleeps it off), so one
    large batch never deadlocks.
    """

    def __init__(self, rate: float, capacity: float, clock: Clock) -> None:
        if rate <= 0:
            raise ValueError("rate must be > 0")
        self.rate = rate
        self.capacity = capacity
        self.clock = clock
        self.tokens = capacity
        self._last = clock.monotonic()

    def take(self, amount: float) -> float:
        """Consume ``amount`` tokens, sleeping as needed; returns seconds slept."""
        now = self.clock.monotonic()
        self.tokens = min(self.capacity, self.tokens + (now - self._last) * self.rate)
        self._last = now
        self.tokens -= amount
        if self.tokens >= 0:
            return 0.0
        wait = -self.tokens / self.rate
        self.clock.sleep(wait)
        return wait
