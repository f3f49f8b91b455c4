"""Fan-out: `model: "a,b,c"` asks every model in parallel and answers with one choice each.

Each model gets its own route (its deployments, strategy, retries and failover), so a
model that fails costs the caller only its own choice: that choice carries an `error`
object and `finish_reason: "error"`, and the request fails only when every model does.
Choices are numbered across models in the order the caller listed them (with `n > 1`,
model `a`'s n choices come first), and each says which model wrote it in
`choices[i].model`. Usage is the sum over the models that answered; `routing.models`
gives each model's own cost and route.

Streams are interleaved as they arrive: every upstream chunk is forwarded at once with
its choice index shifted to the model's slot, so no model waits for another.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

from crossroads.protocol.errors import GatewayError
from crossroads.routing.attempts import Attempts, OpenStream, close_chunks

__all__ = ["Branch", "error_choice", "interleave", "merge_responses", "sum_usage"]

_SUMMED = (
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "prompt_characters",
    "response_characters",
    "prompt_cache_hit_tokens",
    "prompt_cache_miss_tokens",
    "cost",
)


@dataclass(slots=True)
class Branch:
    """One model of a fan-out request and its route."""

    model: str
    attempts: Attempts
    n: int  # choices this model contributes
    offset: int  # index of its first choice in the combined answer


def error_choice(index: int, model: str, error: GatewayError) -> dict[str, Any]:
    """The choice standing for a model that failed."""
    return {
        "index": index,
        "model": model,
        "message": {"role": "assistant", "content": None},
        "logprobs": None,
        "finish_reason": "error",
        "error": {**error.envelope()["error"], "status": error.status},
    }


def sum_usage(usages: list[dict[str, Any]], latency_ms: float) -> dict[str, Any]:
    """Usage of the whole fan-out: counts and cost summed over the models that answered."""
    total: dict[str, Any] = {}
    for name in _SUMMED:
        values = [u[name] for u in usages if isinstance(u.get(name), int | float)]
        if values:
            total[name] = round(sum(values), 12) if name == "cost" else sum(values)
    cached = sum((u.get("prompt_tokens_details") or {}).get("cached_tokens") or 0 for u in usages)
    total["prompt_tokens_details"] = {"cached_tokens": cached}
    if any(u.get("estimated") for u in usages):
        total["estimated"] = True
    total["latency_ms"] = round(latency_ms, 3)
    return total


def merge_responses(
    requested: str,
    branches: list[Branch],
    results: list[dict[str, Any] | GatewayError],
    usages: list[dict[str, Any] | None],
    latency_ms: float,
) -> dict[str, Any]:
    """One `chat.completion` from every model's answer (or error)."""
    choices: list[dict[str, Any]] = []
    models: list[dict[str, Any]] = []
    providers: list[str] = []
    for branch, result, usage in zip(branches, results, usages, strict=True):
        route = branch.attempts.routing()
        if isinstance(result, GatewayError):
            choices += [
                error_choice(branch.offset + k, branch.model, result) for k in range(branch.n)
            ]
            models.append({"model": branch.model, "status": result.status, "cost": 0.0, **route})
            continue
        for choice in result.get("choices") or ():
            choice["index"] = branch.offset + int(choice.get("index") or 0)
            choice["model"] = branch.model
            choices.append(choice)
        provider = result.get("provider")
        if isinstance(provider, str):
            providers.append(provider)
        cost = (usage or {}).get("cost", 0.0)
        models.append({"model": branch.model, "status": 200, "cost": cost, **route})
    answered = [u for u in usages if u is not None]
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": requested,
        "choices": sorted(choices, key=lambda c: c["index"]),
        "usage": sum_usage(answered, latency_ms),
        "provider": ",".join(providers),
        "routing": {"strategy": "fan-out", "models": models},
    }


async def interleave(
    streams: list[OpenStream | None],
) -> AsyncIterator[tuple[int, dict[str, Any] | BaseException | None]]:
    """Chunks from every open stream as they arrive: `(branch, chunk)`; `(branch, None)`
    when that branch's stream ended, `(branch, exception)` when it failed."""
    queue: asyncio.Queue[tuple[int, dict[str, Any] | BaseException | None]] = asyncio.Queue()

    async def pump(index: int, stream: OpenStream) -> None:
        try:
            for chunk in stream.head:
                await queue.put((index, chunk))
            async for chunk in stream.rest:
                await queue.put((index, chunk))
        except Exception as exc:  # reported to the merger, which ends that choice
            await queue.put((index, exc))
            return
        await queue.put((index, None))

    tasks = [asyncio.ensure_future(pump(i, stream)) for i, stream in enumerate(streams) if stream]
    live = len(tasks)
    try:
        while live:
            item = await queue.get()
            if item[1] is None or isinstance(item[1], BaseException):
                live -= 1
            yield item
    finally:
        for task in tasks:
            task.cancel()
        for stream in streams:
            if stream is not None:
                await close_chunks(stream.rest)
