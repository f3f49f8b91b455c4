"""A chat completion → an Anthropic Message: content blocks, stop reason, usage.

Thinking comes first (Anthropic's order): the signed blocks an anthropic-dialect upstream
returned in `reasoning_details`, else the plain `reasoning_content` of another provider as
one thinking block with an empty signature (it cannot be given back to Anthropic, and the
request translation drops unsigned thinking accordingly). Then the text, then the tool
calls. The message id is the request log's id, so a caller can look the request up.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import orjson

from crossroads.inbound.stop_sequences import matched_stop

__all__ = ["STOP_REASONS", "anthropic_message", "anthropic_usage", "message_id", "tool_input"]

# OpenAI's finish reasons as Anthropic's stop reasons.
STOP_REASONS = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def message_id(log_id: str) -> str:
    return f"msg_{log_id}"


def anthropic_usage(usage: Mapping[str, Any] | None) -> dict[str, Any]:
    """Anthropic's usage for OpenAI's: its `input_tokens` excludes what the cache served
    or stored, which it reports apart."""
    usage = usage or {}
    details = usage.get("prompt_tokens_details") or {}
    read = details.get("cached_tokens") or 0
    written = details.get("cache_write_tokens") or 0
    return {
        "input_tokens": max((usage.get("prompt_tokens") or 0) - read - written, 0),
        "output_tokens": usage.get("completion_tokens") or 0,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
    }


def tool_input(arguments: Any) -> dict[str, Any]:
    """A tool call's arguments as the object Anthropic's `input` is; arguments that are
    not a JSON object (a model's malformed output) are kept under `_raw`."""
    if not arguments:
        return {}
    try:
        value = orjson.loads(arguments)
    except orjson.JSONDecodeError:
        return {"_raw": arguments}
    return value if isinstance(value, dict) else {"_raw": arguments}


def thinking_blocks(message: Mapping[str, Any]) -> list[dict[str, Any]]:
    blocks: list[dict[str, Any]] = []
    for detail in message.get("reasoning_details") or ():
        kind = detail.get("type") if isinstance(detail, Mapping) else None
        if kind == "reasoning.text":
            text = detail.get("text") or ""
            blocks.append(
                {"type": "thinking", "thinking": text, "signature": detail.get("signature") or ""}
            )
        elif kind == "reasoning.encrypted":
            blocks.append({"type": "redacted_thinking", "data": detail.get("data") or ""})
    if not blocks and (reasoning := message.get("reasoning_content")):
        blocks.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    return blocks


def anthropic_message(
    completion: Mapping[str, Any],
    model: str,
    log_id: str,
    stop_sequences: Sequence[str] | None = None,
) -> dict[str, Any]:
    """The Message for a non-streamed chat `completion`; `model` as the caller named it,
    `stop_sequences` as it sent them (inbound/stop_sequences.py tells which one stopped)."""
    choice = (completion.get("choices") or [{}])[0]
    message = choice.get("message") or {}
    content = thinking_blocks(message)
    if text := message.get("content"):
        content.append({"type": "text", "text": text})
    for call in message.get("tool_calls") or ():
        function = call.get("function") or {}
        content.append(
            {
                "type": "tool_use",
                "id": call.get("id") or "",
                "name": function.get("name") or "",
                "input": tool_input(function.get("arguments")),
            }
        )
    stop = matched_stop(choice, text or "", stop_sequences)
    reason = STOP_REASONS.get(choice.get("finish_reason") or "stop", "end_turn")
    return {
        "id": message_id(log_id),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": "stop_sequence" if stop is not None else reason,
        "stop_sequence": stop,
        "usage": anthropic_usage(completion.get("usage")),
    }
