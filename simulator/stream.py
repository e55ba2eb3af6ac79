"""The offline reading stream: pure, deterministic for a seed, no sleeping.

Simulated time advances tick by tick; a tick is one period (1 / rate_hz) in which every device sends
one reading at its own phase (stratified over the period, so the fleet's load is smooth) plus jitter.
Records come out in send order. ``generate_readings`` is what model evaluation and end-to-end tests
consume; ``runner.run`` paces the same stream against the wall clock.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

import numpy as np
import orjson

from simulator import anomalies, malformed
from simulator.config import SimulatorConfig
from simulator.fleet import Device
from simulator.signals import CORE_CHANNELS, SignalModel, round_channel

NORMAL = "normal"


@dataclass(frozen=True, slots=True)
class Produced:
    device_id: str
    payload: bytes  # exactly what goes on the wire
    kind: str  # "normal", an anomaly kind or a malformed kind
    event_ms: int  # the timestamp the record claims (shifted for future/stale timestamps)
    send_ms: int = 0  # when, in simulated time, it is sent (pacing uses this, not event_ms)

    @property
    def category(self) -> str:
        """``normal``, ``anomaly`` or ``malformed``."""
        if self.kind == NORMAL:
            return NORMAL
        return "malformed" if self.kind in malformed.CODE else "anomaly"


class ReadingStream:
    """Stateful tick generator; ``generate_readings`` and the runner both drive it."""

    def __init__(self, config: SimulatorConfig, fleet: Sequence[Device], start_ms: int) -> None:
        if not fleet:
            raise ValueError("fleet is empty")
        self.config = config
        self.fleet = list(fleet)
        self.n = len(self.fleet)
        self.start_ms = start_ms
        self.period_ms = 1000.0 / config.rate_hz
        self.tick_index = 0
        seeds = np.random.SeedSequence([config.seed, self.n, start_ms]).spawn(4)
        timing_rng = np.random.default_rng(seeds[0])
        self._timing_rng = timing_rng
        # Stratified phases: device i sends at (slot + u) / n of the period, slots shuffled.
        slots = timing_rng.permutation(self.n)
        self.phase = (slots + timing_rng.random(self.n)) / self.n
        self.signals = SignalModel(self.fleet, np.random.default_rng(seeds[1]), config.extra_channels)
        self.anomalies = anomalies.AnomalyInjector(
            self.n, np.random.default_rng(seeds[2]), config.anomaly_rate, config.anomaly_mix
        )
        self.malformed = malformed.MalformedInjector(
            np.random.default_rng(seeds[3]), config.malformed_rate, config.malformed_mix
        )
        self.device_ids = [d.device_id for d in self.fleet]
        self._iso = config.timestamp_format == "iso"
        self._ground_truth = config.include_ground_truth

    @property
    def tick_end_ms(self) -> int:
        """Simulated time at which the next tick starts."""
        return self.start_ms + round(self.tick_index * self.period_ms)

    def set_rates(self, anomaly_rate: float, malformed_rate: float) -> None:
        cfg = self.config
        self.anomalies.set_rate(anomaly_rate, cfg.anomaly_mix)
        self.malformed.set_rate(malformed_rate, cfg.malformed_mix)

    def next_tick(self) -> list[Produced]:
        cfg, n = self.config, self.n
        k = self.tick_index
        self.tick_index += 1
        jitter = (self._timing_rng.random(n) - 0.5) * cfg.jitter
        # Clipped to the tick so ticks never overlap: the stream stays in send order overall.
        offset = np.clip(self.phase + jitter, 0.0, 1.0 - 1e-9)
        # Offsets from the start stay small floats (exact to well under a ms); adding them to the
        # 13-digit epoch in float64 would round the last reading of a tick onto the next tick.
        relative = np.floor((k + offset) * self.period_ms).astype(np.int64)
        t_ms = relative + np.int64(self.start_ms)
        order = np.argsort(t_ms, kind="stable")
        values = self.signals.sample(t_ms.astype(np.float64), self.period_ms / 1000.0)
        labels = self.anomalies.apply(values, self.signals.noise_sd)
        bad = self.malformed.choose(n)

        # Everything per record below is plain Python on lists: numpy has done the arithmetic.
        columns = [round_channel(c, values[c]) for c in CORE_CHANNELS]
        extras = [(c, round_channel(c, values[c])) for c in self.signals.extra]
        if self._iso:
            stamps = np.char.add(
                np.datetime_as_string(t_ms.astype("datetime64[ms]"), unit="ms"), "Z"
            ).tolist()
        else:
            stamps = t_ms.tolist()
        ms_list = t_ms.tolist()
        label_names = anomalies.LABELS
        label_list = labels.tolist()
        bad_list = bad.tolist()
        temperature, humidity, pressure = columns
        ids = self.device_ids
        dumps = orjson.dumps
        out: list[Produced] = []
        append = out.append
        for i in order.tolist():
            label = label_names[label_list[i]]
            record = {
                "device_id": ids[i],
                "timestamp": stamps[i],
                "temperature": temperature[i],
                "humidity": humidity[i],
                "pressure": pressure[i],
            }
            if extras:
                record["extra"] = {name: column[i] for name, column in extras}
            if self._ground_truth:
                record["ground_truth"] = label
            code = bad_list[i]
            if code == 0:
                append(Produced(ids[i], dumps(record), label, ms_list[i], ms_list[i]))
                continue
            kind = malformed.LABELS[code]
            if kind == "duplicate":
                payload = dumps(record)
                append(Produced(ids[i], payload, label, ms_list[i], ms_list[i]))
                append(Produced(ids[i], payload, kind, ms_list[i], ms_list[i]))
                continue
            fmt = "iso" if self._iso else "epoch_ms"
            payload, claimed_ms = self.malformed.corrupt(kind, record, ms_list[i], fmt)
            append(Produced(ids[i], payload, kind, claimed_ms, ms_list[i]))
        return out


def start_ms_for(config: SimulatorConfig, default_ms: int) -> int:
    if config.start_time is None:
        return default_ms
    start = config.start_time if config.start_time.tzinfo else config.start_time.replace(tzinfo=UTC)
    return int(start.timestamp() * 1000)


DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


def generate_readings(
    config: SimulatorConfig, fleet: Sequence[Device], start_ms: int | None = None
) -> Iterator[Produced]:
    """Every record the fleet would send from ``start_ms``, in send order, as fast as possible.

    Stops after ``config.count`` records or ``config.duration_s`` of simulated time (whichever comes
    first); endless when neither is set. ``start_ms`` defaults to ``config.start_time`` or
    2026-01-01T00:00Z so that the output depends on the seed alone.
    """
    if start_ms is None:
        start_ms = start_ms_for(config, int(DEFAULT_START.timestamp() * 1000))
    stream = ReadingStream(config, fleet, start_ms)
    end_ms = None if config.duration_s is None else start_ms + config.duration_s * 1000.0
    remaining = config.count
    while remaining is None or remaining > 0:
        if end_ms is not None and stream.tick_end_ms >= end_ms:
            return
        for produced in stream.next_tick():
            if end_ms is not None and produced.send_ms >= end_ms:
                continue
            yield produced
            if remaining is not None:
                remaining -= 1
                if remaining == 0:
                    return
