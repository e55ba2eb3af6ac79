"""Archive, per shard, the records done: processed and quarantined lines under deterministic keys."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field

from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX, archive_key
from functions.core.ports import Archive
from functions.detector.interface import Verdict
from functions.processor.archive_keys import processed_line, quarantine_line
from functions.processor.batch import AGGREGATED, DUPLICATE, FailPoints, ItemKey, before_fail_point
from functions.processor.prepare import Prepared
from functions.processor.records import KinesisRecord

logger = logging.getLogger(__name__)


@dataclass
class Archived:
    keys: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)  # keys an earlier delivery had written (left as they were)
    shard_ranges: dict[str, tuple[str, str]] = field(default_factory=dict)  # shard -> (first, last) done
    failed: list[KinesisRecord] = field(default_factory=list)  # first record of each shard not archived
    errors: list[str] = field(default_factory=list)


def archive_batch(
    prepared: Prepared,
    archive: Archive,
    failed_at: FailPoints,
    applied: set[ItemKey],
    verdicts: Mapping[ItemKey, Verdict] | None = None,
) -> Archived:
    """Archive, per shard, every record before the shard's failure point: processed and quarantined.

    ``applied``: the readings the table holds (this write or an earlier one put them there). ``verdicts``
    (a reading's item key -> the detector's verdict, from the anomaly stage) puts the verdict in
    the line of each reading detection ran on; readings without one (detector disabled, duplicates,
    readings an earlier delivery already applied) get no verdict fields.
    """
    by_shard: dict[str, list[KinesisRecord]] = {}
    for record in prepared.records:
        by_shard.setdefault(record.shard_id, []).append(record)
    processed = _processed_lines(prepared, failed_at, applied, verdicts or {})
    quarantined: dict[str, list[bytes]] = {}
    for rej in prepared.rejections:
        if before_fail_point(failed_at, rej.record.shard_id, rej.record.seq):
            quarantined.setdefault(rej.record.shard_id, []).append(quarantine_line(rej))

    out = Archived()
    for shard_id, shard_records in by_shard.items():
        done = [r for r in shard_records if before_fail_point(failed_at, shard_id, r.seq)]
        if done:
            _archive_shard(out, archive, done, processed.get(shard_id), quarantined.get(shard_id))
    return out


def _processed_lines(
    prepared: Prepared, failed_at: FailPoints, applied: set[ItemKey], verdicts: Mapping[ItemKey, Verdict]
) -> dict[str, list[bytes]]:
    """Shard -> the processed lines of its readings before its failure point: the window groups'
    readings (``aggregated`` if the table holds them, else ``duplicate``), then the batch duplicates."""
    processed: dict[str, list[bytes]] = {}
    for group in prepared.groups.values():
        for r in group.readings:
            if before_fail_point(failed_at, r.shard_id, r.sequence_number):
                item = (r.shard_id, r.sequence_number, r.index)
                status = AGGREGATED if item in applied else DUPLICATE
                line = processed_line(r, status, verdicts.get(item))
                processed.setdefault(r.shard_id, []).append(line)
    for r in prepared.batch_duplicates:
        if before_fail_point(failed_at, r.shard_id, r.sequence_number):
            processed.setdefault(r.shard_id, []).append(processed_line(r, DUPLICATE))
    return processed


def _archive_shard(
    out: Archived,
    archive: Archive,
    done: list[KinesisRecord],
    processed: list[bytes] | None,
    quarantined: list[bytes] | None,
) -> None:
    """One shard's processed and quarantined lines written for its records ``done`` (those before its
    failure point, in order), recorded in ``out``: the range done and the keys written, or the failure."""
    first, last = done[0], done[-1]
    shard_id = first.shard_id
    out.shard_ranges[shard_id] = (first.sequence_number, last.sequence_number)
    arrival = first.approximate_arrival_ms
    try:
        for prefix, lines in ((PROCESSED_PREFIX, processed), (QUARANTINE_PREFIX, quarantined)):
            if lines:
                key = archive_key(prefix, shard_id, first.sequence_number, last.sequence_number, arrival)
                if not archive.put_jsonl_gz(key, lines):
                    out.kept.append(key)
                out.keys.append(key)
    except Exception as exc:
        # Nothing of this shard counts as done until it is archived: redeliver it all (aggregates
        # already written are recognised by their watermarks next time).
        logger.warning("archive write failed shard=%s: %r", shard_id, exc)
        out.errors.append(f"archive {shard_id}: {type(exc).__name__}")
        out.failed.append(first)
