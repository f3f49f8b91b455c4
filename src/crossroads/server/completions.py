"""`POST /v1/completions`: legacy text completions, served by chat models.

Thin route: receive (server/inbound_call.py), translate (inbound/completions.py), one
pipeline call per prompt — each with its own log record, limits and route — and the
answers joined into one `text_completion`, or one stream that serves the prompts in turn.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from crossroads.inbound.completions import (
    CompletionRequest,
    chat_bodies,
    completion_chunk,
    parse_request,
    prompts,
    text_choices,
)
from crossroads.inbound.events import chat_chunks
from crossroads.protocol.errors import GatewayError
from crossroads.protocol.sse import SSE_DONE, primed, sse
from crossroads.server.inbound_call import STREAM_HEADERS, Received, receive
from crossroads.server.responses import EventStreamResponse, JSONResponse, error_response

__all__ = ["create_completion"]

_USAGE_FIELDS = ("prompt_tokens", "completion_tokens", "total_tokens")


async def create_completion(request: Request) -> Response:
    try:
        received = await receive(request)
    except GatewayError as exc:
        return error_response(exc)
    try:
        try:
            parsed = parse_request(received.body)
            bodies = chat_bodies(parsed)
        except GatewayError as exc:
            raise received.reject(exc) from None
        calls = [received, *(received.fork() for _ in bodies[1:])]
        completion_id = f"cmpl-{received.context.log_id}"
        if parsed.stream:
            first = await calls[0].stream(bodies[0])
            events = await primed(_events(parsed, completion_id, first, calls, bodies))
            return EventStreamResponse(events, headers={**STREAM_HEADERS, **received.headers()})
        answers = await asyncio.gather(
            *(call.complete(body) for call, body in zip(calls, bodies, strict=True))
        )
        return JSONResponse(_joined(parsed, completion_id, answers), headers=received.headers())
    except GatewayError as exc:
        response = error_response(exc)
        response.headers.update(received.headers())
        return response


def _joined(
    request: CompletionRequest, completion_id: str, answers: list[dict[str, Any]]
) -> dict[str, Any]:
    n = request.n or 1
    choices: list[dict[str, Any]] = []
    usage = dict.fromkeys(_USAGE_FIELDS, 0)
    cost = 0.0
    for i, (prompt, answer) in enumerate(zip(prompts(request), answers, strict=True)):
        choices += text_choices(answer, i * n, prompt if request.echo else None)
        for name in _USAGE_FIELDS:
            usage[name] += (answer.get("usage") or {}).get(name) or 0
        cost += (answer.get("usage") or {}).get("cost") or 0.0
    body = completion_chunk(completion_id, request.model, choices, {**usage, "cost": cost})
    body["provider"] = answers[0].get("provider")
    return body


async def _events(
    request: CompletionRequest,
    completion_id: str,
    first: AsyncIterator[bytes],
    calls: list[Received],
    bodies: list[dict[str, Any]],
) -> AsyncGenerator[bytes, None]:
    """The prompts' streams in turn, as legacy chunks; usage summed at the end when the
    caller asked for it. Each stream is closed whatever happens (a client that leaves
    included), so the pipeline records it."""
    n = request.n or 1
    usage = dict.fromkeys(_USAGE_FIELDS, 0)
    texts = prompts(request)
    for i, (call, body) in enumerate(zip(calls, bodies, strict=True)):
        try:
            frames = first if i == 0 else await call.stream(body)
        except GatewayError as exc:
            yield sse(exc.envelope())
            return
        failed = False
        try:
            if request.echo:
                echoed = [
                    {"text": texts[i], "index": i * n + j, "logprobs": None, "finish_reason": None}
                    for j in range(n)
                ]
                yield sse(completion_chunk(completion_id, request.model, echoed))
            async for chunk in chat_chunks(frames):
                if failed:
                    continue  # read on to the end, where the pipeline records the failure
                if chunk.get("error") is not None:
                    yield sse(chunk)
                    failed = True
                    continue
                for name in _USAGE_FIELDS:
                    usage[name] += (chunk.get("usage") or {}).get(name) or 0
                choices = [
                    {
                        "text": (choice.get("delta") or {}).get("content") or "",
                        "index": i * n + choice.get("index", 0),
                        "logprobs": None,
                        "finish_reason": choice.get("finish_reason"),
                    }
                    for choice in chunk.get("choices") or ()
                ]
                if choices:
                    yield sse(completion_chunk(completion_id, request.model, choices))
        finally:
            aclose = getattr(frames, "aclose", None)
            if aclose is not None:
                await aclose()
        if failed:
            return
    if (request.stream_options or {}).get("include_usage"):
        yield sse(completion_chunk(completion_id, request.model, [], usage))
    yield SSE_DONE
