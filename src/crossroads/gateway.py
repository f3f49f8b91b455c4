"""The chat-completions pipeline: one request in, one response (or stream) out.

Routes parse HTTP and hand the decoded body to `Gateway`; everything between — validation,
model resolution, the upstream call, usage and cost, the log record — happens here, in
that order. The caller's body is forwarded as the dict it arrived as (minus Crossroads'
own fields), not re-serialised from the pydantic model, so parameters this gateway has
never heard of still reach upstreams that understand them, and the hot path does no
copying it does not need. The log record is handed to a writer that batches it off the
request path.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol

from pydantic import ValidationError

from crossroads.access import check_model_allowed
from crossroads.catalog import Catalog
from crossroads.config import RoutingConfig
from crossroads.gateway_fanout import FanOutRelay
from crossroads.limits import KeyLimits, Ticket, budget_period_start
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.chat import ChatCompletionRequest, unimplemented_parameters
from crossroads.protocol.errors import (
    GatewayError,
    bad_request,
    client_closed,
    unsupported_parameter,
)
from crossroads.protocol.sse import SSE_DONE, primed, sse
from crossroads.protocol.validation import validation_error
from crossroads.providers.base import Provider, UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.router.serve import ROUTER_MODEL, LearnedRouter, RouterDecision
from crossroads.routing.attempts import Attempts, RouteState, close_chunks
from crossroads.routing.breaker import Breakers
from crossroads.routing.fanout import Branch
from crossroads.routing.plan import RoutePlan, Strategies, plan_route
from crossroads.routing.retry import Backoff
from crossroads.routing.stats import LiveStats
from crossroads.state import StateError
from crossroads.storage.key_store import VirtualKey
from crossroads.storage.records import LogRecord, new_log_id
from crossroads.usage import (
    completion_characters,
    enrich_usage,
    estimate_tokens,
    prompt_characters,
)

__all__ = ["CallContext", "Gateway", "LogSink", "PreparedChat", "SpentSource"]

logger = logging.getLogger("crossroads.gateway")

# Answer length assumed for tpm when the request sets no limit (corrected after the call).
_EXPECTED_ANSWER_TOKENS = 256
# Answer length assumed for the budget reservation when neither the request nor the model
# says how long an answer can be.
_DEFAULT_ANSWER_CAP = 4096

# USD already spent by a key in the budget period starting at the given time (None: ever).
SpentSource = Callable[[str, datetime | None], Awaitable[float]]

_SECRET_FIELDS = ("openai_api_key",)


class LogSink(Protocol):
    def submit(self, record: LogRecord) -> None: ...


@dataclass(slots=True)
class CallContext:
    """What the HTTP layer knows about a request before its body is parsed."""

    key_id: str | None = None
    session_header: str | None = None
    tags: list[str] | None = None
    received: float = field(default_factory=time.perf_counter)
    created_at: datetime = field(default_factory=lambda: datetime.now(UTC))
    log_id: str = field(default_factory=new_log_id)
    # The caller's virtual key (models, limits, budget); None for config keys and loopback.
    virtual_key: VirtualKey | None = None
    # Per-request overrides of routing.timeout / attempt_timeout (headers), in seconds.
    timeout: float | None = None
    attempt_timeout: float | None = None
    # x-ratelimit-* headers for the response, once the key's limits admitted the request.
    limit_headers: dict[str, str] | None = None


@dataclass(slots=True)
class PreparedChat:
    """A validated request with its route: the deployments it may go to, in order."""

    context: CallContext
    request: ChatCompletionRequest
    body: dict[str, Any]
    attempts: Attempts
    record: LogRecord

    # Fan-out (`model: "a,b"`): one route per model; `attempts` is then the first's.
    branches: list[Branch] | None = None

    @property
    def notices(self) -> dict[str, Any]:
        """What the answer says about parameters the serving provider did not take as sent:
        `dropped_params` (it cannot honour them: removed) and `adjusted_params` (outside its
        range: clamped into it, the value sent)."""
        chosen = self.attempts.chosen
        out: dict[str, Any] = {}
        if chosen is not None and chosen.parameters.dropped:
            out["dropped_params"] = chosen.parameters.dropped
        if chosen is not None and chosen.parameters.adjusted:
            out["adjusted_params"] = chosen.parameters.adjusted
        return out


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
    ) -> None:
        self.catalog = catalog
        self.learned = learned  # serves `model: "router"`; None: refused
        self.providers = providers
        self.log = log
        self.limits = limits
        self._spent = spent
        self._tickets: dict[str, Ticket] = {}  # by log id, until the request settles
        self._settling: set[asyncio.Task[None]] = set()
        self._open: set[str] = set()  # log ids of records not yet submitted
        self._restored: set[tuple[str, datetime | None]] = set()
        config = routing or RoutingConfig()
        rng = random.Random()
        stats = LiveStats(config.stats_window)
        self.route_state = RouteState(
            config=config,
            stats=stats,
            breakers=Breakers(config.breaker),
            backoff=Backoff(config, rng),
        )
        self._strategies = Strategies(stats, rng)
        self._fanout = FanOutRelay(self)

    # --- preparation ------------------------------------------------------------------------

    def prepare(self, body: Any, context: CallContext) -> PreparedChat:
        """Validate `body` and plan its route; raises `GatewayError` (logged)."""
        record = self._new_record(body, context)
        try:
            if not isinstance(body, dict):
                raise GatewayError(
                    400, "The request body must be a JSON object.", code="invalid_request_body"
                )
            try:
                request = ChatCompletionRequest.model_validate(body)
            except ValidationError as exc:
                raise validation_error(exc, body) from None
            record.stream = bool(request.stream)
            if unsupported := unimplemented_parameters(request):
                raise unsupported_parameter(unsupported)
            routed = request.model == ROUTER_MODEL
            check_model_allowed(
                context.virtual_key,
                [*(request.model_names if not routed else ()), *(request.models or ())],
            )
            branches = None
            decision = None
            if routed:
                decision = self._learned_route(request, context)
                request = request.model_copy(
                    update={"model": decision.ranking[0], "models": decision.ranking}
                )
                plan = self._plan(request, body)
                decision.exclude_unroutable(plan)
            elif request.max_cost is not None or request.willingness_to_pay is not None:
                name = "max_cost" if request.max_cost is not None else "willingness_to_pay"
                raise bad_request(
                    f'`{name}` steers the learned router: send it with model "router".',
                    param=name,
                )
            elif len(request.model_names) > 1:
                branches = self._branches(request, body, context)
            else:
                plan = self._plan(request, body)
        except GatewayError as exc:
            self._fail(record, exc)
            raise
        except Exception as exc:  # a defect, not the caller's doing: still an answer and a record
            raise self._internal(record, exc, None) from None
        record.session_id = request.session_id or context.session_header
        if branches:
            return PreparedChat(context, request, body, branches[0].attempts, record, branches)
        attempts = self._attempts(plan, request, body, context)
        if decision is not None:
            attempts.router = decision.describe()
        return PreparedChat(context, request, body, attempts, record)

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

    def _internal(
        self, record: LogRecord, exc: Exception, attempts: Attempts | None
    ) -> GatewayError:
        """A defect of the gateway's own, found while serving: logged with its traceback,
        answered with a 500 envelope, and the request recorded and its limits released as on
        any other path (unless that already happened)."""
        logger.exception("internal error serving request %s", record.id)
        error = GatewayError(
            500,
            f"Internal error in the gateway ({type(exc).__name__}); the request was logged as "
            f"{record.id}.",
            code="internal_error",
        )
        if record.id in self._open:
            self._fail(record, error, attempts)
        return error

    def _new_record(self, body: Any, context: CallContext) -> LogRecord:
        is_dict = isinstance(body, dict)
        get = body.get if is_dict else (lambda _key, _default=None: None)
        model = get("model")
        metadata, extra, user = get("metadata"), get("extra"), get("user")
        session = get("session_id")
        stored = is_dict and get("store") is not False
        request_body = None
        self._open.add(context.log_id)
        if stored:
            request_body = {k: v for k, v in body.items() if k not in _SECRET_FIELDS}
        return LogRecord(
            id=context.log_id,
            created_at=context.created_at,
            model_requested=model if isinstance(model, str) else "",
            status_code=200,
            stream=get("stream") is True,
            key_id=context.key_id,
            request=request_body,
            user=user if isinstance(user, str) else None,
            metadata=metadata if isinstance(metadata, dict) else None,
            session_id=(session if isinstance(session, str) else None) or context.session_header,
            extra=extra if isinstance(extra, dict) else None,
            tags=context.tags,
        )

    def _fail(
        self, record: LogRecord, error: GatewayError, attempts: Attempts | None = None
    ) -> None:
        if attempts is not None:
            self._served_by(record, attempts)
            if record.request is not None and record.response is None and attempts.log:
                record.response = {"routing": attempts.routing()}  # every attempt, for the record
        record.status_code = error.status
        record.error_code = error.code or error.type
        record.error_message = error.message
        record.latency_ms = self._elapsed_ms(record)
        self._submit(record)

    @staticmethod
    def _served_by(record: LogRecord, attempts: Attempts) -> None:
        """The deployment that answered, or the last one tried when none did."""
        candidate = attempts.chosen or attempts.last
        if candidate is not None:
            deployment = candidate.deployment
            record.model_served = deployment.model
            record.provider = deployment.provider
            record.upstream_model = deployment.upstream_model

    def reject(self, error: GatewayError, context: CallContext, body: Any = None) -> None:
        """Log a request refused before it reached `prepare` (malformed JSON, size)."""
        self._fail(self._new_record(body, context), error)

    @staticmethod
    def _elapsed_ms(record: LogRecord) -> float:
        started = record.created_at.timestamp()
        return round((time.time() - started) * 1000, 3)

    # --- key limits --------------------------------------------------------------------------

    async def _admit(self, chat: PreparedChat) -> None:
        """Count the request against its virtual key's limits (429 when over), before any
        upstream call; the ticket is settled when the request's record is."""
        key = chat.context.virtual_key
        if key is None or self.limits is None or not key.has_limits:
            return
        try:
            if key.max_budget is not None:
                await self._restore_spent(key)
            tokens, cost = self._estimate(chat)
            ticket = await self.limits.admit(key, tokens=tokens, cost=cost)
        except GatewayError as exc:
            self._fail(chat.record, exc)
            raise
        except StateError as exc:
            error = GatewayError(
                503,
                f"The gateway cannot check this key's limits right now: {exc}",
                type="api_error",
                code="limits_unavailable",
                headers={"Retry-After": "1"},
            )
            self._fail(chat.record, error)
            raise error from None
        chat.context.limit_headers = ticket.headers
        self._tickets[chat.record.id] = ticket

    async def _restore_spent(self, key: VirtualKey) -> None:
        """Once per key and period in this process: spend from the durable log, so a
        restart (or lost counters) cannot reset a budget."""
        period = budget_period_start(key.budget_period)
        if self._spent is None or (key.id, period) in self._restored:
            return
        assert self.limits is not None
        await self.limits.restore(key, await self._spent(key.id, period), period)
        self._restored.add((key.id, period))

    def _estimate(self, chat: PreparedChat) -> tuple[int, float]:
        """Tokens (for tpm) and the most the request can cost (for the budget reservation).

        The cost bound prices the prompt (≈ 4 characters a token) and the longest answer
        allowed — `max_completion_tokens`/`max_tokens`, else the model's context window,
        else 4096 tokens — at the dearest candidate deployment, once per fan-out model.
        """
        request = chat.request
        prompt = estimate_tokens(prompt_characters(chat.body["messages"]))
        asked = request.max_completion_tokens or request.max_tokens
        n = request.n or 1
        tokens = prompt + n * (asked or _EXPECTED_ANSWER_TOKENS)
        routes = [b.attempts for b in chat.branches] if chat.branches else [chat.attempts]
        cost = 0.0
        for attempts in routes:
            dearest = 0.0
            for candidate in attempts.plan.candidates:
                deployment = candidate.deployment
                entry = self.catalog.get(deployment.model)
                window = entry.context_window if entry else None
                answer = n * (asked or window or _DEFAULT_ANSWER_CAP)
                price = deployment.price
                dearest = max(dearest, (prompt * price.input + answer * price.output) / 1e6)
            cost += dearest
        return tokens, cost

    def _submit(self, record: LogRecord) -> None:
        """The request is over: release what it held and hand its record to the writer."""
        self._open.discard(record.id)
        self._settle(record)
        self.log.submit(record)

    def _settle(self, record: LogRecord) -> None:
        """Settle the request's ticket with what it used, off the request path."""
        ticket = self._tickets.pop(record.id, None)
        if ticket is None or self.limits is None:
            return
        task = asyncio.get_running_loop().create_task(
            self.limits.settle(ticket, tokens=record.total_tokens, cost=record.cost)
        )
        self._settling.add(task)
        task.add_done_callback(self._settled)

    def _settled(self, task: asyncio.Task[None]) -> None:
        self._settling.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            logger.warning("could not settle a request's key limits: %s", exc)

    async def drain(self) -> None:
        """Wait for settlements in flight (shutdown)."""
        if self._settling:
            await asyncio.gather(*self._settling, return_exceptions=True)

    # --- non-streaming ----------------------------------------------------------------------

    async def complete(self, chat: PreparedChat) -> dict[str, Any]:
        await self._admit(chat)
        try:
            if chat.branches:
                return await self._fanout.complete(chat, chat.branches)
            return await self._complete_one(chat)
        except Exception as exc:
            if isinstance(exc, GatewayError):
                raise  # recorded where it was raised
            raise self._internal(chat.record, exc, chat.attempts) from None

    async def _complete_one(self, chat: PreparedChat) -> dict[str, Any]:
        attempts = chat.attempts
        try:
            response = await attempts.complete()
        except GatewayError as exc:
            self._fail(chat.record, exc, attempts)
            raise
        except asyncio.CancelledError:
            self._fail(chat.record, client_closed(), attempts)
            raise
        chosen = attempts.chosen
        assert chosen is not None  # set by a successful attempt
        deployment = chosen.deployment
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        choices = response.get("choices") or []
        usage = enrich_usage(
            response.get("usage"),
            price=deployment.price,
            prompt_chars=prompt_characters(chat.body["messages"]),
            response_chars=completion_characters(choices),
            latency_ms=latency_ms,
        )
        response["usage"] = usage
        response["provider"] = deployment.provider
        response.update(chat.notices)
        response["routing"] = attempts.routing()
        self._succeed(chat.record, response, usage, latency_ms, attempts=attempts)
        return response

    def _succeed(
        self,
        record: LogRecord,
        response: dict[str, Any],
        usage: dict[str, Any],
        latency_ms: float,
        ttft_ms: float | None = None,
        *,
        attempts: Attempts | None,
    ) -> None:
        if attempts is not None:
            self._served_by(record, attempts)
        record.latency_ms = round(latency_ms, 3)
        record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        record.response = response if record.request is not None else None
        record.prompt_tokens = usage.get("prompt_tokens")
        record.completion_tokens = usage.get("completion_tokens")
        record.total_tokens = usage.get("total_tokens")
        record.cached_tokens = usage.get("prompt_cache_hit_tokens")
        record.prompt_characters = usage.get("prompt_characters")
        record.response_characters = usage.get("response_characters")
        record.cost = usage.get("cost")
        self._submit(record)

    # --- streaming --------------------------------------------------------------------------

    async def stream(self, chat: PreparedChat) -> AsyncIterator[bytes]:
        """Open the upstream stream; failures before its first content raise `GatewayError`.

        Returns the byte iterator to send as the SSE body. Waiting for the first content
        before answering costs nothing (the caller would wait for it anyway), lets a
        deployment that fails up front be failed over unseen, and lets a request that fails
        everywhere produce a real HTTP error status.
        """
        await self._admit(chat)
        try:
            if chat.branches:
                relay = await self._fanout.stream(chat, chat.branches)
            else:
                relay = await self._open_one(chat)
            return await primed(relay)
        except Exception as exc:
            if isinstance(exc, GatewayError):
                raise  # recorded where it was raised
            raise self._internal(chat.record, exc, chat.attempts) from None

    async def _open_one(self, chat: PreparedChat) -> AsyncGenerator[bytes, None]:
        attempts = chat.attempts
        try:
            opened = await attempts.open_stream()
        except GatewayError as exc:
            self._fail(chat.record, exc, attempts)
            raise
        except asyncio.CancelledError:
            self._fail(chat.record, client_closed(), attempts)
            raise
        return self._relay(chat, opened.rest, opened.head)

    async def _relay(
        self,
        chat: PreparedChat,
        chunks: AsyncIterator[dict[str, Any]],
        head: list[dict[str, Any]],
    ) -> AsyncGenerator[bytes, None]:
        attempts = chat.attempts
        chosen = attempts.chosen
        assert chosen is not None  # set once a stream produced content
        deployment = chosen.deployment
        provider = deployment.provider
        assembler = StreamAssembler()
        ttft_ms: float | None = None
        include_usage = bool(
            chat.request.stream_options and chat.request.stream_options.include_usage
        )
        notices = chat.notices
        finished = False
        pending = iter(head)
        try:
            while (chunk := next(pending, None) or await anext(chunks, None)) is not None:
                had_content = assembler.saw_content
                assembler.add(chunk)
                if ttft_ms is None and assembler.saw_content and not had_content:
                    ttft_ms = (time.perf_counter() - chat.context.received) * 1000
                if chunk.get("choices"):
                    if "usage" in chunk:
                        chunk["usage"] = None  # usage is reported once, in its own chunk
                    if notices:
                        # Said on the first chunk, where a client sees it before the answer.
                        chunk.update(notices)
                        notices = {}
                    yield sse(chunk)
            latency_ms = (time.perf_counter() - chat.context.received) * 1000
            completion = assembler.completion()
            usage = enrich_usage(
                assembler.usage,
                price=deployment.price,
                prompt_chars=prompt_characters(chat.body["messages"]),
                response_chars=completion_characters(completion["choices"]),
                latency_ms=latency_ms,
            )
            routing = attempts.routing()
            if include_usage:
                final = assembler.chunk([], provider=provider, usage=usage)
                final.update(chat.notices)
                final["routing"] = routing
                yield sse(final)
            yield SSE_DONE
            finished = True
            completion["usage"] = usage
            completion["provider"] = provider
            completion.update(chat.notices)
            completion["routing"] = routing
            attempts.record_outcome(chosen, True, latency_ms, completion, ttft_ms)
            self._succeed(chat.record, completion, usage, latency_ms, ttft_ms, attempts=attempts)
        except (UpstreamError, GatewayError) as exc:
            error = (
                exc
                if isinstance(exc, GatewayError)
                else to_gateway_error(
                    exc, provider, caller_key=chat.request.openai_api_key is not None
                )
            )
            # After the first byte the status is already 200: end with an error event and
            # no [DONE], so no client mistakes a truncated answer for a complete one.
            yield sse(error.envelope())
            finished = True
            if isinstance(exc, UpstreamError):
                self.route_state.breakers.get(deployment.key).on_failure()
                latency_ms = (time.perf_counter() - chat.context.received) * 1000
                attempts.record_outcome(chosen, False, latency_ms, None, ttft_ms)
            self._fail_stream(chat, assembler, error, ttft_ms)
        except Exception as exc:  # a defect here must still end the stream visibly
            error = GatewayError(500, f"Internal error while relaying the stream: {exc!r}")
            yield sse(error.envelope())
            finished = True
            self._fail_stream(chat, assembler, error, ttft_ms)
        finally:
            if not finished:
                # The client went away: stop the upstream generation and record it.
                await close_chunks(chunks)
                self._fail_stream(chat, assembler, client_closed(), ttft_ms)

    def _fail_stream(
        self,
        chat: PreparedChat,
        assembler: StreamAssembler,
        error: GatewayError,
        ttft_ms: float | None,
    ) -> None:
        record = chat.record
        record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        partial = assembler.completion()
        if record.request is not None:
            partial["routing"] = chat.attempts.routing()
            record.response = partial  # the partial answer, for the record
        record.response_characters = completion_characters(partial["choices"])
        self._fail(record, error, chat.attempts)
