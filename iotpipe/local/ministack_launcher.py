"""Start ministack with a write-ahead log of the stream and periodic state snapshots.

Runs on the emulator's interpreter (``.venv-emulator``), not the project's: only ministack and the
standard library are imported.

ministack 1.5.33 saves its in-memory state (DynamoDB tables, CloudFormation stacks, Kinesis streams,
Lambda functions and mappings, ...) to ``STATE_DIR`` only in its shutdown hook
(``app.py``: ``lifespan.shutdown`` -> ``persistence.save_all``). A ``kill -9``, an out-of-memory kill
or a power cut loses everything since the last clean stop; S3 objects survive because ``S3_PERSIST=1``
writes each one to disk as it is put. This launcher adds two things, then runs ministack's own ``main()``:

**Stream write-ahead log.** Every record that ``PutRecord`` / ``PutRecords`` accepts is appended (as the
stream holds it: shard, sequence number, arrival time, partition key, data) to
``STATE_DIR/iotpipe-wal/<segment>.jsonl`` and flushed to the operating system *before* the answer goes
back to the producer. A write that fails turns the answer into an ``InternalFailure`` (the producer
retries; the copy already in the stream is then a duplicate the processor drops by event time), so no
acknowledged record is missing from the log. ``kill -9`` does not lose what was flushed (the kernel
holds it); a power cut can lose what the kernel had not yet written (no fsync per put).
Records appended by ministack's own fan-out (``put_record_internal``: a DynamoDB table's Kinesis
streaming destination, which this stack does not use) bypass the log.
At start, after ministack has loaded the last snapshot, every logged record that the restored stream
lacks is appended to its shard with its *original* sequence number and arrival time, so the mapping
delivers it and the processor's per-shard watermarks and event-time offsets recognise whatever it had
already applied (exactly once). The mapping's positions are indexes into a shard's record list; the
restored list plus the replayed records is the list as it was at the kill, so those positions stay right.

**Snapshots.** Every ``IOTPIPE_SNAPSHOT_S`` seconds (or nine times the last round's duration, if
longer) a daemon thread saves every service with ministack's own ``persistence.save_state``; the
shutdown hook and a round never write at once. Each file is written to a temporary name and renamed, so
a kill in the middle of a round leaves the previous file intact. A round first starts a new log
segment; once the stream's state is saved, the older segments are covered by it and deleted. The log
therefore holds about one interval of records, whatever the size of the state.

After an unclean stop the stream's event source mappings start disabled (``pause_stream_mappings``:
the tables must get the archive first); ``iotpipe rebuild``, which ``iotpipe up`` runs then, enables them.
At start the launcher writes ``STATE_DIR/iotpipe-recovery.json``: what the log held, what it restored and
what could not be put back (records of a stream the snapshot does not have), with their arrival times:
``iotpipe status`` shows it as the crash window.
"""

from __future__ import annotations

import contextlib
import copy
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import asdict, dataclass, field
from types import ModuleType
from typing import Any

logger = logging.getLogger("iotpipe.snapshot")
RETRIES = 3  # immediate retries of a round in which some service changed while being copied
MARKER = "iotpipe-snapshot.json"  # in STATE_DIR: when the last round finished, how long it took
RECOVERY = "iotpipe-recovery.json"  # in STATE_DIR: what the last start found in the log and restored
WAL_DIR = "iotpipe-wal"  # in STATE_DIR: the stream's write-ahead log, one file per snapshot interval
# One writer at a time: ministack's shutdown save and a round of this thread would otherwise write the
# same ``<service>.json.tmp`` at once and could rename a mixture of both into place.
_SAVE_LOCK = threading.Lock()
_PAUSED_AT_RESTORE: list[str] = []  # UUIDs of the stream mappings disabled in the restored snapshot
MAX_DUTY_FACTOR = 9.0  # wait at least 9x the last round's duration: snapshots take <= 10 % of the time


# ── Write-ahead log ────────────────────────────────────────────────────────────────────────────────────

