"""A fake Anthropic Messages API upstream that is a real HTTP server on a local port.

The gateway translates OpenAI-style requests into Anthropic's dialect; a translation bug must
fail loudly in tests, not quietly in production. So this fake is as strict as the real API:
it refuses what the real API refuses (unknown top-level fields, a `tool_result` that answers
no `tool_use`, an empty text block, a thinking block whose signature was tampered with, ...)
with a 400 `invalid_request_error` naming the offending path, and it answers byte for byte in
Anthropic's format (Message objects, `event:`/`data:` SSE framing, error envelopes).

Endpoints: `POST /v1/messages`, `GET /v1/models`; every request needs an `anthropic-version`
header and, when the fake has an `api_key`, a matching `x-api-key`. `base_url` has no path, as
the provider appends `/v1/messages`. `GET /_fake/requests` lists what was received.

Each request's behaviour comes from its `x-fake-behaviour` header, else its `model` field
(directives: see `crossroads.testing.fake_base`; the Gemini-only ones are ignored). Choices
the docs leave open: `no_usage` reports zero counts (the real API never omits `usage`); `tool`
calls the tool a `tool_choice` of type `tool` names, else the first custom tool, and answers
text when `tool_choice` is `none`; `disable_parallel_tool_use` caps `tools=<n>` at one call; a
request that enables `thinking` gets a thinking block ("Let me think." unless `think=` says
otherwise), whose signature (`thinking_signature`) must come back unchanged in later turns;
`redacted` sends it as a redacted_thinking block instead (its `data` from `redacted_data`).
While a tool loop is open, a request with thinking on must give the loop's assistant turn
back starting with that block, as the real API demands.

Token counting is deterministic, so tests can compute expected cost:

* prompt = whitespace-separated words of the system text, of every message's text blocks (or
  string content), of `tool_result` contents and of `tool_use` inputs as compact JSON, + 3 per
  message; images and earlier thinking blocks count nothing. `cached=<n>` and `cache_write=<n>`
  move up to that many of them out of `input_tokens` into `cache_read_input_tokens` and
  `cache_creation_input_tokens`, so the three input fields always sum to the prompt.
* output_tokens = words of the text reply + words of the thinking text + words of each
  `tool_use` input as compact JSON (so `{}` is 1).

`stop_sequences` cut the reply before the first one generated (stop_reason "stop_sequence");
`max_tokens` minus the thinking words cuts it to that many words ("max_tokens"); tool calls
stop with "tool_use", anything else with "end_turn". `max_tokens: 0` answers no content.
"""

from __future__ import annotations

import uuid
from typing import Any

import orjson
from aiohttp import web

from crossroads.testing.fake_anthropic_checks import (
    Invalid,
    as_blocks,
    block_type,
    check,
    redacted_data,
    request_error,
    thinking_signature,
)
from crossroads.testing.fake_base import (
    Behaviour,
    BehaviourError,
    FakeUpstream,
    RecordedRequest,
    count_words,
    cut_reply,
    json_response,
    split_reply,
)

__all__ = [
    "ANTHROPIC_VERSIONS",
    "DEFAULT_THINKING",
    "FakeAnthropic",
    "redacted_data",
    "thinking_signature",
]

ANTHROPIC_VERSIONS = frozenset({"2023-06-01", "2023-01-01"})
DEFAULT_THINKING = "Let me think."
_MODELS = ("fixed", "echo", "tool")
_MALFORMED = b'{"id": "msg_malformed", "type": "message", "content": [{'
_Json = dict[str, Any]

_ERROR_TYPES = {
    400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
    403: "permission_error", 404: "not_found_error", 413: "request_too_large",
    429: "rate_limit_error", 500: "api_error", 529: "overloaded_error",
}  # fmt: skip


def _new_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:24]}"


def _text(content: Any) -> str:
    """The text of a string or of the text blocks of a block list, blocks joined by a space."""
    blocks = [b for b in as_blocks(content) if isinstance(b, dict) and b.get("type") == "text"]
    return " ".join(b["text"] for b in blocks if isinstance(b.get("text"), str))


def _compact(value: Any) -> str:
    return orjson.dumps(value).decode()


def _block_words(block: _Json) -> int:
    kind = block["type"]
    if kind in ("text", "thinking"):
        return count_words(block[kind])
    if kind == "tool_use":
        return count_words(_compact(block["input"]))
    return count_words(_text(block.get("content"))) if kind == "tool_result" else 0


