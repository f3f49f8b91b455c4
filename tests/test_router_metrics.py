"""APGR, CPT and the willingness-to-pay curve on cases small enough to work out by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest

from crossroads.learned.decision import ModelPrice, choose_models
from crossroads.learned.metrics import (
    apgr,
    cpt,
    length_scores,
    pgr_curve,
    random_baseline,
    wtp_curve,
    wtp_grid,
)

# Four prompts: the strong model alone is right on 0 and 1, both are right on 2, neither on 3.
WEAK = [0, 0, 1, 0]
STRONG = [1, 1, 1, 0]


def test_oracle_curve_by_hand() -> None:
    curve = pgr_curve([4, 3, 2, 1], WEAK, STRONG)
    assert curve.weak_accuracy == 0.25
    assert curve.strong_accuracy == 0.75
    assert list(curve.share) == [0, 0.25, 0.5, 0.75, 1]
    assert list(curve.pgr) == [0, 0.5, 1, 1, 1]
    # Area: 0.25 * (0 + 0.5) / 2 + 0.25 * (0.5 + 1) / 2 + 0.5 * 1 = 0.0625 + 0.1875 + 0.5
    assert apgr(curve) == pytest.approx(0.75)
    assert cpt(curve, 0.5) == pytest.approx(0.25)
    assert cpt(curve, 0.8) == pytest.approx(0.25 + 0.25 * 0.3 / 0.5)


def test_worst_order_and_constant_scores() -> None:
    worst = pgr_curve([1, 2, 3, 4], WEAK, STRONG)
    assert apgr(worst) == pytest.approx(0.25 * 0 + 0.25 * 0 / 2 + 0.25 * 0.5 / 2 + 0.25 * 1.5 / 2)
    # A router that knows nothing: one tie group, a straight line from 0 to 1.
    flat = pgr_curve([7, 7, 7, 7], WEAK, STRONG)
    assert list(flat.share) == [0, 1]
    assert apgr(flat) == pytest.approx(0.5)
    assert cpt(flat, 0.5) == pytest.approx(0.5)
    assert cpt(flat, 0.8) == pytest.approx(0.8)


def test_ties_are_a_random_order_not_a_lucky_one() -> None:
    # The right prompt tied with a wrong one must not count as found first.
    tied = pgr_curve([1, 1, 0, 0], [0, 0, 0, 0], [1, 0, 0, 0])
    assert list(tied.share) == [0, 0.5, 1]
    assert list(tied.pgr) == [0, 1, 1]
    assert apgr(tied) == pytest.approx(0.75)


def test_oracle_beats_random_on_noisy_data() -> None:
    rng = np.random.default_rng(1)
    weak = (rng.random(2000) < 0.6).astype(float)
    strong = np.maximum(weak, rng.random(2000) < 0.5).astype(float)
    oracle = apgr(pgr_curve(strong - weak, weak, strong))
    random_apgr, random50, random80 = random_baseline(weak, strong, draws=50)
    assert oracle > 0.85  # the gap is 20% of prompts: PGR is 1 from share 0.2 on
    assert random_apgr == pytest.approx(0.5, abs=0.02)
    assert random50 == pytest.approx(0.5, abs=0.03)
    assert random80 == pytest.approx(0.8, abs=0.03)


def test_numeric_scores_and_bad_input() -> None:
    curve = pgr_curve([2, 1], [0.5, 0.5], [1.0, 0.5])
    assert list(curve.pgr) == [0, 1, 1]
    with pytest.raises(ValueError, match="no performance gap"):
        pgr_curve([1, 2], [1, 0], [0, 1])
    with pytest.raises(ValueError, match="equal length"):
        pgr_curve([1], [1, 0], [0, 1])


def test_length_baseline() -> None:
    assert list(length_scores(["ab", "abcd"])) == [2, 4]


def test_routing_rule_extremes_and_middle() -> None:
    quality = np.array([[0.5, 0.9], [0.8, 0.8]])
    cost = np.array([[0.001, 0.01], [0.001, 0.01]])
    assert list(choose_models(quality, cost, 0)) == [0, 0]
    assert list(choose_models(quality, cost, math.inf)) == [1, 0]  # equal quality: cheaper
    # Gain of 0.4 quality is worth 0.4 * wtp / 0.1; it costs 0.009 more.
    assert list(choose_models(quality, cost, 0.002)) == [0, 0]
    assert list(choose_models(quality, cost, 0.003)) == [1, 0]
    with pytest.raises(ValueError, match="non-negative"):
        choose_models(quality, cost, -1)


def test_wtp_curve_sweeps_from_cheapest_to_best() -> None:
    quality = np.array([[0.5, 0.9], [0.6, 0.7], [0.9, 0.95]])
    predicted = np.array([[1e-4, 1e-3]] * 3)
    actual = np.array([[0, 1], [1, 1], [1, 1]], dtype=float)
    grid = wtp_grid(quality, predicted)
    assert grid[0] == 0 and math.isinf(grid[-1])
    points = wtp_curve(["weak", "strong"], quality, predicted, actual, predicted, grid)
    assert points[0].share == {"weak": 1.0, "strong": 0.0}
    assert points[0].accuracy == pytest.approx(2 / 3)
    assert points[0].total_cost == pytest.approx(3e-4)
    assert points[-1].share == {"weak": 0.0, "strong": 1.0}
    assert points[-1].accuracy == 1.0
    assert points[-1].total_cost == pytest.approx(3e-3)
    costs = [p.total_cost for p in points]
    assert costs == sorted(costs)


def test_model_price() -> None:
    assert ModelPrice(10, 30).cost(1000, 100) == pytest.approx(0.013)