class StreamLog:
    """Append-only segments of accepted stream records; a snapshot of the stream retires older ones."""

    def __init__(self, folder: str) -> None:
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        self._lock = threading.Lock()
        existing = self.segments()
        self._number = (existing[-1][0] + 1) if existing else 1
        self._file = open(self._path(self._number), "a", encoding="utf-8")  # noqa: SIM115 - lives long

    def _path(self, number: int) -> str:
        return os.path.join(self.folder, f"{number:010d}.jsonl")

    def segments(self) -> list[tuple[int, str]]:
        """(number, path) of every segment on disk, oldest first."""
        out = []
        for name in os.listdir(self.folder):
            stem, _, ext = name.partition(".")
            if ext == "jsonl" and stem.isdigit():
                out.append((int(stem), os.path.join(self.folder, name)))
        return sorted(out)

    def append(self, lines: Iterable[str]) -> None:
        """Write and flush to the OS; raises OSError (the caller must then not acknowledge)."""
        text = "".join(line + "\n" for line in lines)
        with self._lock:
            self._file.write(text)
            self._file.flush()

    def rotate(self) -> int:
        """Start a new segment; returns the number of the last one closed (everything up to it is older)."""
        with self._lock:
            closed = self._number
            self._file.close()
            self._number += 1
            self._file = open(self._path(self._number), "a", encoding="utf-8")  # noqa: SIM115
            return closed

    def retire(self, up_to: int) -> None:
        """Delete segments ``<= up_to``: a saved snapshot of the stream holds their records."""
        for number, path in self.segments():
            if number <= up_to:
                with contextlib.suppress(OSError):
                    os.remove(path)


def wal_lines(arn: str, results: Iterable[tuple[str, dict[str, Any]]]) -> list[str]:
    """One JSON line per accepted record: stream ARN, shard, and the record as the shard holds it."""
    return [json.dumps({"arn": arn, "shard": shard, "record": record}, separators=(",", ":"))
            for shard, record in results]


def read_entries(paths: Iterable[str]) -> Iterator[dict[str, Any]]:
    """Logged entries in order; a torn last line (killed mid-write) is skipped."""
    for path in paths:
        with open(path, encoding="utf-8") as f:
            for line in f:
                with contextlib.suppress(ValueError):
                    entry = json.loads(line)
                    if isinstance(entry, dict) and "record" in entry:
                        yield entry


@dataclass
class ReplayReport:
    logged: int = 0  # records in the log
    in_snapshot: int = 0  # the restored stream held them already
    restored: int = 0  # appended to their shard again
    expired: int = 0  # older than the stream's retention: the stream would have dropped them anyway
    unplaceable: int = 0  # their stream or shard is not in the restored state: lost
    unplaceable_first_at: float | None = None  # arrival times of those (the crash window)
    unplaceable_last_at: float | None = None
    streams: list[str] = field(default_factory=list)


def replay(streams: Mapping[str, dict[str, Any]], entries: Iterable[dict[str, Any]],
           now: float) -> ReplayReport:
    """Append to each shard of ``streams`` (by ARN) the logged records it lacks, in logged order.

    Appending (never inserting) keeps the index of every record the restored shard had, which is what
    ministack's mapping positions are.
    """
    report = ReplayReport()
    present: dict[tuple[str, str], set[str]] = {}
    for entry in entries:
        report.logged += 1
        arn, shard_id, record = entry.get("arn", ""), entry.get("shard", ""), entry["record"]
        stream = streams.get(arn)
        shard = (stream or {}).get("shards", {}).get(shard_id)
        arrival = float(record.get("ApproximateArrivalTimestamp") or 0.0)
        if stream is None or shard is None:
            report.unplaceable += 1
            report.unplaceable_first_at = min(arrival, report.unplaceable_first_at or arrival)
            report.unplaceable_last_at = max(arrival, report.unplaceable_last_at or arrival)
            continue
        seen = present.get((arn, shard_id))
        if seen is None:
            seen = present[(arn, shard_id)] = {r["SequenceNumber"] for r in shard["records"]}
        if record["SequenceNumber"] in seen:
            report.in_snapshot += 1
        elif arrival < now - float(stream.get("RetentionPeriodHours", 24)) * 3600:
            report.expired += 1
        else:
            shard["records"].append(record)
            seen.add(record["SequenceNumber"])
            report.restored += 1
            if arn not in report.streams:
                report.streams.append(arn)
    return report


