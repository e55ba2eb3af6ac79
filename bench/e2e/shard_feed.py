"""One shard's Kinesis records as the producer sends them and the event source mapping hands them over.

Shared by bench/calls.py (fixed seconds of stream per batch) and bench/shard_load.py (batches cut by the
mapping's own limits):

- ``Packer``: readings packed into Kinesis records as the simulator's sink packs them (simulator/sinks.py
  KinesisSink): up to ``pack`` good readings of one pack group per record, at most 64 KiB; a malformed
  record goes alone, after closing its group's open pack; optionally each record of good readings gzipped
  (``compress``, mtime 0: the same bytes every run).
- ``cut_batches``: records cut into invocations as the mapping cuts them, the first of: ``batch_size``
  records, what fits the 6 MB invoke payload (each record's base64 data plus its event envelope,
  iotpipe/cost/limits.py), the batching window of stream time (at least the ~1 s Lambda polls a shard).
- ``event_records``: a batch as the Lambda event's ``Records`` (rising sequence numbers over the shard).
"""

from __future__ import annotations

import gzip
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from iotpipe.cost.limits import EVENT_ENVELOPE_BYTES, LAMBDA_PAYLOAD_BYTES
from simulator.sinks import MAX_PACK_BYTES, pack_group
from simulator.stream import Produced
from testkit.events import SEQ_BASE, kinesis_event_record, packed

# What closes a batch (the names the cost model's sizing.batch_limit uses), and "end" for the run's last.
CLOSED_BY = ("BatchSize", "payload", "window", "end")


@dataclass(frozen=True)
class Record:
    """One Kinesis record: its data, when it was sent (ms of stream time), the readings it carries and
    its partition key (the pack group's, as the sink sends it)."""

    data: bytes
    sent_ms: int
    readings: int
    partition_key: str


class Packer:
    """The sink's packing, one reading at a time: ``add`` returns the records it closed."""

    def __init__(self, pack: int, *, compress: bool = False, max_pack_bytes: int = MAX_PACK_BYTES) -> None:
        self.pack = max(1, pack)
        self.compress = compress
        self.max_pack_bytes = max_pack_bytes
        self._open: dict[int, tuple[list[bytes], int, int]] = {}  # group -> (payloads, bytes, last send)

    def _record(self, payloads: list[bytes], group: int, sent_ms: int) -> Record:
        data = payloads[0] if len(payloads) == 1 else packed(payloads)
        if self.compress:
            data = gzip.compress(data, mtime=0)
        return Record(data, sent_ms, len(payloads), f"pack-{group:02d}")

    def _close(self, group: int) -> list[Record]:
        payloads, _, sent_ms = self._open.pop(group, ([], 1, 0))
        return [self._record(payloads, group, sent_ms)] if payloads else []

    def add(self, p: Produced) -> list[Record]:
        group = pack_group(p.device_id)
        if p.category == "malformed" or self.pack <= 1:
            closed = self._close(group)
            # a malformed record reaches the processor exactly as produced (never compressed)
            data = p.payload if p.category == "malformed" or not self.compress else gzip.compress(
                p.payload, mtime=0)
            return [*closed, Record(data, p.send_ms, 1, f"pack-{group:02d}")]
        size = len(p.payload) + 1  # + the comma (or bracket) that joins it
        payloads, pack_bytes, _ = self._open.get(group, ([], 1, 0))
        closed = []
        if payloads and pack_bytes + size > self.max_pack_bytes:
            closed = self._close(group)
            payloads, pack_bytes = [], 1
        payloads.append(p.payload)
        self._open[group] = (payloads, pack_bytes + size, p.send_ms)
        if len(payloads) >= self.pack:
            closed += self._close(group)
        return closed

    def flush(self) -> list[Record]:
        """Every open pack, closed (in group order, as the sink flushes)."""
        return [r for group in sorted(self._open) for r in self._close(group)]


def packed_records(produced: Iterable[Produced], pack: int, *, compress: bool = False,
                   flush_ms: int = 0) -> Iterator[Record]:
    """The records of a stream of readings (in send order). ``flush_ms`` > 0: open packs are also closed
    every ``flush_ms`` of send time, as the simulator's runner flushes its sink (every 250 ms); 0: a pack
    closes only when full (``pack`` readings or 64 KiB), what the cost model's ``readings_per_record``
    assumes of a gateway."""
    packer = Packer(pack, compress=compress)
    next_flush: int | None = None
    for p in produced:
        if flush_ms > 0:
            if next_flush is None:
                next_flush = p.send_ms + flush_ms
            elif p.send_ms >= next_flush:
                yield from packer.flush()
                next_flush += (p.send_ms - next_flush) // flush_ms * flush_ms + flush_ms
        yield from packer.add(p)
    yield from packer.flush()


def payload_bytes(record: Record) -> int:
    """Bytes one record takes in the invoke payload: its data in base64 and the event envelope."""
    return (len(record.data) + 2) // 3 * 4 + EVENT_ENVELOPE_BYTES


def cut_batches(records: Iterable[Record], batch_size: int, window_s: float,
                payload_limit: int = LAMBDA_PAYLOAD_BYTES) -> Iterator[tuple[list[Record], str]]:
    """(records, what closed the batch) as the event source mapping hands them over, in stream order.

    A batch opens with its first record and takes the next while all hold: fewer than ``batch_size``
    records, the payload (base64 data + envelope each) within ``payload_limit``, and the record sent less
    than the batching window (at least 1 s: Lambda polls each shard about once a second) after the first.
    """
    window_ms = max(window_s, 1.0) * 1000
    batch: list[Record] = []
    size = 0
    for record in records:
        rec_bytes = payload_bytes(record)
        if batch:
            closed_by = ("BatchSize" if len(batch) >= batch_size else
                         "payload" if size + rec_bytes > payload_limit else
                         "window" if record.sent_ms - batch[0].sent_ms >= window_ms else "")
            if closed_by:
                yield batch, closed_by
                batch, size = [], 0
        batch.append(record)
        size += rec_bytes
    if batch:
        yield batch, "end"


def event_records(batch: list[Record], first_seq: int, shard_id: str) -> list[dict[str, Any]]:
    """The Lambda event's ``Records`` for a batch; sequence numbers from ``first_seq``. Each record arrived
    when it was sent (Kinesis stamps ``approximateArrivalTimestamp`` on PutRecords): the processor judges
    lateness against it, so a replay slower than real time does not turn readings late."""
    return [kinesis_event_record(r.data, first_seq + i, shard_id, r.sent_ms / 1000, r.partition_key)
            for i, r in enumerate(batch)]


__all__ = ["CLOSED_BY", "SEQ_BASE", "Packer", "Record", "cut_batches", "event_records", "packed_records",
           "payload_bytes"]
