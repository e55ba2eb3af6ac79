"""Every input reading's fate (one disposition each), the counts, and the per-shard failure points."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from functions.core.readings import Reading
from functions.processor.prepare import Prepared
from functions.processor.records import KinesisRecord
from functions.processor.window_writes import Writes

AGGREGATED = "aggregated"
DUPLICATE = "duplicate"
REDELIVERED = "redelivered"
RETRY = "retry"


# (shard_id, sequence_number, index within a packed record or None): one input reading (or unparseable record)
ItemKey = tuple[str, str, int | None]


FailPoints = dict[str, int]  # shard -> the earliest failed sequence number (int): Lambda resumes there


def fail_point(failed_at: FailPoints, shard_id: str, seq: int) -> None:
    current = failed_at.get(shard_id)
    if current is None or seq < current:
        failed_at[shard_id] = seq


def fail_items(failed_at: FailPoints, items: Iterable[Reading | KinesisRecord]) -> None:
    for item in items:
        fail_point(failed_at, item.shard_id, int(item.sequence_number))


@dataclass
class Accounting:
    dispositions: dict[ItemKey, str]
    records_in: int = 0
    aggregated: int = 0
    duplicates: int = 0
    retry: int = 0
    redelivered: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    failed_sequence_numbers: list[str] = field(default_factory=list)  # one per failed shard


def account(prepared: Prepared, failed_at: FailPoints, writes: Writes) -> Accounting:
    """One disposition per reading. A reading this invocation added to the table is ``aggregated`` even
    when its record is handed back (an archive failure, a later window's failure): the table holds it
    from now on, so counting it here is what keeps RecordsAggregated equal to the table. When that
    record comes back, the watermark marks the reading ``redelivered``, which no total counts."""
    failed_at = dict(failed_at)  # the belt-and-braces point below is this function's own
    applied_ids, dup_ids, redelivered_ids = writes.applied, writes.duplicates, writes.redelivered
    dispositions: dict[ItemKey, str] = {}

    def fate(shard_id: str, seq: str, index: int | None, what: str) -> None:
        fail = failed_at.get(shard_id)
        dispositions[(shard_id, seq, index)] = RETRY if fail is not None and int(seq) >= fail else what

    for rej in prepared.rejections:
        record = rej.record
        fate(record.shard_id, record.sequence_number, rej.index, f"quarantined:{rej.reason}")
    for r in prepared.batch_duplicates:
        fate(r.shard_id, r.sequence_number, r.index, DUPLICATE)
    for group in prepared.groups.values():
        for r in group.readings:
            rid = id(r)
            if rid in applied_ids:
                dispositions[(r.shard_id, r.sequence_number, r.index)] = AGGREGATED
                continue
            what = REDELIVERED if rid in redelivered_ids else DUPLICATE if rid in dup_ids else RETRY
            fate(r.shard_id, r.sequence_number, r.index, what)
    for item, _ in prepared.failed:
        index = item.index if isinstance(item, Reading) else None
        dispositions[(item.shard_id, item.sequence_number, index)] = RETRY
    accounted = {(shard, seq) for shard, seq, _ in dispositions}
    for record in prepared.records:  # a record with no item classified above (cannot happen; belt and braces)
        if (record.shard_id, record.sequence_number) not in accounted:
            dispositions[(record.shard_id, record.sequence_number, None)] = RETRY
            fail_point(failed_at, record.shard_id, record.seq)

    out = Accounting(dispositions, records_in=len(dispositions))
    for what in dispositions.values():
        if what == AGGREGATED:
            out.aggregated += 1
        elif what == DUPLICATE:
            out.duplicates += 1
        elif what == RETRY:
            out.retry += 1
        elif what == REDELIVERED:
            out.redelivered += 1
        else:
            out.rejected[what.split(":", 1)[1]] += 1
    # Kinesis semantics: Lambda resumes a shard from the lowest sequence number reported for it.
    by_shard_seq: dict[str, dict[int, str]] = {r.shard_id: {} for r in prepared.records}
    for record in prepared.records:
        by_shard_seq[record.shard_id][record.seq] = record.sequence_number
    out.failed_sequence_numbers = [by_shard_seq[s][seq] for s, seq in sorted(failed_at.items())]
    return out
