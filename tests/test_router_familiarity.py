"""The router's "I don't know": familiarity, the prior it falls back on, feedback moving that
prior, training fingerprints in `router eval`, and artifacts from the previous version."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from typer.testing import CliRunner

from crossroads.catalog import Catalog
from crossroads.cli import app
from crossroads.config import parse_config
from crossroads.learned import retrain as retrain_module
from crossroads.learned.data import LabelledRow, score_table
from crossroads.learned.evaluation import evaluate_router
from crossroads.learned.features import prompt_features
from crossroads.learned.fingerprints import fingerprint
from crossroads.learned.predictor import QualityRouter, RouterArtifactError, train
from crossroads.learned.priors import PSEUDO_COUNT, prior_inputs
from crossroads.learned.querytype import classify
from crossroads.learned.retrain import Retrainer
from crossroads.learned.serve import LearnedRouter
from crossroads.testing.fake_openai import FakeOpenAI
from tests.test_router_gateway import router_config
from tests.test_router_predictor import SMALL, STRONG, WEAK, synthetic_rows

runner = CliRunner()
FAR = "Write a whimsical poem about a lighthouse keeper who befriends a storm."
NEAR = "Question 7: what is the capital of country number 7?"


@pytest.fixture(scope="module")
def router() -> QualityRouter:
    return train(synthetic_rows(), settings=SMALL)


def _parts(router: QualityRouter, prompt: str) -> tuple[np.ndarray, np.ndarray]:
    """(learned quality, prior quality) of one prompt, per model."""
    query_type = classify(prompt)
    x = prompt_features(prompt, query_type)[None, :]
    standard = (x - router.feature_mean) / router.feature_scale
    assert router.priors is not None
    prior = router.priors.quality(router.models, prior_inputs(standard, [query_type]), [query_type])
    return router.learned_quality(x)[0], prior[0]


def test_a_prompt_like_the_training_data_uses_the_learned_models(router: QualityRouter) -> None:
    prediction = router.predict(NEAR)
    learned, _ = _parts(router, NEAR)
    assert prediction.confidence == 1.0
    assert [prediction.quality[m] for m in router.models] == pytest.approx(learned)


def test_an_unfamiliar_prompt_falls_back_to_the_prior(router: QualityRouter) -> None:
    prediction = router.predict(FAR)
    learned, prior = _parts(router, FAR)
    assert prediction.query_type == "creative_writing"  # a type the training data never had
    assert prediction.confidence == 0.0
    assert [prediction.quality[m] for m in router.models] == pytest.approx(prior)
    assert not np.allclose(learned, prior)  # the fallback changed the answer


def test_distance_alone_lowers_confidence(router: QualityRouter) -> None:
    """Same query type as the training data, but nothing like its shape."""
    odd = "Question: " + " ".join(["what is the capital"] * 400) + "?" * 50
    assert classify(odd) == classify(NEAR)
    assert router.predict(odd).confidence < 0.5 < router.predict(NEAR).confidence


def test_feedback_moves_the_prior_of_its_model_and_query_type(router: QualityRouter) -> None:
    rated = [LabelledRow(f"Write a poem about the number {i}.", WEAK, 0.0) for i in range(40)]
    rated += [LabelledRow(f"Write a poem about the number {i}.", STRONG, 1.0) for i in range(40)]
    before = router.predict(FAR)
    after_router = router.with_feedback(rated)
    after = after_router.predict(FAR)
    for model, target in ((WEAK, 0.0), (STRONG, 1.0)):
        expected = (PSEUDO_COUNT * before.quality[model] + 40 * target) / (PSEUDO_COUNT + 40)
        assert after.quality[model] == pytest.approx(expected)
    assert (
        after.quality[STRONG] - after.quality[WEAK]
        > before.quality[STRONG] - (before.quality[WEAK])
    )
    # Other query types and familiar prompts keep their predictions.
    assert after_router.predict(NEAR).quality == pytest.approx(router.predict(NEAR).quality)
    # Feedback replaces, not accumulates; it survives saving; unknown models are ignored.
    assert router.with_feedback([LabelledRow(FAR, "someone-else", 1.0)]) is router
    assert after_router.with_feedback(rated).predict(FAR).quality == after.quality


def test_feedback_survives_saving(router: QualityRouter, tmp_path: Path) -> None:
    rated = [LabelledRow(f"Write a story about {i} cats.", WEAK, 1.0) for i in range(10)]
    shifted = router.with_feedback(rated)
    shifted.save(tmp_path / "r.npz")
    loaded = QualityRouter.load(tmp_path / "r.npz")
    assert loaded.predict(FAR).quality == pytest.approx(shifted.predict(FAR).quality)
    assert loaded.predict(FAR).quality != pytest.approx(router.predict(FAR).quality)


async def test_the_retrainer_feeds_rated_traffic_to_the_prior(
    fake_upstream: FakeOpenAI, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Too few rows to retrain, yet the packaged profile's prior moves with its feedback."""
    config = parse_config(router_config(fake_upstream, tmp_path / "log.db", retrain_interval=60))
    before = QualityRouter.load_default()
    learned = LearnedRouter(before, Catalog.from_config(config), config.models, config.router)

    async def rated(_engine: Any, *, since: Any = None) -> list[LabelledRow]:
        return [LabelledRow(f"Write a haiku about {i} frogs.", "gpt4", 0.0) for i in range(8)]

    monkeypatch.setattr(retrain_module, "feedback_rows", rated)
    retrainer = Retrainer(learned, engine=None, config=config.router, models=config.models)  # type: ignore[arg-type]
    assert await retrainer.retrain_once() is None
    profile = "gpt-4-1106-preview"  # `gpt4` maps onto it
    assert learned.predictor is not before
    assert learned.predictor.predict(FAR).quality[profile] < before.predict(FAR).quality[profile]


