"""Gradient-boosted decision trees for a probability, small enough to write in numpy.

Difficulty is not linear in the features (a long prompt is hard when it is a law vignette,
easy when it is a reading passage with a factual question), and shallow boosted trees were the
best single learner measured. They are implemented here rather than taken from scikit-learn so
that the router needs only numpy and a trained model is four plain arrays, safe to load.

The one decision a reader must know: every tree is *complete* to `depth` levels, stored in
level order. A node that should not split gets threshold +inf (everything goes left), so
prediction is `depth` vectorised steps over all trees at once, with no per-node branching in
Python — about 20 µs for 100 trees.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crossroads.learned.logistic import sigmoid

__all__ = ["BoostedTrees", "fit_boosted_trees"]

Floats = npt.NDArray[np.float64]
Ints = npt.NDArray[np.int64]


@dataclass(frozen=True, slots=True)
class BoostedTrees:
    """`feature`/`threshold`: trees × internal nodes; `leaf`: trees × leaves (lr included)."""

    base: float
    feature: Ints
    threshold: Floats
    leaf: Floats

    @property
    def depth(self) -> int:
        return int(np.log2(self.leaf.shape[1]))

    def logit(self, x: Floats) -> Floats:
        """Log-odds for rows `x` (n × d); a single row (d,) gives a 1-element array."""
        rows = np.atleast_2d(x)
        trees = np.arange(self.feature.shape[0])
        node = np.zeros((rows.shape[0], len(trees)), dtype=np.int64)
        for _ in range(self.depth):
            f = self.feature[trees, node]
            values = np.take_along_axis(rows, f, axis=1)
            node = 2 * node + 1 + (values > self.threshold[trees, node])
        leaves = node - self.feature.shape[1]
        total: Floats = self.base + self.leaf[trees, leaves].sum(axis=1)
        return total


def _cut_points(column: Floats, max_bins: int) -> Floats:
    """Thresholds between distinct values, at most `max_bins - 1` of them (by quantile)."""
    distinct = np.unique(column)
    if len(distinct) <= max_bins:
        return (distinct[:-1] + distinct[1:]) / 2
    qs = np.quantile(column, np.linspace(0, 1, max_bins + 1)[1:-1])
    return np.unique(qs)


def fit_boosted_trees(
    x: Floats,
    y: Floats,
    *,
    rounds: int = 100,
    depth: int = 3,
    learning_rate: float = 0.05,
    min_leaf: int = 80,
    l2: float = 1.0,
    max_bins: int = 128,
) -> BoostedTrees:
    """Fit trees to the cross-entropy of `y` (scores in [0, 1]) by second-order boosting."""
    n, d = x.shape
    cuts = [_cut_points(x[:, j], max_bins) for j in range(d)]
    width = max(len(c) for c in cuts) + 1
    binned = np.stack([np.searchsorted(c, x[:, j], side="left") for j, c in enumerate(cuts)], 1)
    flat_bins = binned + np.arange(d) * width  # one bincount serves every feature
    mean = float(np.clip(y.mean(), 1e-4, 1 - 1e-4))
    base = float(np.log(mean / (1 - mean)))
    raw = np.full(n, base)
    internal, leaves = 2**depth - 1, 2**depth
    feature = np.zeros((rounds, internal), dtype=np.int64)
    threshold = np.full((rounds, internal), np.inf)
    leaf = np.zeros((rounds, leaves))
    for t in range(rounds):
        p = sigmoid(raw)
        grad, hess = p - y, np.maximum(p * (1 - p), 1e-6)
        members: list[npt.NDArray[np.intp]] = [np.arange(n)]
        for node in range(internal):
            idx = members[node]
            split = _best_split(flat_bins[idx], grad[idx], hess[idx], d, width, min_leaf, l2)
            if split is None:
                members.extend([idx, idx[:0]])
                continue
            j, b = split
            feature[t, node], threshold[t, node] = j, cuts[j][b]
            go_right = binned[idx, j] > b
            members.extend([idx[~go_right], idx[go_right]])
        for k in range(leaves):
            idx = members[internal + k]
            if len(idx):
                value = -grad[idx].sum() / (hess[idx].sum() + l2) * learning_rate
                leaf[t, k] = value
                raw[idx] += value
    return BoostedTrees(base, feature, threshold, leaf)


def _best_split(
    flat_bins: Ints,
    grad: Floats,
    hess: Floats,
    d: int,
    width: int,
    min_leaf: int,
    l2: float,
) -> tuple[int, int] | None:
    """The (feature, bin) split with the largest loss reduction, or None if none helps."""
    m = len(grad)
    if m < 2 * min_leaf:
        return None
    keys = flat_bins.ravel()
    size = d * width
    g = np.bincount(keys, np.repeat(grad, d), size).reshape(d, width).cumsum(1)
    h = np.bincount(keys, np.repeat(hess, d), size).reshape(d, width).cumsum(1)
    c = np.bincount(keys, None, size).reshape(d, width).cumsum(1)
    g_all, h_all = grad.sum(), hess.sum()
    gain = g**2 / (h + l2) + (g_all - g) ** 2 / (h_all - h + l2) - g_all**2 / (h_all + l2)
    gain[(c < min_leaf) | (m - c < min_leaf)] = -np.inf
    best = int(np.argmax(gain))
    if not gain.flat[best] > 1e-12:
        return None
    return best // width, best % width