def _answer(body: _Json, behaviour: Behaviour) -> tuple[list[_Json], str, str | None]:
    """The content blocks, stop_reason and stop_sequence of the answer."""
    if body["max_tokens"] == 0:
        return [], "max_tokens", None
    blocks: list[_Json] = []
    thinking_on = block_type(body.get("thinking")) in ("enabled", "adaptive")
    think = DEFAULT_THINKING if behaviour.think is None and thinking_on else behaviour.think
    if think is not None and behaviour.redacted:
        blocks.append({"type": "redacted_thinking", "data": redacted_data(think)})
    elif think is not None:
        signature = thinking_signature(think)
        blocks.append({"type": "thinking", "thinking": think, "signature": signature})
    choice = body.get("tool_choice", {})
    if behaviour.mode == "tool" and choice.get("type") != "none":
        tools = [t["name"] for t in body.get("tools", []) if block_type(t) == "custom"]
        name = choice["name"] if choice.get("type") == "tool" else next(iter(tools), None)
        check(isinstance(name, str), "the fake's `tool` behaviour needs a custom tool in `tools`")
        try:
            arguments = orjson.loads(behaviour.args)
        except orjson.JSONDecodeError:
            arguments = None
        check(isinstance(arguments, dict), "the fake's `args=` must be a JSON object")
        calls = 1 if choice.get("disable_parallel_tool_use") else behaviour.tools
        for _ in range(calls):
            block = {"type": "tool_use", "id": _new_id("toolu_"), "name": name, "input": arguments}
            blocks.append(block)
        return blocks, "tool_use", None
    text = behaviour.reply
    if behaviour.mode == "echo":
        users = [m for m in body["messages"] if m["role"] == "user"]
        text = _text(users[-1]["content"]) if users else ""
    stops = [s for s in body.get("stop_sequences", []) if s]
    limit = body["max_tokens"] - (count_words(think) if think is not None else 0)
    cut, reason = cut_reply(text, stops, limit)
    blocks.append({"type": "text", "text": cut})
    if reason == "stop":
        return blocks, "stop_sequence", next(s for s in stops if text.startswith(s, len(cut)))
    return blocks, "max_tokens" if reason == "length" else "end_turn", None


def _usage(body: _Json, blocks: list[_Json], behaviour: Behaviour) -> _Json:
    if behaviour.no_usage:
        prompt = output = read = write = 0
    else:
        system = body.get("system", "")
        prompt = count_words(system if isinstance(system, str) else _text(system))
        for message in body["messages"]:
            sent = [b for b in as_blocks(message["content"]) if b["type"] != "thinking"]
            prompt += 3 + sum(map(_block_words, sent))
        output = sum(map(_block_words, blocks))
        read = min(behaviour.cached, prompt)
        write = min(behaviour.cache_write, prompt - read)
    return {
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }


def _error(status: int, message: str) -> web.Response:
    """An error in Anthropic's envelope (other 4xx: invalid_request_error, other 5xx: api_error)."""
    kind = _ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    request_id = _new_id("req_")
    body = {"type": "error", "error": {"type": kind, "message": message}, "request_id": request_id}
    return json_response(body, status, headers={"request-id": request_id})


class FakeAnthropic(FakeUpstream):
    """The fake Anthropic upstream; `base_url` is `http://HOST:PORT` (no path)."""

    base_path = ""

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        route = (request.method, request.path)
        if route not in (("POST", "/v1/messages"), ("GET", "/v1/models")):
            return _error(404, f"Not found: {request.method} {request.path}")
        headers = record["headers"]
        if self.api_key is not None:
            key = headers.get("x-api-key")
            if key != self.api_key:
                reason = "x-api-key header is required" if key is None else "invalid x-api-key"
                return _error(401, reason)
        version = headers.get("anthropic-version")
        if version is None:
            return _error(400, "anthropic-version: header is required")
        if version not in ANTHROPIC_VERSIONS:
            return _error(400, f"anthropic-version: invalid version {version!r}")
        if request.path == "/v1/models":
            created = "2025-01-01T00:00:00Z"
            data = [
                {"type": "model", "id": m, "display_name": m, "created_at": created}
                for m in _MODELS
            ]
            page = {"first_id": _MODELS[0], "last_id": _MODELS[-1], "has_more": False}
            return json_response({"data": data, **page})
        return await self._messages(request, record["body"])

    async def _messages(self, request: web.Request, body: Any) -> web.StreamResponse:
        if (problem := request_error(body)) is not None:
            return _error(400, problem)
        try:
            behaviour = self.behaviour_for(request.headers.get("x-fake-behaviour") or body["model"])
        except BehaviourError as exc:
            return _error(400, f"Unknown or invalid fake behaviour directive '{exc.args[0]}'.")
        stream = body.get("stream") is True
        early = await self.early_answer(
            request,
            behaviour,
            stream=stream,
            error=lambda: _directed_error(behaviour),
            malformed=_MALFORMED,
        )
        if early is not None:
            return early
        try:
            blocks, stop_reason, stop_sequence = _answer(body, behaviour)
        except Invalid as exc:
            return _error(400, str(exc))
        message: _Json = {
            "id": _new_id("msg_"),
            "type": "message",
            "role": "assistant",
            "model": body["model"],
            "content": blocks,
            "stop_reason": stop_reason,
            "stop_sequence": stop_sequence,
            "usage": _usage(body, blocks, behaviour),
        }
        if stream:
            return await _stream(request, behaviour, message)
        return json_response(message, headers={"request-id": _new_id("req_")})


