"""The quality router: per candidate model, how well it will answer this prompt, and how long.

For each model the router holds two learners over the same prompt features — L2 logistic
regression and shallow boosted trees — and predicts the mean of their probabilities. Measured
on subjects never seen in training, the trees rank MMLU prompts best and the linear model ranks
GSM8K word problems best; their mean is close to the better of the two on both (the figures and
every alternative tried are in `benchmarks/router/README.md`).

Completion tokens are predicted per model and query type as the median seen in training (rows
whose completion length is known), falling back to the model's median and then to 256.

Out of distribution the learned models extrapolate, so each prediction is blended with the
model's prior (`priors`: per query type, a length trend, and feedback from the gateway's own
traffic) by the prompt's familiarity (`familiarity`: distance to the training data, calibrated
on held-out training prompts): quality = c · learned + (1 − c) · prior, c in [0, 1].

A trained router is one `.npz` file: numeric arrays plus a JSON header, read with
`allow_pickle=False`, so loading an artifact can never run code. The header records the feature
names; an artifact from a version with other features is refused rather than misread. Version 2
adds the familiarity centroids, the priors and fingerprints of the training prompts; a version 1
artifact still loads, and then predicts with full confidence as before and cannot tell whether
evaluated data overlaps its training data.
"""

from __future__ import annotations

import dataclasses
import io
import json
import time
import zipfile
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from crossroads.learned.data import LabelledRow, RouterDataError
from crossroads.learned.decision import ModelPrice, choose_models
from crossroads.learned.familiarity import Familiarity, fit_familiarity
from crossroads.learned.features import FEATURE_NAMES, prompt_features
from crossroads.learned.fingerprints import fingerprints
from crossroads.learned.logistic import LogisticModel, fit_logistic, sigmoid
from crossroads.learned.priors import Priors, feedback_table, fit_priors, prior_inputs
from crossroads.learned.querytype import QUERY_TYPES, classify
from crossroads.learned.trees import BoostedTrees, fit_boosted_trees

__all__ = [
    "DEFAULT_COMPLETION_TOKENS",
    "QualityRouter",
    "RouterArtifactError",
    "RouterPrediction",
    "TrainSettings",
    "train",
]

Floats = npt.NDArray[np.float64]
FORMAT: Final = "crossroads-router"
VERSION: Final = 2
READABLE_VERSIONS: Final = (1, 2)
DEFAULT_COMPLETION_TOKENS: Final = 256.0
MIN_ROWS_PER_MODEL: Final = 10
MIN_ROWS_PER_TYPE: Final = 20
DEFAULT_ARTIFACT: Final = "default_router.npz"


class RouterArtifactError(ValueError):
    """A router file that cannot be loaded; the message says why and what to do."""


@dataclass(frozen=True, slots=True)
class TrainSettings:
    """Learner settings; the defaults are the ones measured in benchmarks/router."""

    rounds: int = 100
    depth: int = 3
    learning_rate: float = 0.05
    min_leaf: int = 80
    tree_l2: float = 1.0
    logistic_l2: float = 10.0


@dataclass(frozen=True, slots=True)
class RouterPrediction:
    """Per candidate: predicted quality in [0, 1] and completion tokens; the query type."""

    query_type: str
    quality: dict[str, float]
    completion_tokens: dict[str, float]
    confidence: float = 1.0  # familiarity: 1 = like the training data, 0 = priors only

    def cost(self, model: str, price: ModelPrice, prompt_tokens: float) -> float:
        """Predicted USD cost of sending this prompt to `model`."""
        return price.cost(prompt_tokens, self.completion_tokens[model])

    def choose(
        self,
        prices: Mapping[str, ModelPrice],
        prompt_tokens: float,
        willingness_to_pay: float,
    ) -> str:
        """The candidate among `prices` (known to the router) with the highest utility."""
        candidates = [m for m in prices if m in self.quality]
        if not candidates:
            raise ValueError("none of the candidates is a model this router was trained on")
        quality = np.array([[self.quality[m] for m in candidates]])
        cost = np.array([[self.cost(m, prices[m], prompt_tokens) for m in candidates]])
        return candidates[int(choose_models(quality, cost, willingness_to_pay)[0])]


@dataclass(frozen=True, slots=True)
class _ModelLearners:
    logistic: LogisticModel
    trees: BoostedTrees


