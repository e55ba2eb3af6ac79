"""Producing: simulator records, the Kinesis sinks the benchmark puts them through, the paced sender."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from iotpipe.console import progress
from simulator.config import SimulatorConfig
from simulator.sinks import KinesisSink
from simulator.stream import Produced, generate_readings

# The sinks' token buckets keep a real stream under its shard limits; the emulator has none, and the
# backlog must go in faster than it drains, so the sinks are told the stream is this wide.
UNTHROTTLED_SHARDS = 100


def generate(config: SimulatorConfig, fleet: list[Any], start_ms: int) -> list[Produced]:
    return list(generate_readings(config, fleet, start_ms=start_ms))


def unthrottled_sink(stream: str, endpoint: str, pack: int) -> KinesisSink:
    sink = KinesisSink(stream, shard_count=UNTHROTTLED_SHARDS, endpoint_url=endpoint, pack=pack)
    sink.setup()
    return sink


def put_all(sink: KinesisSink, records: list[Produced]) -> float:
    started = time.monotonic()
    for p in records:
        sink.add(p)
    sink.flush()
    return time.monotonic() - started


def send_paced(sink: KinesisSink, paced: list[Produced],
               on_sent: Callable[[list[Produced], float], None]) -> float:
    """Sends ``paced`` at the simulator's own send times, relative to the wall clock; ``on_sent(chunk,
    sent_at)`` after each flush. Returns the seconds the sending took."""
    t_paced = time.time()
    start_ms = paced[0].send_ms if paced else 0
    i = 0
    with progress(transient=True) as bar:
        task = bar.add_task("paced sending", total=len(paced))
        while i < len(paced):
            i = _send_due(sink, paced, i, start_ms, t_paced, on_sent)
            bar.update(task, completed=i)
    return time.time() - t_paced


def _send_due(sink: KinesisSink, paced: list[Produced], i: int, start_ms: int, t_paced: float,
              on_sent: Callable[[list[Produced], float], None]) -> int:
    """Sends the records from ``i`` that are due by now; returns the index of the first one not sent."""
    due_ms = start_ms + (time.time() - t_paced) * 1000  # the simulator's send times, on the wall clock
    j = i
    while j < len(paced) and paced[j].send_ms <= due_ms:
        j += 1
    if j == i:
        time.sleep(0.02)
        return i
    chunk = paced[i:j]
    for p in chunk:
        sink.add(p)
    sink.flush()
    on_sent(chunk, time.time())
    return j
