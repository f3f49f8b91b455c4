"""A request's route: the deployments it may go to, in the order they will be tried.

Planning happens once per request, before any upstream call: every deployment of the model
(and of the `models` fallbacks) is either a candidate or excluded with a reason the
response's `routing` field shows. Order comes from the strategy (config, or the request's
`routing` / `provider.sort`); the request's `provider` preferences then filter and reorder.
Circuit breakers are consulted here only to exclude open circuits; a half-open circuit's
probe slot is taken when an attempt is actually made.

Where the references differ, Crossroads chooses: `provider` as a string pins a provider
(APIpie); as an object it is OpenRouter's preferences. `route: "fallback"` tries the model,
then each of `models` in turn, each with its own strategy; `route: "sort"` pools every
deployment of all of them and orders the pool by `provider.sort`, else `routing`, else price.
"""

from __future__ import annotations

import random
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from crossroads.catalog import Catalog, Deployment
from crossroads.protocol.chat import ChatCompletionRequest, ProviderPreferences
from crossroads.protocol.errors import GatewayError, unsupported_parameter
from crossroads.providers.base import Provider, capability_gap
from crossroads.providers.capabilities import ParameterPlan, plan_parameters
from crossroads.routing.breaker import Breakers
from crossroads.routing.stats import LiveStats
from crossroads.usage import estimate_tokens, prompt_characters

__all__ = ["Candidate", "Exclusion", "RoutePlan", "Strategies", "plan_route"]

# `provider.sort` → the strategy that orders by it.
_SORTS = {"price": "price", "latency": "perf", "throughput": "throughput"}
# A guess at the answer's length for pricing, when the request sets no limit.
_EXPECTED_COMPLETION_TOKENS = 256


@dataclass(slots=True)
class Candidate:
    deployment: Deployment
    provider: Provider
    parameters: ParameterPlan


@dataclass(slots=True)
class Exclusion:
    deployment: Deployment
    reason: str
    # "request": the request rules it out (400); "unavailable": it cannot serve now (503).
    kind: str = "request"
    error: GatewayError | None = None


@dataclass(slots=True)
class RoutePlan:
    strategy: str
    candidates: list[Candidate]
    excluded: list[Exclusion] = field(default_factory=list)

    def describe(self) -> list[dict[str, Any]]:
        """The `routing.candidates` list: every deployment considered, and why one was not."""
        out: list[dict[str, Any]] = [
            {"deployment": c.deployment.key, "model": c.deployment.model, "excluded": None}
            for c in self.candidates
        ]
        out += [
            {"deployment": e.deployment.key, "model": e.deployment.model, "excluded": e.reason}
            for e in self.excluded
        ]
        return out


class Strategies:
    """Orders one model's deployments: fallback, weighted, price, perf, perf_avg, throughput.

    Deployments without measurements yet sort first under the latency and throughput
    strategies, so a new deployment gets traffic and is measured rather than starved.
    """

    def __init__(self, stats: LiveStats, rng: random.Random | None = None) -> None:
        self._stats = stats
        self._rng = rng or random.Random()

    def order(
        self, strategy: str, deployments: Sequence[Deployment], request: ChatCompletionRequest
    ) -> list[Deployment]:
        if strategy == "fallback" or len(deployments) < 2:
            return list(deployments)
        if strategy == "weighted":
            return self._weighted(deployments)
        key: Callable[[Deployment], float]
        if strategy == "price":
            prompt, completion = _token_estimate(request)
            key = lambda d: prompt * d.price.input + completion * d.price.output  # noqa: E731
        elif strategy == "perf":
            prompt, _ = _token_estimate(request)
            key = lambda d: self._stats.get(d.key).predicted_latency(prompt) or 0.0  # noqa: E731
        elif strategy == "perf_avg":
            key = lambda d: self._stats.get(d.key).mean_latency() or 0.0  # noqa: E731
        elif strategy == "throughput":
            key = lambda d: -(self._stats.get(d.key).throughput() or float("inf"))  # noqa: E731
        else:
            raise ValueError(f"unknown strategy {strategy!r}")
        return sorted(deployments, key=key)  # stable: ties keep the configured order

    def _weighted(self, deployments: Sequence[Deployment]) -> list[Deployment]:
        """A weighted random order: the first is drawn by weight, then the next, and so on."""
        pool = list(deployments)
        ordered: list[Deployment] = []
        while pool:
            pick = self._rng.choices(range(len(pool)), weights=[d.weight for d in pool])[0]
            ordered.append(pool.pop(pick))
        return ordered


