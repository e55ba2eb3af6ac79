"""The embedded emulator's stream write-ahead log (iotpipe/local/ministack_launcher.py) and the crash window
``iotpipe status`` shows: pure parts, no emulator (the kill -9 test is in tests/integration)."""

from __future__ import annotations

import types
from pathlib import Path
from typing import Any

from iotpipe.local.ministack_launcher import (
    StreamLog,
    pause_stream_mappings,
    pause_stream_mappings_in,
    read_entries,
    replay,
    wal_lines,
)
from iotpipe.ops.status import describe_crash_window

ARN = "arn:aws:kinesis:us-east-1:000000000000:stream/s"
NOW = 1_800_000_000.0


def _record(seq: int, at: float = NOW - 10) -> dict[str, Any]:
    return {"SequenceNumber": f"{seq:030d}", "ApproximateArrivalTimestamp": at, "Data": "e30=",
            "PartitionKey": "dev-1"}


def _stream(*seqs: int) -> dict[str, Any]:
    return {"StreamARN": ARN, "RetentionPeriodHours": 24,
            "shards": {"shardId-000000000000": {"records": [_record(s) for s in seqs]},
                       "shardId-000000000001": {"records": []}}}


def _entries(*seqs: int, shard: str = "shardId-000000000000", arn: str = ARN,
             at: float = NOW - 10) -> list[dict[str, Any]]:
    return [{"arn": arn, "shard": shard, "record": _record(s, at)} for s in seqs]


def test_replay_appends_only_what_the_snapshot_lacks_in_logged_order() -> None:
    # GIVEN a snapshot holding records 1-3 and a log holding 2-6
    stream = _stream(1, 2, 3)
    # WHEN the log is replayed into it
    report = replay({ARN: stream}, _entries(2, 3, 4, 5, 6), NOW)
    # THEN 4-6 are appended after 3 (indexes of 1-3 unchanged: the mapping's positions stay right)
    seqs = [int(r["SequenceNumber"]) for r in stream["shards"]["shardId-000000000000"]["records"]]
    assert seqs == [1, 2, 3, 4, 5, 6]
    assert (report.logged, report.in_snapshot, report.restored, report.unplaceable) == (5, 2, 3, 0)
    # AND a second replay of the same log (a second crash before the next snapshot) adds nothing
    again = replay({ARN: stream}, _entries(2, 3, 4, 5, 6), NOW)
    assert (again.restored, again.in_snapshot) == (0, 5)


def test_records_without_their_stream_are_the_crash_window_and_expired_ones_are_not() -> None:
    stream = _stream()
    entries = (_entries(7, arn="arn:aws:kinesis:us-east-1:000000000000:stream/gone", at=NOW - 30)
               + _entries(8, shard="shardId-000000000009", at=NOW - 20)
               + _entries(9, at=NOW - 25 * 3600))  # past the stream's 24 h retention
    report = replay({ARN: stream}, entries, NOW)
    assert (report.unplaceable, report.expired, report.restored) == (2, 1, 0)
    assert (report.unplaceable_first_at, report.unplaceable_last_at) == (NOW - 30, NOW - 20)


def test_the_log_rotates_and_a_saved_snapshot_retires_older_segments(tmp_path: Path) -> None:
    # GIVEN a log with records before and after a snapshot round started
    log = StreamLog(str(tmp_path / "wal"))
    log.append(wal_lines(ARN, [("shardId-000000000000", _record(1))]))
    closed = log.rotate()
    log.append(wal_lines(ARN, [("shardId-000000000000", _record(2))]))
    # WHEN the round saved the stream
    log.retire(closed)
    # THEN only what came after the round's start is left, and a torn last line is skipped
    paths = [p for _n, p in log.segments()]
    with open(paths[-1], "a", encoding="utf-8") as f:
        f.write('{"arn": "x", "shard"')
    assert [int(e["record"]["SequenceNumber"]) for e in read_entries(paths)] == [2]
    # AND a log opened again (after a restart) continues with a new segment, keeping the old ones
    again = StreamLog(str(tmp_path / "wal"))
    assert [n for n, _p in again.segments()] == [closed + 1, closed + 2]


def test_an_unclean_restart_pauses_only_the_stream_mappings_that_run() -> None:
    class Scoped:
        def __init__(self, items: dict[str, dict[str, Any]]) -> None:
            self.items = items

        def all_items(self) -> list[tuple[tuple[str, str, str], dict[str, Any]]]:
            return [(("0", "us-east-1", k), v) for k, v in self.items.items()]

    esms = {"a": {"UUID": "a", "EventSourceArn": ARN, "Enabled": True, "State": "Enabled"},
            "b": {"UUID": "b", "EventSourceArn": ARN, "Enabled": False, "State": "Disabled"},
            "c": {"UUID": "c", "EventSourceArn": "arn:aws:sqs:us-east-1:0:q", "Enabled": True}}
    module = types.SimpleNamespace(_esms=Scoped(esms))
    assert pause_stream_mappings(module) == ["a"]  # type: ignore[arg-type]
    assert (esms["a"]["Enabled"], esms["a"]["State"]) == (False, "Disabled")
    assert esms["c"]["Enabled"] is True


def test_status_says_which_acknowledged_readings_may_be_missing() -> None:
    clean = {"started_at": NOW, "previous_snapshot_at": NOW - 5, "previous_stop_clean": True, "logged": 0}
    assert describe_crash_window(clean).startswith("none missing (started")
    restored = {"started_at": NOW, "previous_snapshot_at": NOW - 20, "previous_stop_clean": False,
                "logged": 40, "restored": 30, "in_snapshot": 10, "unplaceable": 0, "mappings_paused": ["a"]}
    text = describe_crash_window(restored)
    assert text.startswith("none missing after the unclean stop")
    assert "30 acknowledged records restored" in text
    assert "mapping(s) started paused" in text
    lost = {**restored, "unplaceable": 3, "unplaceable_first_at": NOW - 9, "unplaceable_last_at": NOW - 2}
    assert describe_crash_window(lost).startswith(
        "acknowledged readings that arrived 2027-01-15 07:59:51 UTC .. 2027-01-15 07:59:58 UTC may be "
        "missing: 3 records")


def test_a_snapshot_s_stream_mappings_are_disabled_before_ministack_restores_them() -> None:
    scoped = types.SimpleNamespace(_data={
        ("0", "us-east-1", "a"): {"UUID": "a", "EventSourceArn": ARN, "Enabled": True, "State": "Enabled"},
        ("0", "us-east-1", "c"): {"UUID": "c", "EventSourceArn": "arn:aws:sqs:us-east-1:0:q",
                                  "Enabled": True}})
    assert pause_stream_mappings_in(scoped) == ["a"]
    assert scoped._data[("0", "us-east-1", "a")]["Enabled"] is False
    assert scoped._data[("0", "us-east-1", "c")]["Enabled"] is True
