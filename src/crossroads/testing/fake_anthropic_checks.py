"""How the fake Anthropic upstream checks a Messages API request, as strictly as the real one.

A gateway translation bug must fail loudly against the fake, so every request is checked
the way Anthropic documents it (and the way its errors are known to read): the fields
allowed at the top level, message and block shapes (tool-use ids, image and document
sources), `tool_use` / `tool_result` pairing, tool definitions and extended-thinking rules
(an open tool loop must begin with the thinking the model issued, signed). `request_error`
returns the 400 message for the first problem found, or None.
"""

from __future__ import annotations

import base64
import hashlib
import itertools
import re
from collections.abc import Callable
from typing import Any

__all__ = [
    "BLOCKS",
    "Invalid",
    "as_blocks",
    "block_type",
    "check",
    "redacted_data",
    "request_error",
    "thinking_signature",
]

_Json = dict[str, Any]
_REDACTED = b"fake-redacted:"
_THOUGHTS = ("thinking", "redacted_thinking")
_ID_PATTERN = "^[a-zA-Z0-9_-]+$"
_IMAGE_TYPES = ("image/jpeg", "image/png", "image/gif", "image/webp")
BLOCKS = {
    "user": ("text", "image", "document", "search_result", "tool_result"),
    "assistant": ("text", "thinking", "redacted_thinking", "tool_use", "server_tool_use"),
}


def as_blocks(content: Any) -> list[Any]:
    """A message's content as a block list (a string is one text block)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content else []
    return content if isinstance(content, list) else []


def thinking_signature(thinking: str) -> str:
    """The fake's signature of a thinking text; a thinking block sent back must carry it."""
    return base64.b64encode(hashlib.sha256(b"fake:" + thinking.encode()).digest()).decode()


def redacted_data(thinking: str) -> str:
    """The fake's opaque `data` of a redacted_thinking block; it must come back unchanged."""
    return base64.b64encode(_REDACTED + thinking.encode()).decode()


def _is_redacted_data(data: Any) -> bool:
    try:
        return base64.b64decode(data, validate=True).startswith(_REDACTED)
    except (TypeError, ValueError):
        return False


def request_error(body: Any) -> str | None:
    """Why the real API would refuse `body` with 400 invalid_request_error, or None."""
    try:
        _validate(body)
    except Invalid as exc:
        return str(exc)
    return None


class Invalid(Exception):
    """A request the real API refuses with 400 invalid_request_error; the argument says why."""


def check(ok: bool, message: str) -> None:
    if not ok:
        raise Invalid(message)


def block_type(value: Any) -> str:
    """An object's `type` ("custom" when unset), or "" for anything but an object."""
    kind = value.get("type", "custom") if isinstance(value, dict) else ""
    return kind if isinstance(kind, str) else ""