@dataclass(slots=True)
class QualityRouter:
    """Predicts each known model's quality on a prompt; see the module docstring."""

    models: list[str]
    feature_mean: Floats
    feature_scale: Floats
    learners: list[_ModelLearners]
    completion_tokens: dict[str, dict[str, float]]
    settings: TrainSettings = field(default_factory=TrainSettings)
    summary: dict[str, Any] = field(default_factory=dict)
    familiarity: Familiarity | None = None  # None (version 1 artifact): always confident
    priors: Priors | None = None
    fingerprints: npt.NDArray[np.uint32] | None = None  # None: not recorded (version 1)

    def predict(self, prompt: str) -> RouterPrediction:
        """Quality and completion tokens per model for one prompt (about a millisecond)."""
        query_type = classify(prompt)
        x = prompt_features(prompt, query_type)
        quality, confidence = self._quality(x[None, :], [query_type])
        return RouterPrediction(
            query_type=query_type,
            quality={m: float(q) for m, q in zip(self.models, quality[0], strict=True)},
            completion_tokens={m: self._tokens(m, query_type) for m in self.models},
            confidence=float(confidence[0]),
        )

    def predict_many(self, prompts: Sequence[str]) -> tuple[Floats, Floats]:
        """Prompts × models arrays of predicted quality and completion tokens."""
        quality, tokens, _ = self.predict_detailed(prompts)
        return quality, tokens

    def predict_detailed(self, prompts: Sequence[str]) -> tuple[Floats, Floats, Floats]:
        """Quality and completion tokens (prompts × models) and each prompt's confidence."""
        types = [classify(p) for p in prompts]
        x = np.array([prompt_features(p, t) for p, t in zip(prompts, types, strict=True)])
        x = x.reshape(len(prompts), len(FEATURE_NAMES))
        tokens = np.array([[self._tokens(m, t) for m in self.models] for t in types])
        quality, confidence = self._quality(x, types)
        return quality, tokens.reshape(len(prompts), len(self.models)), confidence

    def learned_quality(self, x: Floats) -> Floats:
        """Prompts × models quality from the learned models alone (no prior, no blending)."""
        standard = (x - self.feature_mean) / self.feature_scale
        columns = [
            (sigmoid(pair.logistic.logit(standard)) + sigmoid(pair.trees.logit(x))) / 2
            for pair in self.learners
        ]
        return np.stack(columns, axis=1)

    def _quality(self, x: Floats, types: Sequence[str]) -> tuple[Floats, Floats]:
        learned = self.learned_quality(x)
        if self.familiarity is None or self.priors is None:
            return learned, np.ones(len(x))
        standard = (x - self.feature_mean) / self.feature_scale
        confidence = self.familiarity.confidence(x, types)
        prior = self.priors.quality(self.models, prior_inputs(standard, types), types)
        c = confidence[:, None]
        return c * learned + (1 - c) * prior, confidence

    def with_feedback(
        self, rows: Iterable[LabelledRow], *, profile: Mapping[str, str] | None = None
    ) -> QualityRouter:
        """A copy whose priors lean toward the scores in `rows` (rated traffic), replacing
        any feedback applied before. A version 1 artifact (no priors) is returned as is."""
        if self.priors is None:
            return self
        table = {
            model: rated
            for model, rated in feedback_table(rows, profile=profile).items()
            if model in self.models
        }
        if table == self.priors.feedback:
            return self
        return dataclasses.replace(self, priors=dataclasses.replace(self.priors, feedback=table))

    def _tokens(self, model: str, query_type: str) -> float:
        table = self.completion_tokens.get(model, {})
        return table.get(query_type, table.get("*", DEFAULT_COMPLETION_TOKENS))

    # --- the artifact -----------------------------------------------------------------------

    def save(self, path: Path | str) -> None:
        """Write the router as one `.npz` file (arrays and a JSON header, no pickles)."""
        header = {
            "format": FORMAT,
            "version": VERSION,
            "models": self.models,
            "features": list(FEATURE_NAMES),
            "query_types": list(QUERY_TYPES),
            "completion_tokens": self.completion_tokens,
            "settings": asdict(self.settings),
            "summary": self.summary,
        }
        arrays: dict[str, npt.NDArray[Any]] = {
            "feature_mean": self.feature_mean,
            "feature_scale": self.feature_scale,
            "tree_base": np.array([pair.trees.base for pair in self.learners]),
        }
        if self.familiarity is not None:
            arrays["centroids"] = self.familiarity.centroids.astype(np.float32)
            arrays["familiarity_scale"] = self.familiarity.scale
            header["familiarity"] = {
                "near": self.familiarity.near,
                "far": self.familiarity.far,
                "type_counts": self.familiarity.type_counts,
            }
        if self.priors is not None:
            arrays["priors"] = np.stack([m.coef for m in self.priors.models])
            header["feedback"] = {
                m: {t: list(v) for t, v in rated.items()}
                for m, rated in self.priors.feedback.items()
            }
        if self.fingerprints is not None:
            arrays["fingerprints"] = self.fingerprints
        arrays["header"] = np.frombuffer(json.dumps(header).encode(), dtype=np.uint8)
        for i, pair in enumerate(self.learners):
            arrays[f"logistic_{i}"] = pair.logistic.coef
            arrays[f"tree_feature_{i}"] = pair.trees.feature
            arrays[f"tree_threshold_{i}"] = pair.trees.threshold
            arrays[f"tree_leaf_{i}"] = pair.trees.leaf
        buffer = io.BytesIO()
        np.savez_compressed(buffer, **arrays)  # type: ignore[arg-type]
        Path(path).write_bytes(buffer.getvalue())

    @classmethod
    def load(cls, path: Path | str) -> QualityRouter:
        """Read a router saved by `save`; `RouterArtifactError` says what is wrong with it."""
        path = Path(path)
        try:
            with np.load(path, allow_pickle=False) as npz:
                arrays = {name: npz[name] for name in npz.files}
        except FileNotFoundError:
            raise RouterArtifactError(f"{path}: no such file") from None
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as exc:
            raise RouterArtifactError(
                f"{path}: not a router artifact ({exc}); train one with "
                "`crossroads router train --data PATH --out FILE`"
            ) from None
        return cls._from_arrays(path, arrays)

    @classmethod
    def load_default(cls) -> QualityRouter:
        """The router shipped with Crossroads, trained on the shared RouteLLM data."""
        with resources.as_file(resources.files(__package__) / DEFAULT_ARTIFACT) as path:
            return cls.load(path)

    @classmethod
    def _from_arrays(cls, path: Path, arrays: dict[str, npt.NDArray[Any]]) -> QualityRouter:
        try:
            header = json.loads(arrays["header"].tobytes().decode())
        except (KeyError, UnicodeDecodeError, json.JSONDecodeError):
            raise RouterArtifactError(
                f"{path}: not a router artifact (no readable header)"
            ) from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            raise RouterArtifactError(f"{path}: not a router artifact (format is not {FORMAT})")
        if header.get("version") not in READABLE_VERSIONS or header.get("features") != list(
            FEATURE_NAMES
        ):
            raise RouterArtifactError(
                f"{path}: made by another version of Crossroads (artifact version "
                f"{header.get('version')}, other features); retrain it with "
                "`crossroads router train`"
            )
        try:
            models = [str(m) for m in header["models"]]
            learners = [
                _ModelLearners(
                    LogisticModel(arrays[f"logistic_{i}"].astype(np.float64)),
                    BoostedTrees(
                        float(arrays["tree_base"][i]),
                        arrays[f"tree_feature_{i}"].astype(np.int64),
                        arrays[f"tree_threshold_{i}"].astype(np.float64),
                        arrays[f"tree_leaf_{i}"].astype(np.float64),
                    ),
                )
                for i in range(len(models))
            ]
            router = cls(
                models=models,
                feature_mean=arrays["feature_mean"].astype(np.float64),
                feature_scale=arrays["feature_scale"].astype(np.float64),
                learners=learners,
                completion_tokens={
                    str(m): {str(k): float(v) for k, v in table.items()}
                    for m, table in header["completion_tokens"].items()
                },
                settings=TrainSettings(**header["settings"]),
                summary=dict(header.get("summary") or {}),
            )
            if header["version"] >= 2:
                router.familiarity = Familiarity(
                    router.feature_mean,
                    arrays["familiarity_scale"].astype(np.float64),
                    arrays["centroids"].astype(np.float64),
                    float(header["familiarity"]["near"]),
                    float(header["familiarity"]["far"]),
                    {str(t): int(n) for t, n in header["familiarity"]["type_counts"].items()},
                )
                router.priors = Priors(
                    [LogisticModel(c.astype(np.float64)) for c in arrays["priors"]],
                    {
                        str(m): {str(t): (float(v[0]), float(v[1])) for t, v in rated.items()}
                        for m, rated in header.get("feedback", {}).items()
                    },
                )
                router.fingerprints = arrays["fingerprints"].astype(np.uint32)
        except (KeyError, TypeError, ValueError, AttributeError, IndexError) as exc:
            raise RouterArtifactError(f"{path}: damaged router artifact ({exc!r})") from None
        width = len(FEATURE_NAMES)
        for pair in learners:
            if pair.logistic.coef.shape != (width + 1,) or (
                pair.trees.feature.size and int(pair.trees.feature.max()) >= width
            ):
                raise RouterArtifactError(f"{path}: damaged router artifact (array shapes)")
        if router.priors is not None and (
            len(router.priors.models) != len(models)
            or any(m.coef.shape != (len(QUERY_TYPES) + 2,) for m in router.priors.models)
        ):
            raise RouterArtifactError(f"{path}: damaged router artifact (prior shapes)")
        if router.familiarity is not None and router.familiarity.centroids.shape[1:] != (width,):
            raise RouterArtifactError(f"{path}: damaged router artifact (centroid shapes)")
        return router


