"""Signed thinking across turns: Anthropic's thinking blocks ↔ OpenAI-format messages.

With extended thinking on, Anthropic refuses a request whose open tool loop (the assistant
turn that tool results are still answering) does not begin with the thinking block the
model issued for it, signature and all. OpenAI's format has no place for that block, so the
answer carries each thinking block in the assistant message's `reasoning_details`, in
OpenRouter's shape (`reasoning.text` with its `signature`, `reasoning.encrypted` for a
redacted block, `format: "anthropic-claude-v1"`), and a caller that sends the message back
gives the blocks back; `thinking_blocks` turns them into blocks again. Details in another
provider's format, or unsigned, are left out: Anthropic would refuse them.

The one design decision: when the open tool loop's assistant turn came back without its
thinking (a client that keeps only OpenAI's fields, a conversation begun on another
provider), thinking is turned off for that request and reported in `dropped_params`
(`lost_thinking`, consulted when the route is planned) instead of being sent to a 400.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.providers.anthropic.options import thinking_on

__all__ = ["FORMAT", "lost_thinking", "reasoning_detail", "thinking_blocks"]

FORMAT = "anthropic-claude-v1"
# The request parameters that can turn thinking on.
_THINKING_PARAMETERS = ("reasoning_effort", "reasoning", "thinking")


def reasoning_detail(block: Mapping[str, Any], index: int) -> dict[str, Any] | None:
    """The `reasoning_details` entry for a thinking or redacted_thinking block, else None."""
    kind = block.get("type")
    if kind == "thinking":
        return {
            "type": "reasoning.text",
            "text": block.get("thinking") or "",
            "signature": block.get("signature") or None,
            "format": FORMAT,
            "index": index,
        }
    if kind == "redacted_thinking":
        data = block.get("data") or ""
        return {"type": "reasoning.encrypted", "data": data, "format": FORMAT, "index": index}
    return None


def thinking_blocks(details: Any, path: str) -> list[dict[str, Any]]:
    """The thinking blocks an assistant message's `reasoning_details` gives back; a 400
    `GatewayError` naming the entry when it is not the shape this gateway returned."""
    param = f"{path}.reasoning_details"
    if details is None:
        return []
    if not isinstance(details, list):
        raise bad_request("`reasoning_details` must be a list, as the answer gave it.", param=param)
    blocks: list[dict[str, Any]] = []
    for k, detail in enumerate(details):
        where = f"{param}[{k}]"
        if not isinstance(detail, Mapping):
            raise bad_request("A `reasoning_details` entry must be an object.", param=where)
        if detail.get("format", FORMAT) != FORMAT:
            continue  # another provider's reasoning, which Anthropic cannot verify
        kind = detail.get("type")
        if kind == "reasoning.text":
            text, signature = detail.get("text"), detail.get("signature")
            if not isinstance(text, str) or not isinstance(signature, str | None):
                raise bad_request(
                    "A `reasoning.text` entry needs `text` (and `signature`) as strings.",
                    param=where,
                )
            if signature:  # unsigned reasoning cannot be given back to Anthropic
                blocks.append({"type": "thinking", "thinking": text, "signature": signature})
        elif kind == "reasoning.encrypted":
            data = detail.get("data")
            if not isinstance(data, str) or not data:
                raise bad_request("A `reasoning.encrypted` entry needs `data`.", param=where)
            blocks.append({"type": "redacted_thinking", "data": data})
    return blocks


def lost_thinking(body: Mapping[str, Any]) -> list[str]:
    """The thinking parameters to drop because the open tool loop lost its thinking."""
    if not thinking_on(body):
        return []
    opening = _open_tool_loop(body.get("messages") or ())
    if opening is None or any(_has_thinking(message) for message in opening):
        return []
    return [name for name in _THINKING_PARAMETERS if body.get(name) is not None]


def _open_tool_loop(messages: Sequence[Any]) -> list[Mapping[str, Any]] | None:
    """The assistant messages that open the tool loop still in progress, or None.

    Messages are read as Anthropic will see them: system text aside, consecutive user and
    tool messages are one user turn, consecutive assistant messages one assistant turn. The
    loop is in progress when, after the last user turn holding no tool result, a user turn
    holds one; its first assistant turn is the one Anthropic wants to begin with thinking.
    """
    turns: list[tuple[str, list[Mapping[str, Any]]]] = []
    for message in messages:
        role = message.get("role") if isinstance(message, Mapping) else None
        author = {"user": "user", "tool": "user", "assistant": "assistant"}.get(str(role))
        if author is None:
            continue
        if turns and turns[-1][0] == author:
            turns[-1][1].append(message)
        else:
            turns.append((author, [message]))
    opening: list[Mapping[str, Any]] | None = None
    in_loop = False
    for author, group in reversed(turns):
        if author == "assistant":
            opening = group
        elif any(message.get("role") == "tool" for message in group):
            in_loop = True
        else:
            break
    return opening if in_loop else None


def _has_thinking(message: Mapping[str, Any]) -> bool:
    details = message.get("reasoning_details")
    if not isinstance(details, list):
        return False
    try:
        return bool(thinking_blocks(details, "messages"))
    except GatewayError:  # a malformed entry is refused when the request is translated
        return False
