"""Compactor Lambda entry point (template: ``functions.compactor.handler.handler``).

Thin: decide which hours to look at, call ``compaction.compact_hour`` for each, log one line per hour
and return the results. Invoked by

- the hourly EventBridge rule (``CompactionSchedule``): the hours ``compaction.hours_due`` names;
- ``iotpipe archive compact`` (or any caller with ``lambda:InvokeFunction``) with
  ``{"hours": ["YYYY-MM-DDTHH", ...], "force": false}``: exactly those hours, e.g. the current one in a
  test or a backfill. ``force`` rebuilds even when the manifest matches.

A bad event is answered with ``{"error": ...}`` and nothing is written; a storage error raises, so the
scheduled invocation is retried by Lambda's asynchronous retry and the next hourly run tries again.
"""

from __future__ import annotations

import time
from typing import Any

from aws_lambda_powertools import Logger

from functions.compactor.compaction import compact_hour, hours_due, parse_hour
from functions.settings import get_settings

logger = Logger(service="compactor")

MAX_HOURS_PER_CALL = 24 * 14


def plan(event: dict[str, Any], now_ms: int) -> tuple[list[tuple[str, str]], bool]:
    """The (dt, hour) list an event asks for, and whether to force; ValueError for a malformed event."""
    settings = get_settings()
    force = bool(event.get("force", False))
    hours = event.get("hours")
    if hours is None:
        due = hours_due(now_ms, settings.compaction_lookback_hours, settings.compaction_settle_minutes)
        return due, force
    if not isinstance(hours, list) or not all(isinstance(h, str) for h in hours):
        raise ValueError("hours must be a list of 'YYYY-MM-DDTHH' strings")
    if len(hours) > MAX_HOURS_PER_CALL:
        raise ValueError(f"at most {MAX_HOURS_PER_CALL} hours per call, got {len(hours)}")
    return sorted({parse_hour(h) for h in hours}), force


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    from functions.adapters.archive import S3Archive

    now_ms = int(time.time() * 1000)
    try:
        hours, force = plan(event if isinstance(event, dict) else {}, now_ms)
    except ValueError as exc:
        logger.warning("bad compaction request", extra={"error": str(exc)})
        return {"error": str(exc)}
    store = S3Archive()
    memory = get_settings().compaction_memory_mb
    results = []
    for dt, hour in hours:
        result = compact_hour(store, dt, hour, memory_limit_mb=memory, force=force, now_ms=now_ms)
        if result.action != "empty":
            logger.info("compaction", extra=result.as_dict())
        results.append(result.as_dict())
    summary = {a: sum(1 for r in results if r["action"] == a) for a in ("compacted", "unchanged", "empty")}
    return {"hours": results, **summary}
