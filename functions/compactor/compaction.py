"""Compact one hour of the processed archive, idempotently: ``compact_hour`` and the hours to consider.

Layout (docs/querying.md "Compacted archive"):

    processed/dt=D/hour=H/<shard>-<first>-<last>.jsonl.gz   the processor's objects (kept: the raw archive)
    compacted/dt=D/hour=H/part-00000.parquet                 one file per hour, overwritten as a whole
    compacted/dt=D/hour=H/_manifest.json                     the inputs it was built from (written last)

Exactly once and idempotent: the part is a single fixed key, so a reader sees either the previous file or
the new one, never both (S3 overwrites are atomic) and never a half-written one. The manifest records the
input listing (key, ETag, size); a run whose listing matches the manifest does nothing, and one whose
listing changed (a batch archived late, a redelivery) rebuilds the hour from all its inputs. A crash
between the part and the manifest leaves the old manifest, so the next run rebuilds the same part. The
table ignores the manifest (Athena and ministack skip names starting with ``_``).

Quarantined records are not compacted: their raw bytes (``raw_b64``) stay byte for byte in the JSON
objects, they are ~1 % of the volume, and the ``quarantine`` table keeps reading them.
"""

from __future__ import annotations

import hashlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from datetime import date
from pathlib import Path
from typing import Any

from functions.compactor.parquet import compact_files
from functions.core.archive_layout import OBJECT_SUFFIX, PROCESSED_PREFIX, hour_prefix
from functions.core.ports import ArchiveObjects, StoredObject
from functions.core.timestamps import format_ms

COMPACTED_PREFIX = "compacted"
PART_NAME = "part-00000.parquet"
MANIFEST_NAME = "_manifest.json"
# Bump when the output for the same inputs changes (columns, ordering, de-duplication rule): every hour
# then rebuilds once, because its manifest no longer matches.
LAYOUT_VERSION = "processed-parquet-v1"
HOUR_MS = 3_600_000


@dataclass(frozen=True)
class HourResult:
    dt: str
    hour: str
    action: str  # compacted | unchanged | empty
    inputs: int = 0
    rows_in: int = 0
    rows_out: int = 0
    bytes_in: int = 0
    bytes_out: int = 0
    key: str = ""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def hours_due(now_ms: int, lookback_hours: int, settle_minutes: int) -> list[tuple[str, str]]:
    """The (dt, hour) partitions a scheduled run considers, oldest first.

    An hour is due once it ended ``settle_minutes`` ago (batches still in flight or in the mapping's
    retries land in it until then); it stays due for ``lookback_hours`` so that a late or redelivered
    batch (Kinesis keeps records 24 h by default) is folded in by a later run, which finds the listing
    changed.
    """
    newest_end = now_ms - settle_minutes * 60_000
    newest_start = (newest_end // HOUR_MS - 1) * HOUR_MS  # the last hour that ended before newest_end
    out: list[tuple[str, str]] = []
    for i in range(lookback_hours - 1, -1, -1):
        stamp = format_ms(newest_start - i * HOUR_MS)
        out.append((stamp[:10], stamp[11:13]))
    return out


def parse_hour(text: str) -> tuple[str, str]:
    """``YYYY-MM-DDTHH`` (or ``YYYY-MM-DD HH``) -> (dt, hour); ValueError for anything else."""
    cleaned = text.strip().replace(" ", "T")
    if len(cleaned) != 13 or cleaned[10] != "T" or not cleaned[11:].isdigit() or int(cleaned[11:]) > 23:
        raise ValueError(f"an hour is YYYY-MM-DDTHH, not {text!r}")
    dt = cleaned[:10]
    if not (dt[:4].isdigit() and dt[4] == "-" and dt[5:7].isdigit() and dt[7] == "-" and dt[8:].isdigit()):
        raise ValueError(f"an hour is YYYY-MM-DDTHH, not {text!r}")
    try:  # a calendar day: 2026-13-45 would name a partition that cannot exist and compact nothing
        date.fromisoformat(dt)
    except ValueError:
        raise ValueError(f"an hour is YYYY-MM-DDTHH of a calendar day, not {text!r}") from None
    return dt, cleaned[11:]


def input_digest(inputs: list[StoredObject]) -> str:
    listing = [[o.key, o.etag, o.size] for o in sorted(inputs, key=lambda o: o.key)]
    return hashlib.sha256(json.dumps([LAYOUT_VERSION, listing]).encode()).hexdigest()


def _manifest(store: ArchiveObjects, key: str) -> dict[str, Any] | None:
    body = store.read(key)
    if body is None:
        return None
    try:
        doc = json.loads(body)
    except ValueError:
        return None  # unreadable manifest: rebuild the hour
    return doc if isinstance(doc, dict) else None


def compact_hour(store: ArchiveObjects, dt: str, hour: str, *, memory_limit_mb: int = 512,
                 force: bool = False, now_ms: int = 0) -> HourResult:
    """Rebuild ``compacted/dt/hour`` from ``processed/dt/hour`` unless its manifest says it is current."""
    listing = store.listing(hour_prefix(PROCESSED_PREFIX, dt, hour))
    inputs = [o for o in listing if o.key.endswith(OBJECT_SUFFIX)]
    out_prefix = hour_prefix(COMPACTED_PREFIX, dt, hour)
    part_key, manifest_key = out_prefix + PART_NAME, out_prefix + MANIFEST_NAME
    if not inputs:
        return HourResult(dt, hour, "empty")
    digest = input_digest(inputs)
    bytes_in = sum(o.size for o in inputs)
    previous = None if force else _manifest(store, manifest_key)
    if previous is not None and previous.get("digest") == digest:
        return HourResult(dt, hour, "unchanged", len(inputs), int(previous.get("rows_in", 0)),
                          int(previous.get("rows_out", 0)), bytes_in, int(previous.get("bytes_out", 0)),
                          part_key)
    with tempfile.TemporaryDirectory(prefix="compact-") as tmp:
        work = Path(tmp)
        sources = list(_download(store, inputs, work / "in"))
        if not sources:
            return HourResult(dt, hour, "empty")
        target = work / PART_NAME
        stats = compact_files(sources, target, memory_limit_mb=memory_limit_mb, temp_dir=work)
        body = target.read_bytes()
    store.write(part_key, body, "application/vnd.apache.parquet")
    result = HourResult(dt, hour, "compacted", len(inputs), stats.rows_in, stats.rows_out, bytes_in,
                        len(body), part_key)
    manifest = {"layout": LAYOUT_VERSION, "digest": digest, "part": part_key,
                "inputs": [[o.key, o.etag, o.size] for o in inputs], "rows_in": stats.rows_in,
                "rows_out": stats.rows_out, "bytes_in": bytes_in, "bytes_out": len(body),
                "compacted_at": format_ms(now_ms) if now_ms else ""}
    store.write(manifest_key, json.dumps(manifest, sort_keys=True).encode(), "application/json")
    return result


def _download(store: ArchiveObjects, inputs: list[StoredObject], folder: Path) -> Iterator[Path]:
    folder.mkdir(parents=True, exist_ok=True)
    for obj in inputs:
        body = store.read(obj.key)
        if body is None:  # expired or deleted between the listing and now: the next run sees the new listing
            continue
        path = folder / obj.key.rsplit("/", 1)[-1]
        path.write_bytes(body)
        yield path
