"""OpenAI `messages` → Anthropic's top-level `system` and its alternating `messages`.

The Messages API has no system role, so system and developer messages, wherever they
stand, are joined with a blank line into the one top-level `system` string (a mid-
conversation instruction loses its position; Anthropic has nowhere else to put it). Tool
messages become `tool_result` blocks of a user turn, and adjacent turns of one role are
merged into one turn, because Anthropic wants every result for an assistant turn in the
single user turn that follows it, with the results before any text. Thinking comes back
only as the signed blocks an earlier answer returned in `reasoning_details` (see
reasoning.py), first in its assistant turn; `reasoning_content` alone is not replayed.
Tool-call ids from other providers are rewritten into Anthropic's alphabet (tool_ids.py),
and a PDF `file` part becomes a document block.

The one design decision: what Anthropic cannot express is refused with a 400 naming the
body path — an audio part, a file that is not an inline PDF, a legacy `function` message,
arguments that are not a JSON object, a conversation that opens with the assistant —
never sent half-translated.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

from crossroads.protocol.errors import bad_request
from crossroads.providers.anthropic.reasoning import thinking_blocks
from crossroads.providers.anthropic.tool_ids import to_anthropic
from crossroads.providers.content import data_url, file_data, message_texts, tool_arguments

__all__ = ["map_messages"]

_IMAGE_MEDIA_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DOCUMENT_MEDIA_TYPES = frozenset({"application/pdf"})
_THOUGHTS = ("thinking", "redacted_thinking")


def map_messages(
    messages: Iterable[Mapping[str, Any]], *, thinking: bool = False
) -> tuple[str | None, list[dict[str, Any]]]:
    """(`system`, `messages`) for an OpenAI `messages` list, or a 400 `GatewayError`.
    `thinking` says whether the request has extended thinking on."""
    system: list[str] = []
    turns: list[dict[str, Any]] = []
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend(message_texts(message.get("content"), path))
            continue
        if role == "user":
            author, blocks = "user", _user_blocks(message.get("content"), path)
        elif role == "assistant":
            author, blocks = "assistant", _assistant_blocks(message, path)
        elif role == "tool":
            author, blocks = "user", [_tool_result(message, path)]
        elif role == "function":
            raise bad_request(
                "Legacy `function` messages cannot be sent to Anthropic; send the result "
                "as a `tool` message answering a `tool_calls` entry.",
                param=path,
            )
        else:
            raise bad_request(f"Unknown message role {role!r}.", param=f"{path}.role")
        if not blocks:
            continue
        if turns and turns[-1]["role"] == author:
            turns[-1]["content"].extend(blocks)
            continue
        if not turns and author == "assistant":
            raise bad_request(
                "Anthropic requires the conversation to begin with a user message; add "
                "one before this assistant message.",
                param=path,
            )
        turns.append({"role": author, "content": blocks})
    if not turns:
        raise bad_request(
            "Anthropic needs at least one user message besides system instructions.",
            param="messages",
        )
    if not thinking and turns[-1]["role"] == "assistant":
        # With thinking off, Anthropic refuses thinking in a final assistant turn (elsewhere
        # it ignores it); the turn keeps text or a tool call, so it never ends up empty.
        last = turns[-1]["content"]
        last[:] = [block for block in last if block["type"] not in _THOUGHTS]
    for turn in turns:
        _settle(turn)
    return "\n\n".join(system) or None, turns


def _settle(turn: dict[str, Any]) -> None:
    """Tool results first in a user turn (Anthropic refuses text before them), thinking
    first in an assistant turn (the one place Anthropic accepts it; `sort` is stable), and
    a turn of one text block as the plain string that is shorthand for it."""
    blocks = turn["content"]
    if len(blocks) > 1:
        first = ("tool_result",) if turn["role"] == "user" else _THOUGHTS
        blocks.sort(key=lambda block: block["type"] not in first)
    if len(blocks) == 1 and blocks[0]["type"] == "text":
        turn["content"] = blocks[0]["text"]


def _user_blocks(content: Any, path: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"type": "text", "text": text} for text in message_texts(content, path)]
    blocks: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        where = f"{path}.content[{j}]"
        if kind == "text":
            if text := part.get("text"):
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image((part.get("image_url") or {}).get("url") or "", where))
        elif kind == "file":
            blocks.append(_document(part, where))
        elif kind == "input_audio":
            raise bad_request(
                "Anthropic's Messages API cannot take audio; send text, image_url or file "
                "(PDF) parts.",
                param=where,
            )
        else:
            raise bad_request(f"Unknown content part type {kind!r}.", param=f"{where}.type")
    return blocks


def _image(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = data_url(url, param)
        if media_type not in _IMAGE_MEDIA_TYPES:
            raise bad_request(
                f"Anthropic accepts images of type {', '.join(sorted(_IMAGE_MEDIA_TYPES))}; "
                f"this one is {media_type or 'untyped'!r}.",
                param=param,
            )
        source = {"type": "base64", "media_type": media_type, "data": data}
        return {"type": "image", "source": source}
    if url.startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    raise bad_request("An image URL must be an http(s) URL or a base64 data URL.", param=param)


def _document(part: Mapping[str, Any], param: str) -> dict[str, Any]:
    file = file_data(part, param, _DOCUMENT_MEDIA_TYPES, "Anthropic")
    source = {"type": "base64", "media_type": file.media_type, "data": file.data}
    block: dict[str, Any] = {"type": "document", "source": source}
    if file.filename:
        block["title"] = file.filename
    return block


def _assistant_blocks(message: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    if message.get("function_call") is not None:
        raise bad_request(
            "Legacy `function_call` cannot be sent to Anthropic; use `tool_calls`.",
            param=f"{path}.function_call",
        )
    blocks: list[dict[str, Any]] = [
        {"type": "text", "text": text} for text in message_texts(message.get("content"), path)
    ]
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        where = f"{path}.tool_calls[{j}].function.arguments"
        blocks.append(
            {
                "type": "tool_use",
                "id": to_anthropic(str(call.get("id"))),
                "name": function.get("name"),
                "input": tool_arguments(function.get("arguments"), where, "Anthropic"),
            }
        )
    thoughts = thinking_blocks(message.get("reasoning_details"), path)
    # Anthropic refuses a turn that ends in thinking, so thinking alone is not replayed.
    return [*thoughts, *blocks] if blocks else []


def _tool_result(message: Mapping[str, Any], path: str) -> dict[str, Any]:
    tool_use_id = to_anthropic(str(message.get("tool_call_id")))
    block: dict[str, Any] = {"type": "tool_result", "tool_use_id": tool_use_id}
    if content := "".join(message_texts(message.get("content"), path)):
        block["content"] = content
    return block
