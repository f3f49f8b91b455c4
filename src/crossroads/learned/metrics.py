"""How good a router is: RouteLLM's APGR and CPT, and the willingness-to-pay curve.

A two-model router is judged by the order in which it would send prompts to the strong model:
sweep a threshold so the strong-call share goes 0% → 100% and watch accuracy climb from the weak
model's to the strong model's. Only the order matters, so every router here is reduced to one
score per prompt (higher = more in need of the strong model).

The one decision a reader must know: the curve is computed *exactly*, at every prompt rather
than at ten thresholds as RouteLLM's script does, and tied scores are treated as a random order
(the curve is a straight line across a tie group). So a constant score — a router that knows
nothing — has APGR exactly 0.5, and a router cannot gain from ties it happens to break well.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from crossroads.learned.decision import choose_models

__all__ = [
    "PgrCurve",
    "WtpPoint",
    "apgr",
    "cpt",
    "length_scores",
    "pgr_curve",
    "random_baseline",
    "wtp_curve",
    "wtp_grid",
]

Floats = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class PgrCurve:
    """Accuracy and performance gap recovered at each strong-call share (0 → 1)."""

    share: Floats
    accuracy: Floats
    pgr: Floats
    weak_accuracy: float
    strong_accuracy: float


def pgr_curve(
    scores: Sequence[float] | Floats,
    weak: Sequence[float] | Floats,
    strong: Sequence[float] | Floats,
) -> PgrCurve:
    """The exact PGR curve of a router that calls the strong model on its highest scores.

    `weak` and `strong` are each model's score per prompt (booleans as 0/1, or any quality in
    [0, 1]). Points sit at the boundaries of groups of tied scores; between them the curve is
    linear, which is the expected value over a random order within the tie.
    """
    s = np.asarray(scores, dtype=np.float64)
    w = np.asarray(weak, dtype=np.float64)
    g = np.asarray(strong, dtype=np.float64)
    n = len(s)
    if n == 0 or len(w) != n or len(g) != n:
        raise ValueError("scores, weak and strong must be non-empty and of equal length")
    weak_acc, strong_acc = float(w.mean()), float(g.mean())
    if math.isclose(weak_acc, strong_acc, abs_tol=1e-12):
        raise ValueError(
            "the two models score the same on average, so there is no performance gap to recover"
        )
    order = np.argsort(-s, kind="stable")
    gain = np.cumsum((g - w)[order])
    sorted_scores = s[order]
    # Last index of each tie group: where the next score differs, plus the final prompt.
    ends = np.flatnonzero(np.append(sorted_scores[1:] != sorted_scores[:-1], True))
    counts = np.concatenate(([0], ends + 1)).astype(np.float64)
    accuracy = (w.sum() + np.concatenate(([0.0], gain[ends]))) / n
    pgr = (accuracy - weak_acc) / (strong_acc - weak_acc)
    return PgrCurve(counts / n, accuracy, pgr, weak_acc, strong_acc)


def apgr(curve: PgrCurve) -> float:
    """Average performance gap recovered: the area under the PGR curve (random ≈ 0.5)."""
    return float(np.trapezoid(curve.pgr, curve.share))


def cpt(curve: PgrCurve, target: float) -> float:
    """Call-performance threshold: the least strong-call share whose PGR reaches `target`."""
    reached = np.flatnonzero(curve.pgr >= target - 1e-12)
    if len(reached) == 0:
        return 1.0
    j = int(reached[0])
    if j == 0:
        return 0.0
    p0, p1 = curve.pgr[j - 1], curve.pgr[j]
    s0, s1 = curve.share[j - 1], curve.share[j]
    return float(s0 + (target - p0) / (p1 - p0) * (s1 - s0))


def length_scores(prompts: Sequence[str]) -> Floats:
    """The prompt-length baseline: longer prompts go to the strong model first."""
    return np.array([len(p) for p in prompts], dtype=np.float64)


def random_baseline(
    weak: Sequence[float] | Floats,
    strong: Sequence[float] | Floats,
    *,
    draws: int = 200,
    seed: int = 0,
) -> tuple[float, float, float]:
    """APGR, CPT(50%) and CPT(80%) of a random router, averaged over seeded random orders."""
    rng = np.random.default_rng(seed)
    results = []
    for _ in range(draws):
        curve = pgr_curve(rng.random(len(weak)), weak, strong)
        results.append((apgr(curve), cpt(curve, 0.5), cpt(curve, 0.8)))
    mean = np.mean(np.array(results), axis=0)
    return float(mean[0]), float(mean[1]), float(mean[2])


@dataclass(frozen=True, slots=True)
class WtpPoint:
    """What the router does on a data set at one willingness to pay."""

    willingness_to_pay: float
    accuracy: float
    total_cost: float
    share: dict[str, float]


def wtp_grid(quality: Floats, predicted_cost: Floats, points: int = 9) -> list[float]:
    """Willingness-to-pay values that show the whole curve: 0, quantiles of the values at
    which prompts change model, and infinity."""
    best = np.argmax(quality, axis=1)
    cheap = np.argmin(predicted_cost, axis=1)
    rows = np.arange(len(quality))
    dq = quality[rows, best] - quality[rows, cheap]
    dc = predicted_cost[rows, best] - predicted_cost[rows, cheap]
    switching = (dq > 0) & (dc > 0)
    grid = [0.0]
    if switching.any():
        breaks = 0.10 * dc[switching] / dq[switching]
        for q in np.linspace(0.05, 0.95, points):
            value = float(np.quantile(breaks, q))
            grid.append(float(f"{value:.2g}"))
    grid.append(math.inf)
    return sorted(set(grid))


def wtp_curve(
    models: Sequence[str],
    quality: Floats,
    predicted_cost: Floats,
    actual_score: Floats,
    actual_cost: Floats,
    grid: Sequence[float],
) -> list[WtpPoint]:
    """Accuracy and total cost as the willingness to pay sweeps `grid`.

    All arrays are prompts × models: the router's predictions decide, the actual scores and
    costs are what that decision earns and spends.
    """
    rows = np.arange(len(quality))
    points = []
    for wtp in grid:
        chosen = choose_models(quality, predicted_cost, wtp)
        counts: Mapping[int, int] = dict(zip(*np.unique(chosen, return_counts=True), strict=True))
        points.append(
            WtpPoint(
                willingness_to_pay=wtp,
                accuracy=float(actual_score[rows, chosen].mean()),
                total_cost=float(actual_cost[rows, chosen].sum()),
                share={m: float(counts.get(i, 0) / len(rows)) for i, m in enumerate(models)},
            )
        )
    return points
