"""The chat-completions pipeline: one request in, one response (or stream) out.

Routes parse HTTP and hand the decoded body to `Gateway`, which only decides what happens
next: prepare (validate and route, `prepare`), admit (key limits, on the request's
`Ledger`), the request stages (`stages`: they may rewrite, refuse or answer the request),
serve (`relay`: every route of the request, joined into one answer by `joins`), the
response stages. The books — the log
record, the limits ticket, usage — are the ledger's, closed exactly once on every path,
including the gateway's own defects. The caller's body is forwarded as the dict it arrived
as (minus Crossroads' own fields), not re-serialised from the pydantic model, so
parameters this gateway has never heard of still reach upstreams that understand them.
"""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Sequence
from typing import TYPE_CHECKING, Any

from crossroads.catalog import Catalog
from crossroads.config import RoutingConfig
from crossroads.learned.serve import LearnedRouter
from crossroads.limits import KeyLimits
from crossroads.pipeline import relay
from crossroads.pipeline.context import CallContext, PreparedChat
from crossroads.pipeline.ledger import Accounts, LogSink, SpentSource
from crossroads.pipeline.prepare import Preparer
from crossroads.pipeline.side_calls import SideCalls
from crossroads.pipeline.stages import Stage, StageKind, StageSelector, check_order
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.sse import primed
from crossroads.providers.base import Provider
from crossroads.routing.attempts import RouteState
from crossroads.routing.breaker import Breakers
from crossroads.routing.retry import Backoff
from crossroads.routing.stats import LiveStats

if TYPE_CHECKING:
    from crossroads.telemetry.emit import Telemetry

__all__ = ["Gateway"]


class Gateway:
    def __init__(
        self,
        catalog: Catalog,
        providers: dict[str, Provider],
        log: LogSink,
        routing: RoutingConfig | None = None,
        limits: KeyLimits | None = None,
        spent: SpentSource | None = None,
        learned: LearnedRouter | None = None,
        stages: Sequence[StageKind] = (),
        telemetry: Telemetry | None = None,
    ) -> None:
        self.catalog = catalog
        self.providers = providers
        config = routing or RoutingConfig()
        rng = random.Random()
        stats = LiveStats(config.stats_window)
        self.route_state = RouteState(
            config=config,
            stats=stats,
            breakers=Breakers(config.breaker),
            backoff=Backoff(config, rng),
        )
        self.accounts = Accounts(catalog, log, limits, spent)
        self._preparer = Preparer(catalog, providers, self.route_state, learned, rng)
        check_order(stages)
        self.stage_kinds = list(stages)
        self._selector = StageSelector(self.stage_kinds)
        side_calls = SideCalls(self._preparer)
        for kind in self.stage_kinds:
            if (bind := getattr(kind, "bind", None)) is not None:
                bind(side_calls)  # kinds that call upstreams themselves (judges, proposers)
        self.telemetry = telemetry

    @property
    def learned(self) -> LearnedRouter | None:
        return self._preparer.learned

    def prepare(self, body: Any, context: CallContext) -> PreparedChat:
        """Validate `body` and plan its route; raises `GatewayError` (recorded)."""
        ledger = self.accounts.open(body, context)
        try:
            request, attempts, branches = self._preparer.prepare(body, context)
        except GatewayError as exc:
            ledger.fail(exc)
            raise
        except Exception as exc:  # a defect, not the caller's doing: still an answer and a record
            raise ledger.internal(exc) from None
        record = ledger.record
        record.stream = bool(request.stream)
        record.session_id = request.session_id or context.session_header
        chat = PreparedChat(context, request, body, attempts, ledger, branches)
        ledger.reports = chat.reports
        if self.telemetry is not None:
            chat.trace = trace = self.telemetry.begin(record.id)
            attempts.trace = trace
            for branch in branches or ():
                branch.attempts.trace = trace
        if self.stage_kinds:
            try:
                chat.stages = self._selector.select(chat)
            except GatewayError as exc:  # a stage's settings the caller must fix
                ledger.fail(exc)
                raise
            except Exception as exc:
                raise ledger.internal(exc) from None
        return chat

    def reject(self, error: GatewayError, context: CallContext, body: Any = None) -> None:
        """Record a request refused before it reached `prepare` (malformed JSON, size)."""
        self.accounts.open(body, context).fail(error)

    async def complete(self, chat: PreparedChat) -> dict[str, Any]:
        ledger = chat.ledger
        await ledger.admit(chat)
        stages = chat.stages
        try:
            answer, answered_by = await self._before(chat) if stages else (None, None)
            response = answer if answer is not None else await relay.complete(chat)
            if stages:
                await stages.run_after(chat, response, answered_by)
                response.update(chat.reports)
        except GatewayError as exc:
            ledger.fail(exc, chat.attempts)  # a no-op where it was already recorded
            raise
        except Exception as exc:
            raise ledger.internal(exc, chat.attempts) from None
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        served = None if chat.branches or answer is not None else chat.attempts
        ledger.succeed(response, response["usage"], latency_ms, attempts=served)
        return response

    async def stream(self, chat: PreparedChat) -> AsyncIterator[bytes]:
        """Open the upstream stream; failures before its first content raise `GatewayError`.

        Returns the byte iterator to send as the SSE body. Waiting for the first content
        before answering costs nothing (the caller would wait for it anyway), lets a
        deployment that fails up front be failed over unseen, and lets a request that fails
        everywhere produce a real HTTP error status.
        """
        await chat.ledger.admit(chat)
        try:
            answer, answered_by = await self._before(chat)
            if answer is not None:
                chunks = relay.replay(chat, answer, answered_by)
            else:
                chunks = await relay.open_stream(chat)
            return await primed(chunks)
        except GatewayError as exc:
            chat.ledger.fail(exc, chat.attempts)  # a no-op where it was already recorded
            raise
        except Exception as exc:
            raise chat.ledger.internal(exc, chat.attempts) from None

    async def _before(self, chat: PreparedChat) -> tuple[dict[str, Any] | None, Stage | None]:
        """The request stages: an answer one of them gave (and which), or (None, None)."""
        if not chat.stages or not chat.stages.before:
            return None, None
        answer, stage = await chat.stages.run_before(chat)
        if answer is not None:
            answer.setdefault(
                "usage",
                {"prompt_tokens": 0, "completion_tokens": 0, "total_tokens": 0, "cost": 0.0},
            )
        return answer, stage

    async def drain(self) -> None:
        """Wait for settlements in flight (shutdown)."""
        await self.accounts.drain()
