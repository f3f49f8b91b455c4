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
from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError, client_closed
from crossroads.protocol.sse import SSE_DONE, sse
from crossroads.providers.base import UpstreamError
from crossroads.providers.errors import to_gateway_error
from crossroads.routing.attempts import close_chunks
from crossroads.usage import completion_characters, enrich_usage, prompt_characters

__all__ = ["complete_one", "open_one"]


async def complete_one(chat: PreparedChat) -> dict[str, Any]:
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
    ledger.succeed(response, usage, latency_ms, attempts=attempts)
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
    return _relay(chat, opened.rest, opened.head)


async def _relay(
    chat: PreparedChat,
    chunks: AsyncIterator[dict[str, Any]],
    head: list[dict[str, Any]],
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
