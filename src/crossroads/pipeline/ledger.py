"""The books of every request: its log record, its key-limits ticket, its usage.

Orchestration (what happens next: validate, route, call, relay) lives elsewhere; this
module only keeps the books, so neither grows into the other. `Accounts` is the app-wide
part (the log writer, the counters, the spend already in the log); each request opens a
`Ledger` on it, and the ledger's outcome — `succeed`, `fail` or `internal` — is written
exactly once, whichever path ends the request: the record goes to the writer and the
ticket is settled, so a key's parallel slot and budget reservation are never left held.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from crossroads.catalog import Catalog
from crossroads.counters import StateError
from crossroads.limits import KeyLimits, Ticket, budget_period_start
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError
from crossroads.routing.attempts import Attempts
from crossroads.storage.key_store import VirtualKey
from crossroads.storage.records import LogRecord
from crossroads.usage import completion_characters, estimate_tokens, prompt_characters

if TYPE_CHECKING:
    from crossroads.pipeline.context import CallContext, PreparedChat

__all__ = ["Accounts", "Ledger", "LogSink", "SpentSource"]

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


class Accounts:
    """Where every request's books are kept; one per app."""

    def __init__(
        self,
        catalog: Catalog,
        log: LogSink,
        limits: KeyLimits | None = None,
        spent: SpentSource | None = None,
    ) -> None:
        self.catalog = catalog
        self.log = log
        self.limits = limits
        self._spent = spent
        self._settling: set[asyncio.Task[None]] = set()
        self._restored: set[tuple[str, datetime | None]] = set()

    def open(self, body: Any, context: CallContext) -> Ledger:
        """A ledger for a request whose body (any JSON value, or None) just arrived."""
        return Ledger(self, _new_record(body, context))

    async def restore_spent(self, key: VirtualKey) -> None:
        """Once per key and period in this process: spend from the durable log, so a
        restart (or lost counters) cannot reset a budget."""
        period = budget_period_start(key.budget_period)
        if self._spent is None or (key.id, period) in self._restored:
            return
        assert self.limits is not None
        await self.limits.restore(key, await self._spent(key.id, period), period)
        self._restored.add((key.id, period))

    def settle(self, ticket: Ticket, record: LogRecord) -> None:
        """Settle a ticket with what its request used, off the request path."""
        assert self.limits is not None
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


