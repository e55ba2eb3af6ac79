"""Every input reading's fate (one disposition each), the counts, and the per-shard failure points."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from functions.core.readings import Reading
from functions.processor.batch import (
    AGGREGATED,
    DUPLICATE,
    REDELIVERED,
    RETRY,
    FailPoints,
    ItemKey,
    before_fail_point,
    fail_points,
    quarantined,
)
from functions.processor.prepare import Prepared
from functions.processor.window_writes import Writes


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

    def counts(self) -> dict[str, Any]:
        """The outcome's fields this stage decides (``batch.COUNTS`` names them)."""
        return {
            "records_in": self.records_in,
            "aggregated": self.aggregated,
            "duplicates": self.duplicates,
            "retry": self.retry,
            "redelivered": self.redelivered,
            "rejected": self.rejected,
            "failed_sequence_numbers": self.failed_sequence_numbers,
            "dispositions": self.dispositions,
        }


def account(prepared: Prepared, failed_at: FailPoints, writes: Writes) -> Accounting:
    """One disposition per reading. A reading this invocation added to the table is ``aggregated`` even
    when its record is handed back (an archive failure, a later window's failure): the table holds it
    from now on, so counting it here is what keeps RecordsAggregated equal to the table. When that
    record comes back, the watermark marks the reading ``redelivered``, which no total counts."""
    dispositions = _dispositions(prepared, failed_at, writes)
    accounted = {(shard, seq) for shard, seq, _ in dispositions}
    # A record with no item classified above cannot happen; belt and braces: it is handed back.
    unaccounted = [r for r in prepared.records if (r.shard_id, r.sequence_number) not in accounted]
    for record in unaccounted:
        dispositions[(record.shard_id, record.sequence_number, None)] = RETRY
    failed_at = fail_points(unaccounted, into=failed_at)

    out = _tally(dispositions)
    # Kinesis semantics: Lambda resumes a shard from the lowest sequence number reported for it.
    by_shard_seq: dict[str, dict[int, str]] = {r.shard_id: {} for r in prepared.records}
    for record in prepared.records:
        by_shard_seq[record.shard_id][record.seq] = record.sequence_number
    out.failed_sequence_numbers = [by_shard_seq[s][seq] for s, seq in sorted(failed_at.items())]
    return out


def _dispositions(prepared: Prepared, failed_at: FailPoints, writes: Writes) -> dict[ItemKey, str]:
    """The disposition of every item ``prepared`` classified: rejections, duplicates, the readings of the
    window groups (by what the writes did with them) and the items of failed groups. Anything at or
    after its shard's failure point is ``retry``, except a reading the table now holds."""
    applied, dups, redelivered = writes.applied, writes.duplicates, writes.redelivered
    dispositions: dict[ItemKey, str] = {}

    def fate(key: ItemKey, what: str) -> None:
        dispositions[key] = what if before_fail_point(failed_at, key[0], key[1]) else RETRY

    for rej in prepared.rejections:
        record = rej.record
        fate((record.shard_id, record.sequence_number, rej.index), quarantined(rej.reason))
    for r in prepared.batch_duplicates:
        fate((r.shard_id, r.sequence_number, r.index), DUPLICATE)
    for group in prepared.groups.values():
        for r in group.readings:
            key = (r.shard_id, r.sequence_number, r.index)
            if key in applied:
                dispositions[key] = AGGREGATED
                continue
            fate(key, REDELIVERED if key in redelivered else DUPLICATE if key in dups else RETRY)
    for item, _ in prepared.failed:
        index = item.index if isinstance(item, Reading) else None
        dispositions[(item.shard_id, item.sequence_number, index)] = RETRY
    return dispositions


def _tally(dispositions: dict[ItemKey, str]) -> Accounting:
    """The counts of ``dispositions`` (a quarantined one counted under its reason)."""
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
    return out
