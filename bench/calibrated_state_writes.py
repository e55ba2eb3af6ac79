"""How often the per-device detector writes its carried alarm state (docs/processing.md, "Write cost").

Replays SKAB files (and the anomaly-free recording cut into 1,150-row pseudo-devices) through
``CalibratedDetector`` in batches of B readings, each device calibrated on its first 400 rows with the
shipped operating point, and counts the batches after which the state had to be persisted.

    .venv/bin/python -m bench.calibrated_state_writes [/work/shared/datasets/skab] [B]
"""

from __future__ import annotations

import sys
from pathlib import Path

from functions.core.readings import DeviceInfo, Reading
from functions.detector.anomaly_detector import EmbeddedDetector
from functions.detector.calibrated import CalibratedDetector
from model import device_calibration as dc
from model import operating_point


def writes(devices: list[list[tuple[int, dict[str, float]]]], batch: int) -> tuple[int, int]:
    names = dc.pipeline_names(operating_point.load()["channels"])
    batches = written = 0
    for rows in devices:
        info = DeviceInfo("x", calibration=dc.fit(rows, names, 400).to_dict())
        det = CalibratedDetector(EmbeddedDetector())
        readings = [Reading("x", ms, ch, "s", str(i), info) for i, (ms, ch) in enumerate(rows)]
        for i in range(400, len(readings), batch):
            det.detect(readings[i : i + batch])
            batches += 1
            for device_id, state in det.drain_states().items():
                det.mark_persisted(device_id, state)
                written += 1
    return written, batches


def main() -> None:
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "/work/shared/datasets/skab")
    batch = int(sys.argv[2]) if len(sys.argv) > 2 else 30
    files = sorted((root / "valve1").glob("*.csv")) + sorted((root / "valve2").glob("*.csv"))
    w, b = writes([dc.csv_rows(f) for f in files], batch)
    print(f"SKAB {len(files)} files, {batch} readings/batch: state written after {w} of {b} batches")
    free = dc.csv_rows(root / "anomaly-free" / "anomaly-free.csv")
    pseudo = [free[s : s + 1150] for s in range(0, len(free) - 1149, 1150)]
    w, b = writes(pseudo, batch)
    print(f"anomaly-free {len(pseudo)} pseudo-devices, {batch}/batch: state written after {w} of {b} batches")


if __name__ == "__main__":
    main()
