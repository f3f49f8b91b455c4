"""Mutated chat-completions requests: a valid body for some model, then one or more
mutations of it (and sometimes of its headers).

Each mutator takes the generator, the body (a dict, mutated in place or replaced) and the
header list, and returns the body to send: a JSON value for `values.encode`, or bytes sent
as they are. The families, named in every case so a count of failures says which kind of
input caused them:

- `wrong_type`: every OpenAI parameter and extension, set to a value of another type;
- `deep_known` / `deep_unknown`: nesting from 2 to 5,000 levels in a known field (metadata,
  response_format, tools, messages, logit_bias, extra …) or in one no model defines;
- `unicode`: NUL, lone surrogates, control, right-to-left and non-latin-1 text in every
  string a request carries (content, names, model, metadata keys, field names …);
- `huge`: strings of 100 KB – 2 MB, arrays of 1,000 – 100,000 items, 10,000 unknown keys;
- `odd_number`: 1e308, 1e309, -0.0, 2**64, 10**400, NaN, Infinity in every numeric field;
- `timeout_header`: `x-crossroads-timeout` / `x-crossroads-attempt-timeout` of 1e-9, 0,
  nan, inf, 1e308, '' …; `header`: hostile session, tag, content-type and auth headers;
- `structure`: bodies that are not objects, truncated or BOM-prefixed JSON, duplicate
  keys, empty or malformed messages and content parts.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import Any

from crossroads.protocol.chat import ChatCompletionRequest
from crossroads.testing.fuzz.values import (
    Raw,
    deep,
    encode,
    hostile_string,
    huge_array,
    huge_string,
    odd_number,
    wrong_type,
)

__all__ = ["CHAT_FAMILIES", "chat_request"]

Headers = list[tuple[bytes, bytes]]
Mutator = Callable[[random.Random, dict[str, Any], Headers], Any]

# Models of the fuzz gateway (`stage.MODELS`) whose fakes always answer: a 5xx can only
# be the gateway's own doing.
CHAT_MODELS = (
    "openai-echo",
    "anthropic-echo",
    "gemini-echo",
    "openai-tool",
    "anthropic-tool",
    "gemini-tool",
    "anthropic-think",
    "gemini-think",
    "openai-echo,gemini-echo",
    "anthropic-echo,openai-tool",
)

PARAMS = tuple(ChatCompletionRequest.model_fields)
NUMERIC = (
    "frequency_penalty",
    "presence_penalty",
    "temperature",
    "top_p",
    "max_tokens",
    "max_completion_tokens",
    "n",
    "seed",
    "top_logprobs",
    "top_k",
    "min_p",
    "beam_size",
    "best_of",
    "length_penalty",
    "max_cost",
    "willingness_to_pay",
)
TOOL: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city",
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}},
            "required": ["city"],
        },
    },
}
IMAGE = (
    "data:image/png;base64,iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR4nGNgYGD4Dw"
    "ABBAEAwS2OUAAAAABJRU5ErkJggg=="
)


def base_body(rng: random.Random) -> dict[str, Any]:
    """A request every model of the fuzz gateway answers with a 200."""
    body: dict[str, Any] = {"model": rng.choice(CHAT_MODELS), "max_tokens": rng.randint(1, 50)}
    messages: list[dict[str, Any]] = []
    if rng.random() < 0.3:
        messages.append({"role": "system", "content": "Be brief."})
    messages.append({"role": "user", "content": "What is the weather in Paris?"})
    if rng.random() < 0.25:
        call = {
            "id": "call_1",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        }
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
        messages.append({"role": "tool", "tool_call_id": "call_1", "content": "sunny"})
        body["tools"] = [TOOL]
    elif rng.random() < 0.2:
        messages[-1]["content"] = [
            {"type": "text", "text": "Describe this."},
            {"type": "image_url", "image_url": {"url": IMAGE}},
        ]
    body["messages"] = messages
    if "tool" in body["model"]:
        body["tools"] = [TOOL]
    if rng.random() < 0.4:
        body["stream"] = True
        if rng.random() < 0.5:
            body["stream_options"] = {"include_usage": True}
    if rng.random() < 0.2:
        body["temperature"] = rng.choice((0, 0.7, 1))
    if rng.random() < 0.1:
        body["metadata"] = {"team": "fuzz"}
    return body


# --- mutators ---------------------------------------------------------------------------------


def _wrong_type(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    body[rng.choice(PARAMS)] = wrong_type(rng)
    return body


# Where a deep value goes: a path of keys/indices into the body, created as needed.
_KNOWN_PLACES: tuple[tuple[Any, ...], ...] = (
    ("metadata",),
    ("metadata", "team"),
    ("response_format",),
    ("response_format", "json_schema", "schema"),
    ("tools", 0, "function", "parameters"),
    ("messages", 0, "content"),
    ("messages", 0),
    ("messages",),
    ("logit_bias",),
    ("stop",),
    ("extra",),
    ("provider",),
    ("guided_json",),
    ("stream_options",),
    ("reasoning",),
    ("user",),
)


def _place(body: dict[str, Any], path: tuple[Any, ...], value: Any) -> None:
    node: Any = body
    for step in path[:-1]:
        if isinstance(step, int):
            if not isinstance(node, list) or not node:
                return
            node = node[0]
        else:
            if not isinstance(node.get(step), dict | list):
                node[step] = {}
            node = node[step]
    last = path[-1]
    if isinstance(last, int):
        if isinstance(node, list) and node:
            node[0] = value
    elif isinstance(node, dict):
        node[last] = value


def _deep_known(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    if rng.random() < 0.3:
        body.setdefault("tools", [TOOL])
        body["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "x", "schema": {}},
        }
    _place(body, rng.choice(_KNOWN_PLACES), deep(rng))
    return body


def _deep_unknown(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    name = rng.choice(("vendor_option", "extra_body", "x", "messages_extra", hostile_string(rng)))
    body[name] = deep(rng)
    return body


def _strings_of(body: dict[str, Any]) -> list[tuple[Any, Any]]:
    """Every (container, key) whose value is a string, walking the body's dicts and lists."""
    found: list[tuple[Any, Any]] = []
    stack: list[Any] = [body]
    while stack:
        node = stack.pop()
        pairs = node.items() if isinstance(node, dict) else enumerate(node)
        for key, value in pairs:
            if isinstance(value, str):
                found.append((node, key))
            elif isinstance(value, dict | list):
                stack.append(value)
    return found