class Ledger:
    """One request's books; its outcome is written once (later outcomes are ignored)."""

    __slots__ = ("_accounts", "_scrubbers", "_ticket", "closed", "record", "reports")

    def __init__(self, accounts: Accounts, record: LogRecord) -> None:
        self._accounts = accounts
        self.record = record
        self._ticket: Ticket | None = None
        self._scrubbers: list[Callable[[str], str]] = []
        # Stage results to keep with a failed request (a success carries them in its body).
        self.reports: dict[str, Any] | None = None
        self.closed = False

    def scrub(self, scrubber: Callable[[str], str]) -> None:
        """Rewrite every string of the record with `scrubber` before it is written (masked
        PII stays masked in the log)."""
        self._scrubbers.append(scrubber)

    # --- key limits --------------------------------------------------------------------------

    async def admit(self, chat: PreparedChat) -> None:
        """Count the request against its virtual key's limits (429 when over), before any
        upstream call; the ticket is settled when the ledger is closed."""
        key = chat.context.virtual_key
        accounts = self._accounts
        if key is None or accounts.limits is None or not key.has_limits:
            return
        await self.admit_estimate(chat.context, *_estimate(chat, accounts.catalog))

    async def admit_estimate(self, context: CallContext, tokens: int, cost: float) -> None:
        """`admit` for a request whose tokens and most cost the caller estimated (endpoints
        other than chat, such as embeddings)."""
        key = context.virtual_key
        accounts = self._accounts
        if key is None or accounts.limits is None or not key.has_limits:
            return
        try:
            if key.max_budget is not None:
                await accounts.restore_spent(key)
            ticket = await accounts.limits.admit(key, tokens=tokens, cost=cost)
        except GatewayError as exc:
            self.fail(exc)
            raise
        except StateError as exc:
            error = GatewayError(
                503,
                f"The gateway cannot check this key's limits right now: {exc}",
                type="api_error",
                code="limits_unavailable",
                headers={"Retry-After": "1"},
            )
            self.fail(error)
            raise error from None
        context.limit_headers = ticket.headers
        self._ticket = ticket

    # --- outcomes ----------------------------------------------------------------------------

    def succeed(
        self,
        response: dict[str, Any],
        usage: dict[str, Any],
        latency_ms: float,
        ttft_ms: float | None = None,
        *,
        attempts: Attempts | None,
    ) -> None:
        if self.closed:
            return
        record = self.record
        if attempts is not None:
            _served_by(record, attempts)
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
        self._close()

    def fail(self, error: GatewayError, attempts: Attempts | None = None) -> None:
        if self.closed:
            return
        record = self.record
        if attempts is not None:
            _served_by(record, attempts)
            if record.request is not None and record.response is None and attempts.log:
                record.response = {"routing": attempts.routing()}  # every attempt, for the record
        if self.reports:
            record.response = {**(record.response or {}), **self.reports}
        record.status_code = error.status
        record.error_code = error.code or error.type
        record.error_message = error.message
        record.latency_ms = round((time.time() - record.created_at.timestamp()) * 1000, 3)
        self._close()

    def fail_stream(
        self,
        assembler: StreamAssembler,
        error: GatewayError,
        ttft_ms: float | None,
        attempts: Attempts,
    ) -> None:
        """A stream that ended badly: the partial answer is kept for the record."""
        record = self.record
        record.ttft_ms = None if ttft_ms is None else round(ttft_ms, 3)
        partial = assembler.completion()
        if record.request is not None:
            partial["routing"] = attempts.routing()
            record.response = partial
        record.response_characters = completion_characters(partial["choices"])
        self.fail(error, attempts)

    def internal(self, exc: BaseException, attempts: Attempts | None = None) -> GatewayError:
        """A defect of the gateway's own, found while serving: logged with its traceback,
        answered with a 500 envelope, and the books closed as on any other path."""
        record = self.record
        logger.error("internal error serving request %s", record.id, exc_info=exc)
        error = GatewayError(
            500,
            f"Internal error in the gateway ({type(exc).__name__}); the request was logged as "
            f"{record.id}.",
            code="internal_error",
        )
        self.fail(error, attempts)
        return error

    def _close(self) -> None:
        if self.closed:
            return
        self.closed = True
        accounts = self._accounts
        if self._ticket is not None and accounts.limits is not None:
            accounts.settle(self._ticket, self.record)
            self._ticket = None
        if self._scrubbers:
            _scrub_record(self.record, self._scrubbers)
        accounts.log.submit(self.record)


def _scrub_record(record: LogRecord, scrubbers: list[Callable[[str], str]]) -> None:
    def clean(value: Any) -> Any:
        if isinstance(value, str):
            for scrubber in scrubbers:
                value = scrubber(value)
            return value
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items()}
        if isinstance(value, list):
            return [clean(v) for v in value]
        return value

    record.request = clean(record.request)
    record.response = clean(record.response)
    record.error_message = clean(record.error_message)


def _new_record(body: Any, context: CallContext) -> LogRecord:
    is_dict = isinstance(body, dict)
    get = body.get if is_dict else (lambda _key, _default=None: None)
    model = get("model")
    metadata, extra, user = get("metadata"), get("extra"), get("user")
    session = get("session_id")
    stored = is_dict and get("store") is not False
    request_body = None
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


def _served_by(record: LogRecord, attempts: Attempts) -> None:
    """The deployment that answered, or the last one tried when none did."""
    candidate = attempts.chosen or attempts.last
    if candidate is not None:
        deployment = candidate.deployment
        record.model_served = deployment.model
        record.provider = deployment.provider
        record.upstream_model = deployment.upstream_model


def _estimate(chat: PreparedChat, catalog: Catalog) -> tuple[int, float]:
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
            entry = catalog.get(deployment.model)
            window = entry.context_window if entry else None
            answer = n * (asked or window or _DEFAULT_ANSWER_CAP)
            price = deployment.price
            dearest = max(dearest, (prompt * price.input + answer * price.output) / 1e6)
        cost += dearest
    return tokens, cost
