"""The `[quality]` config section: hallucination risk, criteria and mixtures of agents.

One section holds all three because they share one machinery — extra upstream calls made by
a response or request stage, billed to the caller's key — and one stage (stages/quality.py).
Everything is off by default; a request turns a piece on with its own fields
(`quality_risk_threshold`, `quality`, `criteria`, `integrity`, `model: "moa"`).
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field

__all__ = [
    "AUTOCORRECT_MODES",
    "METHODS",
    "CriterionConfig",
    "MixtureConfig",
    "QualityConfig",
    "QualityLayer",
    "QualityOptions",
]

Method = Literal["grounding", "consistency", "judge", "onnx", "overlap"]
METHODS: tuple[str, ...] = ("grounding", "consistency", "judge", "onnx", "overlap")
Action = Literal["flag", "autocorrect"]
AutocorrectMode = Literal["regenerate", "drop"]
AUTOCORRECT_MODES: tuple[str, ...] = ("regenerate", "drop")
Name = Annotated[str, Field(min_length=1, max_length=64)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class QualityOptions(_Strict):
    """How one request's answer is checked: the config's defaults, or the request's
    `quality` object (every field optional there, filled from the config)."""

    method: Method | None = None
    action: Action | None = None
    autocorrect: AutocorrectMode | None = None
    samples: int | None = Field(None, ge=2, le=10)  # consistency: answers compared
    judge_model: Name | None = None
    threshold: float | None = Field(None, ge=0, le=1)


class QualityLayer(QualityOptions):
    """A model's or a key's `answer_quality` table (a virtual key's `metadata.answer_quality`).

    Its presence checks every answer for that model or key (`enabled = false` turns that
    off); each field left out comes from the next layer down. Precedence, field by field:
    the request, then the key, then the model, then `[quality]`. `criteria` are the names of
    `[quality.criteria]` entries run on every answer unless the request sends its own list.
    (Named `answer_quality` because a model's `quality` is the router's prior.)
    """

    enabled: bool = True
    criteria: list[Name] | None = Field(None, max_length=16)


class CriterionConfig(_Strict):
    """A named LLM-judge criterion: `prompt` says what a passing answer does."""

    prompt: Annotated[str, Field(min_length=1)]
    model: Name
    kind: Literal["pass_fail", "score"] = "pass_fail"
    pass_score: float = Field(0.5, ge=0, le=1)  # `score` criteria pass at or above this


class MixtureConfig(_Strict):
    """A mixture of agents: proposers answer, the aggregator writes the final answer from
    their proposals; with `layers` > 1 the proposers see the previous layer's answers."""

    proposers: Annotated[list[Name], Field(min_length=1, max_length=8)]
    aggregator: Name
    layers: int = Field(1, ge=1, le=3)


class QualityConfig(_Strict):
    # Check every answer (True) or only requests that ask (`quality_risk_threshold`, `quality`).
    enabled: bool = False
    threshold: float = Field(0.7, ge=0, le=1)
    method: Method = "grounding"
    action: Action = "flag"
    autocorrect: AutocorrectMode = "regenerate"
    samples: int = Field(3, ge=2, le=10)
    judge_model: Name | None = None
    # A local ONNX checker (method "onnx"): inputs `features` float32 [1, 12] (the grounding
    # features), output a probability of hallucination.
    onnx_path: str | None = None
    # Most integrity candidates a request may ask for.
    max_integrity: int = Field(7, ge=1, le=15)
    criteria: dict[Name, CriterionConfig] = Field(default_factory=dict)
    moa: dict[Name, MixtureConfig] = Field(default_factory=dict)

    def unknown_in_layer(
        self, path: str, layer: QualityLayer | None, models: Collection[str]
    ) -> list[str]:
        """`path: problem` lines for the criteria and judge model a model's or key's layer
        names that this section or `models` lacks."""
        if layer is None:
            return []
        known = ", ".join(sorted(self.criteria)) or "none are configured"
        problems = [
            f"{path}.criteria[{i}]: unknown criterion {name!r} (quality.criteria: {known})"
            for i, name in enumerate(layer.criteria or ())
            if name not in self.criteria
        ]
        if models and layer.judge_model is not None and layer.judge_model not in models:
            problems.append(f"{path}.judge_model: unknown model {layer.judge_model!r}")
        return problems

    def unknown_models(self, models: Collection[str]) -> list[str]:
        """`path: problem` lines for every model this section names that `models` lacks."""
        named: list[tuple[str, str]] = []
        if self.judge_model is not None:
            named.append(("quality.judge_model", self.judge_model))
        for name, criterion in self.criteria.items():
            named.append((f"quality.criteria.{name}.model", criterion.model))
        for name, mixture in self.moa.items():
            named += [
                (f"quality.moa.{name}.proposers[{i}]", m) for i, m in enumerate(mixture.proposers)
            ]
            named.append((f"quality.moa.{name}.aggregator", mixture.aggregator))
        known = ", ".join(sorted(models))
        return [
            f"{path}: unknown model {model!r} (known: {known})"
            for path, model in named
            if model not in models
        ]
