"""Running a route: attempts on its candidates, with retries, failover and a deadline.

One `Attempts` object serves one request. It walks the plan's candidates in order; each
gets one attempt plus `routing.retries` retries for transient failures (see `retry`), then
the next candidate is tried. Every attempt is timed, counted in the live stats and the
deployment's circuit breaker, and listed in the response's `routing.attempts`.

The one design decision for streams: an attempt has succeeded once the upstream has sent
its first *content* (text, reasoning or a tool call). Chunks before that (the role chunk)
are held back, so a stream that fails before any content fails over without the caller
seeing anything; after it, nothing can be taken back and a failure ends the stream with an
error event. The per-attempt timeout bounds the wait for that first content.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

from crossroads.config import RoutingConfig
from crossroads.protocol.chat import EXTENSION_FIELDS, ChatCompletionRequest
from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamCall, UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.routing.breaker import Breakers
from crossroads.routing.plan import Candidate, RoutePlan
from crossroads.routing.retry import Backoff, counts_against_deployment, verdict
from crossroads.routing.stats import LiveStats, Outcome
from crossroads.telemetry.trace import RequestTrace

__all__ = ["Attempts", "OpenStream", "RouteState"]

T = TypeVar("T")
Chunks = AsyncIterator[dict[str, Any]]


@dataclass(slots=True)
class RouteState:
    """What routing keeps between requests: live stats, breakers, backoff. One per app."""

    config: RoutingConfig
    stats: LiveStats
    breakers: Breakers
    backoff: Backoff


@dataclass(slots=True)
class OpenStream:
    """A stream that has produced its first content: held-back chunks, then the rest."""

    head: list[dict[str, Any]]
    rest: Chunks


@dataclass(slots=True)
class Attempts:
    state: RouteState
    plan: RoutePlan
    request: ChatCompletionRequest
    body: dict[str, Any]
    deadline: float  # time.monotonic() by which the request must be answered
    attempt_timeout: float | None  # overrides the deployment's and the config's
    echo: bool = False  # keep the exact upstream bodies (`debug.echo_upstream_body`)
    # The deadline is the caller's own (`x-crossroads-timeout`), shorter than the config's.
    caller_deadline: bool = False
    log: list[dict[str, Any]] = field(default_factory=list)  # `routing.attempts`
    bodies: list[dict[str, Any]] = field(default_factory=list)
    chosen: Candidate | None = None
    last: Candidate | None = None  # the candidate of the latest attempt, for the log
    router: dict[str, Any] | None = None  # `routing.router` of a `model: "router"` request
    # Set when planning already found no deployment able to serve now (a fan-out branch
    # whose circuits are all open): every call raises it.
    failure: GatewayError | None = None
    # Each attempt's end time for OpenTelemetry (telemetry/trace.py); None when it is off.
    trace: RequestTrace | None = None

    # --- the two ways to call --------------------------------------------------------------

    async def complete(self) -> dict[str, Any]:
        """The first successful non-streamed answer along the route."""

        async def once(candidate: Candidate, call: UpstreamCall) -> dict[str, Any]:
            return await candidate.provider.complete(call)

        response = await self._run(once, stream=False)
        return response

    async def open_stream(self) -> OpenStream:
        """The first stream along the route that produces content (or ends cleanly)."""

        async def once(candidate: Candidate, call: UpstreamCall) -> OpenStream:
            chunks = candidate.provider.stream(call)
            head: list[dict[str, Any]] = []
            try:
                while (chunk := await anext(chunks, None)) is not None:
                    head.append(chunk)
                    if _has_content(chunk):
                        break
            except BaseException:
                await close_chunks(chunks)
                raise
            return OpenStream(head, chunks)

        return await self._run(once, stream=True)

    # --- the loop --------------------------------------------------------------------------

    def call_for(self, candidate: Candidate, *, stream: bool) -> UpstreamCall:
        """The upstream call for `candidate`: the caller's body minus what it cannot take,
        with values outside its ranges clamped into them."""
        removed = candidate.parameters.removed
        body = {
            k: v for k, v in self.body.items() if k not in EXTENSION_FIELDS and k not in removed
        }
        body["model"] = candidate.deployment.upstream_model
        body.update(candidate.parameters.adjusted)
        if stream:
            # Always ask for usage: cost is computed from it even when the caller did not ask.
            body["stream_options"] = {**(self.body.get("stream_options") or {})}
            body["stream_options"]["include_usage"] = True
        call = UpstreamCall(body=body, api_key=self.request.openai_api_key)
        if self.echo:
            call.sent = self.bodies
        return call

    async def _run(
        self,
        once: Callable[[Candidate, UpstreamCall], Awaitable[T]],
        *,
        stream: bool,
    ) -> T:
        config = self.state.config
        if self.failure is not None:
            raise self.failure
        last_error: GatewayError | None = None
        for candidate in self.plan.candidates:
            breaker = self.state.breakers.get(candidate.deployment.key)
            retry = 0
            while True:
                if not breaker.allow():
                    self._note(candidate, None, "circuit_open", 0.0)
                    break
                remaining = self.deadline - time.monotonic()
                if remaining <= 0:
                    breaker.release()
                    raise last_error or _deadline_error()
                operator = candidate.deployment.attempt_timeout or config.attempt_timeout
                timeout = min(self.attempt_timeout or operator or remaining, remaining)
                # A timeout the caller chose (shorter than the operator's) says nothing
                # about the deployment: it must not count against it.
                caller_bound = (
                    self.attempt_timeout is not None
                    and timeout == self.attempt_timeout
                    and (operator is None or self.attempt_timeout < operator)
                ) or (self.caller_deadline and timeout == remaining)
                self.last = candidate
                started = time.perf_counter()
                try:
                    async with asyncio.timeout(timeout):
                        result = await once(candidate, self.call_for(candidate, stream=stream))
                except TimeoutError:
                    error: UpstreamError = UpstreamError(
                        f"upstream {candidate.provider.name!r} did not answer within "
                        f"{timeout:.3g}s",
                        failure="timeout",
                    )
                except UpstreamError as exc:
                    error = exc
                except BaseException:  # the caller's own 400 from translation, or a hang-up
                    breaker.release()
                    raise
                else:
                    latency_ms = (time.perf_counter() - started) * 1000
                    self._note(candidate, 200, None, latency_ms)
                    breaker.on_success()
                    if not stream:
                        self.record_outcome(candidate, True, latency_ms, result)
                    self.chosen = candidate
                    return result
                latency_ms = (time.perf_counter() - started) * 1000
                caller_key = self.request.openai_api_key is not None
                mapped = to_gateway_error(error, candidate.provider.name, caller_key=caller_key)
                self._note(candidate, error.status, mapped.code, latency_ms)
                if counts_against_deployment(error, caller_key=caller_key) and not (
                    error.failure == "timeout" and caller_bound
                ):
                    breaker.on_failure()
                    self.state.stats.record(
                        candidate.deployment.key,
                        Outcome(ok=False, latency_ms=latency_ms, status=error.status),
                    )
                else:
                    breaker.release()
                decision = verdict(error, caller_key=caller_key)
                if decision == "fail":
                    raise mapped
                last_error = mapped
                if decision == "retry" and retry < config.retries:
                    wait = self.state.backoff.delay(retry, error.retry_after)
                    if wait is not None and time.monotonic() + wait < self.deadline:
                        await asyncio.sleep(wait)
                        retry += 1
                        continue
                break
        raise last_error or _unavailable(self.plan)

    def _note(
        self, candidate: Candidate, status: int | None, error: str | None, latency_ms: float
    ) -> None:
        entry = {
            "deployment": candidate.deployment.key,
            "provider": candidate.provider.name,
            "status": status,
            "error": error,
            "latency_ms": round(latency_ms, 3),
        }
        self.log.append(entry)
        if self.trace is not None:
            self.trace.attempt(entry, time.time_ns())

    def record_outcome(
        self,
        candidate: Candidate,
        ok: bool,
        latency_ms: float,
        response: Any = None,
        ttft_ms: float | None = None,
    ) -> None:
        """Count a finished answer in the deployment's live stats."""
        usage = response.get("usage") if isinstance(response, dict) else None
        usage = usage if isinstance(usage, dict) else {}
        self.state.stats.record(
            candidate.deployment.key,
            Outcome(
                ok=ok,
                latency_ms=latency_ms,
                ttft_ms=ttft_ms,
                prompt_tokens=usage.get("prompt_tokens"),
                completion_tokens=usage.get("completion_tokens"),
            ),
        )

    def routing(self) -> dict[str, Any]:
        """The response's `routing` field."""
        out: dict[str, Any] = {
            "strategy": self.plan.strategy,
            "candidates": self.plan.describe(),
            "attempts": self.log,
            "chosen": self.chosen.deployment.key if self.chosen else None,
        }
        if self.router is not None:
            served = self.chosen.deployment.model if self.chosen else None
            out["router"] = {**self.router, "served": served}
        if self.echo:
            out["upstream_bodies"] = self.bodies
        return out


def _has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if (
            delta.get("content")
            or delta.get("reasoning_content")
            or delta.get("tool_calls")
            or delta.get("refusal")
        ):
            return True
    return False


async def close_chunks(chunks: Chunks) -> None:
    aclose = getattr(chunks, "aclose", None)
    if aclose is not None:
        with contextlib.suppress(Exception):  # the upstream may be gone: best effort
            await aclose()


def _deadline_error() -> GatewayError:
    return GatewayError(
        504,
        "The request's deadline passed before any deployment answered "
        "(routing.timeout, or the x-crossroads-timeout header).",
        type="upstream_error",
        code="upstream_timeout",
    )


def _unavailable(plan: RoutePlan) -> GatewayError:
    return GatewayError(
        503,
        "Every deployment of this model is unavailable now (circuits open).",
        type="upstream_error",
        code="no_available_deployment",
        headers={"Retry-After": "1"},
    )
