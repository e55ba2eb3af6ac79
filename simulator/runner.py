"""The paced real-time loop: stream -> (pacer) -> sink, with live tuning, labels and progress.

``run`` keeps simulated time locked to the wall clock (timestamps are "now"), applies changes from the
control endpoint at tick boundaries, flushes the sink at least every ``FLUSH_INTERVAL_S`` and reports
progress every ``config.progress_interval_s``. It returns the final ``RunStats``.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from simulator.clock import Clock, SystemClock
from simulator.config import SimulatorConfig
from simulator.control import ControlServer, LiveConfig
from simulator.fleet import Device, generate_device
from simulator.labels import LabelWriter
from simulator.pacing import Pacer
from simulator.sinks import Sink
from simulator.stream import Produced, ReadingStream, start_ms_for

FLUSH_INTERVAL_S = 0.25
# Behind schedule by more than this at a tick boundary = the sink or the CPU cannot keep up.
LAG_TOLERANCE_S = 1.0


@dataclass
class RunStats:
    target_rate: float
    produced: int = 0
    by_kind: Counter[str] = field(default_factory=Counter)
    elapsed_s: float = 0.0
    max_lag_s: float = 0.0
    lagging: bool = False  # set once the loop fell behind by more than LAG_TOLERANCE_S
    sink: dict[str, Any] = field(default_factory=dict)
    recent_rate: float = 0.0

    @property
    def achieved_rate(self) -> float:
        return self.produced / self.elapsed_s if self.elapsed_s > 0 else 0.0

    @property
    def rate_ratio(self) -> float:
        return self.achieved_rate / self.target_rate if self.target_rate > 0 else 0.0

    def as_dict(self) -> dict[str, Any]:
        return {
            "produced": self.produced,
            "by_kind": dict(self.by_kind),
            "elapsed_s": round(self.elapsed_s, 3),
            "target_rate_per_s": self.target_rate,
            "achieved_rate_per_s": round(self.achieved_rate, 2),
            "recent_rate_per_s": round(self.recent_rate, 2),
            "rate_ratio": round(self.rate_ratio, 4),
            "max_lag_s": round(self.max_lag_s, 3),
            "cannot_keep_up": self.lagging,
            "sink": self.sink,
        }


ProgressFn = Callable[[RunStats], None]


class _Loop:
    """State shared by ``run`` and ``replay`` runs: pacing, housekeeping, counting, stopping."""

    def __init__(
        self,
        sink: Sink,
        clock: Clock,
        pacer: Pacer,
        stats: RunStats,
        progress: ProgressFn | None,
        progress_interval_s: float,
        labels: LabelWriter | None,
        stop: threading.Event,
    ) -> None:
        self.sink, self.clock, self.pacer, self.stats = sink, clock, pacer, stats
        self.progress, self.progress_interval_s = progress, progress_interval_s
        self.labels, self.stop = labels, stop
        self._last_flush = pacer.t0
        self._last_progress = pacer.t0
        self._last_count = 0
        self._lock = threading.Lock()
        self._snapshot: dict[str, Any] = stats.as_dict()
        self.cut = False  # the last emit ended early for a configuration change
        pacer.on_idle = self.housekeeping

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return dict(self._snapshot)

    def housekeeping(self, now: float) -> None:
        if now - self._last_flush >= FLUSH_INTERVAL_S:
            self.sink.flush()
            self._last_flush = now
            self.stats.elapsed_s = now - self.pacer.t0
            self.stats.sink = self.sink.stats.as_dict()
            with self._lock:
                self._snapshot = self.stats.as_dict()
        if now - self._last_progress >= self.progress_interval_s:
            span = now - self._last_progress
            self.stats.recent_rate = (self.stats.produced - self._last_count) / span if span > 0 else 0.0
            self._last_progress, self._last_count = now, self.stats.produced
            self.stats.elapsed_s = now - self.pacer.t0
            if self.progress is not None:
                self.progress(self.stats)

    def emit(self, items: Iterable[Produced], limit: int | None,
             interrupted: Callable[[], bool] | None = None) -> bool:
        """Send ``items`` on schedule; False once ``limit`` records were produced or stop was set.

        Once ``interrupted()`` is true the records not yet due are dropped (``self.cut`` is set): the
        caller starts a new stream from now."""
        stats, sink, pacer, labels = self.stats, self.sink, self.pacer, self.labels
        by_kind = stats.by_kind
        last: Produced | None = None
        self.cut = False
        for produced in items:
            if not pacer.wait(produced.send_ms, interrupted):
                self.cut = True
                break
            sink.add(produced)
            if labels is not None:
                labels.write(produced)
            by_kind[produced.kind] += 1
            stats.produced += 1
            last = produced
            if (limit is not None and stats.produced >= limit) or self.stop.is_set():
                return False
        if last is not None and not pacer.unpaced:
            lag = pacer.lag(last.send_ms)
            stats.max_lag_s = pacer.max_lag_s
            if lag > LAG_TOLERANCE_S:
                stats.lagging = True
        self.housekeeping(self.clock.monotonic())
        return not self.stop.is_set()

    def finish(self) -> RunStats:
        self.sink.close()
        if self.labels is not None:
            self.labels.close()
        self.stats.elapsed_s = self.pacer.elapsed()
        self.stats.sink = self.sink.stats.as_dict()
        with self._lock:
            self._snapshot = self.stats.as_dict()
        return self.stats


def run(
    config: SimulatorConfig,
    sink: Sink,
    clock: Clock | None = None,
    progress: ProgressFn | None = None,
    *,
    live: LiveConfig | None = None,
    stop: threading.Event | None = None,
    fleet: list[Device] | None = None,
    announce: Callable[[str], None] | None = None,
) -> RunStats:
    """Generate and send readings in real time until duration, count or ``stop``; return the stats.

    ``burst`` sends unpaced (as fast as the sink takes them); with a count, its simulated timeline
    is placed to end at "now" so the timestamps are not in the future.
    """
    clock = clock or SystemClock()
    live = live or LiveConfig(config)
    stop = stop or threading.Event()
    devices = list(fleet) if fleet is not None else []
    _resize(devices, config.devices, config.seed)
    sink.setup()
    # "Now" is taken after the fleet and the sink are ready, so set-up time is not counted as lag.
    now_ms = int(clock.time() * 1000)
    start_ms = start_ms_for(config, now_ms)
    if config.burst and config.start_time is None and config.count:
        start_ms = now_ms - int(config.count / config.target_rate * 1000)
    stream = ReadingStream(config, devices[: config.devices], start_ms)
    pacer = Pacer(clock, start_ms, unpaced=config.burst)
    stats = RunStats(target_rate=config.target_rate)
    labels = LabelWriter(config.labels_path) if config.labels_path else None
    loop = _Loop(sink, clock, pacer, stats, progress, config.progress_interval_s, labels, stop)
    server = None
    if config.control_port is not None:
        server = ControlServer(
            live, loop.snapshot, port=config.control_port, host=config.control_host
        ).start()
        if announce is not None:
            announce(f"control endpoint on {server.url} (GET/POST /config, GET /stats)")
    end_ms = None if config.duration_s is None else start_ms + config.duration_s * 1000.0
    seen_version = live.version
    current = config
    finished_early = False
    try:
        while True:
            if live.version != seen_version:
                seen_version = live.version
                # A tick cut short by the change resumes from now, not from the end of the cut tick.
                resume_ms = pacer.sim_now_ms() if loop.cut else stream.tick_end_ms
                current, stream = _apply(current, live.config, stream, devices, resume_ms)
                stats.target_rate = current.target_rate
            if end_ms is not None and stream.tick_end_ms >= end_ms:
                break
            tick = stream.next_tick()
            if end_ms is not None:
                tick = [p for p in tick if p.send_ms < end_ms]
            if not loop.emit(tick, config.count, lambda seen=seen_version: live.version != seen):
                finished_early = True
                break
        if end_ms is not None and not config.burst and not finished_early:
            # Stop on time, not at the last record: the achieved rate is over the whole duration.
            pacer.sleep_until(end_ms)
    finally:
        if server is not None:
            server.stop()
        result = loop.finish()
    return result


def _resize(devices: list[Device], n: int, seed: int) -> None:
    # Devices are independent of each other (fleet.generate_device), so growing the list keeps the
    # existing ones identical; shrinking only uses a prefix.
    devices.extend(generate_device(i, seed) for i in range(len(devices), n))


def _apply(
    current: SimulatorConfig, new: SimulatorConfig, stream: ReadingStream, devices: list[Device],
    resume_ms: int,
) -> tuple[SimulatorConfig, ReadingStream]:
    if (new.devices, new.rate_hz, new.jitter) != (current.devices, current.rate_hz, current.jitter):
        _resize(devices, new.devices, new.seed)
        # The new stream starts where the current tick ends (or, for a tick cut short, now), so simulated
        # time never jumps ahead of the wall clock.
        return new, ReadingStream(new, devices[: new.devices], resume_ms)
    stream.set_rates(new.anomaly_rate, new.malformed_rate)
    if resume_ms < stream.tick_end_ms:  # a cut tick: the same stream, its next tick from now
        return new, ReadingStream(new, devices[: new.devices], resume_ms)
    return new, stream


def pump(
    items: Iterable[Produced],
    sink: Sink,
    *,
    origin_ms: int,
    target_rate: float,
    clock: Clock | None = None,
    speed: float = 1.0,
    unpaced: bool = False,
    progress: ProgressFn | None = None,
    progress_interval_s: float = 2.0,
    labels_path: str | None = None,
    count: int | None = None,
    stop: threading.Event | None = None,
) -> RunStats:
    """Pace any stream of records (replay) by ``send_ms`` relative to ``origin_ms`` at ``speed``."""
    clock = clock or SystemClock()
    sink.setup()
    pacer = Pacer(clock, origin_ms, speed=speed, unpaced=unpaced)
    stats = RunStats(target_rate=target_rate)
    labels = LabelWriter(labels_path) if labels_path else None
    loop = _Loop(sink, clock, pacer, stats, progress, progress_interval_s, labels, stop or threading.Event())
    try:
        loop.emit(items, count)
    finally:
        result = loop.finish()
    return result
