"""Training, the saved artifact and prediction, on data whose difficulty is known."""

from __future__ import annotations

import json
import time
import zipfile
from pathlib import Path

import numpy as np
import pytest

from crossroads.learned.data import LabelledRow, RouterDataError
from crossroads.learned.decision import ModelPrice
from crossroads.learned.logistic import fit_logistic, sigmoid
from crossroads.learned.metrics import apgr, pgr_curve
from crossroads.learned.predictor import (
    QualityRouter,
    RouterArtifactError,
    TrainSettings,
    train,
)
from crossroads.learned.trees import fit_boosted_trees

WEAK, STRONG = "weak-model", "strong-model"
SMALL = TrainSettings(rounds=30, min_leaf=10)


def synthetic_prompts(count: int, seed: int) -> list[tuple[str, bool]]:
    """Half short trivia (easy), half multi-step word problems (hard), shuffled."""
    rng = np.random.default_rng(seed)
    prompts = []
    for i in range(count):
        if i % 2:
            numbers = rng.integers(2, 900, size=int(rng.integers(4, 9)))
            steps = " Then ".join(f"she buys {n} more items at ${n % 7 + 1} each" for n in numbers)
            prompts.append(
                (f"Problem {i}: Ann has 12 boxes. {steps}. How much does she pay?", True)
            )
        else:
            prompts.append((f"Question {i}: what is the capital of country number {i}?", False))
    order = rng.permutation(count)
    return [prompts[j] for j in order]


def synthetic_rows(count: int = 240, seed: int = 0) -> list[LabelledRow]:
    """The weak model fails most hard prompts; the strong one fails few of anything."""
    rng = np.random.default_rng(seed + 1)
    rows = []
    for prompt, hard in synthetic_prompts(count, seed):
        weak_ok = rng.random() < (0.25 if hard else 0.9)
        strong_ok = rng.random() < (0.85 if hard else 0.95)
        tokens = 200.0 if hard else 20.0
        rows.append(LabelledRow(prompt, WEAK, float(weak_ok), completion_tokens=tokens))
        rows.append(LabelledRow(prompt, STRONG, float(strong_ok), completion_tokens=tokens * 1.5))
    return rows


def test_logistic_regression_recovers_a_known_rule() -> None:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(2000, 2))
    y = (rng.random(2000) < sigmoid(2.0 * x[:, 0] - 1.0)).astype(float)
    model = fit_logistic(x, y, l2=1.0)
    assert model.coef[1] == pytest.approx(2.0, abs=0.3)
    assert model.coef[0] == pytest.approx(-1.0, abs=0.3)
    assert abs(model.coef[2]) < 0.2


def test_boosted_trees_learn_a_threshold_no_line_fits() -> None:
    rng = np.random.default_rng(0)
    x = rng.uniform(-1, 1, size=(3000, 3))
    inside = np.abs(x[:, 1]) < 0.4  # a band: no single linear boundary separates it
    y = (rng.random(3000) < np.where(inside, 0.9, 0.1)).astype(float)
    trees = fit_boosted_trees(x, y, rounds=60, depth=2, learning_rate=0.2, min_leaf=50)
    p = sigmoid(trees.logit(x))
    assert p[inside].mean() > 0.8 > 0.2 > p[~inside].mean()
    assert trees.logit(x[0]).shape == (1,)


def test_train_save_load_predict_round_trip(tmp_path: Path) -> None:
    router = train(synthetic_rows(), settings=SMALL)
    assert router.models == [STRONG, WEAK]
    path = tmp_path / "router.npz"
    router.save(path)
    loaded = QualityRouter.load(path)
    prompt = "Problem 7: Ann has 12 boxes. She buys 40 more at $3 each. How much does she pay?"
    before, after = router.predict(prompt), loaded.predict(prompt)
    assert after == before
    assert after.query_type == "math"
    assert all(0 <= q <= 1 for q in after.quality.values())
    assert after.completion_tokens[STRONG] == pytest.approx(1.5 * after.completion_tokens[WEAK])
    assert loaded.summary["rows_per_model"] == {STRONG: 240, WEAK: 240}
    with zipfile.ZipFile(path) as archive:  # plain arrays only: nothing to unpickle
        assert all(name.endswith(".npy") for name in archive.namelist())


