"""Reading OpenAI message content, for the dialects that rebuild messages in their own shape.

The `anthropic` and `gemini` dialects both take apart OpenAI messages — text parts, image
data URLs, file parts, tool-call arguments — and refuse what they cannot carry with a 400
naming the body path. The reading and the refusals are the same for both; only the shape each
dialect builds differs, so that part stays in the dialect.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import orjson

from crossroads.protocol.errors import bad_request

__all__ = ["FileData", "data_url", "file_data", "message_texts", "tool_arguments"]


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


def data_url(url: str, param: str, what: str = "An image") -> tuple[str, str]:
    """`(media type, base64 data)` of a `data:<type>;base64,<data>` URL; a 400 otherwise."""
    header, comma, data = url[5:].partition(",") if url.startswith("data:") else ("", "", "")
    media_type, _, encoding = header.partition(";")
    if not comma or encoding != "base64":
        raise bad_request(
            f"{what} data URL must be base64-encoded: data:<media type>;base64,<data>.",
            param=param,
        )
    return media_type, data


class FileData(NamedTuple):
    """The inline content of an OpenAI `file` part."""

    media_type: str
    data: str  # base64
    filename: str | None


def file_data(part: Any, param: str, accepted: frozenset[str], dialect: str) -> FileData:
    """The content of a `file` part whose `file_data` is a data URL of an `accepted` media
    type; a 400 for an uploaded file's id (only OpenAI holds the upload) or another type."""
    file = part.get("file") if isinstance(part, dict) else None
    if not isinstance(file, dict):
        raise bad_request("A file part needs a `file` object.", param=param)
    url = file.get("file_data")
    if not isinstance(url, str):
        uploaded = "file_id" in file
        what = "`file_id` names a file uploaded to OpenAI, which" if uploaded else "This file"
        raise bad_request(
            f"{what} cannot be sent to {dialect}: send the file inline as `file_data`, a "
            "data URL (data:application/pdf;base64,...).",
            param=f"{param}.file.{'file_id' if uploaded else 'file_data'}",
        )
    media_type, data = data_url(url, f"{param}.file.file_data", "A file")
    if media_type not in accepted:
        raise bad_request(
            f"{dialect} accepts file parts of type {', '.join(sorted(accepted))}; this one "
            f"is {media_type or 'untyped'!r}.",
            param=f"{param}.file.file_data",
        )
    filename = file.get("filename")
    return FileData(media_type, data, filename if isinstance(filename, str) else None)


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
