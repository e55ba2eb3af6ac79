"""Is a per-device PCA T²+Q calibration usable? One check, run where a calibration is written (the
calibrator, ``iotpipe model calibrate``) and where it is read (the processor's per-device detector).

A calibration is a small record of numbers that the scorer divides by, squares and sums over every
reading of the device. A record that parses can still be useless or harmful: an eigenvalue of 1e-320
or a component of 1e300 overflows T² to infinity, a ``nan`` mean or a zero scale makes every score
NaN, a limit at its floor (the fit of constant rows: a stuck sensor during calibration) makes every
normal reading critical, and an unbounded ``persist_n`` makes the carried alarm ring as large as the
user likes. ``check`` refuses all of these with one short reason and returns the parsed calibration
otherwise. The bounds are wide enough for any fit of real readings (``functions.detector.pca_fit``;
readings are at most 1e9 in magnitude, ``functions.processor.decode.rules``) and tight enough that
every score is a finite float:

- vectors have one value per input dimension, ``channels x (lags + 1)`` (``lags``: optional, 0..3, the
  previous rows a dynamic PCA appends to each row; absent means 0);
- every number is a finite int or float (not a string, not a bool);
- ``scale`` >= ``SCALE_MIN`` and eigenvalues >= ``EIGENVALUE_MIN`` (variance floors: a direction with no
  variance in the calibration rows cannot be scored by dividing by its variance);
- 1 <= components <= dimensions, each component a unit vector, the components orthogonal (rank);
- limits in [``LIMIT_MIN``, ``LIMIT_MAX``], ``instant_factor`` in [1, ``INSTANT_FACTOR_MAX``];
- 1 <= ``persist_k`` <= ``persist_n`` <= ``PERSIST_N_MAX``.

Pure (numpy only), no AWS SDK: the processor bundle imports it.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from functions.detector.pca_tq import FORMAT, STATISTICS, PcaCalibration

MAX_CHANNELS = 64
MAX_LAGS = 3
VALUE_MAX = 1e12  # |mean|, scale: readings are at most 1e9 in magnitude (decode rules)
PCA_MEAN_MAX = 1e6  # the mean of standardised rows is ~0
SCALE_MIN = 1e-9  # the fit floors a standard deviation at 1e-6 (0.1 % of a level of at least 1e-3)
EIGENVALUE_MIN = 1e-6  # standardised variance along a kept component; the fit of constant rows gives 1e-9
EIGENVALUE_MAX = 1e9
LIMIT_MIN = 1e-6  # the fit's floor is 1e-12: a limit there means the calibration rows had no spread
LIMIT_MAX = 1e12
INSTANT_FACTOR_MAX = 1e6
PERSIST_N_MAX = 600  # k-of-n over at most 10 minutes at 1 Hz; the carried ring is n - 1 bits
ROWS_MAX = 1_000_000
UNIT_TOLERANCE = 1e-3  # |‖component‖ - 1| and |component_i · component_j|


class CalibrationInvalid(ValueError):
    """The calibration cannot be used; ``reason`` says why in one short sentence."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise CalibrationInvalid(f"{what} is not a number ({type(value).__name__})")
    number = float(value)
    if not math.isfinite(number):
        raise CalibrationInvalid(f"{what} is not finite")
    return number


def integer_in(value: Any, what: str, lo: int, hi: int) -> int:
    """``value`` as an int in [lo, hi] (an integral float counts), else CalibrationInvalid saying why."""
    if isinstance(value, bool) or not isinstance(value, int):
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        else:
            raise CalibrationInvalid(f"{what} {value!r} is not an integer")
    if not lo <= value <= hi:
        raise CalibrationInvalid(f"{what} {value} not in [{lo}, {hi}]")
    return int(value)


def _bounded(value: Any, what: str, lo: float, hi: float) -> float:
    number = _number(value, what)
    if not lo <= number <= hi:
        raise CalibrationInvalid(f"{what} {number:g} not in [{lo:g}, {hi:g}]")
    return number


def _vector(data: Mapping[str, Any], name: str, length: int, lo: float, hi: float) -> list[float]:
    values = data.get(name)
    if not isinstance(values, Sequence) or isinstance(values, str):
        raise CalibrationInvalid(f"{name} is missing or not a list")
    if len(values) != length:
        raise CalibrationInvalid(f"{name} has {len(values)} values for {length} dimensions")
    return [_bounded(v, f"{name}[{i}]", lo, hi) for i, v in enumerate(values)]


