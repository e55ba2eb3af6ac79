"""What the pipeline did: DynamoDB totals, archive lines, produce -> queryable latency, and conservation
(produced = aggregated + quarantined per reason + duplicates, each against the simulator's own labels)."""

from __future__ import annotations

import contextlib
import threading
import time
from collections import Counter, defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from functions.adapters.archive import S3Archive
from functions.core.archive_layout import PROCESSED_PREFIX, QUARANTINE_PREFIX
from functions.core.archive_lines import DUPLICATE, ProcessedLine, QuarantinedLine
from simulator.malformed import expected_outcome
from simulator.stream import Produced


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    k = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[k]


def expected_of(records: list[Produced]) -> dict[str, Any]:
    """What the pipeline should do with these records, from the simulator's own labels."""
    return expected_from(Counter(expected_outcome(p.category, p.kind) for p in records))


def expected_from(outcomes: Counter[str]) -> dict[str, Any]:
    """``expected_of`` from outcomes already tallied (``simulator.malformed.expected_outcome`` each)."""
    outcomes = Counter(outcomes)
    aggregated, duplicates = outcomes.pop("aggregated", 0), outcomes.pop("duplicate", 0)
    return {"aggregated": aggregated, "duplicates": duplicates, "quarantined": dict(outcomes)}


def ddb_size(attr: dict[str, Any]) -> int:
    """Bytes DynamoDB bills for one AttributeValue (names + values; numbers ~1 byte per 2 digits)."""
    ((kind, value),) = attr.items()
    if kind == "S":
        return len(value.encode())
    if kind == "N":
        digits = len(value.lstrip("-").replace(".", "").lstrip("0")) or 1
        return (digits + 1) // 2 + 1
    if kind == "B":  # bytes (boto3 gives them decoded)
        return len(value)
    if kind == "NS":
        return sum(ddb_size({"N": v}) for v in value)
    if kind == "M":
        return 3 + sum(len(k) + ddb_size(v) + 1 for k, v in value.items())
    if kind == "L":
        return 3 + sum(ddb_size(v) + 1 for v in value)
    return 1


def aggregated_totals(ddb: Any, table: str) -> tuple[int, int, int, int]:
    """(sum of counts, sum of versions = successful writes, items, total billed item bytes)."""
    total = writes = items = size = 0
    kwargs: dict[str, Any] = {"TableName": table}
    while True:
        page = ddb.scan(**kwargs)
        for item in page.get("Items", []):
            total += int(item["count"]["N"])
            writes += int(item.get("version", {"N": "1"})["N"])
            items += 1
            size += sum(len(name) + ddb_size(value) for name, value in item.items())
        if "LastEvaluatedKey" not in page:
            return total, writes, items, size
        kwargs["ExclusiveStartKey"] = page["LastEvaluatedKey"]


def archive_totals(s3: Any, bucket: str) -> dict[str, Any]:
    """Lines per status / reason from every archived object (all versions: retries overwrite)."""
    out: dict[str, Any] = {"objects": 0, "versions": 0, "bytes": 0, "reasons": Counter(),
                           "aggregated_lines": 0, "duplicate_lines": 0, "ranges": set()}
    archive = S3Archive(bucket, s3)
    # The archive's prefixes only: the bucket also holds Athena's query results (athena-results/).
    for prefix in (PROCESSED_PREFIX, QUARANTINE_PREFIX):
        for obj, lines in archive.iter_objects(prefix):
            out["objects"] += 1
            out["bytes"] += obj.size
            out["ranges"].add(obj.key.rsplit("/", 1)[-1])
            for line in lines:
                if prefix == QUARANTINE_PREFIX:
                    out["reasons"][QuarantinedLine.decode(line).reason] += 1
                elif ProcessedLine.decode(line).status == DUPLICATE:
                    out["duplicate_lines"] += 1
                else:
                    out["aggregated_lines"] += 1
    try:
        versions = 0
        for page in s3.get_paginator("list_object_versions").paginate(Bucket=bucket):
            versions += len(page.get("Versions", []))
        out["versions"] = versions or out["objects"]
    except Exception:  # versions listing unsupported: count objects
        out["versions"] = out["objects"]
    return out


def wait_until(predicate: Any, timeout_s: float, interval_s: float = 0.5) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return False


