"""Calibrator Lambda entry point (template: ``functions.calibrator.handler.handler``, the processor's bundle).

Thin: load the shipped operating point (once per container), run ``calibration.calibrate_pending`` over
the devices table and the archive, log one line per device calibrated and return the results. Invoked by

- the EventBridge rule (``CalibrationSchedule``, every 2 minutes): every pending device;
- ``iotpipe model calibrate --pending``, ``iotpipe model replay-eval`` (or any caller with
  ``lambda:InvokeFunction``) with ``{"device_ids": ["...", ...]}``: the pending ones among those.

A bad event is answered with ``{"error": ...}`` and nothing is written. Each device is on its own
(``calibration.calibrate_items``): a request that cannot be served is refused with a reason (on the item
and in the answer), a device whose fit or write fails is reported ``failed`` and retried next run, and
the others are calibrated all the same. Only a failure to list the devices or the archive raises, so the
scheduled invocation is retried by Lambda's asynchronous retry and the next run tries again.
"""

from __future__ import annotations

import time
from functools import cache
from typing import Any

from aws_lambda_powertools import Logger

from functions.calibrator.calibration import calibrate_pending
from functions.detector.pca_fit import OperatingPoint, load_operating_point

logger = Logger(service="calibrator")

MAX_DEVICES_PER_CALL = 1000
STATUSES = ("calibrated", "waiting", "refused", "failed")


@cache
def operating_point() -> OperatingPoint:
    return load_operating_point()


def device_ids(event: dict[str, Any]) -> list[str] | None:
    """The ids an on-demand event names (None: every device); ValueError for a malformed event."""
    ids = event.get("device_ids")
    if ids is None:
        return None
    if not isinstance(ids, list) or not all(isinstance(d, str) and d for d in ids):
        raise ValueError("device_ids must be a list of device id strings")
    if len(ids) > MAX_DEVICES_PER_CALL:
        raise ValueError(f"at most {MAX_DEVICES_PER_CALL} device ids per call, got {len(ids)}")
    return sorted(set(ids))


def handler(event: dict[str, Any] | None, context: Any) -> dict[str, Any]:
    from functions.adapters.archive import S3Archive
    from functions.adapters.devices import DynamoDeviceRegistry

    try:
        ids = device_ids(event if isinstance(event, dict) else {})
    except ValueError as exc:
        logger.warning("bad calibration request", extra={"error": str(exc)})
        return {"error": str(exc)}
    results = calibrate_pending(DynamoDeviceRegistry(), S3Archive(), operating_point(),
                                int(time.time() * 1000), device_ids=ids)
    for device_id, result in results.items():
        if result["status"] == "calibrated":
            logger.info("calibrated", extra={"device_id": device_id, **result})
        elif result["status"] in ("refused", "failed"):
            logger.warning(f"calibration {result['status']}", extra={"device_id": device_id, **result})
    counts = {s: sum(1 for r in results.values() if r["status"] == s) for s in STATUSES}
    return {"devices": results, **counts, "operating_point": operating_point().label}
