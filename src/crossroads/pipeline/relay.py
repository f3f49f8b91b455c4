"""Serving a prepared request over its routes: N branches, one answer or one stream.

A request has one route per model it asks for: one (N = 1) for a plain request, N for a
fan-out (`model: "a,b"`). The relay runs every branch — concurrently when there are
several — prices each branch's answer at its own deployment's prices, and hands the results
to the request's `Join` (pipeline/joins.py), which alone knows how branches become one
answer: a single route's answer as it came, or a fan-out's merged choices. A stream is
relayed chunk by chunk as it arrives: nothing is buffered beyond what a response stage's
policy asks for, the usage chunk and `[DONE]` come last, and after the first byte a failure
can only end the stream (or, in a fan-out, that model's choice) with an error.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.joins import Join, join_for, single_answer
from crossroads.pipeline.stages import Stage
from crossroads.pipeline.stream_stages import StreamStages
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError, client_closed
from crossroads.protocol.sse import SSE_DONE, sse
from crossroads.providers.base import UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.routing.attempts import Attempts, OpenStream, close_chunks
from crossroads.routing.fanout import Branch, interleave
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["complete", "open_stream", "priced", "replay"]

_Item = dict[str, Any] | BaseException | None


def priced(
    chat: PreparedChat, attempts: Attempts, response: dict[str, Any], latency_ms: float
) -> dict[str, Any]:
    """Price one branch's answer at the deployment that gave it; labels its provider."""
    chosen = attempts.chosen
    assert chosen is not None  # the branch answered
    deployment = chosen.deployment
    usage = enrich_usage(
        response.get("usage"),
        price=deployment.price,
        prompt_chars=prompt_characters(chat.body["messages"]),
        response_chars=completion_characters(response.get("choices") or []),
        latency_ms=latency_ms,
    )
    response["usage"] = usage
    response["provider"] = deployment.provider
    return usage


async def _complete_branch(branch: Branch) -> dict[str, Any] | GatewayError:
    try:
        return await branch.attempts.complete()
    except GatewayError as exc:
        return exc


async def complete(chat: PreparedChat) -> dict[str, Any]:
    """Every branch's answer, joined; the gateway closes the books with it."""
    if not chat.branches:
        return await _complete_one(chat)
    join = join_for(chat)
    branches = join.branches
    try:
        results = list(await asyncio.gather(*(_complete_branch(b) for b in branches)))
    except asyncio.CancelledError:
        chat.ledger.fail(client_closed(), chat.attempts)
        raise
    latency_ms = (time.perf_counter() - chat.context.received) * 1000
    usages: list[dict[str, Any] | None] = [
        None if isinstance(result, GatewayError) else priced(chat, b.attempts, result, latency_ms)
        for b, result in zip(branches, results, strict=True)
    ]
    errors = [r for r in results if isinstance(r, GatewayError)]
    if len(errors) == len(branches):
        chat.ledger.fail(errors[0], chat.attempts)
        raise errors[0]
    return join.answer(results, usages, latency_ms)


async def _complete_one(chat: PreparedChat) -> dict[str, Any]:
    """A single route's answer as `Single` joins it, without the per-branch lists a fan-out
    needs: the path of almost every request, where each call is per-request CPU."""
    attempts = chat.attempts
    try:
        response = await attempts.complete()
    except asyncio.CancelledError:
        chat.ledger.fail(client_closed(), attempts)
        raise
    except GatewayError as exc:
        chat.ledger.fail(exc, attempts)
        raise
    priced(chat, attempts, response, (time.perf_counter() - chat.context.received) * 1000)
    return single_answer(chat, response)


async def _open_branch(branch: Branch) -> OpenStream | GatewayError:
    try:
        return await branch.attempts.open_stream()
    except GatewayError as exc:
        return exc