class LatencyProbe:
    """Times the sample devices' readings: each sent reading is pending until the query API (through API
    Gateway) returns a count for its window that includes it. The devices are polled one after another, so
    a reading is seen up to one polling round (``rounds``) after it became queryable."""

    def __init__(self, api_url: str, api_key: str, samples: set[str]) -> None:
        self.api = f"{api_url}/devices/{{}}/aggregates"
        self.headers = {"x-api-key": api_key}
        self.samples = samples
        # device -> [(window, n-th reading of that window, sent at)] not yet counted by the API
        self.pending: dict[str, list[tuple[int, int, float]]] = defaultdict(list)
        self.seen_per_window: Counter[tuple[str, int]] = Counter()
        self.latencies: list[float] = []
        self.timed: list[tuple[float, float]] = []  # (sent at, latency): when in the run the slow ones were
        self.rounds: list[float] = []  # seconds per polling round (every pending device once): the resolution
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def start(self) -> float:
        """Warms the query API (one request per sample device), then starts polling; returns the first
        request's seconds. The first request after deploy starts the query function (its cold start is
        measured on its own, bench/e2e/cold_start.py): timed readings would otherwise wait for it."""
        first = 0.0
        with httpx.Client(timeout=30) as http:
            for n, dev in enumerate(sorted(self.samples)):
                t0 = time.monotonic()
                with contextlib.suppress(httpx.HTTPError):
                    self._get(http, dev)
                if n == 0:
                    first = time.monotonic() - t0
        self._thread.start()
        return first

    def sent(self, chunk: list[Produced], sent_at: float) -> None:
        """Records the sample devices' valid readings in ``chunk``, sent at ``sent_at``."""
        with self._lock:
            for p in chunk:
                if p.device_id in self.samples and p.category != "malformed":
                    window = p.event_ms // 60_000 * 60
                    self.seen_per_window[(p.device_id, window)] += 1
                    self.pending[p.device_id].append(
                        (window, self.seen_per_window[(p.device_id, window)], sent_at))

    def all_seen(self) -> bool:
        return not any(self.pending.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(timeout=15)

    @property
    def never_seen(self) -> int:
        return sum(len(v) for v in self.pending.values())

    def _get(self, http: httpx.Client, device_id: str) -> httpx.Response:
        """The device's windows from 5 minutes ago to 2 minutes ahead, through the query API."""
        now = datetime.now(UTC)
        params = {"from": (now - timedelta(minutes=5)).strftime("%Y-%m-%dT%H:%M:%SZ"),
                  "to": (now + timedelta(minutes=2)).strftime("%Y-%m-%dT%H:%M:%SZ")}
        return http.get(self.api.format(device_id), params=params, headers=self.headers)

    def _poll(self) -> None:
        with httpx.Client(timeout=10) as http:
            while not self._stop.is_set():
                with self._lock:
                    devices = [d for d, lst in self.pending.items() if lst]
                if not devices:
                    if self._stop.wait(0.2):
                        return
                    continue
                t_round = time.monotonic()
                for dev in devices:
                    try:
                        r = self._get(http, dev)
                    except httpx.HTTPError:
                        continue
                    seen_at = time.time()
                    if r.status_code != 200:
                        continue
                    counts = {int(datetime.fromisoformat(i["window_start"].replace("Z", "+00:00"))
                                  .timestamp()): int(i["count"]) for i in r.json().get("items", [])}
                    with self._lock:
                        keep = []
                        for window, nth, sent in self.pending[dev]:
                            if counts.get(window, 0) >= nth:
                                self.latencies.append(seen_at - sent)
                                self.timed.append((sent, seen_at - sent))
                            else:
                                keep.append((window, nth, sent))
                        self.pending[dev] = keep
                self.rounds.append(time.monotonic() - t_round)


def conservation(agg_total: int, arch: dict[str, Any], produced: int,
                 expected: dict[str, Any]) -> tuple[bool, dict[str, tuple[int, int]]]:
    """(conserved, {check: (pipeline, simulator labels)}): every produced record is accounted for once,
    and each outcome matches what the simulator's labels say it should be."""
    quarantined = dict(arch["reasons"])
    accounted = agg_total + sum(quarantined.values()) + arch["duplicate_lines"]
    checks = {
        "aggregated": (agg_total, expected["aggregated"]),
        "duplicates": (arch["duplicate_lines"], expected["duplicates"]),
        **{f"quarantined.{r}": (quarantined.get(r, 0), n) for r, n in
           sorted({**dict.fromkeys(quarantined, 0), **expected["quarantined"]}.items())},
    }
    conserved = accounted == produced and all(a == b for a, b in checks.values())
    return conserved, checks
