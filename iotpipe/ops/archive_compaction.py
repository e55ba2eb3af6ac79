"""``iotpipe archive compact``: run the stack's compactor on chosen hours and show what it wrote.

The compaction itself runs where it runs on a schedule, in the deployed ``compactor`` function
(functions/compactor); this is only its remote control, so a backfill or a test exercises the same
code, IAM and bundle as the hourly rule. Hours are named ``YYYY-MM-DDTHH`` (UTC, the archive's
``dt=``/``hour=`` folders); ``--all`` names every hour that has processed objects, except the hours
still open (being written, or ended less than the compactor's settle time ago), which it leaves to the
schedule unless ``--force`` (an hour named with ``--hour`` is compacted as asked).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from functions.compactor.compaction import hours_due, parse_hour
from functions.core.archive_layout import PROCESSED_PREFIX

# One invocation compacts this many hours at most, so each stays well inside the function's 15 minutes.
HOURS_PER_CALL = 6


class CompactionError(RuntimeError):
    """The stack has no compactor, a bad hour, or the function failed (one line for the user)."""


def archived_hours(s3: Any, bucket: str) -> list[str]:
    """Every ``YYYY-MM-DDTHH`` with objects under ``processed/`` (folder listing, two levels)."""
    hours: list[str] = []
    pages = s3.get_paginator("list_objects_v2")
    for day_page in pages.paginate(Bucket=bucket, Prefix=f"{PROCESSED_PREFIX}/", Delimiter="/"):
        for day in day_page.get("CommonPrefixes", []):
            dt = day["Prefix"].rstrip("/").rsplit("dt=", 1)[-1]
            for hour_page in pages.paginate(Bucket=bucket, Prefix=day["Prefix"], Delimiter="/"):
                for hour in hour_page.get("CommonPrefixes", []):
                    hours.append(f"{dt}T{hour['Prefix'].rstrip('/').rsplit('hour=', 1)[-1]}")
    return sorted(hours)


def settle_minutes(lambda_client: Any, function: str, default: int = 30) -> int:
    """The deployed compactor's COMPACTION_SETTLE_MINUTES (its schedule waits that long after an hour)."""
    config = lambda_client.get_function_configuration(FunctionName=function)
    return int(config.get("Environment", {}).get("Variables", {}).get("COMPACTION_SETTLE_MINUTES", default))


def split_open(hours: Sequence[str], now_ms: int, settle: int) -> tuple[list[str], list[str]]:
    """(settled, open): an hour is open until it ended ``settle`` minutes ago, the rule the schedule uses
    (``hours_due``): batches still in flight land in it until then, so a Parquet file written earlier
    would hold part of the hour and be rewritten by the next run anyway."""
    newest_settled = "T".join(hours_due(now_ms, 1, settle)[-1])
    settled = [h for h in hours if h <= newest_settled]
    return settled, [h for h in hours if h > newest_settled]


def invoke(lambda_client: Any, function: str, event: dict[str, Any]) -> dict[str, Any]:
    response = lambda_client.invoke(FunctionName=function, Payload=json.dumps(event).encode())
    body = json.loads(response["Payload"].read() or b"{}")
    if response.get("FunctionError"):
        message = body.get("errorMessage", body) if isinstance(body, dict) else body
        raise CompactionError(f"the compactor failed: {message}")
    if isinstance(body, dict) and "error" in body:
        raise CompactionError(str(body["error"]))
    return body if isinstance(body, dict) else {}


def compact(lambda_client: Any, function: str, hours: Sequence[str] | None, force: bool,
            on_progress: Any = None) -> list[dict[str, Any]]:
    """Run the compactor on ``hours`` (HOURS_PER_CALL per call), or with ``None`` on its schedule's plan."""
    if hours is None:
        return list(invoke(lambda_client, function, {"force": force}).get("hours", []))
    for text in hours:
        try:
            parse_hour(text)
        except ValueError as exc:
            raise CompactionError(str(exc)) from None
    results: list[dict[str, Any]] = []
    for start in range(0, len(hours), HOURS_PER_CALL):
        chunk = list(hours[start:start + HOURS_PER_CALL])
        results.extend(invoke(lambda_client, function, {"hours": chunk, "force": force}).get("hours", []))
        if on_progress:
            on_progress(len(results), len(hours))
    return results


def summary(results: Sequence[dict[str, Any]]) -> dict[str, Any]:
    done = [r for r in results if r.get("action") != "empty"]
    bytes_in = sum(int(r.get("bytes_in", 0)) for r in done)
    bytes_out = sum(int(r.get("bytes_out", 0)) for r in done)
    return {
        "hours": len(results),
        "compacted": sum(1 for r in results if r.get("action") == "compacted"),
        "unchanged": sum(1 for r in results if r.get("action") == "unchanged"),
        "empty": sum(1 for r in results if r.get("action") == "empty"),
        "objects_in": sum(int(r.get("inputs", 0)) for r in done),
        "rows_in": sum(int(r.get("rows_in", 0)) for r in done),
        "rows_out": sum(int(r.get("rows_out", 0)) for r in done),
        "bytes_in": bytes_in,
        "bytes_out": bytes_out,
        "ratio": round(bytes_in / bytes_out, 2) if bytes_out else None,
    }