def _token_estimate(request: ChatCompletionRequest) -> tuple[int, int]:
    messages = [m.model_dump(include={"content"}) for m in request.messages]
    prompt = estimate_tokens(prompt_characters(messages))
    limit = request.max_completion_tokens or request.max_tokens or _EXPECTED_COMPLETION_TOKENS
    return prompt, limit


def plan_route(
    request: ChatCompletionRequest,
    body: dict[str, Any],
    *,
    catalog: Catalog,
    providers: dict[str, Provider],
    strategies: Strategies,
    breakers: Breakers,
    default_strategy: str,
) -> RoutePlan:
    """The route for `request`, or a `GatewayError` when no deployment may serve it."""
    names = [request.model, *(m for m in request.models or () if m != request.model)]
    entries = []
    for i, name in enumerate(names):
        try:
            entries.append(catalog.resolve(name))
        except GatewayError as exc:
            if i:
                exc.param = f"models[{request.models.index(name)}]"  # type: ignore[union-attr]
            raise
    preferences = request.provider if isinstance(request.provider, ProviderPreferences) else None
    sort = _SORTS.get(preferences.sort) if preferences and preferences.sort else None
    if request.route == "sort":
        strategy = sort or request.routing or "price"
        pooled = [d for entry in entries for d in entry.deployments]
        ordered = strategies.order(strategy, pooled, request)
    else:
        ordered = []
        strategy = sort or request.routing or entries[0].strategy or default_strategy
        for entry in entries:
            own = sort or request.routing or entry.strategy or default_strategy
            ordered += strategies.order(own, entry.deployments, request)
    plan = RoutePlan(strategy=strategy, candidates=[])
    seen: set[str] = set()
    for deployment in ordered:
        if deployment.key in seen and len(entries) > 1:
            continue  # the same upstream offered twice across fallback models: try it once
        seen.add(deployment.key)
        provider = providers[deployment.provider]
        parameters = plan_parameters(provider.capabilities, body)
        exclusion = _exclusion(deployment, provider, parameters, request, preferences, breakers)
        if exclusion is None:
            plan.candidates.append(Candidate(deployment, provider, parameters))
        else:
            plan.excluded.append(exclusion)
    if preferences is not None:
        _apply_order(plan, preferences)
    if not plan.candidates:
        raise _no_route(names[0], plan.excluded)
    return plan


