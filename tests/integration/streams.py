"""Putting test records on a Kinesis stream, re-sending the entries a PutRecords call failed."""

from __future__ import annotations

import time
from typing import Any


def put_until_accepted(
    kinesis: Any, stream: str, entries: list[tuple[bytes, str]], attempts: int = 5
) -> None:
    """PutRecords ``(data, partition key)`` entries in order; only the failed ones are re-sent."""
    pending = entries
    for _ in range(attempts):
        response = kinesis.put_records(
            StreamName=stream, Records=[{"Data": data, "PartitionKey": key} for data, key in pending]
        )
        pending = [e for e, r in zip(pending, response["Records"], strict=True) if r.get("ErrorCode")]
        if not pending:
            return
        time.sleep(0.5)
    raise AssertionError(f"Kinesis did not accept {len(pending)} test records")
