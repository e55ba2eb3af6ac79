"""The archive's layout (pure, standard library only): prefixes, object keys, partitions, one reading path.

Layout of the archive bucket (docs/data-model.md):

    processed/dt=YYYY-MM-DD/hour=HH/<shardId>-<firstSeq>-<lastSeq>.jsonl.gz   processed lines
    quarantine/dt=YYYY-MM-DD/hour=HH/<shardId>-<firstSeq>-<lastSeq>.jsonl.gz  quarantined lines

Partitions are those of the batch's arrival (the approximate arrival time of its first record), so
``dt``/``hour`` sort in time order as text and a reader that wants "everything since T" starts its listing
after T's hour (``start_after``) instead of listing the whole prefix.

What a line holds is ``functions.core.archive_lines`` (which needs orjson); this half has no third-party
import, so the compactor's bundle (DuckDB, no orjson) shares the same keys and the same reading path.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Protocol

from functions.core.jsonl_gzip import gunzip_lines
from functions.core.ports import StoredObject
from functions.core.timestamps import format_ms

PROCESSED_PREFIX = "processed"
QUARANTINE_PREFIX = "quarantine"
OBJECT_SUFFIX = ".jsonl.gz"


# ------------------------------------------------------------------------------------------ keys
def partition(epoch_ms: int) -> tuple[str, str]:
    """(dt, hour) of the partition holding a batch that arrived at ``epoch_ms``."""
    stamp = format_ms(epoch_ms)  # YYYY-MM-DDTHH:...
    return stamp[:10], stamp[11:13]


def hour_prefix(prefix: str, dt: str, hour: str) -> str:
    """``<prefix>/dt=D/hour=H/``: every object of one hour's partition."""
    return f"{prefix}/dt={dt}/hour={hour}/"


def archive_key(prefix: str, shard_id: str, first_seq: str, last_seq: str, arrival_ms: int) -> str:
    """``<prefix>/dt=YYYY-MM-DD/hour=HH/<shardId>-<firstSeq>-<lastSeq>.jsonl.gz``.

    Deterministic: the shard and sequence range of the records it holds, partitioned by the batch's
    arrival, so a retried batch names the same object.
    """
    return f"{hour_prefix(prefix, *partition(arrival_ms))}{shard_id}-{first_seq}-{last_seq}{OBJECT_SUFFIX}"


def start_after(prefix: str, since_ms: int | None) -> str:
    """The listing's StartAfter for "the partitions at or after ``since_ms``'s hour" ("" for all).

    ``<prefix>/dt=D/hour=HH`` sorts after every key of earlier hours and before every key of that hour
    (a key continues it with ``/``).
    """
    if since_ms is None:
        return ""
    return hour_prefix(prefix, *partition(since_ms))[:-1]


def partition_of(key: str) -> str:
    """``<prefix>/dt=D/hour=HH/...`` -> ``D/HH`` (sorts in time order); "" for a key of another shape."""
    parts = key.split("/")
    if len(parts) < 4 or not parts[1].startswith("dt=") or not parts[2].startswith("hour="):
        return ""
    return f"{parts[1][3:]}/{parts[2][5:]}"


def floor_of(since_ms: int | None) -> str:
    """``partition_of`` of the keys of ``since_ms``'s hour ("" when None: every key is at or after it)."""
    return "" if since_ms is None else "/".join(partition(since_ms))


# ------------------------------------------------------------------------------------------ reading
class ObjectSource(Protocol):
    """What the reading path needs of an archive (``functions.core.ports.ArchiveObjects`` has it)."""

    def listing(self, prefix: str, start_after: str = "") -> list[StoredObject]: ...

    def read(self, key: str) -> bytes | None: ...


def iter_objects(
    source: ObjectSource, prefix: str, since_ms: int | None = None
) -> Iterator[tuple[StoredObject, list[bytes]]]:
    """(listed object, its lines) of every archive object under ``prefix`` in key order (partitions in
    time order),
    from the partition of ``since_ms``'s hour on (every partition when None).

    An object deleted between the listing and the read (lifecycle expiry) is skipped; keys that are not
    archive objects are ignored.
    """
    for obj in source.listing(f"{prefix}/", start_after(prefix, since_ms)):
        if not obj.key.endswith(OBJECT_SUFFIX):
            continue
        body = source.read(obj.key)
        if body is not None:
            yield obj, gunzip_lines(body)


def iter_lines(source: ObjectSource, prefix: str, since_ms: int | None = None) -> Iterator[bytes]:
    """Every line of ``iter_objects``, in order."""
    for _, lines in iter_objects(source, prefix, since_ms):
        yield from lines
