"""How big things are: Kinesis records, the shard count, the batches the event source mapping hands the
processor (BatchSize, the 6 MB invoke payload, the batching window) and an aggregate item.

- Producers pack ``readings_per_record`` readings into one Kinesis record (a JSON array, the packed
  record of docs/data-model.md; default 25, the simulator's SIM_PACK; 1 = one reading per record).
- Kinesis: provisioned shards sized for 80 % of the 1,000 records/s / 1 MiB/s per-shard write limits.
- The event source mapping hands the processor batches of ``min(BatchSize records, records per shard
  gathered in the batching window, what fits in the 6 MB invoke payload)``. Lambda polls each shard about
  once a second, so a window below 1 s gathers a second's worth. An event record is ~0.57 KB of envelope
  plus the base64 data: unpacked (~0.84 KB for a 200-byte reading) 6 MB holds ~7,500 readings; packed 25
  per record (~7.3 KB per event record) ~21,600 readings, so the batching window closes batches again.
"""

from __future__ import annotations

import math

from iotpipe.cost.limits import (
    EVENT_ENVELOPE_BYTES,
    LAMBDA_PAYLOAD_BYTES,
    SHARD_BYTES_PER_S,
    SHARD_HEADROOM,
    SHARD_RECORDS_PER_S,
)
from iotpipe.cost.workload import Workload


def kinesis_record_bytes(reading_bytes: float, readings_per_record: int = 1) -> float:
    """Bytes of one Kinesis record: the reading, or a JSON array of them (brackets and commas)."""
    n = max(1, readings_per_record)
    return reading_bytes if n == 1 else n * (reading_bytes + 1) + 1


def shards_for(readings_per_s: float, record_bytes: float, readings_per_record: int = 1) -> int:
    """Shards for 80 % of the per-shard limits; ``record_bytes`` is one reading's size."""
    n = max(1, readings_per_record)
    by_records = readings_per_s / n / (SHARD_RECORDS_PER_S * SHARD_HEADROOM)
    bytes_per_s = readings_per_s / n * kinesis_record_bytes(record_bytes, n)
    by_bytes = bytes_per_s / (SHARD_BYTES_PER_S * SHARD_HEADROOM)
    return max(1, math.ceil(max(by_records, by_bytes) - 1e-9))


def payload_cap(record_bytes: float, readings_per_record: int = 1) -> int:
    """Most event records (Kinesis records of ``readings_per_record`` readings of ``record_bytes``)
    that fit in the 6 MB invoke payload."""
    size = kinesis_record_bytes(record_bytes, readings_per_record)
    return LAMBDA_PAYLOAD_BYTES // (math.ceil(size * 4 / 3) + EVENT_ENVELOPE_BYTES)


def _batch_limits(w: Workload, shards: int) -> dict[str, float]:
    """Readings per batch allowed by each limit (BatchSize and the payload count Kinesis records)."""
    n = max(1, w.readings_per_record)
    per_shard_rate = w.devices * w.rate_hz / shards
    return {"BatchSize": float(w.batch_size) * n,
            "payload": float(payload_cap(w.record_bytes, n)) * n,
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
