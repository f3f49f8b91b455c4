"""An OpenAI Responses API request → the chat-completions body the pipeline serves.

`input` (a string, or items: messages, `function_call`, `function_call_output`) becomes
`messages`, after the conversation of `previous_response_id` when one is given (the caller
resolves it from the request log: `history`). `instructions` lead as a system message but,
as the Responses API specifies, do not carry over to the next response: the body records
the request's own settings in `extra.responses` (a gateway field, logged, never sent
upstream), so `history` knows to leave them out and a stored response can be shown again.

Unknown top-level fields are ignored (clients such as Codex send fields a gateway has no
use for); what cannot be served — hosted tools, stored file ids, item references — is a
400 naming the field.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from crossroads.inbound.custom_tools import call_arguments, function_tool
from crossroads.inbound.single_model import require_single_model
from crossroads.protocol.errors import GatewayError, bad_request

__all__ = [
    "IGNORED_FIELDS",
    "RECORD_KEY",
    "ResponsesRequest",
    "chat_body",
    "history",
    "ignored_fields",
    "parse_request",
    "stored_request",
]

# Under `extra` in the chat body (a gateway field: kept in the log, never sent upstream):
# the request's own settings, from which a stored response is shown again and continued.
RECORD_KEY = "responses"
_ECHOED = {
    "instructions",
    "tools",
    "tool_choice",
    "text",
    "temperature",
    "top_p",
    "max_output_tokens",
    "previous_response_id",
    "store",
    "metadata",
    "user",
    "parallel_tool_calls",
    "reasoning",
}


# Request fields a client such as Codex sends that only OpenAI's own service acts on
# (caching hints, includes of stored data, service tiers, …): accepted and left unhonoured,
# and named in the answer's `x-crossroads-dropped-params` header.
IGNORED_FIELDS = (
    "include",
    "prompt_cache_key",
    "prompt_cache_retention",
    "service_tier",
    "safety_identifier",
    "truncation",
    "stream_options",
    "top_logprobs",
    "max_tool_calls",
    "context_management",
)
# Fields whose whole point needs state this gateway does not keep: refused, named.
_UNSERVABLE = {
    "background": "background responses are not run by this gateway; send it false or omit it",
    "conversation": "conversations are not stored by this gateway; use previous_response_id",
    "prompt": "stored prompt templates are not served by this gateway; send instructions",
}


class ResponsesRequest(BaseModel):
    """`POST /v1/responses`' top level; input items are checked by `chat_body`."""

    model_config = ConfigDict(extra="ignore", strict=True)

    model: Annotated[str, Field(min_length=1)]
    input: str | list[dict[str, Any]] | None = None
    instructions: str | None = None
    tools: list[dict[str, Any]] | None = None
    tool_choice: str | dict[str, Any] | None = None
    text: dict[str, Any] | None = None
    temperature: Annotated[float, Field(ge=0, le=2, strict=False)] | None = None
    top_p: Annotated[float, Field(ge=0, le=1, strict=False)] | None = None
    max_output_tokens: Annotated[int, Field(ge=1)] | None = None
    stream: bool = False
    previous_response_id: str | None = None
    store: bool = True
    metadata: dict[str, str] | None = None
    user: str | None = None
    parallel_tool_calls: bool | None = None
    reasoning: dict[str, Any] | None = None


def parse_request(body: Any) -> ResponsesRequest:
    """The validated top level of `body`, or a 400 naming the first problem."""
    if not isinstance(body, dict):
        raise bad_request("The request body must be a JSON object.")
    for name, reason in _UNSERVABLE.items():
        if body.get(name) not in (None, False):
            raise GatewayError(
                400, f"Invalid '{name}': {reason}.", param=name, code="unsupported_parameter"
            )
    try:
        parsed = ResponsesRequest.model_validate(body)
    except ValidationError as exc:
        first = exc.errors()[0]
        path = ".".join(str(part) for part in first["loc"])
        message = "Missing required parameter" if first["type"] == "missing" else first["msg"]
        raise bad_request(f"Invalid '{path}': {message}.", param=path) from None
    require_single_model(parsed.model, "the Responses API")
    return parsed


def ignored_fields(body: Any) -> list[str]:
    """The fields of `body` that are accepted but not honoured (`IGNORED_FIELDS`)."""
    if not isinstance(body, dict):
        return []
    return [name for name in IGNORED_FIELDS if body.get(name) is not None]


