"""How big things are: Kinesis records, the shard count, the batches the event source mapping hands the
processor (BatchSize, the 6 MB invoke payload, the batching window) and an aggregate item.

- Producers pack ``readings_per_record`` readings into one Kinesis record (a JSON array, the packed
  record of docs/data-model.md; default 25, the simulator's SIM_PACK; 1 = one reading per record), and
  gzip it (``compression="gzip"``, the simulator's default for packed records): a packed record of 25
  readings shrinks to ~17 % of its JSON (``GZIP_RATIO_BY_PACK``).
- Kinesis: provisioned shards, at least enough for 80 % of the 1,000 records/s / 1 MiB/s per-shard write
  limits (``shards_for``); ``span_shards`` is how many a batch needs to span the whole batching window
  (the estimate takes the cheaper count between the two, see iotpipe/cost/estimate.py).
- The event source mapping hands the processor batches of ``min(BatchSize records, records per shard
  gathered in the batching window, what fits in the 6 MB invoke payload)``. Lambda polls each shard about
  once a second, so a window below 1 s gathers a second's worth. An event record is ~0.57 KB of envelope
  plus the base64 data: unpacked (~0.84 KB for a 200-byte reading) 6 MB holds ~7,500 readings; packed 25
  per record (~7.3 KB per event record) ~21,600 readings, so the batching window closes batches again.
"""

from __future__ import annotations

import itertools
import math

from iotpipe.cost.limits import (
    EVENT_ENVELOPE_BYTES,
    LAMBDA_PAYLOAD_BYTES,
    SHARD_BYTES_PER_S,
    SHARD_HEADROOM,
    SHARD_RECORDS_PER_S,
)
from iotpipe.cost.workload import Workload

# gzip (level 6, as the simulator's sink writes it) of a packed record of simulator readings (~145 bytes
# of JSON each, one pack group per record): compressed / JSON bytes by readings per record. Measured on
# 60,000 readings of a 1,000-device fleet with full packs (bench/record_encoding.py,
# bench/results/record-encoding-2026-12-07.json); a single reading gains ~2 % and is sent as it is.
GZIP_RATIO_BY_PACK: tuple[tuple[int, float], ...] = (
    (1, 0.978), (10, 0.229), (25, 0.169), (50, 0.143), (100, 0.128), (200, 0.118))


def gzip_ratio(readings_per_record: int) -> float:
    """Compressed / JSON bytes of a gzip packed record of ``readings_per_record`` readings: the measured
    table, interpolated on log(readings per record) and held flat beyond its ends."""
    n = max(1, readings_per_record)
    points = GZIP_RATIO_BY_PACK
    if n <= points[0][0]:
        return points[0][1]
    for (n0, r0), (n1, r1) in itertools.pairwise(points):
        if n <= n1:
            f = (math.log(n) - math.log(n0)) / (math.log(n1) - math.log(n0))
            return r0 + f * (r1 - r0)
    return points[-1][1]


def kinesis_record_bytes(reading_bytes: float, readings_per_record: int = 1, compression: str = "none"
                         ) -> float:
    """Bytes of one Kinesis record: the reading, or a JSON array of them (brackets and commas), gzipped
    with ``compression="gzip"`` when packed (producers send a single reading as it is: gzip saves ~3 %)."""
    n = max(1, readings_per_record)
    if n == 1:
        return reading_bytes
    raw = n * (reading_bytes + 1) + 1
    return raw * gzip_ratio(n) if compression == "gzip" else raw


def shards_for(readings_per_s: float, record_bytes: float, readings_per_record: int = 1,
               compression: str = "none") -> int:
    """Shards for 80 % of the per-shard write limits; ``record_bytes`` is one reading's size."""
    n = max(1, readings_per_record)
    by_records = readings_per_s / n / (SHARD_RECORDS_PER_S * SHARD_HEADROOM)
    bytes_per_s = readings_per_s / n * kinesis_record_bytes(record_bytes, n, compression)
    by_bytes = bytes_per_s / (SHARD_BYTES_PER_S * SHARD_HEADROOM)
    return max(1, math.ceil(max(by_records, by_bytes) - 1e-9))


def span_shards(w: Workload) -> int:
    """Shards at which one batch holds the whole batching window of its shard's stream: beyond the
    write limits' count, each shard carries less, so a batch is closed by the window instead of the 6 MB
    payload or BatchSize, and spans more seconds of each device (fewer window writes per reading)."""
    readings_per_batch = min(float(w.batch_size), float(payload_cap(w.record_bytes, w.readings_per_record,
                                                                    w.compression)))
    readings_per_batch *= max(1, w.readings_per_record)
    window = max(w.batching_window_s, 1.0)
    return max(1, math.ceil(w.devices * w.rate_hz * window / readings_per_batch - 1e-9))


def payload_cap(record_bytes: float, readings_per_record: int = 1, compression: str = "none") -> int:
    """Most event records (Kinesis records of ``readings_per_record`` readings of ``record_bytes``)
    that fit in the 6 MB invoke payload."""
    size = kinesis_record_bytes(record_bytes, readings_per_record, compression)
    return LAMBDA_PAYLOAD_BYTES // (math.ceil(size * 4 / 3) + EVENT_ENVELOPE_BYTES)


def _batch_limits(w: Workload, shards: int) -> dict[str, float]:
    """Readings per batch allowed by each limit (BatchSize and the payload count Kinesis records)."""
    n = max(1, w.readings_per_record)
    per_shard_rate = w.devices * w.rate_hz / shards
    return {"BatchSize": float(w.batch_size) * n,
            "payload": float(payload_cap(w.record_bytes, n, w.compression)) * n,
            "window": per_shard_rate * max(w.batching_window_s, 1.0)}  # Lambda polls about once a second


def batch_limit(w: Workload, shards: int) -> str:
    """What closes a batch first: "BatchSize", "payload" (6 MB) or "window" (the batching window)."""
    limits = _batch_limits(w, shards)
    return min(limits, key=lambda k: limits[k])


def batch_shape(w: Workload, shards: int) -> tuple[float, float, float]:
    """(readings per batch, seconds of stream per batch, (device, window) groups per batch), one shard."""
    per_shard_rate = w.devices * w.rate_hz / shards
    devices_per_shard = w.devices / shards
    records = max(1.0, min(_batch_limits(w, shards).values()))
    seconds = records / per_shard_rate
    per_device = w.rate_hz * seconds  # readings of one device in one batch
    devices_in_batch = devices_per_shard * min(1.0, per_device)
    # A device's readings in a batch span one window, plus a boundary with probability seconds/window.
    windows_each = min(max(1.0, per_device), 1.0 + seconds / w.window_s)
    return records, seconds, devices_in_batch * windows_each


def varint_bytes(value: float) -> int:
    """Bytes of one LEB128 varint (7 bits per byte)."""
    return max(1, math.ceil(max(1, int(value)).bit_length() / 7))


def item_bytes(w: Workload) -> float:
    """Bytes of one aggregate item: a base plus the per-reading growth of ``seen_offsets_ms``, one varint
    of the gap between a device's readings each (functions/adapters/offset_set.py)."""
    readings_in_window = max(1.0, w.rate_hz * w.window_s)
    gap_ms = 1000.0 / max(w.rate_hz, 1e-9)
    return w.item_base_bytes + varint_bytes(gap_ms) * readings_in_window
