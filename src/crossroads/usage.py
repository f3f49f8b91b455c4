"""Usage accounting: tokens, characters, cost and latency for every response.

The upstream's token counts are authoritative; cost is priced here from the deployment that
served the request, with cached prompt tokens (cache reads) and cache writes at their own
prices. When an upstream reports
no usage at all, tokens are estimated from characters (about four per token) and the usage
object says `"estimated": true`, so a bill is never silently zero.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

from crossroads.config import Price

__all__ = [
    "completion_characters",
    "enrich_usage",
    "estimate_tokens",
    "price_usage",
    "prompt_characters",
]

_CHARS_PER_TOKEN = 4


def _text_of(content: Any) -> Iterable[str]:
    if isinstance(content, str):
        yield content
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, Mapping):
                text = part.get("text") or part.get("refusal")
                if isinstance(text, str):
                    yield text


def prompt_characters(messages: Iterable[Mapping[str, Any]]) -> int:
    """Characters of text the caller sent (images and audio count zero)."""
    return sum(len(text) for message in messages for text in _text_of(message.get("content")))


def completion_characters(choices: Iterable[Mapping[str, Any]]) -> int:
    """Characters of text and tool-call arguments the model produced over all choices."""
    total = 0
    for choice in choices:
        message = choice.get("message") or {}
        total += sum(len(text) for text in _text_of(message.get("content")))
        for call in message.get("tool_calls") or ():
            total += len((call.get("function") or {}).get("arguments") or "")
    return total


def estimate_tokens(characters: int) -> int:
    return math.ceil(characters / _CHARS_PER_TOKEN)


def price_usage(
    price: Price, prompt_tokens: int, completion_tokens: int, cached: int, cache_write: int = 0
) -> float:
    """USD for these token counts at this deployment's per-1M-token prices.

    `cached` (read from the upstream's cache) and `cache_write` (written to it) are parts
    of `prompt_tokens`, each at its own price.
    """
    cached = min(max(cached, 0), prompt_tokens)
    cache_write = min(max(cache_write, 0), prompt_tokens - cached)
    micro = (
        (prompt_tokens - cached - cache_write) * price.input
        + cached * price.cached_input_or_input
        + cache_write * price.cache_write_or_input
        + completion_tokens * price.output
    )
    return round(micro / 1_000_000, 12)


def enrich_usage(
    usage: Mapping[str, Any] | None,
    *,
    price: Price,
    prompt_chars: int,
    response_chars: int,
    latency_ms: float,
) -> dict[str, Any]:
    """OpenAI's usage object plus `prompt_characters`, `response_characters`, `cost`,
    `latency_ms`, and cache-hit counts; estimated from characters when `usage` is missing."""
    if usage and isinstance(usage.get("prompt_tokens"), int):
        out = dict(usage)
        prompt_tokens = int(usage.get("prompt_tokens") or 0)
        completion_tokens = int(usage.get("completion_tokens") or 0)
        out.setdefault("total_tokens", prompt_tokens + completion_tokens)
    else:
        prompt_tokens = estimate_tokens(prompt_chars)
        completion_tokens = estimate_tokens(response_chars)
        out = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "estimated": True,
        }
    details = out.get("prompt_tokens_details")
    cached = cache_write = None
    if isinstance(details, Mapping):
        cached, cache_write = details.get("cached_tokens"), details.get("cache_write_tokens")
    cached = cached if isinstance(cached, int) else 0
    cache_write = cache_write if isinstance(cache_write, int) else 0
    out["prompt_characters"] = prompt_chars
    out["response_characters"] = response_chars
    out["prompt_cache_hit_tokens"] = cached
    out["prompt_cache_miss_tokens"] = max(prompt_tokens - cached, 0)
    out["cost"] = price_usage(price, prompt_tokens, completion_tokens, cached, cache_write)
    out["latency_ms"] = round(latency_ms, 3)
    return out
