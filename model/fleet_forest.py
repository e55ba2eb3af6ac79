"""The fleet forest (``iforest-v1``, what the Lambda runs for devices without a calibration) on the
simulator families' device streams, for comparison with the per-device detector.

The readings go through the Lambda's own composition (``CalibratedDetector(EmbeddedDetector)``; simulator
devices carry no calibration) in Kinesis-sized batches, every device starting cold, as
``model.evaluate``'s simulator mode does; the alarms of each device's scored rows come back in the
device's order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from model.generalization import Device

BATCH = 500


def forest_alarms(devices: Sequence[Device]) -> list[np.ndarray]:
    from functions.detector.anomaly_detector import EmbeddedDetector, default_artifact_path
    from functions.detector.calibrated import CalibratedDetector
    from model.evaluate import detect_stream

    out = []
    for d in devices:
        if d.source_set is None:
            raise ValueError(f"{d.name}: no simulator readings to score with the fleet forest")
        data, idx = d.source_set
        detector = CalibratedDetector(EmbeddedDetector(default_artifact_path()))
        flagged = detect_stream(detector, data.take(np.isin(np.arange(len(data)), idx)), BATCH)
        out.append(np.asarray(flagged, dtype=bool)[d.cal_rows :])
    return out