def _event(data: _Json) -> bytes:
    kind: str = data["type"]
    return b"event: " + kind.encode() + b"\ndata: " + orjson.dumps(data) + b"\n\n"


def _deltas(block: _Json, chunks: int | None) -> list[_Json]:
    """The content_block_delta payloads that rebuild `block`."""
    if block["type"] == "redacted_thinking":
        return []  # it arrives whole in its content_block_start
    if block["type"] == "text":
        return [{"type": "text_delta", "text": p} for p in split_reply(block["text"], chunks)]
    if block["type"] == "thinking":
        pieces = split_reply(block["thinking"], chunks)
        signature = {"type": "signature_delta", "signature": block["signature"]}
        return [*({"type": "thinking_delta", "thinking": p} for p in pieces), signature]
    # At least two pieces, so that a client must reassemble the JSON.
    pieces = split_reply(_compact(block["input"]), max(2, chunks or 2))
    return [{"type": "input_json_delta", "partial_json": p} for p in pieces]


def _opening(block: _Json) -> _Json:
    """A block as content_block_start announces it: everything but its streamed content."""
    empty = {"text": "", "thinking": "", "signature": "", "input": {}}
    return {key: empty.get(key, value) for key, value in block.items()}


async def _stream(request: web.Request, behaviour: Behaviour, message: _Json) -> web.StreamResponse:
    """message_start, per block start / (one ping) / deltas / stop, message_delta, message_stop."""
    usage = message["usage"]
    initial = {**usage, "output_tokens": 0 if behaviour.no_usage else 1}
    head = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": initial}
    events = [_event({"type": "message_start", "message": head})]
    if behaviour.malformed:
        events.append(b'event: content_block_start\ndata: {"type": "content_block_start", {\n\n')
        return await FakeUpstream.write_events(request, events, behaviour)
    ping = _event({"type": "ping"})
    deltas: list[int] = []  # where the content deltas are in `events`
    for index, block in enumerate(message["content"]):
        start = {"type": "content_block_start", "index": index, "content_block": _opening(block)}
        events += [_event(start), *([ping] if index == 0 else [])]
        for delta in _deltas(block, behaviour.chunks):
            deltas.append(len(events))
            events.append(_event({"type": "content_block_delta", "index": index, "delta": delta}))
        events.append(_event({"type": "content_block_stop", "index": index}))
    if not message["content"]:
        events.append(ping)
    stop = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    final = {"output_tokens": usage["output_tokens"]}
    events += [
        _event({"type": "message_delta", "delta": stop, "usage": final}),
        _event({"type": "message_stop"}),
    ]

    def cut(n: int) -> int:
        """Just before the (n+1)th content delta; with fewer deltas, just after the last."""
        return deltas[n] if n < len(deltas) else (deltas[-1] + 1 if deltas else 1)

    if behaviour.drop_after is not None:
        events = events[: cut(behaviour.drop_after)]
    elif behaviour.stream_error is not None:
        overloaded = {"type": "overloaded_error", "message": "Overloaded"}
        events = events[: cut(behaviour.stream_error)]
        events.append(_event({"type": "error", "error": overloaded}))
    return await FakeUpstream.write_events(request, events, behaviour)


def _directed_error(behaviour: Behaviour) -> web.Response:
    """The `error=` directive's answer, with `retry_after=` as a header."""
    assert behaviour.error is not None
    response = _error(behaviour.error, f"fake upstream error {behaviour.error}")
    if behaviour.retry_after is not None:
        response.headers["retry-after"] = behaviour.retry_after
    return response


def main(argv: list[str] | None = None) -> None:
    FakeAnthropic.command_line(
        argv,
        description="Serve a fake Anthropic Messages API upstream.",
        default_port=9101,
        key_help="require 'x-api-key: KEY'",
    )


if __name__ == "__main__":
    main()
