"""What one benchmark run is asked to do: the command's options, with their defaults written once."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Options:
    devices: int = 200
    rate: float = 2.0  # Hz per device in the paced phase
    duration: float = 30.0  # seconds of paced sending
    burst_records: int = 12_000  # backlog for the capacity phase
    malformed_rate: float = 0.02
    samples: int = 8  # devices whose readings are timed via the API
    seed: int = 7
    shards: tuple[int, ...] = (1,)  # one point of the scaling curve each
    parallelization: int = 1  # ParallelizationFactor of every point's mapping (the emulators run 1)
    calls_batch: int = 0  # records per in-process batch when counting calls (0: the first point's mean)
    pack: int = 1  # readings per Kinesis record (1: the per-record path, the pipeline's worst case)
    timeout: float = 180.0  # max seconds to wait for draining


def parse_shards(text: str) -> tuple[int, ...]:
    """``"1,2,4"`` -> (1, 2, 4)."""
    return tuple(int(n) for n in text.split(",") if n.strip())
