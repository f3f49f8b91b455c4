"""Serving one route (a single model, N = 1): the upstream answer or stream, relayed.

The answer is priced (usage and cost), labelled (`provider`, `routing`, `dropped_params`)
and written to the request's ledger. A stream is relayed chunk by chunk as it arrives:
nothing is buffered, the usage chunk and `[DONE]` come last, and after the first byte a
failure can only end the stream with an error event.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from crossroads.pipeline.context import PreparedChat
from crossroads.pipeline.stages import Stage
from crossroads.pipeline.stream_stages import StreamStages
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError, client_closed
from crossroads.protocol.sse import SSE_DONE, sse
from crossroads.providers.base import UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.routing.attempts import close_chunks
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["complete_one", "open_one", "replay"]


async def complete_one(chat: PreparedChat) -> dict[str, Any]:
    """The upstream's answer, priced and labelled; the gateway closes the books with it."""
    attempts, ledger = chat.attempts, chat.ledger
    try:
        response = await attempts.complete()
    except GatewayError as exc:
        ledger.fail(exc, attempts)
        raise
    except asyncio.CancelledError:
        ledger.fail(client_closed(), attempts)
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
    return response


async def open_one(chat: PreparedChat) -> AsyncGenerator[bytes, None]:
    """Open the upstream stream; failures before its first content raise `GatewayError`."""
    attempts = chat.attempts
    try:
        opened = await attempts.open_stream()
    except GatewayError as exc:
        chat.ledger.fail(exc, attempts)
        raise
    except asyncio.CancelledError:
        chat.ledger.fail(client_closed(), attempts)
        raise
    checks = chat.stages.stream_checks(chat) if chat.stages else []
    stages = StreamStages(chat, checks) if checks else None
    return _relay(chat, opened.rest, opened.head, stages)


async def _relay(
    chat: PreparedChat,
    chunks: AsyncIterator[dict[str, Any]],
    head: list[dict[str, Any]],
    stages: StreamStages | None,
) -> AsyncGenerator[bytes, None]:
    attempts, ledger = chat.attempts, chat.ledger
    chosen = attempts.chosen
    assert chosen is not None  # set once a stream produced content
    deployment = chosen.deployment
    provider = deployment.provider
    assembler = StreamAssembler()
    ttft_ms: float | None = None
    include_usage = bool(chat.request.stream_options and chat.request.stream_options.include_usage)
    notices = chat.notices
    finished = False
    pending = iter(head)
    last: dict[str, Any] = {}
    try:
        while (upstream := next(pending, None) or await anext(chunks, None)) is not None:
            last = upstream
            if stages is None:
                chunk = upstream
            elif (checked := await stages.chunk(upstream)) is not None:
                chunk = checked
            else:
                continue
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
            if stages is not None and stages.all_refused:
                await close_chunks(chunks)  # every choice was ended by a check
                break
        if stages is not None and (rest := await stages.end(last)) is not None:
            assembler.add(rest)
            yield sse(rest)
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
        if stages is not None:
            stages.finish(completion)
        if include_usage:
            final = assembler.chunk([], provider=provider, usage=usage)
            final.update(chat.notices)
            final["routing"] = routing
            final.update(chat.reports)
            yield sse(final)
        elif chat.reports:
            yield sse(assembler.chunk([], **chat.reports))
        yield SSE_DONE
        finished = True
        completion["usage"] = usage
        completion["provider"] = provider
        completion.update(chat.notices)
        completion["routing"] = routing
        completion.update(chat.reports)
        attempts.record_outcome(chosen, True, latency_ms, completion, ttft_ms)
        ledger.succeed(completion, usage, latency_ms, ttft_ms, attempts=attempts)
    except (UpstreamError, GatewayError) as exc:
        error = (
            exc
            if isinstance(exc, GatewayError)
            else to_gateway_error(exc, provider, caller_key=chat.request.openai_api_key is not None)
        )
        # After the first byte the status is already 200: end with an error event and
        # no [DONE], so no client mistakes a truncated answer for a complete one.
        yield sse(error.envelope())
        finished = True
        if isinstance(exc, UpstreamError):
            attempts.state.breakers.get(deployment.key).on_failure()
            latency_ms = (time.perf_counter() - chat.context.received) * 1000
            attempts.record_outcome(chosen, False, latency_ms, None, ttft_ms)
        ledger.fail_stream(assembler, error, ttft_ms, attempts)
    except Exception as exc:  # a defect here must still end the stream visibly
        error = GatewayError(
            500, f"Internal error while relaying the stream: {exc!r}", code="internal_error"
        )
        yield sse(error.envelope())
        finished = True
        ledger.fail_stream(assembler, error, ttft_ms, attempts)
    finally:
        if not finished:
            # The client went away: stop the upstream generation and record it.
            await close_chunks(chunks)
            ledger.fail_stream(assembler, client_closed(), ttft_ms, attempts)


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
