"""From a decoded body to a prepared request: validated, its parameters checked, routed.

Nothing here calls an upstream or touches the books: preparing is a function of the body,
the caller's key and what routing knows now (catalog, breakers, live stats), and every
problem it finds is a `GatewayError` for the caller. The gateway records it.
"""

from __future__ import annotations

import random
import time
from typing import Any

from pydantic import ValidationError

from crossroads.access import check_model_allowed
from crossroads.catalog import Catalog
from crossroads.learned.serve import ROUTER_MODEL, LearnedRouter, RouterDecision
from crossroads.pipeline.context import CallContext
from crossroads.protocol.chat import ChatCompletionRequest, unimplemented_parameters
from crossroads.protocol.errors import GatewayError, bad_request, unsupported_parameter
from crossroads.protocol.validation import validation_error
from crossroads.providers.base import Provider
from crossroads.routing.attempts import Attempts, RouteState
from crossroads.routing.fanout import Branch
from crossroads.routing.plan import RoutePlan, Strategies, plan_route

__all__ = ["Prepared", "Preparer"]

Prepared = tuple[ChatCompletionRequest, Attempts, list[Branch] | None]


class Preparer:
    def __init__(
        self,
        catalog: Catalog,
        providers: dict[str, Provider],
        route_state: RouteState,
        learned: LearnedRouter | None,
        rng: random.Random,
    ) -> None:
        self.catalog = catalog
        self.providers = providers
        self.route_state = route_state
        self.learned = learned  # serves `model: "router"`; None: refused
        # Names that stand for another model (a mixture of agents is served by its
        # aggregator; its stage asks the proposers first).
        self.aliases: dict[str, str] = {}
        self._strategies = Strategies(route_state.stats, rng)

    def prepare(
        self, body: Any, context: CallContext, *, granted: frozenset[str] = frozenset()
    ) -> Prepared:
        """The validated request, its route and (fan-out) its branches; raises
        `GatewayError` for anything the caller must fix.

        `granted`: models the call may use whatever the key's list says — a mixture's
        proposers, once the key was found allowed the mixture itself."""
        if not isinstance(body, dict):
            raise GatewayError(
                400, "The request body must be a JSON object.", code="invalid_request_body"
            )
        if isinstance(body.get("model"), str) and body["model"] in self.aliases:
            # A key allowed the alias (a mixture's name) may use what stands behind it.
            check_model_allowed(context.virtual_key, [body["model"]])
            granted = granted | {self.aliases[body["model"]]}
            body = {**body, "model": self.aliases[body["model"]]}
        try:
            request = ChatCompletionRequest.model_validate(body)
        except ValidationError as exc:
            raise validation_error(exc, body) from None
        if unsupported := unimplemented_parameters(request):
            raise unsupported_parameter(unsupported)
        routed = request.model == ROUTER_MODEL
        check_model_allowed(
            context.virtual_key,
            [
                name
                for name in (*(request.model_names if not routed else ()), *(request.models or ()))
                if name not in granted
            ],
        )
        if routed:
            decision = self._learned_route(request, context)
            request = request.model_copy(
                update={"model": decision.ranking[0], "models": decision.ranking}
            )
            plan = self._plan(request, body)
            decision.exclude_unroutable(plan)
            attempts = self._attempts(plan, request, body, context)
            attempts.router = decision.describe()
            return request, attempts, None
        if request.max_cost is not None or request.willingness_to_pay is not None:
            name = "max_cost" if request.max_cost is not None else "willingness_to_pay"
            raise bad_request(
                f'`{name}` steers the learned router: send it with model "router".',
                param=name,
            )
        if (request.integrity or 1) > 1 and (routed or len(request.model_names) > 1):
            raise bad_request(
                "`integrity` votes among one model's answers: name one model.", param="integrity"
            )
        if len(request.model_names) > 1:
            branches = self._branches(request, body, context)
            return request, branches[0].attempts, branches
        if request.integrity and request.integrity > 1:
            branches = self._candidates(request, body, context)
            return request, branches[0].attempts, branches
        plan = self._plan(request, body)
        return request, self._attempts(plan, request, body, context), None

    def _candidates(
        self, request: ChatCompletionRequest, body: dict[str, Any], context: CallContext
    ) -> list[Branch]:
        """`integrity: N`: N routes to the one model, each with its own seed (pipeline/vote.py)."""
        if (request.n or 1) > 1:
            raise bad_request("`integrity` returns one voted answer: leave `n` at 1.", param="n")
        seed = request.seed if request.seed is not None else 0
        branches = []
        for k in range(request.integrity or 1):
            own_body = {**body, "seed": seed + k}
            own = request.model_copy(update={"seed": seed + k})
            attempts = self._attempts(self._plan(own, own_body), own, own_body, context)
            branches.append(Branch(model=request.model, attempts=attempts, n=1, offset=0))
        return branches

    def _learned_route(
        self, request: ChatCompletionRequest, context: CallContext
    ) -> RouterDecision:
        if self.learned is None:
            raise bad_request(
                "Learned routing is not enabled on this gateway; name a model instead.",
                param="model",
                code="model_not_found",
            )
        return self.learned.decide(request, context.virtual_key)

    def _attempts(
        self,
        plan: RoutePlan,
        request: ChatCompletionRequest,
        body: dict[str, Any],
        context: CallContext,
    ) -> Attempts:
        timeout = context.timeout or self.route_state.config.timeout
        return Attempts(
            state=self.route_state,
            plan=plan,
            request=request,
            body=body,
            deadline=time.monotonic() - (time.perf_counter() - context.received) + timeout,
            attempt_timeout=context.attempt_timeout,
            echo=bool(request.debug and request.debug.echo_upstream_body),
            caller_deadline=context.timeout is not None
            and context.timeout < self.route_state.config.timeout,
        )

    def _plan(self, request: ChatCompletionRequest, body: dict[str, Any]) -> RoutePlan:
        return plan_route(
            request,
            body,
            catalog=self.catalog,
            providers=self.providers,
            strategies=self._strategies,
            breakers=self.route_state.breakers,
            default_strategy=self.route_state.config.strategy,
        )

    def _branches(
        self, request: ChatCompletionRequest, body: dict[str, Any], context: CallContext
    ) -> list[Branch]:
        """One route per model of a fan-out request; any model's planning error is the
        request's (an unknown model name is the caller's to fix, not a partial failure)."""
        if request.models:
            raise bad_request(
                "`models` (fallbacks) cannot be combined with a comma-separated `model` "
                "(fan-out); send one or the other.",
                param="models",
            )
        if ROUTER_MODEL in request.model_names:
            raise bad_request(
                f'"{ROUTER_MODEL}" cannot be one of a comma-separated `model` (fan-out): '
                "name concrete models, or send it alone.",
                param="model",
            )
        branches: list[Branch] = []
        offset = 0
        for name in request.model_names:
            own_body = {**body, "model": name}
            own = request.model_copy(update={"model": name})
            try:
                plan = self._plan(own, own_body)
                failure = None
            except GatewayError as exc:
                if exc.status < 500:
                    raise
                # Nothing can serve this model now: its choice is an error, the rest go on.
                plan, failure = RoutePlan(strategy="fallback", candidates=[]), exc
            attempts = self._attempts(plan, own, own_body, context)
            attempts.failure = failure
            n = request.n or 1
            branches.append(Branch(model=name, attempts=attempts, n=n, offset=offset))
            offset += n
        return branches
