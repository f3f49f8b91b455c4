"""Judge a trained router on labelled data, next to baselines computed on the same prompts.

Used by `crossroads router eval` and by `benchmarks/router/run.py`, so the command line and the
published figures come from one piece of code. A report holds, for the chosen strong and weak
model: APGR, CPT(50%) and CPT(80%) of the router, of a random router and of the prompt-length
baseline; and the willingness-to-pay curve (accuracy and total cost as willingness to pay
sweeps 0 → ∞) at the given prices.

Costs use prompt tokens ≈ characters / 4. The curve's *actual* cost uses the completion tokens
recorded in the data where there are any (response texts), and the router's prediction where
there are none, which the report says.

A router judged on the prompts it was trained on looks far better than it is, so the report
counts the evaluated prompts found among the artifact's training fingerprints
(`training_overlap`; None for a version 1 artifact, which has none) and `warning` says so.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from crossroads.learned.data import CHARS_PER_TOKEN, RouterDataError, ScoreTable
from crossroads.learned.decision import REFERENCE_PRICES, ModelPrice
from crossroads.learned.fingerprints import overlap
from crossroads.learned.metrics import (
    WtpPoint,
    apgr,
    cpt,
    length_scores,
    pgr_curve,
    random_baseline,
    wtp_curve,
    wtp_grid,
)
from crossroads.learned.predictor import QualityRouter

__all__ = ["EvalReport", "RouterScores", "cost_matrix", "evaluate_router", "pick_pair"]


@dataclass(frozen=True, slots=True)
class RouterScores:
    apgr: float
    cpt50: float
    cpt80: float


@dataclass(frozen=True, slots=True)
class EvalReport:
    prompts: int
    strong: str
    weak: str
    strong_accuracy: float
    weak_accuracy: float
    routers: dict[str, RouterScores]
    prices: dict[str, ModelPrice]
    wtp: list[WtpPoint]
    completion_tokens_from_data: bool
    note: str
    training_overlap: int | None = None  # evaluated prompts the router was trained on

    @property
    def overlap_share(self) -> float | None:
        if self.training_overlap is None:
            return None
        return self.training_overlap / self.prompts if self.prompts else 0.0

    @property
    def warning(self) -> str | None:
        """Why these figures may not mean what they seem to, or None."""
        if self.training_overlap is None:
            return (
                "this router artifact records no training fingerprints (made by an older "
                "version), so overlap with its training data cannot be checked"
            )
        if self.training_overlap == 0:
            return None
        return (
            f"{self.overlap_share:.1%} of the evaluated prompts ({self.training_overlap} of "
            f"{self.prompts}) are in this router's training data: these figures overstate how "
            "it does on prompts it never saw; evaluate on held-out data"
        )

    def to_json(self) -> dict[str, Any]:
        return {
            "prompts": self.prompts,
            "strong": self.strong,
            "weak": self.weak,
            "strong_accuracy": round(self.strong_accuracy, 4),
            "weak_accuracy": round(self.weak_accuracy, 4),
            "routers": {
                name: {
                    "apgr": round(s.apgr, 4),
                    "cpt50": round(s.cpt50, 4),
                    "cpt80": round(s.cpt80, 4),
                }
                for name, s in self.routers.items()
            },
            "prices_per_million_tokens": {
                m: {"input": p.input, "output": p.output} for m, p in self.prices.items()
            },
            "willingness_to_pay_curve": [
                {
                    "willingness_to_pay": "inf"
                    if math.isinf(p.willingness_to_pay)
                    else p.willingness_to_pay,
                    "accuracy": round(p.accuracy, 4),
                    "total_cost": round(p.total_cost, 6),
                    "share": {m: round(v, 4) for m, v in p.share.items()},
                }
                for p in self.wtp
            ],
            "completion_tokens_from_data": self.completion_tokens_from_data,
            "note": self.note,
            "training_overlap": None
            if self.training_overlap is None
            else {"prompts": self.training_overlap, "share": round(self.overlap_share or 0.0, 4)},
            "warning": self.warning,
        }


def pick_pair(
    router: QualityRouter, table: ScoreTable, strong: str | None, weak: str | None
) -> tuple[str, str]:
    """The strong and weak model: as given, else the best and worst scorers in the data."""
    usable = [m for m in table.models if m in router.models]
    for given, role in ((strong, "--strong"), (weak, "--weak")):
        if given is not None and given not in usable:
            raise RouterDataError(
                f"{role} {given!r} must be a model both in the data and in the router; "
                f"these are: {', '.join(usable) or 'none'}"
            )
    if len(usable) < 2:
        raise RouterDataError(
            "the data and the router share fewer than two models (data: "
            f"{', '.join(table.models)}; router: {', '.join(router.models)})"
        )
    ranked = sorted(usable, key=lambda m: float(np.nanmean(table.column(m))))
    strong = strong or next(m for m in reversed(ranked) if m != weak)
    weak = weak or next(m for m in ranked if m != strong)
    if strong == weak:
        raise RouterDataError("--strong and --weak must be different models")
    return strong, weak


def evaluate_router(
    router: QualityRouter,
    table: ScoreTable,
    *,
    strong: str | None = None,
    weak: str | None = None,
    prices: Mapping[str, ModelPrice] | None = None,
    random_draws: int = 200,
) -> EvalReport:
    """Score `router` on every prompt of `table` that both chosen models were scored on."""
    strong, weak = pick_pair(router, table, strong, weak)
    pair = [weak, strong]
    columns = [table.models.index(m) for m in pair]
    keep = np.flatnonzero(~np.isnan(table.scores[:, columns]).any(axis=1))
    if len(keep) == 0:
        raise RouterDataError(f"no prompt has scores for both {strong!r} and {weak!r}")
    data = table.subset(keep)
    actual = data.scores[:, columns]
    w, s = actual[:, 0], actual[:, 1]
    if math.isclose(float(w.mean()), float(s.mean()), abs_tol=1e-12):
        raise RouterDataError(
            f"{strong!r} and {weak!r} have the same mean score here, so there is no gap to "
            "recover; APGR is undefined"
        )

    quality, tokens = router.predict_many(data.prompts)
    at = [router.models.index(m) for m in pair]
    quality, tokens = quality[:, at], tokens[:, at]
    routers: dict[str, RouterScores] = {}
    for name, scores in (
        ("router", quality[:, 1] - quality[:, 0]),
        ("prompt length", length_scores(data.prompts)),
    ):
        curve = pgr_curve(scores, w, s)
        routers[name] = RouterScores(apgr(curve), cpt(curve, 0.5), cpt(curve, 0.8))
    routers["random"] = RouterScores(*random_baseline(w, s, draws=random_draws))

    price_table = {**REFERENCE_PRICES, **(prices or {})}
    missing = [m for m in pair if m not in price_table]
    points: list[WtpPoint] = []
    note = "prompt tokens = characters / 4"
    recorded = data.completion_tokens[:, columns]
    from_data = bool((~np.isnan(recorded)).any())
    if missing:
        note = f"no price for {', '.join(missing)} (give --price MODEL=IN,OUT): no cost curve"
    else:
        prompt_tokens = np.array([len(p) / CHARS_PER_TOKEN for p in data.prompts])
        spent_tokens = np.where(np.isnan(recorded), tokens, recorded)
        predicted_cost = cost_matrix(pair, price_table, prompt_tokens, tokens)
        actual_cost = cost_matrix(pair, price_table, prompt_tokens, spent_tokens)
        grid = wtp_grid(quality, predicted_cost)
        points = wtp_curve(pair, quality, predicted_cost, actual, actual_cost, grid)
        if not from_data:
            note += "; no response texts in the data: completion tokens are the router's estimate"
    return EvalReport(
        prompts=len(keep),
        strong=strong,
        weak=weak,
        strong_accuracy=float(s.mean()),
        weak_accuracy=float(w.mean()),
        routers=routers,
        prices={m: price_table[m] for m in pair if m in price_table},
        wtp=points,
        completion_tokens_from_data=from_data,
        note=note,
        training_overlap=None
        if router.fingerprints is None
        else overlap(router.fingerprints, data.prompts),
    )


def cost_matrix(
    models: Sequence[str],
    prices: Mapping[str, ModelPrice],
    prompt_tokens: np.ndarray[Any, np.dtype[np.float64]],
    completion_tokens: np.ndarray[Any, np.dtype[np.float64]],
) -> np.ndarray[Any, np.dtype[np.float64]]:
    """Prompts × models USD: prompt tokens × input price + completion tokens × output price."""
    return np.stack(
        [
            (prompt_tokens * prices[m].input + completion_tokens[:, i] * prices[m].output) / 1e6
            for i, m in enumerate(models)
        ],
        axis=1,
    )
