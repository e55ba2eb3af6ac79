"""Export a fitted scikit-learn IsolationForest to the portable artifact and write it reproducibly."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from sklearn.ensemble import IsolationForest

from functions.detector.iforest import average_path_length


def export_forest(forest: IsolationForest) -> dict[str, Any]:
    """Tree arrays in scikit-learn's node order, with feature ids mapped to the full feature vector."""
    trees = []
    for estimator, features in zip(forest.estimators_, forest.estimators_features_, strict=True):
        tree = estimator.tree_
        is_leaf = tree.children_left == -1
        # Map the tree's (possibly subsampled) feature index back to the column of the full matrix.
        feature = np.where(is_leaf, -2, np.asarray(features)[np.maximum(tree.feature, 0)])
        # The path length scikit-learn adds for a row ending in this leaf: depth + c(n_node_samples) - 1.
        path = tree.compute_node_depths() + average_path_length(tree.n_node_samples) - 1.0
        trees.append(
            {
                "children_left": tree.children_left.astype(int).tolist(),
                "children_right": tree.children_right.astype(int).tolist(),
                "feature": feature.astype(int).tolist(),
                "threshold": np.where(is_leaf, -2.0, tree.threshold).astype(float).tolist(),
                "leaf_path_length": np.where(is_leaf, path, 0.0).astype(float).tolist(),
                # Where a missing value (NaN) goes at each split, as scikit-learn decided when fitting.
                "missing_go_to_left": np.asarray(tree.missing_go_to_left).astype(int).tolist(),
            }
        )
    return {
        "n_features": int(forest.n_features_in_),
        "max_samples": int(forest.max_samples_),
        "n_estimators": len(forest.estimators_),
        "trees": trees,
    }


def array_sha256(*arrays: np.ndarray) -> str:
    """Content hash of training data (dtype, shape and bytes), recorded in the artifact."""
    digest = hashlib.sha256()
    for array in arrays:
        a = np.ascontiguousarray(array)
        digest.update(f"{a.dtype.str}{a.shape}".encode())
        digest.update(a.tobytes())
    return digest.hexdigest()


def dumps_artifact(artifact: dict[str, Any]) -> bytes:
    """Canonical bytes: sorted keys, Python's shortest round-trip float repr, no timestamps, final newline."""
    return (json.dumps(artifact, sort_keys=True, separators=(",", ":"), allow_nan=False) + "\n").encode()


def write_artifact(artifact: dict[str, Any], path: Path) -> str:
    """Write the artifact; returns the sha256 of the bytes written."""
    data = dumps_artifact(artifact)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    return hashlib.sha256(data).hexdigest()