def _unicode(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    choice = rng.random()
    if choice < 0.55:
        for _ in range(rng.randint(1, 3)):
            node, key = rng.choice(_strings_of(body))
            node[key] = (
                hostile_string(rng) if rng.random() < 0.7 else node[key] + hostile_string(rng)
            )
    elif choice < 0.7:
        body[hostile_string(rng)] = hostile_string(rng)  # a field name no one knows
    elif choice < 0.8:
        body["metadata"] = {hostile_string(rng): hostile_string(rng)}
    elif choice < 0.9:
        field = rng.choice(("user", "session_id", "openai_api_key", "model", "provider"))
        body[field] = hostile_string(rng)
    else:
        body["tools"] = [{**TOOL, "function": {**TOOL["function"], "name": hostile_string(rng)}}]
    return body


def _first_messages(body: dict[str, Any]) -> list[dict[str, Any]] | None:
    """The body's messages when an earlier mutation left them a list of objects."""
    messages = body.get("messages")
    if isinstance(messages, list) and messages and all(isinstance(m, dict) for m in messages):
        return messages
    return None


def _huge(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    choice = rng.randrange(7)
    if choice == 0 and (messages := _first_messages(body)):
        messages[-1]["content"] = huge_string(rng)
    elif choice == 1:
        body["messages"] = huge_array(rng, {"role": "user", "content": "hi"})
    elif choice == 2:
        body["stop"] = huge_array(rng, "x")
    elif choice == 3:
        body["logit_bias"] = {str(i): 1 for i in range(rng.choice((1_000, 50_000)))}
    elif choice == 4:
        body["tools"] = huge_array(rng, TOOL)
    elif choice == 5:
        for i in range(10_000):
            body[f"unknown_{i}"] = i
    else:
        body[rng.choice(("user", "model", "session_id", "metadata"))] = huge_string(rng)
    return body


def _odd_number(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    for _ in range(rng.randint(1, 3)):
        place = rng.random()
        if place < 0.75:
            body[rng.choice(NUMERIC)] = odd_number(rng)
        elif place < 0.85:
            body["logit_bias"] = {"50256": odd_number(rng)}
        elif place < 0.95:
            body["provider"] = {"max_price": {"prompt": odd_number(rng)}}
        elif messages := _first_messages(body):
            messages[0]["content"] = odd_number(rng)
    return body


_TIMEOUTS = (
    "1e-9",
    "0",
    "-0",
    "-1",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e308",
    "1e-320",
    "abc",
    "",
    " ",
    "0x10",
    "0.001",
    "0.05",
    "3600.0001",
    "99999",
    "1e3",
    "30",
    "3600",
    " 5 ",
    "1_0",
    "\u0661\u0660",
)


def _timeout_header(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    for name in rng.sample(
        (b"x-crossroads-timeout", b"x-crossroads-attempt-timeout"), k=rng.randint(1, 2)
    ):
        headers.append((name, rng.choice(_TIMEOUTS).encode("utf-8")))
    return body


def _header_value(rng: random.Random) -> bytes:
    """A header value: UTF-8 text, latin-1 bytes, bytes invalid as either, a NUL, 60 KB."""
    kind = rng.randrange(6)
    if kind == 0:
        return (
            hostile_string(rng).replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")
        )
    if kind == 1:
        return "café €".encode("cp1252")
    if kind == 2:
        return b"\xff\xfe\xc3\x28"
    if kind == 3:
        return b"a\x00b"
    if kind == 4:
        return b"t" * 60_000
    return b"tag-a, ,, tag-b," + b"x," * 500


def _header(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    name = rng.choice(
        (
            b"x-session-id",
            b"x-crossroads-tags",
            b"content-type",
            b"authorization",
            b"x-fake-behaviour",
            b"openai-organization",
            hostile_string(rng).replace("\r", "").replace("\n", "").encode("utf-8", "surrogatepass")
            or b"x",
        )
    )
    headers.append((name, _header_value(rng)))
    return body


def _structure(rng: random.Random, body: dict[str, Any], headers: Headers) -> Any:
    kind = rng.randrange(12)
    if kind == 0:
        return rng.choice(([body], "body", 42, None, True, []))
    if kind == 1:
        return encode(body, rng)[: rng.randint(0, 40)]  # truncated
    if kind == 2:
        return b"\xef\xbb\xbf" + encode(body, rng)
    if kind == 3:
        return encode(body, rng)[:-1] + b',"model":"openai-echo","model":"nope"}'
    if kind == 4:
        body["messages"] = rng.choice(([], {}, [[]], [{}], [None], "hi"))
    elif kind == 5 and (messages := _first_messages(body)):
        messages[0] = {"role": rng.choice(("robot", "", None, "tool", "function", "assistant"))}
    elif kind == 6 and (messages := _first_messages(body)):
        messages[0]["content"] = [
            rng.choice(
                (
                    {"type": "unknown"},
                    {"type": "text"},
                    {"type": "image_url", "image_url": {"url": ""}},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,%%%"}},
                    {"type": "file", "file": {"file_data": "data:application/pdf;base64,AAAA"}},
                    {"type": "input_audio", "input_audio": {"data": "", "format": "wav"}},
                    {},
                    "text",
                )
            )
        ]
    elif kind == 7:
        return b""
    elif kind == 8:
        return rng.choice((b"{", b"}", b"[1,", b'{"model"', b"\x00", b"\xff\xfe", b"null"))
    elif kind == 9:
        del body[rng.choice(("model", "messages"))]
    elif kind == 10:
        body["model"] = rng.choice(("", "nope", "a,b,c,d,e,f", ",", "router", "openai-echo," * 3))
    else:
        body["tool_choice"] = rng.choice(
            ("required", {"type": "function", "function": {"name": "missing"}}, "any", {})
        )
    return body


CHAT_FAMILIES: dict[str, Mutator] = {
    "wrong_type": _wrong_type,
    "deep_known": _deep_known,
    "deep_unknown": _deep_unknown,
    "unicode": _unicode,
    "huge": _huge,
    "odd_number": _odd_number,
    "timeout_header": _timeout_header,
    "header": _header,
    "structure": _structure,
}
_WEIGHTS = {"huge": 0.3}  # the slowest to send and answer: drawn less often


def chat_request(rng: random.Random, families: tuple[str, ...]) -> tuple[str, Any, Headers]:
    """A mutated chat request: (the families applied, '+'-joined; the body; extra headers)."""
    body = base_body(rng)
    headers: Headers = []
    weights = [_WEIGHTS.get(name, 1.0) for name in families]
    count = 1 if rng.random() < 0.75 else 2
    chosen = sorted(set(rng.choices(families, weights, k=count)))
    value: Any = body
    for name in chosen:
        if not isinstance(value, dict):
            break  # a previous mutation already replaced the body
        value = CHAT_FAMILIES[name](rng, value, headers)
    return "+".join(chosen), value, headers


__all__ += ["CHAT_MODELS", "Raw", "base_body"]
