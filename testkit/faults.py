"""Test-only fault injection for the processor's aggregate writes (``testkit.fault_handler``, which
only test stacks run: ``TestHooks=faults``). Off by default; never in a production bundle.

Enabled by the environment variable ``PROCESSOR_FAULTS`` (read once per container, like settings), e.g.

    PROCESSOR_FAULTS="crash_after_writes=3;once_key=4f1c9a;device_prefix=fa1b2c-"
    PROCESSOR_FAULTS="throttle_writes=5;once_key=77d0e2"

``key=value`` pairs separated by ``;``:

- ``crash_after_writes=N``: the invocation commits N aggregate writes, then the next write raises
  ``InjectedFault`` (and so does every later write of that invocation): a real partial write. The handler
  turns it into an ordinary function error, so the event source mapping retries the batch. While this
  fault is armed the writes of an invocation are serialised, so exactly N are committed.
- ``throttle_writes=N``: the first N aggregate writes of the invocation raise botocore ``ClientError``
  ``ProvisionedThroughputExceededException`` before reaching the table, exercising the adapter's error
  translation and the bounded read-merge-write retry (``exactly_once.apply_group``). N below that loop's
  attempts (6) is always absorbed inside the invocation.
- ``once_key=TOKEN`` ([A-Za-z0-9._-]): fire in one invocation only, across worker processes and
  restarts. The invocation that is about to inject first creates the marker file
  ``<marker_dir>/<TOKEN>`` with ``O_CREAT | O_EXCL``; whoever finds it existing injects nothing. Each
  injected fault appends one JSON line to the marker, so a test on the same host can see what fired.
  Without ``once_key`` the faults fire in every invocation (a crash then blocks the shard for good).
- ``device_prefix=PREFIX``: only writes of windows whose device id starts with PREFIX count and fail
  (isolates a test inside a stack shared with other tests).
- ``marker_dir=PATH``: where markers live; default ``<tempdir>/iotpipe-faults`` (``/tmp`` on Lambda).

Why a file and not in-memory state or S3: ministack runs the function in a warm worker subprocess, but
terminates that worker after any failed invocation, so the retry always runs in a fresh process; a file
on the host's disk survives that, its exclusive creation is atomic, and the test (same host) can read
it. (On AWS /tmp belongs to one execution environment, so "once" would mean once per environment.)

Inert without the variable: nothing is wrapped (``get_plan()`` is None and the fault handler builds
exactly the production handler's adapters), and the variable is ignored unless ``AWS_ENDPOINT_URL``
points at an emulator.
"""

from __future__ import annotations

import json
import logging
import os
import re
import tempfile
import threading
import time
from dataclasses import asdict, dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

logger = logging.getLogger(__name__)

ENV_VAR = "PROCESSOR_FAULTS"
THROTTLE_CODE = "ProvisionedThroughputExceededException"
_TOKEN = re.compile(r"[A-Za-z0-9._-]{1,128}")
_KEYS = ("crash_after_writes", "throttle_writes", "once_key", "device_prefix", "marker_dir")


class FaultSpecError(ValueError):
    """``PROCESSOR_FAULTS`` is malformed (fails the cold start, like a bad setting)."""


class InjectedFault(BaseException):
    """The injected crash. A BaseException on purpose, like a killed process: the processor's
    ``except Exception`` handlers (which turn storage errors into ``batchItemFailures``) must not absorb
    it; it ends the invocation."""


def default_marker_dir() -> str:
    return os.path.join(tempfile.gettempdir(), "iotpipe-faults")


@dataclass(frozen=True)
class FaultPlan:
    crash_after_writes: int | None = None
    throttle_writes: int = 0
    once_key: str | None = None
    device_prefix: str = ""
    marker_dir: str = ""

    @property
    def marker_path(self) -> Path | None:
        if self.once_key is None:
            return None
        return Path(self.marker_dir or default_marker_dir()) / self.once_key

    def describe(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if v is not None and v != ""}


def _count(key: str, raw: str) -> int:
    try:
        value = int(raw)
    except ValueError:
        raise FaultSpecError(f"{ENV_VAR}: {key} must be an integer, got {raw!r}") from None
    if value < 0:
        raise FaultSpecError(f"{ENV_VAR}: {key} must be >= 0, got {value}")
    return value