def _is_int(value: Any, low: int = 0) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _is_fraction(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and 0 <= value <= 1


def _is_strings(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(s, str) for s in value)


def _is_system(value: Any) -> bool:
    if isinstance(value, str):
        return True
    blocks: list[Any] = value if isinstance(value, list) else [None]
    texts = [b.get("text") if block_type(b) == "text" else None for b in blocks]
    return _is_strings(texts) and all(str(t).strip() for t in texts)


def _is_metadata(value: Any) -> bool:
    ok = isinstance(value, dict) and set(value) <= {"user_id"}
    return ok and isinstance(value.get("user_id"), str | None)


def _is_tool_choice(value: Any) -> bool:
    keys = {"type", "disable_parallel_tool_use", "name"}
    kind = block_type(value)
    if kind in ("none", "auto", "any"):
        keys = {"type"} if kind == "none" else keys - {"name"}
    elif kind != "tool":
        return False
    return set(value) <= keys and isinstance(value.get("disable_parallel_tool_use", False), bool)


# Each top-level field: what it must be, as a test and as the words of the error.
_SHAPES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "model": (lambda v: isinstance(v, str) and 0 < len(v) <= 256, "a string of 1-256 characters"),
    "messages": (lambda v: isinstance(v, list) and bool(v), "a non-empty list"),
    "max_tokens": (_is_int, "an integer greater than or equal to 0"),
    "metadata": (_is_metadata, "an object with at most a string user_id"),
    "service_tier": (lambda v: v in ("auto", "standard_only"), "'auto' or 'standard_only'"),
    "stop_sequences": (_is_strings, "a list of strings"),
    "stream": (lambda v: isinstance(v, bool), "a valid boolean"),
    "system": (_is_system, "a string or a list of non-empty text blocks"),
    "temperature": (_is_fraction, "a number from 0 to 1"),
    "thinking": (
        lambda v: block_type(v) in ("enabled", "disabled", "adaptive"),
        "a thinking config",
    ),
    "tool_choice": (_is_tool_choice, "an auto, any, tool or none tool choice"),
    "tools": (lambda v: isinstance(v, list) and all(map(block_type, v)), "a list of tools"),
    "top_k": (_is_int, "an integer greater than or equal to 0"),
    "top_p": (_is_fraction, "a number from 0 to 1"),
}
_FIELDS = frozenset({*_SHAPES, "cache_control", "container", "inference_geo", "output_config"})
_TOOL_NAME = re.compile(r"[a-zA-Z0-9_-]{1,128}")
_TOOL_ID = re.compile(r"[a-zA-Z0-9_-]+")
_Turn = tuple[str, int, list[_Json]]  # a role, its first message's index and its blocks


def _validate(body: Any) -> None:
    """Refuse, like the real API, a request body it would refuse."""
    check(isinstance(body, dict), "Request body must be a JSON object.")
    for name, value in body.items():
        check(name in _FIELDS, f"{name}: Extra inputs are not permitted")
        if name in _SHAPES:
            test, expected = _SHAPES[name]
            check(test(value), f"{name}: Input should be {expected}")
    for name in ("model", "max_tokens", "messages"):
        check(name in body, f"{name}: Field required")
    turns = _validate_messages(body["messages"])
    _validate_tools(body)
    _validate_thinking(body, turns)


def _validate_messages(messages: list[Any]) -> list[_Turn]:
    """Check every message; returns the turns (consecutive same-role messages joined)."""
    turns: list[_Turn] = []  # consecutive same-role messages are one turn
    for i, message in enumerate(messages):
        at = f"messages.{i}"
        check(isinstance(message, dict), f"{at}: Input should be a valid dictionary")
        role, content = message.get("role"), message.get("content")
        check(
            role != "system",
            'messages: Unexpected role "system". The Messages API accepts a top-level `system` '
            'parameter, not "system" as an input message role.',
        )
        check(role in ("user", "assistant"), f"{at}.role: Input should be 'user' or 'assistant'")
        check(set(message) <= {"role", "content"}, f"{at}: Extra inputs are not permitted")
        check(isinstance(content, str | list), f"{at}.content: Input should be a string or list")
        blocks = as_blocks(content)
        check(
            bool(blocks) or (i == len(messages) - 1 and role == "assistant"),
            f"{at}: all messages must have non-empty content except for the optional final "
            "assistant message",
        )
        for j, block in enumerate(blocks):
            _validate_block(block, f"{at}.content.{j}", role)
        if turns and turns[-1][0] == role:
            turns[-1][2].extend(blocks)
        else:
            turns.append((role, i, list(blocks)))
    for asked, answer in itertools.pairwise([("assistant", -1, []), *turns]):
        if answer[0] == "user":
            _validate_tool_results(asked, answer)
    for i, message in enumerate(messages):
        kinds = [block_type(b) for b in as_blocks(message["content"])]
        if message["role"] == "assistant" and kinds and kinds[-1] in _THOUGHTS:
            raise Invalid(
                f"messages.{i}: The final block in an assistant message cannot be `{kinds[-1]}`."
            )
    return turns