def chat_body(request: ResponsesRequest, history: list[dict[str, Any]]) -> dict[str, Any]:
    """The chat-completions body for `request`, continuing the conversation `history`."""
    messages: list[dict[str, Any]] = []
    if request.instructions:
        messages.append({"role": "system", "content": request.instructions})
    messages += history
    if isinstance(request.input, str):
        messages.append({"role": "user", "content": request.input})
    elif request.input is not None:
        for i, item in enumerate(request.input):
            _item(item, f"input[{i}]", messages)
    if len(messages) == (1 if request.instructions else 0):
        raise bad_request("Missing required parameter: 'input'.", param="input")
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.max_output_tokens is not None:
        body["max_completion_tokens"] = request.max_output_tokens
    for name in ("temperature", "top_p", "metadata", "user", "parallel_tool_calls"):
        if (value := getattr(request, name)) is not None:
            body[name] = value
    if request.tools:
        body["tools"] = [_tool(tool, f"tools[{k}]") for k, tool in enumerate(request.tools)]
    if request.tool_choice is not None:
        body["tool_choice"] = _tool_choice(request.tool_choice)
    if request.text is not None and (response_format := _format(request.text)) is not None:
        body["response_format"] = response_format
    if request.reasoning and (effort := request.reasoning.get("effort")) is not None:
        body["reasoning_effort"] = effort
    if not request.store:
        body["store"] = False
    body["extra"] = {RECORD_KEY: request.model_dump(include=_ECHOED, exclude_none=True)}
    if request.stream:
        body["stream"] = True
        body["stream_options"] = {"include_usage": True}
    return body


def stored_request(model: str, record_request: Mapping[str, Any]) -> ResponsesRequest | None:
    """The Responses request a logged chat body was made from; None if it was not one."""
    echoed = (record_request.get("extra") or {}).get(RECORD_KEY)
    if not isinstance(echoed, dict):
        return None
    try:
        return ResponsesRequest.model_validate({"model": model, **echoed})
    except ValidationError:
        return None


def history(record_request: Mapping[str, Any], record_response: Mapping[str, Any]) -> list[Any]:
    """The conversation a stored response ends: its messages without its instructions
    (which do not carry over), then its answer."""
    messages = list(record_request.get("messages") or ())
    extra = record_request.get("extra") or {}
    if (extra.get(RECORD_KEY) or {}).get("instructions") and messages:
        messages = messages[1:]
    choices = record_response.get("choices") or [{}]
    answer = choices[0].get("message") or {}
    kept = {"role": "assistant", "content": answer.get("content")}
    for name in ("tool_calls", "reasoning_details"):
        if answer.get(name):
            kept[name] = answer[name]
    return [*messages, kept]


def _item(item: Mapping[str, Any], path: str, messages: list[dict[str, Any]]) -> None:
    kind = item.get("type", "message")
    if kind == "message":
        messages.append(_message(item, path))
    elif kind in ("function_call", "custom_tool_call"):
        call_id, name = item.get("call_id"), item.get("name")
        arguments = item.get("arguments")
        if not isinstance(call_id, str) or not isinstance(name, str):
            raise bad_request(f"Invalid '{path}': a {kind} needs `call_id` and `name`.", param=path)
        if kind == "custom_tool_call":
            text = item.get("input")
            if not isinstance(text, str):
                raise bad_request(f"Invalid '{path}.input': a string is required.", param=path)
            arguments = call_arguments(text)
        call = {
            "id": call_id,
            "type": "function",
            "function": {
                "name": name,
                "arguments": arguments if isinstance(arguments, str) else "{}",
            },
        }
        last = messages[-1] if messages else None
        if last is not None and last["role"] == "assistant":
            last.setdefault("tool_calls", []).append(call)
        else:
            messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
    elif kind in ("function_call_output", "custom_tool_call_output"):
        call_id, output = item.get("call_id"), item.get("output")
        if not isinstance(call_id, str):
            raise bad_request(f"Invalid '{path}.call_id': a string is required.", param=path)
        if isinstance(output, list):
            texts = [part.get("text") for part in output if isinstance(part, Mapping)]
            output = "".join(text for text in texts if isinstance(text, str))
        if not isinstance(output, str):
            raise bad_request(f"Invalid '{path}.output': a string is required.", param=path)
        messages.append({"role": "tool", "tool_call_id": call_id, "content": output})
    elif kind == "reasoning":
        return  # a previous answer's reasoning summary: nothing a model takes back
    else:
        raise GatewayError(
            400,
            f"Input items of type {kind!r} are not supported by this gateway; send messages, "
            "function_call, custom_tool_call and their _output items.",
            param=f"{path}.type",
            code="unsupported_parameter",
        )


