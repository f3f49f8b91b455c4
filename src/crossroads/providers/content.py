"""Reading OpenAI message content, for the dialects that rebuild messages in their own shape.

The `anthropic` and `gemini` dialects both take apart OpenAI messages — text parts, image
data URLs, tool-call arguments — and refuse what they cannot carry with a 400 naming the
body path. The reading and the refusals are the same for both; only the shape each
dialect builds differs, so that part stays in the dialect.
"""

from __future__ import annotations

from typing import Any

import orjson

from crossroads.protocol.errors import bad_request

__all__ = ["data_url", "message_texts", "tool_arguments"]


def message_texts(content: Any, path: str) -> list[str]:
    """The non-empty texts of a text-only content (a string, or text and refusal parts)."""
    if content is None:
        return []
    if isinstance(content, str):
        return [content] if content else []
    texts = []
    for j, part in enumerate(content):
        kind = part.get("type")
        if kind not in ("text", "refusal"):
            raise bad_request(
                f"A {kind!r} part cannot appear here; only text can.",
                param=f"{path}.content[{j}]",
            )
        if text := part.get(kind):
            texts.append(text)
    return texts


def data_url(url: str, param: str) -> tuple[str, str]:
    """`(media type, base64 data)` of a `data:<type>;base64,<data>` URL; a 400 otherwise."""
    header, comma, data = url[5:].partition(",")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64":
        raise bad_request(
            "An image data URL must be base64-encoded: data:<media type>;base64,<data>.",
            param=param,
        )
    return media_type, data


def tool_arguments(raw: Any, param: str, dialect: str) -> dict[str, Any]:
    """A tool call's `arguments` string as the JSON object `dialect` stores it as."""
    try:
        args = orjson.loads(raw or "{}")
    except orjson.JSONDecodeError:
        args = None
    if not isinstance(args, dict):
        raise bad_request(
            f"Tool call arguments must be a JSON object ({dialect} stores a tool call's "
            f"input as one), got {str(raw)[:100]!r}.",
            param=param,
        )
    return args
