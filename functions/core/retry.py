"""The one retry helper: bounded attempts, exponential backoff with full jitter, an injectable sleep.

Why hand-written rather than ``tenacity``: the whole policy is the ~30 lines below, the processor's
bundle would carry another dependency (and its import time at cold start) for it, and the callers need
two shapes tenacity does not give directly without ceremony: a plain "call until it works" (``call``) and
a loop whose body keeps state between attempts (``Backoff.attempts``: the exactly-once write re-reads the
item and remembers an ambiguous put). botocore already retries each AWS call (adaptive mode); this is the
outer loop around whole operations (a lost race, unprocessed items, errors that outlived botocore).

Full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"): the delay before retry ``n``
(n = 1 for the second attempt) is uniform in ``[0, min(cap, base * 2**(n-1))]``, which spreads competing
writers apart best.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TypeVar

T = TypeVar("T")
Sleep = Callable[[float], None]


@dataclass(frozen=True)
class Backoff:
    """``max_attempts`` tries, sleeping a full-jitter delay before each retry (none before the first)."""

    max_attempts: int = 6
    base_s: float = 0.05
    cap_s: float = 1.0
    sleep: Sleep = time.sleep
    # The random source (tests pin it); uniform(a, b) like random.uniform.
    uniform: Callable[[float, float], float] = field(default=random.uniform, repr=False)

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError(f"max_attempts must be >= 1, got {self.max_attempts}")

    def delay(self, retry: int) -> float:
        """The delay before retry number ``retry`` (1 = the second attempt): up to base_s, doubling."""
        return self.uniform(0, min(self.cap_s, self.base_s * 2 ** (retry - 1)))

    def attempts(self) -> Iterator[int]:
        """Attempt numbers 0..max_attempts-1, sleeping before each but the first.

        For loops that keep state between attempts: ``break``/``return`` on success, ``continue`` to retry;
        when the iterator ends, the attempts ran out (the caller raises what fits).
        """
        for attempt in range(self.max_attempts):
            if attempt:
                self.sleep(self.delay(attempt))
            yield attempt

    def call(self, fn: Callable[[], T], retryable: Callable[[BaseException], bool]) -> T:
        """``fn()`` until it returns; an exception ``retryable`` refuses, or the last one, propagates."""
        for attempt in self.attempts():
            try:
                return fn()
            except Exception as exc:
                if attempt == self.max_attempts - 1 or not retryable(exc):
                    raise
        raise AssertionError("unreachable: the last attempt returns or raises")
