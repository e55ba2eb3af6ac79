"""Kinesis producer adapter: PutRecords in chunks, retrying only the entries that failed.

Used by the ingest Lambda. PutRecords is not atomic: some entries can fail (throttling,
``ProvisionedThroughputExceededException``, ``InternalFailure``) while others succeed. Only failed entries
are re-sent, with exponential backoff and full jitter, a bounded number of times; whatever still fails is
returned as failed so the caller can tell its client (nothing accepted is silently lost).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import Any

from functions.adapters.client_errors import error_code
from functions.adapters.clients import client
from functions.core.errors import is_transient
from functions.core.ports import PutResult
from functions.core.retry import Backoff
from functions.settings import get_settings

MAX_RECORDS_PER_CALL = 500
MAX_BYTES_PER_CALL = 5 * 1024 * 1024  # data + partition keys
MAX_ATTEMPTS = 5
# Backoff's delay before retry n is up to base * 2**(n-1); 0.1 keeps this adapter's earlier maxima
# (0.05 * 2**n: 0.1, 0.2, 0.4, 0.8 s before attempts 2..5, capped at 1 s).
BACKOFF_BASE_S = 0.1
BACKOFF_CAP_S = 1.0


def _chunks(entries: Sequence[tuple[bytes, str]]) -> list[list[int]]:
    chunks: list[list[int]] = []
    current: list[int] = []
    size = 0
    for i, (data, key) in enumerate(entries):
        n = len(data) + len(key.encode())
        if current and (len(current) >= MAX_RECORDS_PER_CALL or size + n > MAX_BYTES_PER_CALL):
            chunks.append(current)
            current, size = [], 0
        current.append(i)
        size += n
    if current:
        chunks.append(current)
    return chunks


class KinesisPublisher:
    """The ingest path's ``Publisher`` (``functions.core.ports``) on a Kinesis stream."""

    def __init__(
        self,
        stream_name: str | None = None,
        kinesis: Any | None = None,
        max_attempts: int = MAX_ATTEMPTS,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.stream_name = stream_name or get_settings().stream_name
        self._client = kinesis
        self._backoff = Backoff(max_attempts, BACKOFF_BASE_S, BACKOFF_CAP_S, sleep)

    @property
    def _kinesis(self) -> Any:
        if self._client is None:
            self._client = client("kinesis")
        return self._client

    def put_records(self, entries: Sequence[tuple[bytes, str]]) -> list[PutResult]:
        """Send (data, partition_key) entries; one PutResult per entry, in input order."""
        results = [PutResult(index=i) for i in range(len(entries))]
        for chunk in _chunks(entries):
            pending = chunk
            # A stateful loop (the entries still failing), so attempts() rather than call(); when the
            # attempts run out the failures stay in the results, reported to the caller, not raised.
            for _ in self._backoff.attempts():
                pending = self._attempt(entries, pending, results)
                if not pending:
                    break
        return results

    def _attempt(
        self, entries: Sequence[tuple[bytes, str]], pending: list[int], results: list[PutResult]
    ) -> list[int]:
        request = [{"Data": entries[i][0], "PartitionKey": entries[i][1]} for i in pending]
        try:
            response = self._kinesis.put_records(StreamName=self.stream_name, Records=request)
        except Exception as exc:
            code = error_code(exc) or type(exc).__name__
            for i in pending:
                results[i].error_code, results[i].error_message = code, "PutRecords call failed"
            # A non-transient error (validation, access denied, no such stream) will not fix itself.
            return pending if is_transient(exc) else []
        still: list[int] = []
        for i, entry in zip(pending, response.get("Records", []), strict=False):
            if entry.get("ErrorCode"):
                results[i].error_code = entry["ErrorCode"]
                results[i].error_message = str(entry.get("ErrorMessage", ""))[:200]
                still.append(i)
            else:
                results[i].sequence_number = entry.get("SequenceNumber")
                results[i].shard_id = entry.get("ShardId")
                results[i].error_code = results[i].error_message = None
        # Entries missing from a short response (should not happen) are treated as failed, never as sent.
        answered = len(response.get("Records", []))
        for i in pending[answered:]:
            results[i].error_code = results[i].error_code or "NoResponse"
            still.append(i)
        return still