def _accepted(request: dict[str, Any], response: tuple[Any, ...], batch: bool) -> list[tuple[str, dict]]:
    """(shard, record as ministack stored it) of each record a successful put accepted."""
    status, _headers, body = response
    if status != 200:
        return []
    answer = json.loads(body)
    sent = request.get("Records", []) if batch else [request]
    results = answer.get("Records", []) if batch else [answer]
    now = round(time.time(), 3)
    out = []
    for rec, res in zip(sent, results, strict=False):
        if res.get("SequenceNumber"):
            out.append((res["ShardId"], {
                "SequenceNumber": res["SequenceNumber"], "ApproximateArrivalTimestamp": now,
                "Data": rec.get("Data", ""), "PartitionKey": rec.get("PartitionKey", "")}))
    return out


def _arrivals(stream: dict[str, Any], accepted: list[tuple[str, dict]]) -> None:
    """Take the arrival time the shard itself recorded (the tail of each shard holds the new records)."""
    for shard_id, record in accepted:
        for stored in reversed(stream["shards"][shard_id]["records"][-len(accepted) - 1:]):
            if stored["SequenceNumber"] == record["SequenceNumber"]:
                record["ApproximateArrivalTimestamp"] = stored["ApproximateArrivalTimestamp"]
                break


def install_wal(kinesis: Any, log: StreamLog) -> None:  # ministack.services.kinesis, patched in place
    """Log every record ``PutRecord``/``PutRecords`` accepts before the answer leaves."""
    from ministack.core.responses import error_response_json

    def logged(original: Callable[[dict], tuple], batch: bool) -> Callable[[dict], tuple]:
        def put(data: dict) -> tuple:
            response = original(data)
            accepted = _accepted(data, response, batch)
            if not accepted:
                return response
            _name, stream = kinesis._resolve_stream(data)
            if stream is None:  # deleted between the put and now: nothing to restore it into
                return response
            _arrivals(stream, accepted)
            arn = stream["StreamARN"]
            try:
                log.append(wal_lines(arn, accepted))
            except OSError as exc:  # not logged: do not acknowledge (the producer retries)
                logger.error("stream write-ahead log: %s", exc)
                return error_response_json("InternalFailure", f"write-ahead log unavailable: {exc}", 500)
            return response
        return put

    kinesis._put_record = logged(kinesis._put_record, batch=False)
    kinesis._put_records = logged(kinesis._put_records, batch=True)


def pause_stream_mappings_in(esms: Any) -> list[str]:
    """Disable every Kinesis event source mapping in a snapshot's ``esms`` (before ministack restores
    them: its poller never sees them enabled); returns their UUIDs."""
    records = getattr(esms, "_data", esms)
    paused = []
    for esm in (records.values() if isinstance(records, dict) else ()):
        if isinstance(esm, dict) and ":kinesis:" in str(esm.get("EventSourceArn", "")) \
                and esm.get("Enabled", True):
            esm["Enabled"], esm["State"] = False, "Disabled"
            paused.append(str(esm.get("UUID", "")))
    return paused


def pause_stream_mappings(lambda_svc: ModuleType) -> list[str]:
    """Disable every Kinesis event source mapping restored from the snapshot; returns their UUIDs.

    After an unclean stop the tables are as old as their snapshot while the archive has everything the
    processor finished; a live batch that wrote a window before ``iotpipe rebuild`` applied the archive
    would advance the window's watermark past archived readings, which the rebuild would then drop as
    redeliveries. ``iotpipe rebuild`` (run by ``iotpipe up`` after an unclean stop) enables every mapping
    of the stream when it is done.
    """
    paused = []
    for _key, esm in lambda_svc._esms.all_items():
        if ":kinesis:" in str(esm.get("EventSourceArn", "")) and esm.get("Enabled", True):
            esm["Enabled"], esm["State"] = False, "Disabled"
            paused.append(str(esm.get("UUID", "")))
    return paused


