"""The Tennessee Eastman process data set (Braatz's files): loader, fault families and the two protocols.

Format (``../shared/datasets/tep/README.md``): whitespace-separated numbers, no header, 52 columns
(XMEAS 1-41, XMV 1-11), one observation every 3 minutes. ``d00.dat`` (normal operation, training) is
stored transposed (52 x 500). ``dNN_te.dat`` are the test runs, 960 observations each; in the fault runs
the fault starts at observation 161, so rows 0-159 (0-based) are normal and rows 160-959 faulty.

Protocols (the README's two):
- ``classic``: the plant is one device calibrated on its normal training run ``d00.dat`` (500 rows,
  25 h); every test run is scored after it. The literature's PCA T²/Q detection rates use this protocol.
- ``per-device``: each test run calibrates on its own first 160 rows and is scored after them; the
  false-alarm rate comes from ``d00_te.dat`` calibrated on its own first 160 rows. 160 rows of 52
  channels is a thin calibration: this protocol measures how the detector copes with little data.
Neither reads a label to fit: labels are only the fault start.

Citation required by the data's licence: Downs and Vogel (1993); Russell, Chiang and Braatz (2000);
Chiang, Russell and Braatz (2001) (see the README beside the data).
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import numpy as np

CHANNELS: tuple[str, ...] = (
    tuple(f"xmeas_{i}" for i in range(1, 42)) + tuple(f"xmv_{i}" for i in range(1, 12))
)
FAULT_START = 160  # 0-based row of observation 161, the first faulty one
TRAIN_ROWS = 500  # d00.dat
PER_DEVICE_ROWS = 160  # the per-device protocol's calibration rows

# Fault families by kind of disturbance (Downs and Vogel 1993). 3, 9 and 15 are known to be practically
# undetectable from these measurements (the README; most published methods miss nearly all their rows):
# they are their own family, reported beside the headline, not hidden in another family's average.
FAMILIES: dict[str, tuple[int, ...]] = {
    "tep-step": (1, 2, 4, 5, 6, 7),
    "tep-random": (8, 10, 11, 12),
    "tep-drift": (13,),
    "tep-sticking": (14,),
    "tep-unknown": (16, 17, 18, 19, 20),
    "tep-valve-fixed": (21,),
}
UNDETECTABLE: tuple[int, ...] = (3, 9, 15)
UNDETECTABLE_FAMILY = "tep-undetectable"


@dataclass(frozen=True)
class TepRun:
    fault: int  # 0 = normal operation
    values: np.ndarray  # rows x 52
    labels: np.ndarray  # 1 from FAULT_START on in a fault run, 0 elsewhere


def default_dir() -> Path:
    """``../shared/datasets/tep`` beside the repository (as CI lays it out)."""
    return Path(__file__).resolve().parents[2] / "shared" / "datasets" / "tep"


def _read(path: Path) -> np.ndarray:
    if not path.exists():
        raise FileNotFoundError(f"{path}: TEP file missing (the data set lives in ../shared/datasets/tep)")
    return np.loadtxt(path, dtype=np.float64, ndmin=2)


@lru_cache(maxsize=4)
def training(data_dir: Path) -> np.ndarray:
    """``d00.dat`` transposed to 500 x 52 (it is stored one column per observation)."""
    raw = _read(data_dir / "d00.dat")
    values = raw.T if raw.shape[0] == len(CHANNELS) else raw
    if values.shape[1] != len(CHANNELS):
        raise ValueError(f"d00.dat: expected {len(CHANNELS)} variables, got shape {raw.shape}")
    return values


@lru_cache(maxsize=32)
def test_run(data_dir: Path, fault: int) -> TepRun:
    values = _read(data_dir / f"d{fault:02d}_te.dat")
    if values.shape[1] != len(CHANNELS):
        raise ValueError(f"d{fault:02d}_te.dat: expected {len(CHANNELS)} columns, got {values.shape[1]}")
    labels = np.zeros(len(values), dtype=np.int64)
    if fault:
        labels[FAULT_START:] = 1
    return TepRun(fault, values, labels)


def family_of(fault: int) -> str:
    if fault in UNDETECTABLE:
        return UNDETECTABLE_FAMILY
    for name, faults in FAMILIES.items():
        if fault in faults:
            return name
    raise ValueError(f"no TEP fault {fault}")