def train(
    rows: Iterable[LabelledRow],
    *,
    models: Sequence[str] | None = None,
    settings: TrainSettings | None = None,
) -> QualityRouter:
    """Learn a router from labelled rows (every model with at least 10 rows, or `models`)."""
    settings = settings or TrainSettings()
    started = time.perf_counter()
    by_model: dict[str, list[LabelledRow]] = defaultdict(list)
    for row in rows:
        by_model[row.model].append(row)
    chosen = list(models) if models is not None else sorted(by_model)
    for model in chosen:
        if len(by_model.get(model, ())) < MIN_ROWS_PER_MODEL:
            raise RouterDataError(
                f"model {model!r} has {len(by_model.get(model, ()))} labelled rows; the router "
                f"needs at least {MIN_ROWS_PER_MODEL} per model"
            )
    if not chosen:
        raise RouterDataError("no labelled rows to train on")

    prompts = sorted({r.prompt for m in chosen for r in by_model[m]})
    types = {p: classify(p) for p in prompts}
    index = {p: i for i, p in enumerate(prompts)}
    features = np.array([prompt_features(p, types[p]) for p in prompts])
    mean = features.mean(axis=0)
    scale = features.std(axis=0)
    scale[scale < 1e-9] = 1.0  # a constant feature (its std may be rounding noise)
    standard = (features - mean) / scale

    learners = []
    tokens: dict[str, dict[str, float]] = {}
    labelled = []
    for model in chosen:
        model_rows = by_model[model]
        at = np.array([index[r.prompt] for r in model_rows])
        y = np.array([r.score for r in model_rows], dtype=np.float64)
        labelled.append((at, y))
        learners.append(
            _ModelLearners(
                fit_logistic(standard[at], y, l2=settings.logistic_l2),
                fit_boosted_trees(
                    features[at],
                    y,
                    rounds=settings.rounds,
                    depth=settings.depth,
                    learning_rate=settings.learning_rate,
                    min_leaf=settings.min_leaf,
                    l2=settings.tree_l2,
                ),
            )
        )
        tokens[model] = _completion_tokens(model_rows, types)
    summary = {
        "rows": sum(len(by_model[m]) for m in chosen),
        "prompts": len(prompts),
        "rows_per_model": {m: len(by_model[m]) for m in chosen},
        "mean_score": {m: float(np.mean([r.score for r in by_model[m]])) for m in chosen},
        "query_types": {t: sum(1 for v in types.values() if v == t) for t in QUERY_TYPES},
        "train_seconds": round(time.perf_counter() - started, 2),
    }
    return QualityRouter(
        chosen,
        mean,
        scale,
        learners,
        tokens,
        settings,
        summary,
        familiarity=fit_familiarity(features, [types[p] for p in prompts]),
        priors=fit_priors(prior_inputs(standard, [types[p] for p in prompts]), labelled),
        fingerprints=fingerprints(prompts),
    )


def _completion_tokens(rows: Sequence[LabelledRow], types: Mapping[str, str]) -> dict[str, float]:
    """Median completion tokens overall (`*`) and per query type with enough rows."""
    known = [(types[r.prompt], r.completion_tokens) for r in rows if r.completion_tokens]
    if not known:
        return {}
    table = {"*": float(np.median([t for _, t in known]))}
    by_type: dict[str, list[float]] = defaultdict(list)
    for query_type, count in known:
        by_type[query_type].append(float(count))
    for query_type, counts in by_type.items():
        if len(counts) >= MIN_ROWS_PER_TYPE:
            table[query_type] = float(np.median(counts))
    return table