def replay_into_kinesis(kinesis: ModuleType, log: StreamLog, state_dir: str) -> ReplayReport:
    from ministack.services import lambda_svc

    streams = {s["StreamARN"]: s for _k, s in kinesis._streams.all_items() if s.get("StreamARN")}
    report = replay(streams, read_entries(path for _n, path in log.segments()), time.time())
    previous = _read_json(os.path.join(state_dir, MARKER))
    unclean = bool(previous) and not previous.get("clean")
    # Paused while they were restored (``main``); this catches any enabled since (none expected).
    paused = sorted(set(_PAUSED_AT_RESTORE) | set(pause_stream_mappings(lambda_svc) if unclean else []))
    if report.restored:
        kinesis.esm_wake.set()
    _write_json(os.path.join(state_dir, RECOVERY), {
        "started_at": time.time(),
        "previous_snapshot_at": previous.get("at"),
        "previous_stop_clean": not unclean,
        "mappings_paused": paused,
        "wal": True,
        **asdict(report),
    })
    logger.warning("stream write-ahead log: %d logged, %d in the snapshot, %d restored, %d expired, "
                   "%d without their stream", report.logged, report.in_snapshot, report.restored,
                   report.expired, report.unplaceable)
    return report


# ── Snapshots ──────────────────────────────────────────────────────────────────────────────────────────

def _stream_copy(stream: dict[str, Any]) -> dict[str, Any]:
    """A stream as ``copy.deepcopy`` would copy it, except that each shard's record list is copied
    shallowly: ministack never changes a record once appended (expiry replaces the list), and the deep
    copy of a day of records was most of a round's time, spent holding the GIL."""
    out = {k: copy.deepcopy(v) for k, v in stream.items() if k != "shards"}
    out["shards"] = {
        shard_id: {**{k: copy.deepcopy(v) for k, v in shard.items() if k != "records"},
                   "records": list(shard["records"])}
        for shard_id, shard in stream["shards"].items()}
    return out


def fast_kinesis_state(kinesis: ModuleType) -> dict[str, Any]:
    """What ``kinesis.get_state()`` returns (same types, same JSON), without deep-copying the records."""
    streams = type(kinesis._streams)()
    streams._data = {key: _stream_copy(stream) for key, stream in list(kinesis._streams._data.items())}
    return {"streams": streams,
            "shard_iterators": copy.deepcopy(kinesis._shard_iterators),
            "consumers": copy.deepcopy(kinesis._consumers),
            "resource_policies": copy.deepcopy(kinesis._resource_policies)}


def _snapshot_once(log: StreamLog | None, took: dict[str, float] | None = None) -> int:
    """Save every loaded service; returns how many could not be saved this time (``took``: seconds per
    service, for the marker: which state makes a round slow)."""
    from ministack import app
    from ministack.core import persistence

    failed = 0
    took = {} if took is None else took
    with _SAVE_LOCK:
        closed = log.rotate() if log is not None else None
        services = app._build_persistence_save_dict()
        if "kinesis" in services:
            from ministack.services import kinesis

            services["kinesis"] = lambda: fast_kinesis_state(kinesis)
        for name, get_state in services.items():
            began = time.monotonic()
            ok = _save_one(persistence, name, get_state)
            took[name] = round(time.monotonic() - began, 3)
            failed += not ok
            if name == "kinesis" and ok and closed is not None and log is not None:
                log.retire(closed)
    return failed


def _save_one(persistence: ModuleType, name: str, get_state: Callable[[], Any]) -> bool:
    """False if the state kept changing while it was copied or could not be written (old file stays)."""
    path = os.path.join(persistence.STATE_DIR, f"{name}.json")
    for _attempt in range(RETRIES):
        try:
            state = get_state()
        except RuntimeError:  # "dictionary changed size during iteration": copy again
            continue
        if state is None:
            return True
        before = time.time()
        persistence.save_state(name, state)  # logs and swallows its own errors
        with contextlib.suppress(OSError):
            return os.path.getmtime(path) >= before - 1.0
        return False
    return False


