"""Start ministack with periodic state snapshots (runs on the emulator's interpreter, not the project's).

ministack 1.5.33 saves its in-memory state (DynamoDB tables, CloudFormation stacks, Kinesis streams,
Lambda functions and mappings, ...) to ``STATE_DIR`` only in its shutdown hook
(``app.py``: ``lifespan.shutdown`` -> ``persistence.save_all``). A ``kill -9``, an out-of-memory kill
or a power cut therefore lost everything since the last clean stop (issue 11, finding 2); S3 objects
survive because ``S3_PERSIST=1`` writes each one to disk as it is put.

This launcher saves the same services with the same ``persistence.save_state`` as that hook, every
``IOTPIPE_SNAPSHOT_S`` seconds (or nine times the last round's duration, if longer), from a daemon
thread, then runs ministack's own ``main()``; the hook and a round never write at once. Each
service file is written to a temporary name and renamed (``persistence.save_state``), so a kill in the
middle of a snapshot leaves the previous file intact. A snapshot races the request threads: a service
whose state changes size while it is copied fails that round (logged by ministack, previous file kept)
and is retried at once, then at the next round. What a crash can still lose is at most one interval of
state; what was processed in it is in the S3 archive, and ``iotpipe rebuild`` re-derives it.

Only ministack and the standard library are imported here: this file runs in ``.venv-emulator``.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import threading
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

logger = logging.getLogger("iotpipe.snapshot")
RETRIES = 3  # immediate retries of a round in which some service changed while being copied
MARKER = "iotpipe-snapshot.json"  # in STATE_DIR: when the last round finished, how long it took
# One writer at a time: ministack's shutdown save and a round of this thread would otherwise write the
# same ``<service>.json.tmp`` at once and could rename a mixture of both into place.
_SAVE_LOCK = threading.Lock()
MAX_DUTY_FACTOR = 9.0  # wait at least 9x the last round's duration: snapshots take <= 10 % of the time


def _snapshot_once() -> int:
    """Save every loaded service; returns how many could not be saved this time."""
    from ministack import app
    from ministack.core import persistence

    failed = 0
    with _SAVE_LOCK:
        services = app._build_persistence_save_dict().items()
        for name, get_state in services:
            failed += _save_one(persistence, name, get_state)
    return failed


def _save_one(persistence: ModuleType, name: str, get_state: Callable[[], Any]) -> int:
    """1 if the service's state kept changing while it was copied (its previous file stays)."""
    for _attempt in range(RETRIES):
        try:
            state = get_state()
        except RuntimeError:  # "dictionary changed size during iteration": copy again
            continue
        if state is not None:
            persistence.save_state(name, state)
        return 0
    return 1


def _loop(interval_s: float) -> None:
    duration_s = 0.0
    while True:
        # A round copies every service under the GIL (mostly the stream's 24 h of records), stalling
        # ministack's request threads meanwhile: keep that under a tenth of the time.
        time.sleep(max(interval_s, MAX_DUTY_FACTOR * duration_s))
        started = time.monotonic()
        try:
            failed = _snapshot_once()
        except Exception:  # never take the emulator down for a snapshot
            logger.exception("periodic state snapshot failed")
            continue
        duration_s = time.monotonic() - started
        if failed:
            logger.warning("periodic state snapshot: %d service(s) kept their previous file", failed)
        _mark(duration_s, failed)


def _mark(duration_s: float, failed: int) -> None:
    """Record the round for the supervisor (``iotpipe up`` says how old the state a crash keeps is)."""
    from ministack.core import persistence

    path = os.path.join(persistence.STATE_DIR, MARKER)
    with contextlib.suppress(OSError):
        with open(path + ".tmp", "w") as f:
            json.dump({"at": time.time(), "duration_s": round(duration_s, 3), "failed": failed}, f)
        os.replace(path + ".tmp", path)


def main() -> int:
    from ministack import app
    from ministack.core import persistence

    original_save_all = app.save_all  # what the shutdown hook calls (imported into app by name)

    def save_all_locked(services: dict[str, Callable[[], Any]]) -> None:
        with _SAVE_LOCK:
            original_save_all(services)

    app.save_all = save_all_locked
    interval_s = float(os.environ.get("IOTPIPE_SNAPSHOT_S", "0") or 0)
    if persistence.PERSIST_STATE and interval_s > 0:
        threading.Thread(target=_loop, args=(interval_s,), daemon=True, name="iotpipe-snapshot").start()
    return app.main() or 0


if __name__ == "__main__":
    sys.exit(main())
