"""An Anthropic Messages request → the chat-completions body the pipeline serves.

The top level is validated by a pydantic model (types and ranges, as Anthropic checks
them); content blocks are checked while they are translated, each error naming its path
the way Anthropic does (`messages.1.content.0.source`). Unknown top-level fields are
ignored rather than refused: clients such as Claude Code send beta fields this gateway
has no use for.

The one design decision: a user turn's `tool_result` blocks become `tool` messages placed
before the rest of the turn, and an assistant turn's thinking blocks become
`reasoning_details` in the shape the `anthropic` dialect gives back (providers/anthropic/
reasoning.py), so a conversation that goes to an Anthropic upstream carries its signed
thinking there, and one that goes elsewhere simply drops it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossroads.inbound.single_model import require_single_model
from crossroads.protocol.errors import GatewayError, bad_request
from crossroads.providers.anthropic.reasoning import FORMAT

__all__ = ["MessagesRequest", "chat_body", "parse_request"]

_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_MIN_THINKING_BUDGET = 1024  # Anthropic's own floor, checked whichever model serves


class MessagesRequest(BaseModel):
    """`POST /v1/messages`' top level; blocks are checked by `chat_body`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: Annotated[str, Field(min_length=1)]
    messages: list[dict[str, Any]]
    max_tokens: Annotated[int, Field(ge=1)]
    system: str | list[dict[str, Any]] | None = None
    metadata: dict[str, Any] | None = None
    stop_sequences: list[str] | None = None
    stream: bool = False
    temperature: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    top_k: Annotated[int, Field(ge=0)] | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: dict[str, Any] | None = None
    thinking: dict[str, Any] | None = None
    service_tier: Literal["auto", "standard_only"] | None = None


class CountTokensRequest(MessagesRequest):
    """`POST /v1/messages/count_tokens`: the same body, `max_tokens` not needed."""

    max_tokens: Annotated[int, Field(ge=1)] = 1


