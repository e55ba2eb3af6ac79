"""An autoencoder per device, for comparison with the PCA T²+Q detector under the same protocol.

A one-hidden-layer scikit-learn ``MLPRegressor`` (tanh, half as many units as channels, at least 2; L-BFGS,
seed 0) learns to reproduce the device's standardised calibration rows; the statistic is the squared
reconstruction error, its limit the cross-fitted 99 % quantile (two halves in time, each scored by a
network trained on the other: the same rule as ``functions.detector.pca_fit``'s limits), with 3-of-5
persistence and an instant alarm at 8x the limit. It is not selectable for the Lambda: scoring would be
numpy-only (two matrix products), but fitting needs scikit-learn, which the in-stack calibrator does not
ship. It is here to show whether a non-linear model would have earned that cost.
"""

from __future__ import annotations

import warnings
from typing import TYPE_CHECKING, Any

import numpy as np

from functions.detector.pca_fit import floor_scale
from functions.detector.pca_tq import k_of_n

if TYPE_CHECKING:
    from model.generalization import Device

QUANTILE = 0.99
MAX_ITER = 200  # L-BFGS iterations: the error curve is flat well before this on these data
PERSIST = (3, 5)
INSTANT = 8.0


def _fit(rows: np.ndarray):  # type: ignore[no-untyped-def]
    from sklearn.exceptions import ConvergenceWarning
    from sklearn.neural_network import MLPRegressor

    hidden = max(2, rows.shape[1] // 2)
    net = MLPRegressor(hidden_layer_sizes=(hidden,), activation="tanh", solver="lbfgs", max_iter=MAX_ITER,
                       random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        net.fit(rows, rows)
    return net


def _error(net, rows: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    return np.sum((net.predict(rows) - rows) ** 2, axis=1)


_FITTED: dict[bytes, tuple[Any, float]] = {}  # calibration rows -> (network, limit): TEP's runs share d00


def autoencoder_alarms(d: Device) -> np.ndarray:
    cal = d.values[: d.cal_rows]
    mean = cal.mean(axis=0)
    scale = floor_scale(cal.std(axis=0), mean)
    z = (d.values - mean) / scale
    zc, zs = z[: d.cal_rows], z[d.cal_rows :]
    key = zc.tobytes()
    if key not in _FITTED:
        half = len(zc) // 2
        oof = np.concatenate([_error(_fit(zc[half:]), zc[:half]), _error(_fit(zc[:half]), zc[half:])])
        _FITTED[key] = (_fit(zc), max(float(np.quantile(oof, QUANTILE)), 1e-12))
    net, limit = _FITTED[key]
    ratio = _error(net, zs) / limit
    return k_of_n(ratio > 1.0, *PERSIST) | (ratio > INSTANT)
