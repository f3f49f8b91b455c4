"""A fake OpenAI chat-completions upstream that is a real HTTP server on a local port.

Gateway tests and benchmarks need an upstream that speaks OpenAI's wire format byte for byte
(JSON bodies, SSE framing, error envelopes) and misbehaves on demand (slow, failing, malformed,
cut off), with no network access or API key. It listens on a real socket so that the gateway's
real HTTP client code runs against it.

Endpoints: `POST /v1/chat/completions`, `GET /v1/models`; for tests, `GET /_fake/requests`
returns every request received (also kept in `FakeOpenAI.requests`) and `DELETE` clears them.

Each chat request's behaviour comes from its `x-fake-behaviour` header, else its `model` field
(directives: see `crossroads.testing.fake_base`, and `fake_aggregate` for `aggregate`;
`think`, `stream_error`, `blocked` and `cache_write` are ignored here). An unknown or invalid
directive gets a 400. A reply with `|` in it holds alternatives: the request's `seed`
(default 0) picks one, modulo their count.

Token counting is deterministic, so tests can compute expected cost:

* prompt_tokens = whitespace-separated words of every message's text (string contents and the
  `text` parts of list contents) + 3 per message;
* completion_tokens = whitespace-separated words of each choice's reply, summed over the `n`
  choices (each tool call counts the words of its arguments, so `{}` is 1).

`max_completion_tokens` (or `max_tokens`) cuts each reply to that many words, finish_reason
"length"; `stop` cuts it just before the first stop string, finish_reason "stop" (and,
with the `stop_reason` flag, that string in the choice's `stop_reason`, as vLLM reports it).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import orjson
from aiohttp import web

from crossroads.testing.fake_aggregate import aggregate
from crossroads.testing.fake_base import (
    DEFAULT_REPLY,
    Behaviour,
    BehaviourError,
    FakeUpstream,
    RecordedRequest,
    count_words,
    cut_reply,
    json_response,
    parse_behaviour,
    split_reply,
)

__all__ = ["DEFAULT_REPLY", "FakeOpenAI", "RecordedRequest", "count_words", "parse_behaviour"]

SYSTEM_FINGERPRINT = "fp_fake0upstream"
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
_Json = dict[str, Any]


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _reply(body: _Json, behaviour: Behaviour) -> tuple[str, str, str | None]:
    """The reply text of each choice, its finish_reason, and the stop string that cut it
    (if one did), after `stop` and the token limit."""
    text = behaviour.reply
    if "|" in text:
        # Alternatives (`reply=a|b|c`): the request's `seed` picks one, so a sampling
        # feature (integrity, consistency) sees answers that differ.
        options = text.split("|")
        seed = body.get("seed")
        text = options[(seed if isinstance(seed, int) else 0) % len(options)]
    if behaviour.mode == "echo":
        users = [m for m in body["messages"] if m.get("role") == "user"]
        text = _text(users[-1].get("content")) if users else ""
    if behaviour.aggregate:
        text = aggregate(body["messages"], text)
    stop = body.get("stop")
    stops = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    whole = text
    text, reason = cut_reply(text, [s for s in stops if isinstance(s, str)], limit)
    if reason != "stop":
        return text, "length" if reason == "length" else "stop", None
    cut_by = next(s for s in stops if isinstance(s, str) and s and whole.startswith(s, len(text)))
    return text, "stop", cut_by


def _usage(prompt: int, completion: int, cached: int) -> _Json:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> web.Response:
    """An error in OpenAI's envelope."""
    kind = "server_error" if status >= 500 else "requests" if status == 429 else None
    codes = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
    error = {"message": message, "type": kind or "invalid_request_error", "param": param}
    return json_response({"error": {**error, "code": code or codes.get(status)}}, status)


def _call(name: str, arguments: str) -> _Json:
    function = {"name": name, "arguments": arguments}
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function}


