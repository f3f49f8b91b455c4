"""AUROC and balanced accuracy: how well a risk score separates wrong answers from right."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["auroc", "balanced_accuracy", "p95"]


def auroc(scores: Sequence[float], labels: Sequence[bool]) -> float:
    """Probability that a random positive outscores a random negative (ties count half)."""
    s = np.asarray(scores, dtype=np.float64)
    y = np.asarray(labels, dtype=bool)
    pos, neg = int(y.sum()), int((~y).sum())
    if not pos or not neg:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    ranks = np.empty(len(s))
    sorted_s = s[order]
    i = 0
    while i < len(s):
        j = i
        while j + 1 < len(s) and sorted_s[j + 1] == sorted_s[i]:
            j += 1
        ranks[order[i : j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return float((ranks[y].sum() - pos * (pos + 1) / 2) / (pos * neg))


def balanced_accuracy(scores: Sequence[float], labels: Sequence[bool], threshold: float) -> float:
    s = np.asarray(scores) > threshold
    y = np.asarray(labels, dtype=bool)
    tpr = float((s & y).sum() / max(1, y.sum()))
    tnr = float((~s & ~y).sum() / max(1, (~y).sum()))
    return (tpr + tnr) / 2


def p95(values: Sequence[float]) -> float:
    return float(np.percentile(np.asarray(values, dtype=np.float64), 95)) if values else 0.0
