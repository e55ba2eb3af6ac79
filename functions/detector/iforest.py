"""Isolation Forest scoring with numpy alone, equal to scikit-learn's ``score_samples``.

The artifact holds each tree in scikit-learn's layout (``children_left/right``, ``feature``,
``threshold``) plus, per leaf, the path length scikit-learn adds for that leaf
(``depth + c(n_node_samples) - 1``, where ``c`` is the average path length of an unsuccessful binary
search, the correction for leaves that still hold several training samples).

At load time all trees are packed into one set of flat arrays, each tree laid out as a complete binary
tree (children of position p at 2p+1 and 2p+2). Scoring then walks every row down every tree at once: one
step per tree level is three gathers and a little arithmetic on a (trees x rows) position array, so the
Python overhead is ``max_depth`` iterations per chunk of rows, independent of the number of trees.

scikit-learn casts inputs to float32 before comparing them with its float64 thresholds; so do we, or a
value that lies between the float32 and float64 representation of a threshold would take the other branch.
"""

from __future__ import annotations

from typing import Any

import numpy as np

_EULER_GAMMA = 0.5772156649015329


def average_path_length(n: np.ndarray) -> np.ndarray:
    """c(n): expected path length of an unsuccessful search in a BST of n nodes (scikit-learn's formula)."""
    n = np.asarray(n, dtype=np.float64)
    out = np.zeros_like(n)
    out[n == 2] = 1.0
    big = n > 2
    out[big] = 2.0 * (np.log(n[big] - 1.0) + _EULER_GAMMA) - 2.0 * (n[big] - 1.0) / n[big]
    return out


class IsolationForestScorer:
    """Scores rows with an exported Isolation Forest; vectorised over rows and trees."""

    def __init__(self, forest: dict[str, Any], chunk_rows: int = 512) -> None:
        self.n_features = int(forest["n_features"])
        self.max_samples = int(forest["max_samples"])
        trees = forest["trees"]
        self.n_trees = len(trees)
        self.chunk_rows = chunk_rows
        self._pack(trees)
        denominator = self.n_trees * float(average_path_length(np.array([self.max_samples]))[0])
        self._denominator = denominator

    def _pack(self, trees: list[dict[str, Any]]) -> None:
        """Lay every tree out as a complete binary tree of the forest's depth, all trees in one array.

        In a complete tree the children of position p are 2p+1 and 2p+2, so descending is arithmetic and
        needs no child-pointer lookup. A leaf shallower than the full depth gets padding nodes below it
        with threshold +inf (every row goes left) and its value stored at its leftmost descendant.
        """
        lefts = [np.asarray(t["children_left"], dtype=np.intp) for t in trees]
        depth = 0
        per_tree = []
        for tree, left in zip(trees, lefts, strict=True):
            right = np.asarray(tree["children_right"], dtype=np.intp)
            pos = np.zeros(len(left), dtype=np.intp)
            node_depth = np.zeros(len(left), dtype=np.intp)
            frontier = np.array([0], dtype=np.intp)
            while frontier.size:
                parents = frontier[left[frontier] != -1]
                for child, offset in ((left[parents], 1), (right[parents], 2)):
                    pos[child] = 2 * pos[parents] + offset
                    node_depth[child] = node_depth[parents] + 1
                frontier = np.concatenate([left[parents], right[parents]])
            per_tree.append((right, pos, node_depth))
            depth = max(depth, int(node_depth.max()))
        n_internal = 2**depth - 1
        n_leaves = 2**depth
        n_trees = len(trees)
        feature = np.zeros((n_trees, n_internal), dtype=np.intp)
        threshold = np.full((n_trees, n_internal), np.inf)
        nan_right = np.zeros((n_trees, n_internal), dtype=bool)
        leaf_value = np.zeros((n_trees, n_leaves))
        for t, (tree, left, (_, pos, node_depth)) in enumerate(zip(trees, lefts, per_tree, strict=True)):
            is_leaf = left == -1
            inner = ~is_leaf
            feature[t, pos[inner]] = np.asarray(tree["feature"], dtype=np.intp)[inner]
            threshold[t, pos[inner]] = np.asarray(tree["threshold"], dtype=np.float64)[inner]
            missing_left = np.asarray(tree.get("missing_go_to_left", [1] * len(left)), dtype=bool)
            nan_right[t, pos[inner]] = ~missing_left[inner]
            steps = depth - node_depth[is_leaf]
            slot = pos[is_leaf] * 2**steps + (2**steps - 1) - n_internal
            leaf_value[t, slot] = np.asarray(tree["leaf_path_length"], dtype=np.float64)[is_leaf]
        self.max_depth = depth
        self._n_internal = n_internal
        self._feature = feature.ravel()
        self._threshold = threshold.ravel()
        self._nan_right = nan_right.ravel()
        self._leaf_value = leaf_value.ravel()
        self._tree_base = (np.arange(n_trees, dtype=np.intp) * n_internal)[:, None]
        self._leaf_base = (np.arange(n_trees, dtype=np.intp) * n_leaves - n_internal)[:, None]

    def path_lengths(self, X: np.ndarray) -> np.ndarray:
        """Sum over trees of each row's path length (scikit-learn's ``depths``)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (rows, {self.n_features}) features, got {X.shape}")
        # Same rounding as scikit-learn (float32 input), compared in float64 against float64 thresholds.
        X64 = X.astype(np.float32).astype(np.float64)
        n = X64.shape[0]
        out = np.empty(n)
        for lo in range(0, n, self.chunk_rows):
            out[lo : lo + self.chunk_rows] = self._chunk_depths(X64[lo : lo + self.chunk_rows])
        return out

    def _chunk_depths(self, X: np.ndarray) -> np.ndarray:
        # Layout (trees x rows): the final per-tree sum then runs over contiguous rows in tree order,
        # the same order scikit-learn accumulates in, so the floating-point result matches.
        m = X.shape[0]
        flat = np.ascontiguousarray(X).ravel()
        row_base = np.arange(m, dtype=np.intp)[None, :] * self.n_features
        pos = np.zeros((self.n_trees, m), dtype=np.intp)
        has_nan = bool(np.isnan(flat).any())
        # np.take with intp indices and mode="clip" is the fastest gather numpy offers (no bounds errors
        # to raise; every index is in range by construction).
        for _ in range(self.max_depth):
            node = pos + self._tree_base
            x = np.take(flat, row_base + np.take(self._feature, node, mode="clip"), mode="clip")
            go_right = x > np.take(self._threshold, node, mode="clip")
            if has_nan:  # rare: scikit-learn sends NaN to the side it recorded at fit time
                go_right |= np.isnan(x) & np.take(self._nan_right, node, mode="clip")
            pos *= 2
            pos += 1
            pos += go_right
        leaf_values = np.take(self._leaf_value, pos + self._leaf_base, mode="clip")
        return leaf_values.sum(axis=0)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``score_samples``: the opposite of the anomaly score (lower = more abnormal)."""
        return -self.anomaly_score(X)

    def anomaly_score(self, X: np.ndarray) -> np.ndarray:
        """The paper's anomaly score 2^(-E[h(x)] / c(max_samples)) in (0, 1]; higher = more anomalous."""
        depths = self.path_lengths(X)
        if self._denominator == 0:
            return np.ones_like(depths)
        return 2.0 ** (-depths / self._denominator)
