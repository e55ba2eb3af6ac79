"""The anomaly stage as the processor runs it: score the fresh readings, store anomalies, alert,
containing a failure to the readings it concerns.

Detection is a by-product of aggregation, never a gate on it: a reading the detector cannot score, or
whose anomaly item the table refuses, is still aggregated (and archived); the stage counts it by reason
(``detection_failures``: ``DetectionFailures`` metric) instead. Only an outage of the detector or the
anomaly store (throttling past retries, a missing table, an endpoint down under policy ``fail``) hands the
fresh readings back, because their windows must not be written before they were scored."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from functions.core.errors import is_item_error, is_transient
from functions.core.ports import (
    AggregateItem,
    AnomalyStageResult,
    VerdictHandler,
    WindowKey,
)
from functions.core.readings import Reading
from functions.detector.interface import Detector, StatefulDetector, Verdict
from functions.processor import exactly_once
from functions.processor.batch import ItemKey, ProcessorPorts, item_key
from functions.processor.exactly_once import WindowGroup
from functions.processor.window_writes import Deadline

logger = logging.getLogger(__name__)


# Reasons of ``Detection.detection_failures`` (the ``DetectionFailures`` metric's ``Reason`` dimension).
UNSCORED = "unscored"  # the detector raised for this reading alone, even on its own: aggregated unscored
ANOMALY_NOT_STORED = "anomaly_not_stored"  # flagged, but the anomalies table refused its item
DETECTION_FAILURE_REASONS: tuple[str, ...] = (UNSCORED, ANOMALY_NOT_STORED)


@dataclass(frozen=True)
class Detection:
    """What the anomaly stage decided, and the groups left to write."""

    groups: dict[WindowKey, WindowGroup]  # the windows to write now (others are handed back)
    anomalous: frozenset[ItemKey] = frozenset()  # the flagged readings
    # Every reading scored -> its verdict: the archive line records it
    verdicts: dict[ItemKey, Verdict] = field(default_factory=dict)
    # Readings aggregated although detection failed for them alone, by reason (UNSCORED, ANOMALY_NOT_STORED)
    detection_failures: dict[str, int] = field(default_factory=dict)
    failed: list[Reading] = field(default_factory=list)  # handed back: the stage had an outage
    hand_back_all: bool = False  # the deadline came before the stage could start
    anomalies: int = 0
    alerts_sent: int = 0
    alerts_suppressed: int = 0
    alerts_failed: int = 0
    # Readings of calibrated devices the fleet forest scored instead, by reason (a missing channel ...)
    calibration_fallbacks: dict[str, int] = field(default_factory=dict)
    # Calls to the scoring backend that failed (a SageMaker endpoint down or slow), by the policy applied
    detector_backend_failures: dict[str, int] = field(default_factory=dict)
    detector_states_written: int = 0
    errors: list[str] = field(default_factory=list)


def detect_anomalies(
    ports: ProcessorPorts,
    groups: dict[WindowKey, WindowGroup],
    current: dict[WindowKey, AggregateItem],
    now_s: float,
    deadline: Deadline,
) -> Detection:
    """Score the fresh (not yet applied) readings of each window, store the anomalies, alert.

    An outage of the detector or the anomaly store (throttling past retries, an unavailable endpoint, a
    missing table) hands the fresh readings back: writing their windows now would mark them applied, and
    the redelivery would then skip detection for them.
    """
    detector = ports.detector
    if detector is None:
        return Detection(groups)
    fresh_by_key: dict[WindowKey, list[Reading]] = {}
    for key, group in groups.items():
        fresh, _ = exactly_once.split_fresh(current.get(key), group.readings, group.window_start)
        if fresh:
            fresh_by_key[key] = fresh
    if not fresh_by_key:
        return Detection(groups)
    if deadline.expired():
        return Detection({}, hand_back_all=True, errors=["deadline: anomaly stage not started"])
    try:
        verdicts, detection_failures, stages = _detect(detector, ports, fresh_by_key, now_s)
    except Exception as exc:
        logger.warning("anomaly stage failed: %r", exc)
        return Detection(
            {k: g for k, g in groups.items() if k not in fresh_by_key},
            failed=[r for fresh in fresh_by_key.values() for r in fresh],
            detector_backend_failures=_drain_backend_failures(detector),  # the "fail" policy ends up here
            errors=[f"anomaly stage: {type(exc).__name__}"],
        )
    fallbacks = _drain_fallbacks(detector)
    written, state_errors = _save_states(ports, detector)
    return Detection(
        groups,
        frozenset(i for i, v in verdicts.items() if v.is_anomaly),
        verdicts,
        detection_failures,
        anomalies=sum(len(s.anomalies) for s in stages),
        alerts_sent=sum(s.alerts_sent for s in stages),
        alerts_suppressed=sum(s.alerts_suppressed for s in stages),
        alerts_failed=sum(s.alerts_failed for s in stages),
        calibration_fallbacks=fallbacks,
        detector_backend_failures=_drain_backend_failures(detector),
        detector_states_written=written,
        errors=state_errors,
    )


def _drain_fallbacks(detector: Detector) -> dict[str, int]:
    # only the per-device detector has them
    return dict(detector.drain_fallbacks()) if isinstance(detector, StatefulDetector) else {}


def _drain_backend_failures(detector: Detector) -> dict[str, int]:
    # the per-device detector forwards them
    return dict(detector.drain_backend_failures()) if isinstance(detector, StatefulDetector) else {}


def _save_states(ports: ProcessorPorts, detector: Detector) -> tuple[int, list[str]]:
    """Persist the per-device detectors' carried alarm states (cold starts resume from them).

    Best effort: a failed write costs only continuity on a cold start (the warm container keeps its
    in-memory ring), so it is logged and counted, never a reason to hand the batch back.
    """
    if not isinstance(detector, StatefulDetector):
        return 0, []
    states = detector.drain_states()
    writer = ports.detector_state
    if writer is None or not states:
        return 0, []
    written, errors = 0, []
    for device_id, state in states.items():
        try:
            writer.save_detector_state(device_id, state)
            detector.mark_persisted(device_id, state)
            written += 1
        except Exception as exc:
            logger.warning("detector state not saved for %s: %r", device_id, exc)
            errors.append(f"detector state: {type(exc).__name__}")
    return written, errors[:1]


def _detect(
    detector: Detector, ports: ProcessorPorts, fresh_by_key: dict[WindowKey, list[Reading]], now_s: float
) -> tuple[dict[ItemKey, Verdict], dict[str, int], list[AnomalyStageResult]]:
    """Score, store, alert: (item key -> verdict of the readings scored, failures by reason, the results).

    A failure that concerns some readings only is contained to them: detection is retried per device and
    then per reading, storage per flagged reading; a reading that still fails is counted (and aggregated
    all the same) and the rest of the batch goes on. An outage (``_is_outage``) raises, and the caller
    hands the batch's fresh readings back for redelivery.
    """
    readings = sorted(
        (r for fresh in fresh_by_key.values() for r in fresh), key=lambda r: (r.device_id, r.epoch_ms)
    )
    failures: dict[str, int] = {}
    scored, verdicts = _verdicts(detector, readings)
    if len(scored) < len(readings):
        failures[UNSCORED] = len(readings) - len(scored)
    handle: VerdictHandler[Verdict]
    if ports.handle_verdicts is not None:
        handle = ports.handle_verdicts
    else:
        from functions.detector.pipeline_stage import handle_verdicts as handle  # lazy: colleague's module
    try:
        stages = [handle(scored, verdicts, ports.anomaly_store, ports.alerter, now_s)]
    except Exception as exc:
        if not is_item_error(exc):  # throttling past retries, a missing table, an alert... : an outage
            raise
        # One bad item fails a whole BatchWriteItem (or its serialisation): isolate by flagged reading.
        logger.warning("anomaly store rejected the batch's items, isolating: %r", exc)
        stages = []
        for r, v in zip(scored, verdicts, strict=True):
            if not v.is_anomaly:
                continue
            try:
                stages.append(handle([r], [v], ports.anomaly_store, ports.alerter, now_s))
            except Exception as item_exc:
                if not is_item_error(item_exc):
                    raise
                logger.warning("anomaly of %s not stored: %s", r.device_id, _why(item_exc))
                failures[ANOMALY_NOT_STORED] = failures.get(ANOMALY_NOT_STORED, 0) + 1
    kept = {item_key(r): v for r, v in zip(scored, verdicts, strict=True)}
    return kept, failures, stages


def _verdicts(detector: Detector, readings: list[Reading]) -> tuple[list[Reading], list[Verdict]]:
    """(readings that were scored, their verdicts): the whole batch, else per device, else per reading."""
    try:
        return readings, _checked_verdicts(detector, readings)
    except Exception as exc:
        if _is_outage(exc):
            raise
        logger.warning("detector failed on the batch, isolating by device: %r", exc)
    scored: list[Reading] = []
    verdicts: list[Verdict] = []
    by_device: dict[str, list[Reading]] = {}
    for r in readings:  # sorted by (device, time), so each device's list is in time order
        by_device.setdefault(r.device_id, []).append(r)
    for device_readings in by_device.values():
        _score_device(detector, device_readings, scored, verdicts)
    return scored, verdicts


def _score_device(
    detector: Detector, device_readings: list[Reading], scored: list[Reading], verdicts: list[Verdict]
) -> None:
    """One device's readings scored together, else one by one; appends to ``scored`` and ``verdicts``
    the readings scored and their verdicts (a reading the detector fails on is left out, logged)."""
    try:
        verdicts.extend(_checked_verdicts(detector, device_readings))
        scored.extend(device_readings)
        return
    except Exception as exc:
        if _is_outage(exc):
            raise
    for r in device_readings:
        try:
            verdicts.extend(_checked_verdicts(detector, [r]))
            scored.append(r)
        except Exception as exc:
            if _is_outage(exc):
                raise
            logger.warning("reading of %s not scored: %s", r.device_id, _why(exc))


def _checked_verdicts(detector: Detector, rs: list[Reading]) -> list[Verdict]:
    """The detector's verdicts for ``rs``, one per reading (a detector answering otherwise fails)."""
    verdicts = detector.detect(rs)
    if len(verdicts) != len(rs):
        raise ValueError(f"detector returned {len(verdicts)} verdicts for {len(rs)} readings")
    return list(verdicts)


def _is_outage(exc: BaseException) -> bool:
    """A detector failure of the service rather than of particular readings: hand the batch back.

    Transient errors (throttling, 5xx, timeouts) and a backend that is down under the ``fail`` policy
    (``DetectorUnavailable``). Anything else the detector raises is taken to be about its input and is
    isolated down to the reading. (Storage failures are judged the other way round: only errors about
    the item itself, ``is_item_error``, are isolated; any other storage error is an outage.)
    """
    from functions.detector.anomaly_detector import DetectorUnavailable  # loaded with the detector

    return is_transient(exc) or isinstance(exc, DetectorUnavailable)


def _why(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"[:200]
