"""Rate control on a fake clock: no test here sleeps for real."""

from __future__ import annotations

from simulator.clock import FakeClock
from simulator.config import SimulatorConfig
from simulator.control import LiveConfig
from simulator.pacing import Pacer
from simulator.runner import run
from simulator.sinks import ListSink, Sink
from simulator.stream import Produced


class ClockedSink(Sink):
    """Records when (on the fake clock) each record was handed over; optionally slow."""

    def __init__(self, clock: FakeClock, cost_s: float = 0.0) -> None:
        super().__init__()
        self.clock, self.cost_s = clock, cost_s
        self.times: list[tuple[float, Produced]] = []

    def add(self, produced: Produced) -> None:
        self.times.append((self.clock.monotonic(), produced))
        self.stats.sent += 1
        self.clock.advance(self.cost_s)


def test_achieved_rate_matches_target_at_10k_devices() -> None:
    # GIVEN 10,000 devices at 1 Hz for 5 s on a fake clock
    clock = FakeClock()
    config = SimulatorConfig(devices=10_000, rate_hz=1.0, duration_s=5, sink="null", anomaly_rate=0.0)
    sink = ListSink()
    # WHEN the paced loop runs
    stats = run(config, sink, clock=clock)
    # THEN it produced devices x rate x duration within 1 % and took the full 5 s of (fake) time
    assert abs(stats.produced - 50_000) <= 500
    assert stats.elapsed_s == 5.0
    assert abs(stats.rate_ratio - 1.0) < 0.01
    assert not stats.lagging
    assert sink.flushes > 0


def test_fractional_rate_and_no_record_sent_early() -> None:
    # GIVEN 50 devices at 0.25 Hz (one reading every 4 s) for 40 s
    clock = FakeClock()
    config = SimulatorConfig(devices=50, rate_hz=0.25, duration_s=40)
    sink = ClockedSink(clock)
    stats = run(config, sink, clock=clock)
    # THEN 500 readings, each handed over no earlier than 2 ms (the pacer's batching step) before due
    assert stats.produced == 500
    origin_ms = int(FakeClock().time() * 1000)  # the run's simulated origin: "now" on the fake clock
    for at, produced in sink.times:
        assert at >= (produced.send_ms - origin_ms) / 1000 - 0.0021
        assert at <= (produced.send_ms - origin_ms) / 1000 + 0.01  # and not late either
    # AND per 4 s window each device sent exactly once
    per_device = {p.device_id for _, p in sink.times if p.send_ms - origin_ms < 4000}
    assert len(per_device) == 50


def test_slow_sink_is_reported_as_cannot_keep_up() -> None:
    # GIVEN a sink that takes 1 ms per record and a target of 2,000 records/s
    clock = FakeClock()
    config = SimulatorConfig(devices=2000, rate_hz=1.0, duration_s=3)
    stats = run(config, ClockedSink(clock, cost_s=0.001), clock=clock)
    # THEN the run notices it is behind and says so
    assert stats.lagging
    assert stats.max_lag_s > 1.0
    assert stats.rate_ratio < 0.99


def test_count_limit_and_burst_mode_do_not_sleep() -> None:
    # GIVEN burst mode with a count
    clock = FakeClock()
    config = SimulatorConfig(devices=100, rate_hz=1.0, count=1234, burst=True)
    sink = ListSink()
    stats = run(config, sink, clock=clock)
    # THEN exactly count records, no sleeping, timestamps ending at about "now"
    assert stats.produced == len(sink.items) == 1234
    assert clock.sleeps == []
    assert sink.items[-1].send_ms <= clock.time() * 1000


def test_live_reconfiguration_changes_devices_and_rate_without_restart() -> None:
    # GIVEN a run at 10 devices x 1 Hz whose config is changed after 50 records
    clock = FakeClock()
    config = SimulatorConfig(devices=10, rate_hz=1.0, duration_s=20)
    live = LiveConfig(config)

    class Tuning(ListSink):
        def add(self, produced: Produced) -> None:
            super().add(produced)
            if len(self.items) == 50:
                live.update({"devices": 20, "rate_hz": 2.0})

    sink = Tuning()
    stats = run(config, sink, clock=clock, live=live)
    # THEN the first 5 s carry 10 devices at 1 Hz and the remaining 15 s 20 devices at 2 Hz
    assert stats.produced == 50 + 15 * 20 * 2
    assert len({p.device_id for p in sink.items}) == 20
    assert stats.target_rate == 40.0
    sends = [p.send_ms for p in sink.items]
    assert sends == sorted(sends)


def test_a_change_applies_promptly_even_while_waiting_for_a_very_slow_tick() -> None:
    # GIVEN a run at 0.01 Hz (one reading per device every 100 s) changed to 1 Hz about 5 s in
    clock = FakeClock()
    config = SimulatorConfig(devices=2, rate_hz=0.01, duration_s=30, progress_interval_s=1)
    live = LiveConfig(config)
    changed_at: list[float] = []

    def tune(stats: object) -> None:
        if not changed_at and clock.monotonic() >= 5:
            changed_at.append(clock.monotonic())
            live.update({"rate_hz": 1.0})

    sink = ListSink()
    stats = run(config, sink, clock=clock, live=live, progress=tune)
    # THEN the new rate starts within a second of the change, not when the 100 s tick would have ended
    assert changed_at
    start_ms = (clock.time() - clock.monotonic()) * 1000  # epoch ms at monotonic 0 (the run's origin)
    after = sorted((p.send_ms - start_ms) / 1000 for p in sink.items)
    later = [t for t in after if t >= changed_at[0]]
    assert later, after
    assert later[0] - changed_at[0] < 1.5, (changed_at, after[:5])
    # AND the rest of the run is at 2 devices x 1 Hz (about 25 s of it)
    assert len(later) >= 2 * 24, len(later)
    assert stats.target_rate == 2.0


def test_pacer_batches_records_closer_than_min_sleep() -> None:
    # GIVEN records 0.1 ms apart WHEN paced THEN the pacer sleeps in >= 2 ms steps, not per record
    clock = FakeClock()
    pacer = Pacer(clock, origin_ms=0)
    for i in range(1000):
        pacer.wait(i * 0.1)
    assert clock.sleeps
    assert min(clock.sleeps) > 0.002
    assert len(clock.sleeps) < 60
