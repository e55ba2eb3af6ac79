"""Putting test records on a Kinesis stream, re-sending the entries a PutRecords call failed."""

from __future__ import annotations

import time
from typing import Any


def put_records(kinesis: Any, stream: str, entries: list[tuple[str, bytes]], attempts: int = 20) -> None:
    """PutRecords ``(partition key, data)`` entries in order, 500 a call; only failed ones are re-sent."""
    for start in range(0, len(entries), 500):
        pending = [{"PartitionKey": pk, "Data": data} for pk, data in entries[start : start + 500]]
        for _ in range(attempts):
            resp = kinesis.put_records(StreamName=stream, Records=pending)
            pending = [e for e, r in zip(pending, resp["Records"], strict=True) if r.get("ErrorCode")]
            if not pending:
                break
            time.sleep(0.2)
        assert not pending, f"{len(pending)} records could not be put"