def _exclusion(
    deployment: Deployment,
    provider: Provider,
    parameters: ParameterPlan,
    request: ChatCompletionRequest,
    preferences: ProviderPreferences | None,
    breakers: Breakers,
) -> Exclusion | None:
    """Why `deployment` must not serve this request, or None when it may."""
    name = provider.name
    pin = request.provider if isinstance(request.provider, str) else None
    if pin is not None and name != pin:
        return Exclusion(deployment, f"not the requested provider '{pin}'")
    if preferences is not None:
        if preferences.only is not None and name not in preferences.only:
            return Exclusion(deployment, "not in provider.only")
        if preferences.ignore is not None and name in preferences.ignore:
            return Exclusion(deployment, "in provider.ignore")
        if (limit := preferences.max_price) is not None:
            price = deployment.price
            if limit.prompt is not None and price.input > limit.prompt:
                reason = f"prompt price {price.input} > provider.max_price.prompt {limit.prompt}"
                return Exclusion(deployment, reason)
            if limit.completion is not None and price.output > limit.completion:
                reason = (
                    f"completion price {price.output} > provider.max_price.completion "
                    f"{limit.completion}"
                )
                return Exclusion(deployment, reason)
    where = f" by provider '{name}', which serves model '{deployment.model}'"
    if gap := capability_gap(provider.capabilities, request):
        error = unsupported_parameter(gap, where)
        return Exclusion(deployment, error.message, error=error)
    if request.openai_api_key is not None and provider.dialect != "openai":
        error = unsupported_parameter(
            "openai_api_key",
            f"{where} (dialect '{provider.dialect}'); a caller's own key is only used "
            "with openai-dialect providers",
        )
        return Exclusion(deployment, error.message, error=error)
    if preferences is not None and preferences.require_parameters and parameters.dropped:
        names = ", ".join(parameters.dropped)
        error = GatewayError(
            400,
            f"Parameters not supported{where}: {names}. They are required because "
            "`provider.require_parameters` is true; remove them or set it to false to "
            "let them be dropped.",
            param=parameters.dropped[0],
            code="unsupported_parameter",
        )
        return Exclusion(deployment, f"does not support {names}", error=error)
    capabilities = provider.capabilities
    if preferences is not None and preferences.require_parameters and parameters.adjusted:
        ranges = capabilities.ranges
        limits = ", ".join(
            f"{name} accepts {ranges[name][0]:g} to {ranges[name][1]:g}"
            for name in parameters.adjusted
        )
        error = GatewayError(
            400,
            f"Parameter values out of range{where} ({limits}). They are not clamped because "
            "`provider.require_parameters` is true; change them, or set it to false to let "
            "them be clamped and listed in `adjusted_params`.",
            param=next(iter(parameters.adjusted)),
            code="unsupported_parameter",
        )
        return Exclusion(deployment, f"out of range: {limits}", error=error)
    if capabilities.max_n is not None and (request.n or 1) > capabilities.max_n:
        error = GatewayError(
            400,
            f"Model '{deployment.model}' can produce at most {capabilities.max_n} choices per "
            f"request on provider '{name}'; got n={request.n}.",
            param="n",
            code="invalid_value",
        )
        return Exclusion(deployment, error.message, error=error)
    if not provider.ready:
        reason = f"not ready: {provider.not_ready_reason}"
        error = GatewayError(
            503,
            f"Model '{deployment.model}' is not ready: {provider.not_ready_reason}.",
            type="upstream_error",
            code="model_not_ready",
            headers={"Retry-After": "1"},
        )
        return Exclusion(deployment, reason, kind="unavailable", error=error)
    breaker = breakers.get(deployment.key)
    if breaker.state == "open":
        retry_in = breaker.snapshot().get("retry_in_s")
        reason = "circuit open" + (f" (half-open in {retry_in:.1f}s)" if retry_in else "")
        return Exclusion(deployment, reason, kind="unavailable")
    return None


def _apply_order(plan: RoutePlan, preferences: ProviderPreferences) -> None:
    """`provider.order` first (in that order); `allow_fallbacks: false` keeps only those."""
    candidates = plan.candidates
    if preferences.order:
        rank = {name: i for i, name in enumerate(preferences.order)}
        listed = sorted(
            (c for c in candidates if c.provider.name in rank),
            key=lambda c: rank[c.provider.name],
        )
        rest = [c for c in candidates if c.provider.name not in rank]
        candidates = listed + rest
        if preferences.allow_fallbacks is False:
            dropped, candidates = candidates[len(listed) :], listed
            plan.excluded += [
                Exclusion(c.deployment, "not in provider.order and allow_fallbacks is false")
                for c in dropped
            ]
    elif preferences.allow_fallbacks is False and len(candidates) > 1:
        plan.excluded += [
            Exclusion(c.deployment, "allow_fallbacks is false: only the first is tried")
            for c in candidates[1:]
        ]
        candidates = candidates[:1]
    plan.candidates = candidates


def _no_route(model: str, excluded: list[Exclusion]) -> GatewayError:
    """The error when nothing is left: the one deployment's own, or a summary of all."""
    errors = [e.error for e in excluded if e.error is not None]
    if len(excluded) == 1 and errors:
        return errors[0]
    reasons = "; ".join(f"{e.deployment.key}: {e.reason}" for e in excluded)
    if excluded and all(e.kind == "unavailable" for e in excluded):
        return GatewayError(
            503,
            f"No deployment of model '{model}' is available now ({reasons}).",
            type="upstream_error",
            code="no_available_deployment",
            headers={"Retry-After": "1"},
        )
    first = errors[0] if errors else None
    return GatewayError(
        400,
        f"No deployment of model '{model}' can serve this request ({reasons}).",
        param=first.param if first else "provider",
        code=first.code if first else "no_matching_deployment",
    )