def test_eval_reports_the_share_of_prompts_seen_in_training(
    router: QualityRouter, tmp_path: Path
) -> None:
    seen = synthetic_rows()
    unseen = [
        LabelledRow(f"Unseen {r.prompt}", r.model, r.score, r.completion_tokens)
        for r in synthetic_rows()
    ]
    half = seen[: len(seen) // 2] + unseen[len(unseen) // 2 :]
    report = evaluate_router(router, score_table(half))
    assert report.training_overlap == report.prompts // 2
    assert report.warning is not None and "50.0% of the evaluated prompts" in report.warning
    assert evaluate_router(router, score_table(unseen)).warning is None

    path = tmp_path / "router.npz"
    router.save(path)
    data = tmp_path / "seen.jsonl"
    data.write_text(
        "".join(
            json.dumps({"prompt": r.prompt, "model": r.model, "score": r.score}) + "\n"
            for r in seen
        )
    )
    result = runner.invoke(app, ["router", "eval", "--router", str(path), "--data", str(data)])
    assert result.exit_code == 0, result.output
    assert "warning: 100.0% of the evaluated prompts (240 of 240)" in result.output
    result = runner.invoke(
        app, ["router", "eval", "--router", str(path), "--data", str(data), "--json"]
    )
    body = json.loads(result.stdout)
    assert body["training_overlap"] == {"prompts": 240, "share": 1.0}


def test_fingerprints_ignore_surrounding_whitespace() -> None:
    assert fingerprint("  What is 2+2?\n") == fingerprint("What is 2+2?")
    assert fingerprint("What is 2+2?") != fingerprint("What is 2+3?")


def _as_version_1(path: Path, out: Path) -> None:
    """Rewrite an artifact as the previous version wrote it: no familiarity, priors or
    fingerprints."""
    with np.load(path) as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 1
    for key in ("familiarity", "feedback"):
        header.pop(key, None)
    for key in ("centroids", "familiarity_scale", "priors", "fingerprints"):
        del arrays[key]
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with out.open("wb") as handle:
        np.savez(handle, **arrays)


def test_a_version_1_artifact_still_loads_and_predicts(
    router: QualityRouter, tmp_path: Path
) -> None:
    router.save(tmp_path / "v2.npz")
    _as_version_1(tmp_path / "v2.npz", tmp_path / "v1.npz")
    old = QualityRouter.load(tmp_path / "v1.npz")
    assert old.familiarity is None and old.priors is None and old.fingerprints is None
    prediction = old.predict(FAR)
    learned, _ = _parts(router, FAR)
    assert prediction.confidence == 1.0  # no notion of distance: as before
    assert [prediction.quality[m] for m in old.models] == pytest.approx(learned)
    assert old.with_feedback([LabelledRow(FAR, WEAK, 0.0)]) is old
    report = evaluate_router(old, score_table(synthetic_rows()))
    assert report.training_overlap is None
    assert report.warning is not None and "no training fingerprints" in report.warning


def test_an_artifact_from_a_newer_version_is_refused_clearly(
    router: QualityRouter, tmp_path: Path
) -> None:
    router.save(tmp_path / "r.npz")
    with np.load(tmp_path / "r.npz") as npz:
        arrays = {name: npz[name] for name in npz.files}
    header = json.loads(arrays["header"].tobytes())
    header["version"] = 99
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with (tmp_path / "new.npz").open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(RouterArtifactError, match=r"artifact version 99.*crossroads router train"):
        QualityRouter.load(tmp_path / "new.npz")
    del arrays["priors"]
    header["version"] = 2
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
    with (tmp_path / "broken.npz").open("wb") as handle:
        np.savez(handle, **arrays)
    with pytest.raises(RouterArtifactError, match="damaged"):
        QualityRouter.load(tmp_path / "broken.npz")


def test_the_packaged_router_knows_its_training_data_and_is_small() -> None:
    packaged = QualityRouter.load_default()
    assert packaged.fingerprints is not None and len(packaged.fingerprints) > 10_000
    assert packaged.familiarity is not None and packaged.priors is not None
    path = Path(__file__).parents[1] / "src/crossroads/learned/default_router.npz"
    assert path.stat().st_size < 120 * 1024
