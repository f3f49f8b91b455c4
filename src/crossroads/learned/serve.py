"""`model: "router"`: rank one request's candidate models by predicted quality and cost.

The trained `QualityRouter` predicts, per profile it knows, how well a model answers this
prompt and how long the answer will be; config maps gateway models onto those profiles
(`router_profile`, or the same name) and gives a prior `quality` to models it has no profile
for. Each candidate's predicted cost is prompt tokens × input price + predicted completion
tokens × output price, at its first deployment's price. Candidates over `max_cost` are
excluded, the rest ranked by predicted quality × (willingness_to_pay / 0.10) − predicted
cost, and a config rule for the prompt's query type puts its model first. The gateway then
routes the ranking exactly like a `models` fallback list, so a failing choice falls back to
the next-ranked model; a model none of whose deployments can take the request (open circuits,
unsupported parameters, `provider` preferences) is excluded from the ranking once that route
is planned. The report carries the prediction's `confidence`: how much of the predicted
quality came from the learned models rather than the priors (see `predictor`).
"""

from __future__ import annotations

import math
import os
import statistics
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from crossroads.catalog import Catalog
from crossroads.config import ModelConfig, RouterConfig
from crossroads.learned.decision import ModelPrice, utility
from crossroads.learned.predictor import QualityRouter, RouterArtifactError
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.usage import estimate_tokens, prompt_characters

if TYPE_CHECKING:  # `crossroads config check` loads this module: no database layer for it
    from crossroads.protocol.chat import ChatCompletionRequest
    from crossroads.routing.plan import RoutePlan
    from crossroads.storage.key_store import VirtualKey

__all__ = ["ROUTER_MODEL", "LearnedRouter", "RouterCandidate", "RouterDecision", "load_router"]

ROUTER_MODEL = "router"
_DEFAULT_COMPLETION_TOKENS = 256.0  # when neither the artifact nor a profile says


@dataclass(slots=True)
class RouterCandidate:
    model: str
    predicted_quality: float | None = None
    predicted_cost: float | None = None
    score: float | None = None
    source: str | None = None  # "profile:<name>" or "prior"
    excluded: str | None = None

    def describe(self) -> dict[str, Any]:
        return {
            "model": self.model,
            "predicted_quality": _rounded(self.predicted_quality),
            "predicted_cost": _rounded(self.predicted_cost, 8),
            "score": _rounded(self.score, 8),
            "source": self.source,
            "excluded": self.excluded,
        }


@dataclass(slots=True)
class RouterDecision:
    """What the router saw and chose; `describe()` is the response's `routing.router`."""

    query_type: str
    willingness_to_pay: float
    max_cost: float | None
    prompt_tokens: int
    candidates: list[RouterCandidate]
    ranking: list[str] = field(default_factory=list)
    rule: str | None = None
    confidence: float = 1.0  # how like the router's training data the prompt is (0–1)

    def describe(self) -> dict[str, Any]:
        """`chosen` is the router's first choice; `routing.router.served` adds who answered."""
        return {
            "query_type": self.query_type,
            "confidence": round(self.confidence, 4),
            "willingness_to_pay": self.willingness_to_pay,
            "max_cost": self.max_cost,
            "prompt_tokens": self.prompt_tokens,
            "rule": self.rule,
            "candidates": [c.describe() for c in self.candidates],
            "ranking": self.ranking,
            "chosen": self.ranking[0] if self.ranking else None,
        }

    def exclude_unroutable(self, plan: RoutePlan) -> None:
        """Drop ranked models whose every deployment the planned route excluded."""
        routed = {c.deployment.model for c in plan.candidates}
        reasons: dict[str, list[str]] = {}
        for exclusion in plan.excluded:
            deployment = exclusion.deployment
            reasons.setdefault(deployment.model, []).append(f"{deployment.key}: {exclusion.reason}")
        for candidate in self.candidates:
            name = candidate.model
            # A ranked model with neither candidates nor exclusions shares its upstream with
            # one ranked earlier, which is tried once: it stays.
            if name in self.ranking and name not in routed and name in reasons:
                candidate.excluded = "no deployment can serve it: " + "; ".join(reasons[name])
                self.ranking.remove(name)


