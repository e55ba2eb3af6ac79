"""Isolation Forest scoring with numpy alone, equal to scikit-learn's ``score_samples``.

The artifact holds each tree in scikit-learn's layout (``children_left/right``, ``feature``,
``threshold``) plus, per leaf, the path length scikit-learn adds for that leaf
(``depth + c(n_node_samples) - 1``, where ``c`` is the average path length of an unsuccessful binary
search, the correction for leaves that still hold several training samples).

At load time every tree is laid out as a complete binary tree and the forest is stored level by level:
level d holds, tree after tree, the 2^d nodes of that level. A row at index i of level d (i = tree * 2^d
+ position in the level) moves to index 2i (left) or 2i + 1 (right) of level d + 1, so descending needs
no child pointers and no per-tree offsets. Scoring walks every row down every tree at once: one step per
level is three gathers and a little arithmetic on a (trees x rows) index array, written into buffers
allocated once per call, so the Python overhead is ``max_depth`` iterations per chunk of rows,
independent of the number of trees.

scikit-learn casts inputs to float32 and compares them, widened to float64, with its float64 thresholds.
We compare in float32, against each threshold rounded *down* to float32: for a float32 x,
``x > t64`` holds exactly when ``x > (largest float32 <= t64)``, because no float32 lies between the two.
Same branches, bit for bit, with half the memory traffic of float64 gathers.
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

    def __init__(self, forest: dict[str, Any], chunk_rows: int = 256) -> None:
        self.n_features = int(forest["n_features"])
        self.max_samples = int(forest["max_samples"])
        trees = forest["trees"]
        self.n_trees = len(trees)
        # Rows scored together. Larger chunks amortise the Python overhead per level; smaller keep the
        # (trees x rows) working arrays in cache: 256 rows x 100 trees (~0.6 MB of work arrays) measured
        # best on the benchmark machine; results do not depend on it.
        self.chunk_rows = chunk_rows
        self._pack(trees)
        denominator = self.n_trees * float(average_path_length(np.array([self.max_samples]))[0])
        self._denominator = denominator

    def _pack(self, trees: list[dict[str, Any]]) -> None:
        """Lay every tree out as a complete binary tree of the forest's depth, stored level by level.

        In a complete tree the children of position p are 2p+1 and 2p+2. A leaf shallower than the full
        depth gets padding nodes below it with threshold +inf (every row goes left) and its value stored
        at its leftmost descendant.
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
        # Thresholds rounded down to float32 (see the module docstring): nearest, then one step down
        # where rounding went up. +inf stays +inf.
        threshold32 = threshold.astype(np.float32)
        up = threshold32.astype(np.float64) > threshold
        threshold32[up] = np.nextafter(threshold32[up], np.float32(-np.inf))
        self.max_depth = depth
        # Per level d: the (trees x 2^d) block of positions 2^d - 1 .. 2^(d+1) - 2, flattened tree-major.
        levels = [slice(2**d - 1, 2 ** (d + 1) - 1) for d in range(depth)]
        self._feature = [np.ascontiguousarray(feature[:, lv]).ravel() for lv in levels]
        self._threshold = [np.ascontiguousarray(threshold32[:, lv]).ravel() for lv in levels]
        self._nan_right = [np.ascontiguousarray(nan_right[:, lv]).ravel() for lv in levels]
        self._leaf_value = leaf_value.ravel()  # level `depth`, tree-major like the others

    def path_lengths(self, X: np.ndarray) -> np.ndarray:
        """Sum over trees of each row's path length (scikit-learn's ``depths``)."""
        X = np.asarray(X)
        if X.ndim != 2 or X.shape[1] != self.n_features:
            raise ValueError(f"expected (rows, {self.n_features}) features, got {X.shape}")
        # The same float32 rounding as scikit-learn's input validation.
        X32 = np.ascontiguousarray(X, dtype=np.float32)
        n = X32.shape[0]
        out = np.empty(n)
        step = self.chunk_rows
        buffers = _Buffers(self.n_trees, min(step, n), self.n_features)
        for lo in range(0, n, step):
            out[lo : lo + step] = self._chunk_depths(X32[lo : lo + step], buffers)
        return out

    def _chunk_depths(self, X: np.ndarray, b: _Buffers) -> np.ndarray:
        # Layout (trees x rows): the final per-tree sum then runs over contiguous rows in tree order,
        # the same order scikit-learn accumulates in, so the floating-point result matches.
        m = X.shape[0]
        flat = X.ravel()
        idx, col, x, thr, right = b.views(m)
        # Level 0: index = tree (each tree's root). np.take with intp indices, out= and mode="clip" is
        # numpy's fastest gather (no bounds errors to raise: every index is in range by construction).
        idx[...] = b.tree_ids[:, None]
        row_base = b.row_base[:, :m]
        has_nan = bool(np.isnan(flat).any())
        for feature, threshold, nan_right in zip(
            self._feature, self._threshold, self._nan_right, strict=True
        ):
            np.take(feature, idx, out=col, mode="clip")
            col += row_base
            np.take(flat, col, out=x, mode="clip")
            np.take(threshold, idx, out=thr, mode="clip")
            np.greater(x, thr, out=right)
            if has_nan:  # rare: scikit-learn sends NaN to the side it recorded at fit time
                right |= np.isnan(x) & np.take(nan_right, idx, mode="clip")
            idx += idx  # child index at the next level: 2i (left) or 2i + 1 (right)
            idx += right
        return np.take(self._leaf_value, idx, mode="clip").sum(axis=0)

    def score_samples(self, X: np.ndarray) -> np.ndarray:
        """scikit-learn's ``score_samples``: the opposite of the anomaly score (lower = more abnormal)."""
        return -self.anomaly_score(X)

    def anomaly_score(self, X: np.ndarray) -> np.ndarray:
        """The paper's anomaly score 2^(-E[h(x)] / c(max_samples)) in (0, 1]; higher = more anomalous."""
        depths = self.path_lengths(X)
        if self._denominator == 0:
            return np.ones_like(depths)
        return 2.0 ** (-depths / self._denominator)


class _Buffers:
    """Work arrays for ``_chunk_depths``, allocated once per ``path_lengths`` call and reused per chunk."""

    def __init__(self, n_trees: int, rows: int, n_features: int) -> None:
        self.tree_ids = np.arange(n_trees, dtype=np.intp)
        self.row_base = (np.arange(rows, dtype=np.intp) * n_features)[None, :]
        self._idx = np.empty((n_trees, rows), dtype=np.intp)
        self._col = np.empty((n_trees, rows), dtype=np.intp)
        self._x = np.empty((n_trees, rows), dtype=np.float32)
        self._thr = np.empty((n_trees, rows), dtype=np.float32)
        self._right = np.empty((n_trees, rows), dtype=bool)

    def views(self, m: int) -> tuple[np.ndarray, ...]:
        """The buffers cut to ``m`` rows (the last chunk may be shorter); contiguous when m is full."""
        if m == self._idx.shape[1]:
            return self._idx, self._col, self._x, self._thr, self._right
        n_trees = self._idx.shape[0]
        buffers = (self._idx, self._col, self._x, self._thr, self._right)
        return tuple(a.ravel()[: n_trees * m].reshape(n_trees, m) for a in buffers)