def parse_request(body: Any, *, count_only: bool = False) -> MessagesRequest:
    """The validated top level of `body`, or a 400 naming the first problem's path."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    model = CountTokensRequest if count_only else MessagesRequest
    try:
        parsed = model.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        message = "Field required" if first["type"] == "missing" else first["msg"]
        raise bad_request(f"{path}: {message}", param=path) from None
    require_single_model(parsed.model, "the Messages API")
    return parsed


def chat_body(request: MessagesRequest) -> dict[str, Any]:
    """The chat-completions body for a validated Messages request."""
    messages: list[dict[str, Any]] = []
    if request.system is not None:
        system = request.system
        text = system if isinstance(system, str) else _texts(system, "system")
        if text:
            messages.append({"role": "system", "content": text})
    if not request.messages:
        raise bad_request("messages: at least one message is required", param="messages")
    for i, message in enumerate(request.messages):
        messages.extend(_message(message, f"messages.{i}"))
    body: dict[str, Any] = {
        "model": request.model,
        "messages": messages,
        "max_tokens": request.max_tokens,
    }
    if request.stop_sequences:
        body["stop"] = request.stop_sequences
    for name in ("temperature", "top_p", "top_k"):
        if (value := getattr(request, name)) is not None:
            body[name] = value
    if request.metadata and isinstance(user := request.metadata.get("user_id"), str):
        body["user"] = user
    if request.tools:
        body["tools"] = [_tool(tool, f"tools.{k}") for k, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        _tool_choice(request.tool_choice, body)
    if request.thinking is not None:
        _thinking(request.thinking, body)
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def _texts(blocks: list[Any], path: str) -> str:
    """The text of a list of text blocks (`system`, a tool result's content)."""
    out = []
    for k, block in enumerate(blocks):
        where = f"{path}.{k}"
        if not isinstance(block, Mapping) or block.get("type") != "text":
            raise bad_request(f"{where}: expected a text block", param=where)
        out.append(_text(block, where))
    return "\n\n".join(out)


def _text(block: Mapping[str, Any], path: str) -> str:
    text = block.get("text")
    if not isinstance(text, str):
        raise bad_request(f"{path}.text: Field required (a string)", param=f"{path}.text")
    return text


def _message(message: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    role = message.get("role")
    if role not in ("user", "assistant"):
        raise bad_request(
            f"{path}.role: Input should be 'user' or 'assistant'", param=f"{path}.role"
        )
    content = message.get("content")
    if isinstance(content, str):
        return [{"role": role, "content": content}]
    if not isinstance(content, list):
        raise bad_request(
            f"{path}.content: Input should be a string or a list of content blocks",
            param=f"{path}.content",
        )
    where = f"{path}.content"
    for k, block in enumerate(content):
        if not isinstance(block, Mapping) or not isinstance(block.get("type"), str):
            raise bad_request(f"{where}.{k}: a content block needs a `type`", param=f"{where}.{k}")
    if role == "user":
        return _user(content, where)
    return [_assistant(content, where)]


def _user(blocks: list[Mapping[str, Any]], path: str) -> list[dict[str, Any]]:
    results: list[dict[str, Any]] = []
    parts: list[dict[str, Any]] = []
    for k, block in enumerate(blocks):
        where = f"{path}.{k}"
        kind = block["type"]
        if kind == "text":
            parts.append({"type": "text", "text": _text(block, where)})
        elif kind == "image":
            parts.append(_image(block, where))
        elif kind == "document":
            parts.append(_document(block, where))
        elif kind == "tool_result":
            results.extend(_tool_result(block, where))
        else:
            raise bad_request(
                f"{where}.type: a user message takes text, image, document and tool_result "
                f"blocks, not {kind!r}",
                param=f"{where}.type",
            )
    tool_messages = [r for r in results if r["role"] == "tool"]
    # Images a tool returned follow the results, as a user turn (tools answer in text only).
    extra = [part for r in results if r["role"] == "user" for part in r["content"]]
    out: list[dict[str, Any]] = list(tool_messages)
    if parts or extra:
        out.append({"role": "user", "content": [*extra, *parts]})
    return out


def _source(block: Mapping[str, Any], path: str) -> Mapping[str, Any]:
    source = block.get("source")
    if not isinstance(source, Mapping):
        raise bad_request(f"{path}.source: Field required", param=f"{path}.source")
    return source


def _image(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = _source(block, path)
    kind = source.get("type")
    if kind == "base64":
        media_type, data = source.get("media_type"), source.get("data")
        if media_type not in _IMAGE_TYPES:
            raise bad_request(
                f"{path}.source.media_type: Input should be one of "
                f"{', '.join(sorted(_IMAGE_TYPES))}",
                param=f"{path}.source.media_type",
            )
        if not isinstance(data, str) or not data:
            raise bad_request(f"{path}.source.data: Field required", param=f"{path}.source.data")
        url = f"data:{media_type};base64,{data}"
    elif kind == "url" and isinstance(source.get("url"), str):
        url = source["url"]
    else:
        raise bad_request(
            f"{path}.source: an image source is base64 (media_type, data) or url",
            param=f"{path}.source",
        )
    return {"type": "image_url", "image_url": {"url": url}}


def _document(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    source = _source(block, path)
    if source.get("type") == "text" and isinstance(source.get("data"), str):
        return {"type": "text", "text": source["data"]}
    data = source.get("data")
    if source.get("type") != "base64" or source.get("media_type") != "application/pdf":
        raise bad_request(
            f"{path}.source: this gateway takes documents as base64 PDF or plain text",
            param=f"{path}.source",
        )
    if not isinstance(data, str) or not data:
        raise bad_request(f"{path}.source.data: Field required", param=f"{path}.source.data")
    file: dict[str, Any] = {"file_data": f"data:application/pdf;base64,{data}"}
    if isinstance(title := block.get("title"), str):
        file["filename"] = title
    return {"type": "file", "file": file}


def _tool_result(block: Mapping[str, Any], path: str) -> list[dict[str, Any]]:
    call_id = block.get("tool_use_id")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{path}.tool_use_id: Field required", param=f"{path}.tool_use_id")
    content = block.get("content")
    images: list[dict[str, Any]] = []
    if content is None:
        text = ""
    elif isinstance(content, str):
        text = content
    elif isinstance(content, list):
        texts = []
        for k, part in enumerate(content):
            where = f"{path}.content.{k}"
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                texts.append(_text(part, where))
            elif kind == "image":
                images.append(_image(part, where))
            else:
                raise bad_request(
                    f"{where}.type: a tool result holds text and image blocks",
                    param=f"{where}.type",
                )
        text = "\n\n".join(texts)
    else:
        raise bad_request(
            f"{path}.content: a string or a list of text and image blocks",
            param=f"{path}.content",
        )
    if block.get("is_error") is True:
        text = f"Error: {text}" if text else "Error"
    out: list[dict[str, Any]] = [{"role": "tool", "tool_call_id": call_id, "content": text}]
    if images:
        out.append({"role": "user", "content": images})
    return out


def _assistant(blocks: list[Mapping[str, Any]], path: str) -> dict[str, Any]:
    texts: list[str] = []
    calls: list[dict[str, Any]] = []
    details: list[dict[str, Any]] = []
    for k, block in enumerate(blocks):
        where = f"{path}.{k}"
        kind = block["type"]
        if kind == "text":
            texts.append(_text(block, where))
        elif kind == "tool_use":
            calls.append(_tool_use(block, where))
        elif kind == "thinking":
            thinking, signature = block.get("thinking"), block.get("signature")
            if not isinstance(thinking, str) or not isinstance(signature, str):
                raise bad_request(
                    f"{where}: a thinking block needs `thinking` and `signature` strings",
                    param=where,
                )
            detail = {"type": "reasoning.text", "text": thinking, "signature": signature}
            details.append({**detail, "format": FORMAT, "index": len(details)})
        elif kind == "redacted_thinking":
            data = block.get("data")
            if not isinstance(data, str):
                raise bad_request(f"{where}.data: Field required", param=f"{where}.data")
            details.append(
                {
                    "type": "reasoning.encrypted",
                    "data": data,
                    "format": FORMAT,
                    "index": len(details),
                }
            )
        else:
            raise bad_request(
                f"{where}.type: an assistant message takes text, tool_use, thinking and "
                f"redacted_thinking blocks, not {kind!r}",
                param=f"{where}.type",
            )
    message: dict[str, Any] = {"role": "assistant", "content": "".join(texts) or None}
    if calls:
        message["tool_calls"] = calls
    if details:
        message["reasoning_details"] = details
    if message["content"] is None and not calls:
        message["content"] = ""
    return message


def _tool_use(block: Mapping[str, Any], path: str) -> dict[str, Any]:
    call_id, name, arguments = block.get("id"), block.get("name"), block.get("input")
    if not isinstance(call_id, str) or not call_id:
        raise bad_request(f"{path}.id: Field required", param=f"{path}.id")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{path}.name: Field required", param=f"{path}.name")
    if not isinstance(arguments, dict):
        raise bad_request(f"{path}.input: Input should be an object", param=f"{path}.input")
    function = {"name": name, "arguments": orjson.dumps(arguments).decode()}
    return {"id": call_id, "type": "function", "function": function}


def _tool(tool: Mapping[str, Any], path: str) -> dict[str, Any]:
    kind = tool.get("type")
    if kind not in (None, "custom"):
        raise GatewayError(
            400,
            f"{path}.type: server tools ({kind!r}) run on Anthropic's side and cannot be "
            "served by this gateway; declare custom tools with an input_schema",
            param=f"{path}.type",
            code="unsupported_parameter",
        )
    name, schema = tool.get("name"), tool.get("input_schema")
    if not isinstance(name, str) or not name:
        raise bad_request(f"{path}.name: Field required", param=f"{path}.name")
    if not isinstance(schema, dict):
        raise bad_request(f"{path}.input_schema: Field required", param=f"{path}.input_schema")
    function: dict[str, Any] = {"name": name, "parameters": schema}
    if isinstance(description := tool.get("description"), str):
        function["description"] = description
    return {"type": "function", "function": function}


def _tool_choice(choice: Mapping[str, Any], body: dict[str, Any]) -> None:
    kind = choice.get("type")
    if kind == "auto":
        body["tool_choice"] = "auto"
    elif kind == "any":
        body["tool_choice"] = "required"
    elif kind == "none":
        body["tool_choice"] = "none"
    elif kind == "tool" and isinstance(name := choice.get("name"), str):
        body["tool_choice"] = {"type": "function", "function": {"name": name}}
    else:
        raise bad_request(
            "tool_choice: expected {type: auto | any | none} or {type: tool, name}",
            param="tool_choice",
        )
    if choice.get("disable_parallel_tool_use") is True and "tools" in body:
        body["parallel_tool_calls"] = False


def _thinking(thinking: Mapping[str, Any], body: dict[str, Any]) -> None:
    """Thinking as the gateway's portable `reasoning` setting: the anthropic dialect turns
    it back into the same `thinking`, other dialects into their own reasoning control."""
    kind = thinking.get("type")
    if kind == "disabled":
        return
    if kind == "adaptive":
        body["reasoning"] = {"enabled": True}
        return
    budget = thinking.get("budget_tokens")
    if kind != "enabled" or not isinstance(budget, int) or isinstance(budget, bool):
        raise bad_request(
            'thinking: expected {"type": "enabled", "budget_tokens": <int>} or '
            '{"type": "disabled"}',
            param="thinking",
        )
    if budget < _MIN_THINKING_BUDGET:
        raise bad_request(
            f"thinking.budget_tokens: Input should be greater than or equal to "
            f"{_MIN_THINKING_BUDGET}",
            param="thinking.budget_tokens",
        )
    if budget >= body["max_tokens"]:
        raise bad_request(
            "thinking.budget_tokens: must be less than max_tokens", param="thinking.budget_tokens"
        )
    body["reasoning"] = {"max_tokens": budget}
