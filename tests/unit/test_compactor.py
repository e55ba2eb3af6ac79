"""The archive compactor: an hour of processed JSON lines -> one Parquet file, exactly once, idempotent.

Against the in-memory archive (same ``ArchiveObjects`` port as S3) and the real DuckDB writer; the
Parquet files are read back with DuckDB as a query engine would.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest

from functions.compactor import handler as compactor_handler
from functions.compactor.columns import PROCESSED_COLUMNS
from functions.compactor.compaction import (
    LAYOUT_VERSION,
    compact_hour,
    hours_due,
    parse_hour,
)
from functions.core.jsonl_gzip import gzip_lines
from functions.core.timestamps import parse_ms
from testkit.fakes import InMemoryArchive

DT, HOUR = "2026-12-01", "10"
PART = f"compacted/dt={DT}/hour={HOUR}/part-00000.parquet"
MANIFEST = f"compacted/dt={DT}/hour={HOUR}/_manifest.json"
SITES = {"a": "site-2", "b": "site-1", "c": "site-3"}  # not in device order: the sort is by site first


def _line(device: str, epoch_ms: int, seq: str, **extra: Any) -> bytes:
    doc = {"device_id": device, "timestamp": "2026-12-01T10:00:00.000Z", "epoch_ms": epoch_ms,
           "channels": {"temperature": 21.5, "humidity": 40.0, "pressure": 1013.0}, "site": SITES[device],
           "location": "here", "shard_id": "shardId-000000000000", "sequence_number": seq,
           "status": "aggregated", **extra}
    return json.dumps(doc, sort_keys=True).encode()


def _put(archive: InMemoryArchive, name: str, lines: list[bytes], hour: str = HOUR) -> None:
    archive.put_jsonl_gz(f"processed/dt={DT}/hour={hour}/{name}.jsonl.gz", lines)


def _rows(archive: InMemoryArchive, tmp_path: Path, key: str = PART) -> list[tuple[Any, ...]]:
    path = tmp_path / "read.parquet"
    path.write_bytes(archive.objects[key])
    return duckdb.sql(f"SELECT * FROM read_parquet('{path}')").fetchall()  # noqa: S608 - a tmp path


def _columns(archive: InMemoryArchive, tmp_path: Path) -> list[str]:
    path = tmp_path / "cols.parquet"
    path.write_bytes(archive.objects[PART])
    return [d[0] for d in duckdb.sql(f"SELECT * FROM read_parquet('{path}')").description]  # noqa: S608


def test_an_hour_becomes_one_sorted_parquet_file_with_every_line(tmp_path: Path) -> None:
    # GIVEN two batches of one hour, devices interleaved, one packed element, no line with a verdict
    archive = InMemoryArchive()
    _put(archive, "s-1-3", [_line("b", 3, "1"), _line("a", 2, "2"), _line("a", 1, "3", index=0)])
    _put(archive, "s-4-5", [_line("a", 5, "4"), _line("c", 4, "5", ground_truth="spike")])
    # WHEN the hour is compacted
    result = compact_hour(archive, DT, HOUR)
    # THEN one file holds the five readings, sorted by site, device, time, with the table's columns
    assert (result.action, result.inputs, result.rows_in, result.rows_out) == ("compacted", 2, 5, 5)
    assert _columns(archive, tmp_path) == [name for name, _, _ in PROCESSED_COLUMNS]
    rows = _rows(archive, tmp_path)
    assert [(r[0], r[2]) for r in rows] == [("b", 3), ("a", 1), ("a", 2), ("a", 5), ("c", 4)]
    by_seq = {r[7]: r for r in rows}
    assert by_seq["3"][13] == 0
    assert by_seq["2"][13] is None
    assert by_seq["5"][12] == "spike"
    assert by_seq["4"][9] is None
    assert by_seq["4"][3] == {"temperature": 21.5, "humidity": 40.0, "pressure": 1013.0}
    # AND the manifest, written after the part, lists the inputs it was built from
    manifest = json.loads(archive.objects[MANIFEST])
    assert manifest["layout"] == LAYOUT_VERSION
    assert len(manifest["inputs"]) == 2
    assert manifest["rows_out"] == 5


def test_a_redelivered_copy_is_kept_once_preferring_the_one_with_the_verdict(tmp_path: Path) -> None:
    # GIVEN a batch archived twice under different keys (redelivered with other boundaries): the first
    # delivery carries the detector's verdict, the redelivery (readings already applied) does not
    archive = InMemoryArchive()
    _put(archive, "s-1-2", [_line("a", 1, "1", anomaly=True, anomaly_score=0.9, severity="high"),
                            _line("a", 2, "2", anomaly=False, anomaly_score=0.1, severity="none")])
    _put(archive, "s-2-3", [_line("a", 2, "2"), _line("a", 3, "3")])
    # and two elements of one packed record share a sequence number: distinct readings
    _put(archive, "s-4-4", [_line("b", 4, "4", index=0), _line("b", 5, "4", index=1)])
    # WHEN compacted
    result = compact_hour(archive, DT, HOUR)
    # THEN each reading is there once, the copy with the verdict wins, packed elements stay apart
    assert (result.rows_in, result.rows_out) == (6, 5)
    rows = _rows(archive, tmp_path)
    assert [(r[0], r[2], r[9]) for r in rows] == [("b", 4, None), ("b", 5, None), ("a", 1, True),
                                                ("a", 2, False), ("a", 3, None)]


def test_a_rerun_is_a_no_op_and_a_late_batch_rebuilds_the_hour(tmp_path: Path) -> None:
    archive = InMemoryArchive()
    _put(archive, "s-1-1", [_line("a", 1, "1")])
    first = compact_hour(archive, DT, HOUR)
    part_bytes, puts = archive.objects[PART], archive.puts
    # WHEN run again with nothing new: nothing is written
    again = compact_hour(archive, DT, HOUR)
    assert again.action == "unchanged"
    assert archive.puts == puts
    # WHEN forced: the same inputs give the same bytes (a reader never sees a different answer)
    forced = compact_hour(archive, DT, HOUR, force=True)
    assert forced.action == "compacted"
    assert archive.objects[PART] == part_bytes
    # WHEN a batch lands late in the hour: the next run folds it in, under the same single key
    _put(archive, "s-2-2", [_line("a", 2, "2")])
    late = compact_hour(archive, DT, HOUR)
    assert (first.rows_out, late.action, late.rows_out) == (1, "compacted", 2)
    assert [k for k in archive.objects if k.startswith("compacted/")] == [PART, MANIFEST]
    assert len(_rows(archive, tmp_path)) == 2


def test_an_unreadable_manifest_rebuilds_and_an_hour_without_input_writes_nothing() -> None:
    archive = InMemoryArchive()
    assert compact_hour(archive, DT, HOUR).action == "empty"
    assert archive.objects == {}
    _put(archive, "s-1-1", [_line("a", 1, "1")])
    compact_hour(archive, DT, HOUR)
    archive.objects[MANIFEST] = b"{not json"
    assert compact_hour(archive, DT, HOUR).action == "compacted"
    # quarantine objects are not inputs: their raw bytes stay in the JSON archive only
    archive.objects[f"quarantine/dt={DT}/hour=11/q.jsonl.gz"] = gzip_lines([b'{"reason": "x"}'])
    assert compact_hour(archive, DT, "11").action == "empty"


def test_a_storage_failure_writes_no_manifest_so_the_next_run_retries() -> None:
    archive = InMemoryArchive()
    _put(archive, "s-1-1", [_line("a", 1, "1")])
    archive.fail_next = 1  # the part's put fails
    with pytest.raises(Exception, match="fake S3 failure"):
        compact_hour(archive, DT, HOUR)
    assert MANIFEST not in archive.objects
    assert compact_hour(archive, DT, HOUR).action == "compacted"


def test_hours_due_are_the_ended_and_settled_hours_of_the_lookback() -> None:
    now = parse_ms("2026-12-01T10:45:00.000Z")
    assert hours_due(now, 3, 30) == [("2026-12-01", "07"), ("2026-12-01", "08"), ("2026-12-01", "09")]
    # 10:20 with 30 minutes' settling: hour 09 ended at 10:00, still settling -> the newest is 08
    assert hours_due(parse_ms("2026-12-01T10:20:00.000Z"), 1, 30) == [("2026-12-01", "08")]
    # across midnight
    midnight = hours_due(parse_ms("2026-12-02T00:40:00.000Z"), 2, 0)
    assert midnight == [("2026-12-01", "22"), ("2026-12-01", "23")]


@pytest.mark.parametrize("text", ["2026-12-01", "2026-12-01T24", "2026-12-01T1", "x026-12-01T10", "",
                                  "2026-13-45T10", "2026-02-29T00"])
def test_a_malformed_hour_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match="YYYY-MM-DDTHH"):
        parse_hour(text)


def test_the_handler_answers_a_bad_request_without_touching_the_archive() -> None:
    assert "error" in compactor_handler.handler({"hours": "2026-12-01T10"}, None)
    assert "error" in compactor_handler.handler({"hours": ["tomorrow"]}, None)
    hours, force = compactor_handler.plan({"hours": ["2026-12-01T10", "2026-12-01 10"], "force": True}, 0)
    assert (hours, force) == ([("2026-12-01", "10")], True)