def _validate_block(block: Any, at: str, role: str) -> None:
    kind = block_type(block)
    check(kind in BLOCKS[role], f"{at}: a {role} message cannot hold a {kind!r} block")
    if kind == "text":
        ok = isinstance(block.get("text"), str) and bool(block["text"].strip())
        check(ok, f"{at}: text content blocks must contain non-whitespace text")
    elif kind == "tool_use":
        ok = _is_strings([block.get("id"), block.get("name")])
        check(ok and isinstance(block.get("input"), dict), f"{at}: tool_use needs id, name, input")
        ok = _TOOL_ID.fullmatch(block["id"]) is not None
        check(ok, f"{at}.id: String should match pattern '{_ID_PATTERN}'")
    elif kind == "tool_result":
        ok = isinstance(block.get("tool_use_id"), str)
        check(ok and isinstance(block.get("content", ""), str | list), f"{at}: bad tool_result")
        ok = _TOOL_ID.fullmatch(block["tool_use_id"]) is not None
        check(ok, f"{at}.tool_use_id: String should match pattern '{_ID_PATTERN}'")
    elif kind == "thinking":
        thinking = block.get("thinking")
        ok = isinstance(thinking, str) and block.get("signature") == thinking_signature(thinking)
        check(ok, f"{at}: Invalid `signature` in `thinking` block")
    elif kind == "redacted_thinking":
        ok = _is_redacted_data(block.get("data"))
        check(ok, f"{at}.data: Invalid `data` in `redacted_thinking` block")
    elif kind in ("image", "document"):
        _validate_source(block.get("source"), f"{at}.source", kind)


def _validate_source(source: Any, at: str, kind: str) -> None:
    """An image or document source: base64 data of an accepted type, or a URL."""
    source_type = block_type(source)
    if source_type == "url":
        check(isinstance(source.get("url"), str), f"{at}.url.url: Field required")
        return
    if kind == "document" and source_type == "text":
        check(
            source.get("media_type") == "text/plain",
            f"{at}.text.media_type: Input should be 'text/plain'",
        )
        check(isinstance(source.get("data"), str), f"{at}.text.data: Field required")
        return
    check(
        source_type == "base64", f"{at}: Input tag {source_type!r} does not match any source type"
    )
    media_type, data = source.get("media_type"), source.get("data")
    if kind == "image":
        shown = ", ".join(f"'{t}'" for t in _IMAGE_TYPES[:-1]) + f" or '{_IMAGE_TYPES[-1]}'"
        check(media_type in _IMAGE_TYPES, f"{at}.base64.media_type: Input should be {shown}")
    else:
        check(
            media_type == "application/pdf",
            f"{at}.base64.media_type: Input should be 'application/pdf'",
        )
    try:
        decoded = base64.b64decode(data, validate=True)
    except (TypeError, ValueError):
        raise Invalid(f"{at}.base64.data: Invalid base64 data") from None
    pdf = decoded.startswith(b"%PDF-")
    check(kind != "document" or pdf, f"{at}: The PDF specified was not valid.")


def _validate_tool_results(asked: _Turn, answer: _Turn) -> None:
    """Every tool_use is answered in the next turn, by tool_result blocks that come first."""
    calls = [b["id"] for b in asked[2] if b["type"] == "tool_use"]
    results = [b["tool_use_id"] for b in answer[2] if b["type"] == "tool_result"]
    if unexpected := [r for r in results if r not in calls]:
        raise Invalid(
            f"messages.{answer[1]}.content: unexpected `tool_use_id` found in `tool_result` "
            f"blocks: {', '.join(unexpected)}. Each `tool_result` block must have a "
            "corresponding `tool_use` block in the previous message."
        )
    if missing := [c for c in calls if c not in results]:
        raise Invalid(
            f"messages.{asked[1]}: `tool_use` ids were found without `tool_result` blocks "
            f"immediately after: {', '.join(missing)}. Each `tool_use` block must have a "
            "corresponding `tool_result` block in the next message."
        )
    first = all(b["type"] == "tool_result" for b in answer[2][: len(results)])
    check(first, f"messages.{answer[1]}.content: `tool_result` blocks must come first")