def test_router_ranks_unseen_prompts_by_difficulty() -> None:
    router = train(synthetic_rows(240, seed=0), settings=SMALL)
    held_out = synthetic_rows(200, seed=7)
    prompts = [r.prompt for r in held_out if r.model == WEAK]
    hard = np.array([p.startswith("Problem") for p in prompts], dtype=float)
    weak = np.array([r.score for r in held_out if r.model == WEAK])
    strong = np.array([r.score for r in held_out if r.model == STRONG])
    quality, tokens = router.predict_many(prompts)
    gap = quality[:, router.models.index(STRONG)] - quality[:, router.models.index(WEAK)]
    # As good as knowing which prompts are hard (the best any router can do here, ≈ 0.7).
    best = apgr(pgr_curve(hard, weak, strong))
    assert apgr(pgr_curve(gap, weak, strong)) == pytest.approx(best, abs=0.03)
    assert best > 0.65
    assert tokens.shape == (len(prompts), 2)


def test_choose_trades_quality_for_cost() -> None:
    router = train(synthetic_rows(), settings=SMALL)
    prices = {WEAK: ModelPrice(0.6, 0.6), STRONG: ModelPrice(10, 30)}
    hard = router.predict(
        "Problem 1: Ann has 12 boxes. She buys 40 more at $3 each. Then she buys 300 more at "
        "$2 each. Then she buys 17 more at $5 each. How much does she pay?"
    )
    easy = router.predict("Question 3: what is the capital of country number 3?")
    assert hard.choose(prices, 100, 0.0) == WEAK
    assert hard.choose(prices, 100, float("inf")) == STRONG
    assert hard.choose(prices, 100, 1.0) == STRONG
    assert easy.choose(prices, 100, 0.001) == WEAK
    with pytest.raises(ValueError, match="none of the candidates"):
        easy.choose({"other": ModelPrice(1, 1)}, 100, 1.0)


def test_prediction_is_fast_and_loading_is_quick(tmp_path: Path) -> None:
    router = train(synthetic_rows(), settings=TrainSettings())
    path = tmp_path / "router.npz"
    router.save(path)
    started = time.perf_counter()
    loaded = QualityRouter.load(path)
    assert time.perf_counter() - started < 2.0
    prompt = "Explain, step by step, why the sky looks blue at noon and red at sunset. " * 8
    times = []
    for _ in range(50):
        started = time.perf_counter()
        loaded.predict(prompt)
        times.append(time.perf_counter() - started)
    assert sorted(times)[25] < 0.005


def test_too_few_rows_is_a_clear_error() -> None:
    rows = [LabelledRow(f"p{i}", "lonely", 1.0) for i in range(3)]
    with pytest.raises(RouterDataError, match="'lonely' has 3 labelled rows"):
        train(rows)
    with pytest.raises(RouterDataError, match="'absent' has 0"):
        train(synthetic_rows(), models=["absent"])


def test_bad_artifacts_are_refused_with_a_reason(tmp_path: Path) -> None:
    garbage = tmp_path / "garbage.npz"
    garbage.write_bytes(b"definitely not a zip")
    with pytest.raises(RouterArtifactError, match="not a router artifact"):
        QualityRouter.load(garbage)
    with pytest.raises(RouterArtifactError, match="no such file"):
        QualityRouter.load(tmp_path / "absent.npz")

    router = train(synthetic_rows(), settings=SMALL)
    good = tmp_path / "good.npz"
    router.save(good)
    with np.load(good) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["features"] = [*header["features"], "a_feature_from_the_future"]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    stale = tmp_path / "stale.npz"
    with stale.open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(RouterArtifactError, match="another version"):
        QualityRouter.load(stale)

    del arrays["logistic_0"]
    header["features"] = header["features"][:-1]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    broken = tmp_path / "broken.npz"
    with broken.open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(RouterArtifactError, match="damaged"):
        QualityRouter.load(broken)


def test_default_router_ships_and_predicts() -> None:
    router = QualityRouter.load_default()
    assert "gpt-4-1106-preview" in router.models
    prediction = router.predict("What is the derivative of x^3 + 2x?")
    assert set(prediction.quality) == set(router.models)