def dimensions(data: Mapping[str, Any]) -> tuple[tuple[str, ...], int]:
    """(channels, input dimensions = channels x (lags + 1)), or CalibrationInvalid."""
    channels = data.get("channels")
    if not isinstance(channels, Sequence) or isinstance(channels, str) or not channels:
        raise CalibrationInvalid("channels is missing or empty")
    if len(channels) > MAX_CHANNELS:
        raise CalibrationInvalid(f"{len(channels)} channels, at most {MAX_CHANNELS}")
    if not all(isinstance(c, str) and c for c in channels) or len(set(channels)) != len(channels):
        raise CalibrationInvalid("channels must be distinct non-empty names")
    lags = integer_in(data.get("lags", 0), "lags", 0, MAX_LAGS)
    return tuple(channels), len(channels) * (lags + 1)


def problems(data: Any) -> str | None:
    """Why ``data`` is not a usable calibration, or None (``check`` without the parse)."""
    try:
        check(data)
    except CalibrationInvalid as exc:
        return exc.reason
    return None


def check(data: Any) -> PcaCalibration:
    """The calibration ``data`` describes (a ``pca-t2q-v1`` record as stored), or CalibrationInvalid."""
    if not isinstance(data, Mapping):
        raise CalibrationInvalid(f"not a map ({type(data).__name__})")
    if data.get("format") != FORMAT:
        raise CalibrationInvalid(f"format {data.get('format')!r} is not {FORMAT}")
    _, dims = dimensions(data)
    _vector(data, "mean", dims, -VALUE_MAX, VALUE_MAX)
    _vector(data, "scale", dims, SCALE_MIN, VALUE_MAX)
    _vector(data, "pca_mean", dims, -PCA_MEAN_MAX, PCA_MEAN_MAX)
    rows = data.get("components")
    if not isinstance(rows, Sequence) or isinstance(rows, str) or not rows:
        raise CalibrationInvalid("components is missing or empty")
    if len(rows) > dims:
        raise CalibrationInvalid(f"{len(rows)} components for {dims} dimensions")
    components = np.array(
        [_vector({"row": row}, "row", dims, -1.0 - UNIT_TOLERANCE, 1.0 + UNIT_TOLERANCE) for row in rows]
    )
    gram = components @ components.T
    if np.max(np.abs(gram - np.eye(len(rows)))) > UNIT_TOLERANCE:
        raise CalibrationInvalid("components are not orthonormal")
    _vector(data, "eigenvalues", len(rows), EIGENVALUE_MIN, EIGENVALUE_MAX)
    for name in ("t2_limit", "q_limit"):
        _bounded(data.get(name), name, LIMIT_MIN, LIMIT_MAX)
    _bounded(data.get("instant_factor"), "instant_factor", 1.0, INSTANT_FACTOR_MAX)
    if data.get("statistic") not in STATISTICS:
        raise CalibrationInvalid(f"statistic {data.get('statistic')!r} is not one of {STATISTICS}")
    persist_n = integer_in(data.get("persist_n"), "persist_n", 1, PERSIST_N_MAX)
    integer_in(data.get("persist_k"), "persist_k", 1, persist_n)
    integer_in(data.get("calibration_rows"), "calibration_rows", 2, ROWS_MAX)
    try:
        return PcaCalibration.from_dict(dict(data))
    except (KeyError, TypeError, ValueError) as exc:  # a shape the checks above do not know yet
        raise CalibrationInvalid(f"does not parse: {exc}"[:200]) from exc


def degenerate_rows(values: Any, names: Sequence[str]) -> str | None:
    """Why these calibration rows (rows x channels) cannot give a calibration, or None.

    Not finite, fewer than two rows, or every channel constant (a stuck sensor during the device's first
    minutes: the fit would have no variance to scale by, its limits would sit at their floor and every
    normal reading afterwards would be critical). One constant channel among varying ones is fine: the
    fit floors its scale (``pca_fit.floor_scale``) and the check of the record catches what is left.
    """
    rows = np.asarray(values, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] < 2:
        return "fewer than two calibration rows"
    if not np.all(np.isfinite(rows)):
        return "calibration rows hold non-finite values"
    if np.all(np.ptp(rows, axis=0) == 0):
        return (f"every channel ({', '.join(names)}) is constant over the {rows.shape[0]} calibration rows "
                "(a stuck sensor?)")
    return None