def _validate_tools(body: _Json) -> None:
    tools = body.get("tools", [])
    names: list[str] = []
    for i, tool in enumerate(tools):
        kind, name = block_type(tool), tool.get("name")
        if kind != "custom":  # a versioned server tool, e.g. "web_search_20250305"
            ok = re.fullmatch(r"[a-z_]+_\d{8}", kind) is not None
            check(ok, f"tools.{i}.type: Input tag {kind!r} does not match any tool type")
            continue
        ok = isinstance(name, str) and _TOOL_NAME.fullmatch(name) is not None
        check(ok, f"tools.{i}.name: String should match pattern '^[a-zA-Z0-9_-]{{1,128}}$'")
        schema_ok = block_type(tool.get("input_schema")) == "object"
        check(schema_ok, f"tools.{i}.input_schema: Input should be a JSON schema of type 'object'")
        names.append(name)
    check(len(set(names)) == len(names), "tools: Tool names must be unique.")
    choice = body.get("tool_choice", {"type": "auto"})
    kind, name = choice["type"], choice.get("name")
    if "tool_choice" in body and kind != "none":
        check(bool(tools), "tool_choice may only be specified while providing tools.")
    check(kind != "tool" or name in names, f"tool_choice.name: no tool named {name!r} in tools")


def _validate_thinking(body: _Json, turns: list[_Turn]) -> None:
    thinking = body.get("thinking", {"type": "disabled"})
    if thinking["type"] == "disabled":
        last = body["messages"][-1]
        kinds = [block_type(b) for b in as_blocks(last["content"])]
        if last["role"] == "assistant" and (
            thought := next((k for k in kinds if k in _THOUGHTS), None)
        ):
            raise Invalid(
                f"messages.{len(body['messages']) - 1}.content.{kinds.index(thought)}: When "
                "thinking is disabled, an `assistant` message in the final position cannot "
                "contain `thinking`. To use thinking blocks, enable `thinking` in your request."
            )
        return
    _validate_open_tool_loop(turns)
    if thinking["type"] == "enabled":
        budget = thinking.get("budget_tokens")
        check(_is_int(budget, 1024), "thinking.enabled.budget_tokens: should be at least 1024")
        above = body["max_tokens"] > budget
        check(above, "`max_tokens` must be greater than `thinking.budget_tokens`.")
    at_one = body.get("temperature", 1) == 1
    check(at_one, "`temperature` may only be set to 1 when thinking is enabled.")
    check("top_k" not in body, "`top_k` must be unset when thinking is enabled.")
    forced = block_type(body.get("tool_choice")) in ("any", "tool")
    check(not forced, "Thinking may not be enabled when tool_choice forces tool use.")


def _validate_open_tool_loop(turns: list[_Turn]) -> None:
    """With thinking on, the assistant turn that a tool loop still continues (everything after
    the last user turn that holds no tool result) must open with the thinking it began with."""
    start = max(
        (
            k
            for k, (role, _, blocks) in enumerate(turns)
            if role == "user" and all(b["type"] != "tool_result" for b in blocks)
        ),
        default=-1,
    )
    tail = turns[start + 1 :]
    in_loop = any(
        role == "user" and any(b["type"] == "tool_result" for b in blocks)
        for role, _, blocks in tail
    )
    opening = next((turn for turn in tail if turn[0] == "assistant"), None)
    if not in_loop or opening is None:
        return
    first = opening[2][0]["type"] if opening[2] else "nothing"
    check(
        first in _THOUGHTS,
        f"messages.{opening[1]}.content.0.type: Expected `thinking` or `redacted_thinking`, "
        f"but found `{first}`. When `thinking` is enabled, a final `assistant` message must "
        "start with a thinking block (preceeding the lastmost set of `tool_use` and "
        "`tool_result` blocks). We recommend you include thinking blocks from previous turns. "
        "To avoid this requirement, disable `thinking`. Please consult our documentation at "
        "https://docs.claude.com/en/docs/build-with-claude/extended-thinking",
    )


# --- answers -------------------------------------------------------------------------------------
