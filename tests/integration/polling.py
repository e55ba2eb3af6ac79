"""Bounded polling for integration tests: the pipeline is asynchronous, so tests wait for outcomes."""

from __future__ import annotations

import time
from collections.abc import Callable


def wait_for[T](predicate: Callable[[], T], timeout_s: float, interval_s: float = 1.0) -> T | None:
    """Call ``predicate`` until it returns something truthy or ``timeout_s`` passes; the last value."""
    deadline = time.monotonic() + timeout_s
    last = None
    while time.monotonic() < deadline:
        last = predicate()
        if last:
            return last
        time.sleep(interval_s)
    return last