def _loop(interval_s: float, log: StreamLog | None) -> None:
    duration_s = 0.0
    while True:
        # A round copies every service under the GIL (mostly the stream's 24 h of records), stalling
        # ministack's request threads meanwhile: keep that under a tenth of the time.
        time.sleep(max(interval_s, MAX_DUTY_FACTOR * duration_s))
        started = time.monotonic()
        took: dict[str, float] = {}
        try:
            failed = _snapshot_once(log, took)
        except Exception:  # never take the emulator down for a snapshot
            logger.exception("periodic state snapshot failed")
            continue
        duration_s = time.monotonic() - started
        if failed:
            logger.warning("periodic state snapshot: %d service(s) kept their previous file", failed)
        slowest = dict(sorted(took.items(), key=lambda kv: -kv[1])[:5])
        _mark(duration_s, failed, slowest=slowest)


def _read_json(path: str) -> dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _write_json(path: str, data: dict[str, Any]) -> None:
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(data, f)
        os.replace(path + ".tmp", path)


def _mark(duration_s: float, failed: int, clean: bool = False,
          slowest: dict[str, float] | None = None) -> None:
    """Record the round for the supervisor (``iotpipe up`` says how old the state a crash keeps is)."""
    from ministack.core import persistence

    _write_json(os.path.join(persistence.STATE_DIR, MARKER),
                {"at": time.time(), "duration_s": round(duration_s, 3), "failed": failed, "clean": clean,
                 "slowest_services_s": slowest or {}})


def main() -> int:
    from ministack import app
    from ministack.core import persistence
    from ministack.services import kinesis

    interval_s = float(os.environ.get("IOTPIPE_SNAPSHOT_S", "0") or 0)
    log: StreamLog | None = None
    if persistence.PERSIST_STATE and interval_s > 0:
        log = StreamLog(os.path.join(persistence.STATE_DIR, WAL_DIR))
        install_wal(kinesis, log)
        original_load = app._load_persisted_state  # called by name in the lifespan startup

        def load_then_replay() -> None:
            original_load()
            assert log is not None
            replay_into_kinesis(kinesis, log, persistence.STATE_DIR)

        app._load_persisted_state = load_then_replay
        previous = _read_json(os.path.join(persistence.STATE_DIR, MARKER))
        if previous and not previous.get("clean"):
            # After an unclean stop the mappings must not run before `iotpipe rebuild`: a batch the
            # poller ran between the restore and a later pause wrote windows whose watermarks then made
            # the rebuild drop archived readings (seen at 30 min: 61 readings).
            from ministack.services import lambda_svc

            original_lambda_load = lambda_svc.load_persisted_state

            def load_paused(data: Any) -> Any:
                if isinstance(data, dict):
                    _PAUSED_AT_RESTORE.extend(pause_stream_mappings_in(data.get("esms", {})))
                return original_lambda_load(data)

            lambda_svc.load_persisted_state = load_paused

    original_save_all = app.save_all  # what the shutdown hook calls (imported into app by name)

    def save_all_locked(services: dict[str, Callable[[], Any]]) -> None:
        with _SAVE_LOCK:
            closed = log.rotate() if log is not None else None
            started, began = time.monotonic(), time.time()
            original_save_all(services)  # logs and swallows each service's errors
            stream_file = os.path.join(persistence.STATE_DIR, "kinesis.json")
            with contextlib.suppress(OSError):
                if log is not None and closed is not None and os.path.getmtime(stream_file) >= began - 1.0:
                    log.retire(closed)  # the clean stop saved the stream: the log is covered
            _mark(time.monotonic() - started, 0, clean=True)

    app.save_all = save_all_locked
    if log is not None:
        threading.Thread(target=_loop, args=(interval_s, log), daemon=True, name="iotpipe-snapshot").start()
    return app.main() or 0


if __name__ == "__main__":
    sys.exit(main())