async def open_stream(chat: PreparedChat) -> AsyncGenerator[bytes, None]:
    """Open every branch's upstream stream; when none opens, the first failure is raised
    (a real HTTP error status), else the stream to send."""
    join = join_for(chat)
    branches = join.branches
    try:
        if len(branches) == 1:
            opened = [await _open_branch(branches[0])]
        else:
            opened = list(await asyncio.gather(*(_open_branch(b) for b in branches)))
    except asyncio.CancelledError:
        chat.ledger.fail(client_closed(), chat.attempts)
        raise
    failures = [o for o in opened if isinstance(o, GatewayError)]
    if len(failures) == len(branches):
        chat.ledger.fail(failures[0], chat.attempts)
        raise failures[0]
    streams = [o if isinstance(o, OpenStream) else None for o in opened]
    errors = {i: o for i, o in enumerate(opened) if isinstance(o, GatewayError)}
    checks = chat.stages.stream_checks(chat) if chat.stages else []
    stages = StreamStages(chat, checks) if checks else None
    return _relay(chat, join, streams, errors, stages)


async def _only(stream: OpenStream) -> AsyncIterator[tuple[int, _Item]]:
    """One branch's chunks in `interleave`'s shape, without its task and queue."""
    try:
        for chunk in stream.head:
            yield 0, chunk
        async for chunk in stream.rest:
            yield 0, chunk
    except Exception as exc:  # handed to the join, which decides what a failure ends
        yield 0, exc
        return
    yield 0, None


async def _relay(
    chat: PreparedChat,
    join: Join,
    streams: list[OpenStream | None],
    errors: dict[int, GatewayError],
    stages: StreamStages | None,
) -> AsyncGenerator[bytes, None]:
    branches = join.branches
    assemblers = [StreamAssembler() for _ in branches]
    ttft_ms: float | None = None
    finished = False
    last: dict[str, Any] = {}
    if len(streams) == 1 and streams[0] is not None:
        source = _only(streams[0])
    else:
        source = interleave(streams)
    try:
        for i, error in errors.items():
            yield sse(join.failed_chunk(i, error))
        async for i, item in source:
            if item is None:
                continue
            if isinstance(item, BaseException):
                error = _branch_error(chat, branches[i], item)
                errors[i] = error
                if not join.survives_failure:
                    raise _Ended(error, item)
                yield sse(join.failed_chunk(i, error))
                continue
            assemblers[i].add(item)
            chunk = join.shape(i, item)
            if chunk is None:
                continue
            last = chunk
            if stages is not None and (chunk := await stages.chunk(chunk)) is None:
                continue
            if ttft_ms is None and _has_content(chunk):
                ttft_ms = (time.perf_counter() - chat.context.received) * 1000
            yield sse(chunk)
            if stages is not None and stages.all_refused:
                # Every choice was ended by a check: the upstreams need not go on.
                await _close(source, streams)
                break
        if stages is not None and (rest := await stages.end(last)) is not None:
            yield sse(rest)
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        outcomes: list[dict[str, Any] | GatewayError] = []
        usages: list[dict[str, Any] | None] = []
        for i, branch in enumerate(branches):
            if i in errors:
                outcomes.append(errors[i])
                usages.append(None)
                continue
            completion = assemblers[i].completion()
            usages.append(priced(chat, branch.attempts, completion, latency_ms))
            outcomes.append(completion)
        response = join.answer(outcomes, usages, latency_ms)
        for chunk in join.held(response):
            if stages is not None and (chunk := await stages.chunk(chunk)) is None:
                continue
            yield sse(chunk)
            if stages is not None and (rest := await stages.end(chunk)) is not None:
                yield sse(rest)
        if stages is not None:
            stages.finish(response)
        response.update(chat.reports)
        if chat.request.stream_options and chat.request.stream_options.include_usage:
            yield sse(join.final_chunk(assemblers, response))
        elif chat.reports:
            yield sse({**join.identity(assemblers), "choices": [], **chat.reports})
        yield SSE_DONE
        finished = True
        join.streamed(response, outcomes, latency_ms, ttft_ms)
    except _Ended as ended:
        # After the first byte the status is already 200: end with an error event and
        # no [DONE], so no client mistakes a truncated answer for a complete one.
        yield sse(ended.error.envelope())
        finished = True
        join.stream_failed(assemblers[0], ended.error, ended.cause, ttft_ms)
    except Exception as exc:  # a defect here must still end the stream visibly
        error = GatewayError(
            500, f"Internal error while relaying the stream: {exc!r}", code="internal_error"
        )
        yield sse(error.envelope())
        finished = True
        join.stream_failed(assemblers[0], error, exc, ttft_ms)
    finally:
        if not finished:
            # The client went away: stop the upstream generation and record it.
            join.stream_failed(assemblers[0], client_closed(), None, ttft_ms)
        await _close(source, streams)