class LearnedRouter:
    """Ranks candidates for `model: "router"` requests; `predictor` may be swapped live."""

    def __init__(
        self,
        predictor: QualityRouter,
        catalog: Catalog,
        models: Mapping[str, ModelConfig],
        config: RouterConfig,
    ) -> None:
        self._catalog = catalog
        self._models = models
        self._config = config
        self.predictor = predictor  # validated by the setter

    @property
    def predictor(self) -> QualityRouter:
        return self._predictor

    @predictor.setter
    def predictor(self, predictor: QualityRouter) -> None:
        """Swap the trained artifact (one assignment: a request in flight keeps the one it
        read); refused by `check`."""
        self.check(predictor)
        self._predictor = predictor

    def check(self, predictor: QualityRouter) -> None:
        """Refuse an artifact without a profile some configured model is predicted by.

        That is every `router_profile`, and, once serving, every profile a model uses under
        its own name: a retrained artifact must not silently turn a model's prediction into
        its prior, or exclude it.
        """
        current = getattr(self, "_predictor", None)
        missing = [
            f"models.{name}.router_profile = {model.router_profile!r}"
            for name, model in self._models.items()
            if model.router_profile is not None and model.router_profile not in predictor.models
        ]
        if current is not None:
            missing += [
                f"models.{name} (predicted by its own name)"
                for name, model in self._models.items()
                if model.router_profile is None
                and name in current.models
                and name not in predictor.models
            ]
        if missing:
            raise RouterArtifactError(
                f"the router artifact has no profile for {', '.join(missing)}; it knows: "
                f"{', '.join(predictor.models)}"
            )

    def unrated(self) -> list[str]:
        """Routable models with neither a profile nor a prior `quality`: never ranked."""
        known = self._predictor.models
        return [
            name
            for name, model in self._models.items()
            if model.routable
            and model.quality is None
            and model.router_profile is None
            and name not in known
        ]

    def decide(
        self, request: ChatCompletionRequest, virtual_key: VirtualKey | None
    ) -> RouterDecision:
        """Rank the candidates for `request`; a `GatewayError` when none can take it."""
        names = self._candidate_names(request)
        messages = [m.model_dump(include={"role", "content"}) for m in request.messages]
        predictor = self._predictor  # one artifact for the whole decision, even mid-swap
        from crossroads.learned.from_log import request_prompt  # with the database layer

        prediction = predictor.predict(request_prompt(messages) or "")
        prompt_tokens = estimate_tokens(prompt_characters(messages))
        wtp = (
            self._config.willingness_to_pay
            if request.willingness_to_pay is None
            else request.willingness_to_pay
        )
        decision = RouterDecision(
            query_type=prediction.query_type,
            willingness_to_pay=wtp,
            max_cost=request.max_cost,
            prompt_tokens=prompt_tokens,
            candidates=[],
            confidence=prediction.confidence,
        )
        fallback_tokens = (
            statistics.median(prediction.completion_tokens.values())
            if prediction.completion_tokens
            else _DEFAULT_COMPLETION_TOKENS
        )
        for name in names:
            candidate = RouterCandidate(name)
            decision.candidates.append(candidate)
            allowed = virtual_key.models if virtual_key is not None else None
            if allowed is not None and name not in allowed:
                candidate.excluded = "not allowed for this API key"
                continue
            settings = self._models[name]
            profile = settings.router_profile or (name if name in prediction.quality else None)
            if profile is not None:
                quality = prediction.quality[profile]
                tokens = prediction.completion_tokens.get(profile, fallback_tokens)
                candidate.source = f"profile:{profile}"
            elif settings.quality is not None:
                quality, tokens = settings.quality, fallback_tokens
                candidate.source = "prior"
            else:
                candidate.excluded = (
                    f"no quality estimate: set models.{name}.quality or "
                    f"models.{name}.router_profile"
                )
                continue
            price = self._catalog.resolve(name).deployments[0].price
            cost = ModelPrice(price.input, price.output).cost(prompt_tokens, tokens)
            candidate.predicted_quality, candidate.predicted_cost = quality, cost
            candidate.score = _score(quality, cost, wtp)
            if request.max_cost is not None and cost > request.max_cost:
                candidate.excluded = f"predicted cost {cost:.6g} > max_cost {request.max_cost}"
        ranked = sorted(
            (c for c in decision.candidates if c.excluded is None),
            key=lambda c: _rank(c, wtp),
        )
        if not ranked:
            reasons = "; ".join(f"{c.model}: {c.excluded}" for c in decision.candidates)
            raise GatewayError(
                400,
                f"No model can serve this request through the router: {reasons}.",
                param="model",
                code="no_router_candidate",
            )
        decision.ranking = [c.model for c in ranked]
        for rule in self._config.rules:
            if rule.query_type == prediction.query_type and rule.model in decision.ranking:
                decision.ranking.remove(rule.model)
                decision.ranking.insert(0, rule.model)
                decision.rule = f"{rule.query_type} -> {rule.model}"
                break
        return decision

    def _candidate_names(self, request: ChatCompletionRequest) -> list[str]:
        if request.route == "sort":
            raise bad_request(
                '`route: "sort"` reorders the candidates by price or speed; with model '
                '"router" the predicted quality and cost rank them. Leave `route` out.',
                param="route",
            )
        if request.models:
            for i, name in enumerate(request.models):
                if name == ROUTER_MODEL:
                    raise bad_request(
                        "`models` lists the router's candidates; it cannot contain 'router'.",
                        param=f"models[{i}]",
                    )
                try:
                    self._catalog.resolve(name)
                except GatewayError as exc:
                    exc.param = f"models[{i}]"
                    raise
            return list(dict.fromkeys(request.models))
        names = [name for name, model in self._models.items() if model.routable]
        if not names:
            raise bad_request(
                "No model is routable: send `models` with the candidates for this request, "
                "or mark models with `routable = true` in the gateway's config.",
                param="model",
                code="no_router_candidate",
            )
        return names


