"""OpenAI `messages` → Gemini's `systemInstruction` parts and `contents`.

Gemini has two roles, `user` and `model`, and keeps system text apart from the turns.
System and developer messages become `systemInstruction` parts in order; assistant turns
become `model` contents; user turns and tool results become `user` contents, and adjacent
contents of one role are merged into one, as Gemini expects (parallel tool results travel
together in one turn).

A function call's thought signature, which Gemini 3 requires back, travels through the
OpenAI round trip in the tool call's `extra_content.google.thought_signature` (where
Google's own OpenAI endpoint puts it) and returns to its `functionCall` part. A call in the
current turn that comes back without one — a client that kept only OpenAI's fields, a
conversation begun on another provider — gets the value Google documents for history
Gemini did not produce, so Gemini 3 answers instead of refusing the whole request. A PDF
`file` part becomes inline data.

The one design decision: a tool result names its function, which OpenAI's tool message
does not, so the name is looked up from the assistant tool call whose id it answers. A
result whose id no earlier call carries is refused, not sent with a guessed name.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import urlsplit

import orjson

from crossroads.protocol.errors import bad_request
from crossroads.providers.content import data_url, file_data, message_texts, tool_arguments

__all__ = ["FOREIGN_SIGNATURE", "map_contents"]

# Google's documented thought signature for a function call Gemini did not issue itself.
FOREIGN_SIGNATURE = "skip_thought_signature_validator"
_DOCUMENT_TYPES = frozenset({"application/pdf"})

_IMAGE_TYPES = {
    "png": "image/png",
    "jpg": "image/jpeg",
    "jpeg": "image/jpeg",
    "gif": "image/gif",
    "webp": "image/webp",
    "heic": "image/heic",
    "heif": "image/heif",
}


def map_contents(
    messages: Iterable[Mapping[str, Any]],
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(`systemInstruction` parts, `contents`) for an OpenAI `messages` list."""
    system: list[dict[str, Any]] = []
    contents: list[dict[str, Any]] = []
    names: dict[str, str] = {}  # tool call id → function name, from assistant messages
    for i, message in enumerate(messages):
        path = f"messages[{i}]"
        role = message.get("role")
        if role in ("system", "developer"):
            system.extend({"text": text} for text in message_texts(message.get("content"), path))
            continue
        if role == "user":
            author, parts = "user", _user_parts(message.get("content"), path)
        elif role == "assistant":
            author, parts = "model", _assistant_parts(message, path, names)
        elif role == "tool":
            author, parts = "user", [_tool_result(message, path, names)]
        elif role == "function":
            response = _result("".join(message_texts(message.get("content"), path)))
            author, parts = (
                "user",
                [{"functionResponse": {"name": message.get("name"), "response": response}}],
            )
        else:
            raise bad_request(f"Unknown message role {role!r}.", param=f"{path}.role")
        if not parts:
            continue
        if contents and contents[-1]["role"] == author:
            contents[-1]["parts"].extend(parts)
        else:
            contents.append({"role": author, "parts": parts})
    _sign_current_turn(contents)
    return system, contents


def _sign_current_turn(contents: list[dict[str, Any]]) -> None:
    """Give each step of the current turn (the contents after the last user content that
    is not only function responses) a signature on its first function call, as Gemini 3
    requires: the caller's own, else `FOREIGN_SIGNATURE`."""
    for content in reversed(contents):
        parts = content["parts"]
        if content["role"] == "user":
            if all("functionResponse" in part for part in parts):
                continue
            return
        first = next((part for part in parts if "functionCall" in part), None)
        if first is not None and "thoughtSignature" not in first:
            first["thoughtSignature"] = FOREIGN_SIGNATURE


def _user_parts(content: Any, path: str) -> list[dict[str, Any]]:
    if content is None or isinstance(content, str):
        return [{"text": text} for text in message_texts(content, path)]
    parts: list[dict[str, Any]] = []
    for j, part in enumerate(content):
        kind = part.get("type")
        where = f"{path}.content[{j}]"
        if kind == "text":
            if text := part.get("text"):
                parts.append({"text": text})
        elif kind == "image_url":
            parts.append(_image(part["image_url"]["url"], f"{where}.image_url.url"))
        elif kind == "input_audio":
            audio = part["input_audio"]
            mime = f"audio/{audio['format']}"
            parts.append({"inlineData": {"mimeType": mime, "data": audio["data"]}})
        elif kind == "file":
            file = file_data(part, where, _DOCUMENT_TYPES, "Gemini")
            parts.append({"inlineData": {"mimeType": file.media_type, "data": file.data}})
        else:
            raise bad_request(f"Unknown content part type {kind!r}.", param=f"{where}.type")
    return parts


def _image(url: str, param: str) -> dict[str, Any]:
    if url.startswith("data:"):
        media_type, data = data_url(url, param)
        mime = media_type or "image/jpeg"
        return {"inlineData": {"mimeType": mime, "data": data}}
    if url.startswith(("https://", "http://")):
        name = urlsplit(url).path.rsplit("/", 1)[-1].lower()
        extension = name.rsplit(".", 1)[-1] if "." in name else ""
        mime = _IMAGE_TYPES.get(extension, "image/jpeg")
        return {"fileData": {"mimeType": mime, "fileUri": url}}
    raise bad_request("An image URL must be an http(s) URL or a base64 data URL.", param=param)


def _assistant_parts(
    message: Mapping[str, Any], path: str, names: dict[str, str]
) -> list[dict[str, Any]]:
    parts: list[dict[str, Any]] = [
        {"text": text} for text in message_texts(message.get("content"), path)
    ]
    for j, call in enumerate(message.get("tool_calls") or ()):
        function = call.get("function") or {}
        name: str = function.get("name") or ""
        args = tool_arguments(
            function.get("arguments"), f"{path}.tool_calls[{j}].function.arguments", "Gemini"
        )
        part: dict[str, Any] = {"functionCall": {"name": name, "args": args, "id": call.get("id")}}
        # The signature Gemini 3 requires back on its function calls (see translate.py).
        extra = call.get("extra_content") or {}
        if signature := (extra.get("google") or {}).get("thought_signature"):
            part["thoughtSignature"] = signature
        names[call.get("id")] = name
        parts.append(part)
    if legacy := message.get("function_call"):
        args = tool_arguments(legacy.get("arguments"), f"{path}.function_call.arguments", "Gemini")
        parts.append({"functionCall": {"name": legacy.get("name"), "args": args}})
    return parts


def _tool_result(message: Mapping[str, Any], path: str, names: Mapping[str, str]) -> dict[str, Any]:
    call_id = message.get("tool_call_id")
    name = names.get(call_id) if isinstance(call_id, str) else None
    if name is None:
        raise bad_request(
            f"No earlier assistant message has a tool call with id {call_id!r}; Gemini needs "
            "the function's name for each result, so send the assistant message that made "
            "the call before its result.",
            param=f"{path}.tool_call_id",
        )
    content = "".join(message_texts(message.get("content"), path))
    return {"functionResponse": {"name": name, "response": _result(content), "id": call_id}}


def _result(content: str) -> dict[str, Any]:
    """Gemini's `response` is an object: a JSON object result is sent as it is, anything
    else is wrapped as `{"result": ...}` (decoded when it is JSON, else the text)."""
    try:
        decoded = orjson.loads(content)
    except orjson.JSONDecodeError:
        return {"result": content}
    return decoded if isinstance(decoded, dict) else {"result": decoded}