async def _close(source: AsyncIterator[Any], streams: list[OpenStream | None]) -> None:
    """Stop reading: the merger's tasks, then every upstream stream (idempotent)."""
    aclose = getattr(source, "aclose", None)
    if aclose is not None:
        await aclose()
    for stream in streams:
        if stream is not None:
            await close_chunks(stream.rest)


class _Ended(Exception):
    """A branch failed mid-stream and the join cannot go on without it."""

    def __init__(self, error: GatewayError, cause: BaseException) -> None:
        super().__init__(error.message)
        self.error = error
        self.cause = cause


def _branch_error(chat: PreparedChat, branch: Branch, exc: BaseException) -> GatewayError:
    """A branch's mid-stream failure as the caller's error; an upstream's failure also
    counts against its deployment's breaker."""
    if isinstance(exc, GatewayError):
        return exc
    chosen = branch.attempts.chosen
    if isinstance(exc, UpstreamError) and chosen is not None:
        branch.attempts.state.breakers.get(chosen.deployment.key).on_failure()
        return to_gateway_error(
            exc, chosen.provider.name, caller_key=chat.request.openai_api_key is not None
        )
    if isinstance(exc, UpstreamError):
        return to_gateway_error(exc, branch.model)
    raise exc  # a defect of ours: the relay's last resort answers it


def _has_content(chunk: dict[str, Any]) -> bool:
    for choice in chunk.get("choices") or ():
        delta = choice.get("delta") or {}
        if delta.get("content") or delta.get("tool_calls") or delta.get("reasoning_content"):
            return True
    return False


async def replay(
    chat: PreparedChat, answer: dict[str, Any], answered_by: Stage | None
) -> AsyncGenerator[bytes, None]:
    """A complete answer a request stage gave (a cache hit), sent as a stream: the other
    response stages see it whole first, then it goes out as one chunk per choice."""
    if chat.stages:
        await chat.stages.run_after(chat, answer, answered_by)
    answer.update(chat.reports)
    identity = {
        "id": answer.get("id"),
        "object": "chat.completion.chunk",
        "created": answer.get("created"),
        "model": answer.get("model"),
    }
    finished = False
    try:
        for choice in answer.get("choices") or []:
            message = choice.get("message") or {}
            delta = {k: v for k, v in message.items() if v is not None}
            shown = {"index": choice.get("index", 0), "delta": delta}
            shown["finish_reason"] = choice.get("finish_reason")
            extra = {k: v for k, v in choice.items() if k not in ("message", "index")}
            yield sse({**identity, "choices": [{**extra, **shown}]})
        tail = {k: v for k, v in answer.items() if k not in ("choices", *identity)}
        if chat.request.stream_options and chat.request.stream_options.include_usage:
            yield sse({**identity, "choices": [], **tail})
        elif chat.reports:
            yield sse({**identity, "choices": [], **chat.reports})
        yield SSE_DONE
        finished = True
        latency_ms = (time.perf_counter() - chat.context.received) * 1000
        chat.ledger.succeed(answer, answer["usage"], latency_ms, latency_ms, attempts=None)
    finally:
        if not finished:
            chat.ledger.fail(client_closed())