def load_router(config: RouterConfig) -> QualityRouter:
    """The artifact `router.artifact` names, or the one shipped in the package.

    An artifact that is also `retrain_out` and does not exist yet is a gateway's first start
    before its first retraining: it starts from the packaged router.
    """
    artifact = config.artifact
    if artifact is None:
        return QualityRouter.load_default()
    if (
        config.retrain_out is not None
        and os.path.abspath(artifact) == os.path.abspath(config.retrain_out)
        and not os.path.exists(artifact)
    ):
        return QualityRouter.load_default()
    return QualityRouter.load(artifact)


def _score(quality: float, cost: float, willingness_to_pay: float) -> float | None:
    """The reported score; None when a huge willingness_to_pay overflows it (then
    `_rank` still orders by quality, then cost)."""
    if math.isinf(willingness_to_pay):
        return quality
    score = utility(quality, cost, willingness_to_pay)
    return score if math.isfinite(score) else None


def _rank(candidate: RouterCandidate, willingness_to_pay: float) -> tuple[float, float, float]:
    """Sort key, best first: the score divided by willingness_to_pay / 0.10, which orders
    the same but cannot overflow; ties go to the cheaper, then the better."""
    quality = candidate.predicted_quality or 0.0
    cost = candidate.predicted_cost or 0.0
    value = -cost if willingness_to_pay == 0 else quality - cost * 0.10 / willingness_to_pay
    return (-value, cost, -quality)


def _rounded(value: float | None, digits: int = 4) -> float | None:
    return None if value is None else round(value, digits)