def parse(spec: str | None) -> FaultPlan | None:
    """The plan described by ``spec``; None when it is unset or blank. Raises FaultSpecError."""
    if spec is None or not spec.strip():
        return None
    values: dict[str, str] = {}
    for part in spec.split(";"):
        part = part.strip()
        if not part:
            continue
        key, sep, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not sep or key not in _KEYS:
            raise FaultSpecError(f"{ENV_VAR}: expected key=value with a key in {_KEYS}, got {part!r}")
        if key in values:
            raise FaultSpecError(f"{ENV_VAR}: {key} given twice")
        values[key] = value
    if not values:
        return None
    crash_raw = values.get("crash_after_writes")
    crash = None if crash_raw is None else _count("crash_after_writes", crash_raw)
    throttle = _count("throttle_writes", values.get("throttle_writes", "0"))
    once_key = values.get("once_key")
    if once_key is not None and not _TOKEN.fullmatch(once_key):
        raise FaultSpecError(f"{ENV_VAR}: once_key must match {_TOKEN.pattern}, got {once_key!r}")
    if crash is None and throttle == 0:
        raise FaultSpecError(f"{ENV_VAR}: no fault configured (crash_after_writes or throttle_writes)")
    return FaultPlan(crash_after_writes=crash, throttle_writes=throttle, once_key=once_key,
                     device_prefix=values.get("device_prefix", ""), marker_dir=values.get("marker_dir", ""))


@lru_cache(maxsize=1)
def get_plan() -> FaultPlan | None:
    """The container's plan, read once. None (nothing injected) unless the variable is set AND the
    function talks to an emulator (``AWS_ENDPOINT_URL``): a stray variable on AWS changes nothing."""
    plan = parse(os.environ.get(ENV_VAR))
    if plan is not None and not os.environ.get("AWS_ENDPOINT_URL"):
        logger.error("%s is set but AWS_ENDPOINT_URL is not (not an emulator): fault injection ignored",
                     ENV_VAR)
        return None
    return plan


class OnceGate:
    """Decides whether this invocation may inject: always without a marker path; otherwise only the
    invocation that creates the marker file (atomically), across processes."""

    def __init__(self, path: Path | None) -> None:
        self.path = path
        self._spent = False  # the marker existed when we looked: never fire again in this process

    def claim(self) -> bool:
        if self.path is None:
            return True
        if self._spent:
            return False
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            self._spent = True
            return False
        os.close(fd)
        return True

    def record(self, event: dict[str, Any]) -> None:
        if self.path is None:
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(json.dumps(event, sort_keys=True) + "\n")


def throttle_error(message: str) -> Exception:
    from botocore.exceptions import ClientError  # deferred: only when a fault actually fires

    return ClientError(
        {"Error": {"Code": THROTTLE_CODE, "Message": message}, "ResponseMetadata": {"HTTPStatusCode": 400}},
        "PutItem",
    )


class FaultInjectingDynamoDB:
    """Wraps the aggregates adapter's DynamoDB client; only ``put_item`` is intercepted.

    Counters are per invocation: the handler calls ``begin_invocation()`` before each batch.
    """

    def __init__(self, inner: Any, plan: FaultPlan, gate: OnceGate | None = None) -> None:
        self._inner = inner
        self.plan = plan
        self.gate = gate if gate is not None else OnceGate(plan.marker_path)
        self._lock = threading.Lock()  # counters and the once decision (writes run on 16 threads)
        self._write_lock = threading.Lock()  # serialises writes while a crash is armed
        self.begin_invocation()

    def __getattr__(self, name: str) -> Any:  # get_item, batch_get_item, ...: untouched
        return getattr(self._inner, name)

    def begin_invocation(self) -> None:
        with self._lock:
            self.committed = 0  # successful puts that count (matching device_prefix)
            self.throttled = 0
            self.crashed = False
            self._armed: bool | None = None  # None: not decided yet in this invocation

    def _armed_now(self) -> bool:  # call with self._lock held
        if self._armed is None:
            self._armed = self.gate.claim()
        return self._armed

    def _inject(self, kind: str, device_id: str) -> None:  # call with self._lock held
        event = {"fault": kind, "device_id": device_id, "committed_writes": self.committed,
                 "throttled_writes": self.throttled, "pid": os.getpid(), "at": time.time()}
        self.gate.record(event)
        logger.warning("injected fault %s", kind, extra={"fault": event})

    def _crash(self) -> InjectedFault:
        # Same text for the write that crashed and the later ones (the handler may surface either).
        return InjectedFault(f"crash injected after {self.committed} committed aggregate writes")

    def put_item(self, **kwargs: Any) -> Any:
        plan = self.plan
        device_id = str(kwargs.get("Item", {}).get("device_id", {}).get("S", ""))
        if not device_id.startswith(plan.device_prefix):
            return self._inner.put_item(**kwargs)
        with self._lock:
            if self.crashed:
                raise self._crash()
            if self.throttled < plan.throttle_writes and self._armed_now():
                self.throttled += 1
                self._inject("throttle_writes", device_id)
                raise throttle_error(f"injected throttle {self.throttled}/{plan.throttle_writes}")
        if plan.crash_after_writes is None:
            return self._inner.put_item(**kwargs)
        with self._write_lock:
            with self._lock:
                if self.crashed:
                    raise self._crash()
                if self.committed >= plan.crash_after_writes and self._armed_now():
                    self.crashed = True
                    self._inject("crash_after_writes", device_id)
                    raise self._crash()
            response = self._inner.put_item(**kwargs)  # raises ConditionalCheckFailed etc. as usual
            with self._lock:
                self.committed += 1
            return response