class FakeOpenAI(FakeUpstream):
    """The fake OpenAI upstream; `base_url` ends in `/v1`."""

    base_path = "/v1"

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        headers, body = record["headers"], record["body"]
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            sent = headers.get("authorization", "").removeprefix("Bearer ")
            return _error(401, f"Incorrect API key provided: {sent}.", code="invalid_api_key")
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return await self._chat(request, body)
        if request.method == "POST" and request.path == "/v1/embeddings":
            return self._embeddings(request, body)
        if request.method == "GET" and request.path == "/v1/models":
            names = ("fixed", "echo", "tool")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in names]
            return json_response({"object": "list", "data": data})
        return _error(404, f"Invalid URL ({request.method} {request.path})", code="unknown_url")

    async def _chat(self, request: web.Request, body: Any) -> web.StreamResponse:
        if not isinstance(body, dict):
            return _error(400, "We could not parse the JSON body of your request.")
        messages = body.get("messages")
        if not isinstance(messages, list) or not all(isinstance(m, dict) for m in messages):
            return _error(400, "'messages' must be an array of objects.", param="messages")
        n = 1 if body.get("n") is None else body["n"]
        if not isinstance(n, int) or isinstance(n, bool) or not 1 <= n <= 128:
            return _error(400, "'n' must be an integer from 1 to 128.", param="n")
        model = str(body.get("model") or "fixed")
        try:
            behaviour = self.behaviour_for(request.headers.get("x-fake-behaviour") or model)
        except BehaviourError as exc:
            reason = f"Unknown or invalid fake behaviour directive '{exc.args[0]}'."
            return _error(400, reason, param="model", code="invalid_fake_behaviour")
        stream = body.get("stream") is True
        early = await self.early_answer(
            request,
            behaviour,
            stream=stream,
            error=lambda: _directed_error(behaviour, request.headers.get("Authorization", "")),
            malformed=_MALFORMED,
        )
        if early is not None:
            return early

        tool: str | None = None
        cut_by: str | None = None
        if behaviour.mode == "tool":
            functions = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
            tool = next((f.get("name") for f in functions if isinstance(f, dict)), None)
            if not isinstance(tool, str):
                return _error(400, "'tool' needs a function in 'tools'.", param="tools")
            text, finish = behaviour.args, "tool_calls"
        else:
            text, finish, cut_by = _reply(body, behaviour)
        said: _Json = {"stop_reason": cut_by} if behaviour.stop_reason and cut_by else {}
        calls = behaviour.tools if tool is not None else 1
        prompt = sum(count_words(_text(m.get("content"))) + 3 for m in messages)
        usage = _usage(prompt, count_words(text) * calls * n, behaviour.cached)
        head: _Json = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if stream:
            firsts: list[_Json] = [{"role": "assistant", "content": ""}] * n
            deltas: list[_Json] = [{"content": p} for p in split_reply(text, behaviour.chunks)]
            if tool is not None:
                firsts = [
                    {
                        "role": "assistant",
                        "content": None,
                        "tool_calls": [{"index": k, **_call(tool, "")} for k in range(calls)],
                    }
                    for _ in range(n)
                ]
                deltas = [
                    {"tool_calls": [{"index": k, "function": {"arguments": text}}]}
                    for k in range(calls)
                ]
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            final = usage if with_usage and not behaviour.no_usage else None
            return await _stream(request, behaviour, head, firsts, deltas, finish, final, said)
        choices = []
        for i in range(n):
            message: _Json = {"role": "assistant", "content": text, "refusal": None}
            if tool is not None:
                message.update(content=None, tool_calls=[_call(tool, text) for _ in range(calls)])
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish, **said}
            )
        return json_response(
            {**head, "choices": choices, **({} if behaviour.no_usage else {"usage": usage})}
        )

    def _embeddings(self, request: web.Request, body: Any) -> web.StreamResponse:
        """An `error=` behaviour named by the model answers with that error; anything else
        gets deterministic vectors."""
        model = str(body.get("model") or "fixed") if isinstance(body, dict) else "fixed"
        try:
            behaviour = self.behaviour_for(model)
        except BehaviourError:
            behaviour = None
        if behaviour is not None and behaviour.error is not None:
            return _directed_error(behaviour, request.headers.get("Authorization", ""))
        return _embeddings(body)


def _embeddings(body: Any) -> web.StreamResponse:
    """Deterministic 8-dimension vectors from each input's hash; one token per word."""
    if not isinstance(body, dict) or "input" not in body:
        return _error(400, "'input' is a required property.", param="input")
    inputs = body["input"] if isinstance(body["input"], list) else [body["input"]]
    if not inputs or not all(isinstance(i, str) for i in inputs):
        return _error(400, "'input' must be a string or an array of strings.", param="input")
    data = []
    for index, text in enumerate(inputs):
        digest = hashlib.sha256(text.encode()).digest()
        data.append(
            {"object": "embedding", "index": index, "embedding": [b / 255 for b in digest[:8]]}
        )
    tokens = sum(count_words(text) for text in inputs)
    return json_response(
        {
            "object": "list",
            "data": data,
            "model": str(body.get("model") or ""),
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
        }
    )


async def _stream(
    request: web.Request,
    behaviour: Behaviour,
    head: _Json,
    firsts: list[_Json],
    deltas: list[_Json],
    finish: str,
    usage: _Json | None,
    said: _Json | None = None,
) -> web.StreamResponse:
    """Stream first deltas, content deltas, finish chunks, usage (unless None) and [DONE]."""
    extra: _Json = {} if usage is None else {"usage": None}

    def event(index: int, delta: _Json, finish_reason: str | None = None) -> bytes:
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        if finish_reason is not None and said:
            entry.update(said)
        return b"data: " + orjson.dumps({**head, "choices": [entry], **extra}) + b"\n\n"

    n = len(firsts)
    events = [event(i, first) for i, first in enumerate(firsts)]
    if behaviour.malformed:
        events.append(b"data: " + _MALFORMED + b"\n\n" + _DONE)
    else:
        events += [event(i, delta) for delta in deltas for i in range(n)][: behaviour.drop_after]
        if behaviour.drop_after is None:
            events += [event(i, {}, finish) for i in range(n)]
            if usage is not None:
                last = {**head, "choices": [], "usage": usage}
                events.append(b"data: " + orjson.dumps(last) + b"\n\n")
            events.append(_DONE)
    return await FakeUpstream.write_events(request, events, behaviour)


def _directed_error(behaviour: Behaviour, authorization: str) -> web.Response:
    """The `error=` directive's answer, with `retry_after=` as a header. A 401 quotes the
    key it was sent, in full, as some OpenAI-compatible servers do."""
    assert behaviour.error is not None
    message = f"fake upstream error {behaviour.error}"
    if behaviour.error == 401:
        message += f": Incorrect API key provided: {authorization.removeprefix('Bearer ')}."
    response = _error(behaviour.error, message)
    if behaviour.retry_after is not None:
        response.headers["Retry-After"] = behaviour.retry_after
    return response


def main(argv: list[str] | None = None) -> None:
    FakeOpenAI.command_line(
        argv,
        description="Serve a fake OpenAI-compatible chat-completions upstream.",
        default_port=9100,
        key_help="require 'Authorization: Bearer KEY'",
    )


if __name__ == "__main__":
    main()