def _message(item: Mapping[str, Any], path: str) -> dict[str, Any]:
    role = item.get("role")
    if role not in ("user", "assistant", "system", "developer"):
        raise bad_request(
            f"Invalid '{path}.role': expected one of user, assistant, system, developer.",
            param=f"{path}.role",
        )
    content = item.get("content")
    if isinstance(content, str):
        return {"role": role, "content": content}
    if not isinstance(content, list):
        raise bad_request(
            f"Invalid '{path}.content': a string or a list of content parts.",
            param=f"{path}.content",
        )
    parts = [_part(part, f"{path}.content[{j}]") for j, part in enumerate(content)]
    if role != "user":
        texts = [part["text"] for part in parts if part["type"] == "text"]
        if len(texts) != len(parts):
            raise bad_request(
                f"Invalid '{path}.content': only user messages may hold images or files.",
                param=f"{path}.content",
            )
        return {"role": role, "content": "".join(texts)}
    return {"role": role, "content": parts}


def _part(part: Any, path: str) -> dict[str, Any]:
    kind = part.get("type") if isinstance(part, Mapping) else None
    if kind in ("input_text", "output_text", "text"):
        text = part.get("text")
        if not isinstance(text, str):
            raise bad_request(f"Invalid '{path}.text': a string is required.", param=path)
        return {"type": "text", "text": text}
    if kind == "refusal":
        return {"type": "text", "text": str(part.get("refusal") or "")}
    if kind == "input_image":
        url = part.get("image_url")
        if not isinstance(url, str) or not url:
            raise GatewayError(
                400,
                f"Invalid '{path}': this gateway takes images by `image_url` (a URL or a "
                "data URL), not by file id.",
                param=path,
                code="unsupported_parameter",
            )
        image: dict[str, Any] = {"url": url}
        if part.get("detail") in ("auto", "low", "high"):
            image["detail"] = part["detail"]
        return {"type": "image_url", "image_url": image}
    if kind == "input_file":
        data = part.get("file_data")
        if not isinstance(data, str) or not data:
            raise GatewayError(
                400,
                f"Invalid '{path}': this gateway takes files inline (`file_data`), not by id.",
                param=path,
                code="unsupported_parameter",
            )
        file: dict[str, Any] = {"file_data": data}
        if isinstance(part.get("filename"), str):
            file["filename"] = part["filename"]
        return {"type": "file", "file": file}
    raise bad_request(f"Invalid '{path}.type': unknown content part {kind!r}.", param=path)


def _tool(tool: Mapping[str, Any], path: str) -> dict[str, Any]:
    if tool.get("type") == "custom":
        return function_tool(tool, path)
    if tool.get("type") != "function":
        raise GatewayError(
            400,
            f"Tools of type {tool.get('type')!r} are hosted by OpenAI and not served by this "
            "gateway; declare function or custom tools.",
            param=f"{path}.type",
            code="unsupported_parameter",
        )
    name = tool.get("name")
    if not isinstance(name, str) or not name:
        raise bad_request(f"Missing required parameter: '{path}.name'.", param=f"{path}.name")
    function: dict[str, Any] = {"name": name}
    for field in ("description", "parameters", "strict"):
        if tool.get(field) is not None:
            function[field] = tool[field]
    return {"type": "function", "function": function}


def _tool_choice(choice: str | dict[str, Any]) -> Any:
    if isinstance(choice, str):
        if choice not in ("auto", "none", "required"):
            raise bad_request(
                "Invalid 'tool_choice': expected auto, none, required or a function.",
                param="tool_choice",
            )
        return choice
    if choice.get("type") in ("function", "custom") and isinstance(choice.get("name"), str):
        return {"type": "function", "function": {"name": choice["name"]}}
    raise bad_request(
        'Invalid \'tool_choice\': expected {"type": "function" or "custom", "name": ...}.',
        param="tool_choice",
    )


def _format(text: Mapping[str, Any]) -> dict[str, Any] | None:
    spec = text.get("format")
    if spec is None:
        return None
    kind = spec.get("type") if isinstance(spec, Mapping) else None
    if kind == "text":
        return None
    if kind == "json_object":
        return {"type": "json_object"}
    if kind == "json_schema" and isinstance(spec.get("schema"), Mapping):
        schema: dict[str, Any] = {"name": spec.get("name") or "response", "schema": spec["schema"]}
        if spec.get("strict") is not None:
            schema["strict"] = spec["strict"]
        return {"type": "json_schema", "json_schema": schema}
    raise bad_request(
        "Invalid 'text.format': expected text, json_object or json_schema with a schema.",
        param="text.format",
    )
