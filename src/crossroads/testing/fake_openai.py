"""A fake OpenAI chat-completions upstream that is a real HTTP server on a local port.

Gateway tests and benchmarks need an upstream that speaks OpenAI's wire format byte for byte
(JSON bodies, SSE framing, error envelopes) and misbehaves on demand (slow, failing, malformed,
cut off), with no network access or API key. It listens on a real socket so that the gateway's
real HTTP client code runs against it.

Endpoints: `POST /v1/chat/completions`, `GET /v1/models`; for tests, `GET /_fake/requests`
returns every request received (also kept in `FakeOpenAI.requests`) and `DELETE` clears them.

Each chat request's behaviour comes from its `x-fake-behaviour` header, else its `model` field:
`+`-separated directives, e.g. `echo`, `fixed+delay=200`, `error=503+retry_after=2`. An unknown
or invalid directive gets a 400.

    fixed             reply "Hello from the fake upstream." (the default)
    reply=<text>      reply <text>, with "_" standing for a space
    echo              reply the text of the last user message
    tool              call the first function in `tools` with arguments "{}"
    delay=<ms>        wait before answering (before any header is sent)
    error=<status>    answer with that HTTP status (400-599) and an OpenAI error envelope
    retry_after=<s>   add a Retry-After header to the error
    malformed         200 with a body that is not JSON (streams: a `data:` event that is not JSON)
    drop_after=<n>    streams: send n content chunks, then close the connection without [DONE];
                      non-streaming: close the connection without answering
    chunk_delay=<ms>  wait between streamed chunks
    chunks=<n>        stream the reply as n chunks of near-equal length (default: one per word)
    no_usage          report no usage (streams: no usage chunk even when asked for)
    cached=<n>        report n cached prompt tokens

Token counting is deterministic, so tests can compute expected cost:

* prompt_tokens = whitespace-separated words of every message's text (string contents and the
  `text` parts of list contents) + 3 per message;
* completion_tokens = whitespace-separated words of each choice's reply, summed over the `n`
  choices (a tool call counts the words of its arguments, so `{}` is 1).

`max_completion_tokens` (or `max_tokens`) cuts each reply to that many words, finish_reason
"length"; `stop` cuts it just before the first stop string, finish_reason "stop".
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import itertools
import re
import signal
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson
from aiohttp import web

__all__ = [
    "DEFAULT_REPLY",
    "Behaviour",
    "BehaviourError",
    "FakeOpenAI",
    "RecordedRequest",
    "count_words",
    "parse_behaviour",
]

DEFAULT_REPLY = "Hello from the fake upstream."
SYSTEM_FINGERPRINT = "fp_fake0upstream"
_WORD = re.compile(r"\s*\S+")
_INT_DIRECTIVES = frozenset({"delay", "error", "drop_after", "chunk_delay", "chunks", "cached"})
_DONE = b"data: [DONE]\n\n"
_MALFORMED = b'{"id": "chatcmpl-malformed", "object": "chat.completion", "choices": [{'
_Json = dict[str, Any]


class RecordedRequest(TypedDict):
    """One request as the fake upstream saw it; header names are lower-cased."""

    method: str
    path: str
    headers: dict[str, str]
    body: Any  # the parsed JSON body, None when absent or not JSON


class BehaviourError(ValueError):
    """A behaviour string holds an unknown or invalid directive (the first argument)."""


@dataclass(slots=True)
class Behaviour:
    """A parsed behaviour string; see the module docstring for the directives."""

    mode: str = "fixed"  # "fixed", "echo" or "tool"
    reply: str = DEFAULT_REPLY
    delay: int = 0
    error: int | None = None
    retry_after: str | None = None
    malformed: bool = False
    drop_after: int | None = None
    chunk_delay: int = 0
    chunks: int | None = None
    no_usage: bool = False
    cached: int = 0


def parse_behaviour(spec: str) -> Behaviour:
    """Parse `+`-separated directives, raising `BehaviourError` naming the first bad one."""
    behaviour = Behaviour()
    for directive in spec.split("+"):
        name, has_value, value = directive.partition("=")
        if not has_value and name in ("fixed", "echo", "tool"):
            behaviour.mode = name
        elif not has_value and name in ("malformed", "no_usage"):
            setattr(behaviour, name, True)
        elif has_value and name == "reply":
            behaviour.mode, behaviour.reply = "fixed", value.replace("_", " ")
        elif has_value and name == "retry_after" and re.fullmatch(r"\d+(\.\d+)?", value):
            behaviour.retry_after = value
        elif has_value and name in _INT_DIRECTIVES and value.isascii() and value.isdigit():
            number = int(value)
            if (name == "error" and not 400 <= number <= 599) or (name == "chunks" and not number):
                raise BehaviourError(directive)
            setattr(behaviour, name, number)
        else:
            raise BehaviourError(directive)
    return behaviour


def count_words(text: str) -> int:
    """The fake's token count: whitespace-separated words."""
    return len(text.split())


def _text(content: Any) -> str:
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [p.get("text") for p in content if isinstance(p, dict) and p.get("type") == "text"]
        return " ".join(p for p in parts if isinstance(p, str))
    return ""


def _split(text: str, chunks: int | None) -> list[str]:
    """Pieces whose concatenation is `text`: one per word, or `chunks` of near-equal length."""
    if chunks is None:
        pieces: list[str] = _WORD.findall(text)
        rest = text[sum(map(len, pieces)) :]
        if rest and pieces:
            pieces[-1] += rest
        return pieces or ([rest] if rest else [])
    count = min(chunks, len(text))
    bounds = [len(text) * i // count for i in range(count + 1)] if count else []
    return [text[a:b] for a, b in itertools.pairwise(bounds)]


def _reply(body: _Json, behaviour: Behaviour) -> tuple[str, str]:
    """The reply text of each choice and its finish_reason, after `stop` and the token limit."""
    text = behaviour.reply
    if behaviour.mode == "echo":
        users = [m for m in body["messages"] if m.get("role") == "user"]
        text = _text(users[-1].get("content")) if users else ""
    stop = body.get("stop")
    for s in [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []:
        if isinstance(s, str) and s and s in text:
            text = text[: text.index(s)]
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if isinstance(limit, int) and not isinstance(limit, bool):
        pieces = _WORD.findall(text)
        if len(pieces) > limit:
            return "".join(pieces[: max(limit, 0)]), "length"
    return text, "stop"


def _usage(prompt: int, completion: int, cached: int) -> _Json:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


def _json(value: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    body = orjson.dumps(value)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def _error(
    status: int, message: str, *, code: str | None = None, param: str | None = None
) -> web.Response:
    """An error in OpenAI's envelope."""
    kind = "server_error" if status >= 500 else "requests" if status == 429 else None
    codes = {401: "invalid_api_key", 404: "model_not_found", 429: "rate_limit_exceeded"}
    error = {"message": message, "type": kind or "invalid_request_error", "param": param}
    return _json({"error": {**error, "code": code or codes.get(status)}}, status)


def _call(name: str, arguments: str) -> _Json:
    function = {"name": name, "arguments": arguments}
    return {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function", "function": function}


def _close(request: web.Request) -> None:
    """Close the connection mid-exchange; bytes already written are still delivered."""
    if request.transport is not None:
        request.transport.close()


class FakeOpenAI:
    """The fake upstream. `start()` binds it (port 0 picks a free port), `stop()` closes it."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        record: bool = True,
    ) -> None:
        self.host = host
        self.api_key = api_key
        # Benchmarks turn recording off so a long run does not grow without bound.
        self.record = record
        self.requests: list[RecordedRequest] = []
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The OpenAI base URL, e.g. `http://127.0.0.1:PORT/v1`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self._port}/v1"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port).start()
        except BaseException:
            await runner.cleanup()
            raise
        self._runner = runner
        self._port = int(runner.addresses[0][1])

    async def stop(self) -> None:
        if self._runner is not None:
            runner, self._runner = self._runner, None
            await runner.cleanup()

    @contextlib.contextmanager
    def running_in_thread(self) -> Iterator[FakeOpenAI]:
        """Serve from a daemon thread with its own event loop, for synchronous callers."""
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        thread = threading.Thread(target=run, name=f"fake-openai-{id(self):x}", daemon=True)
        thread.start()
        try:
            asyncio.run_coroutine_threadsafe(self.start(), loop).result()
            try:
                yield self
            finally:
                asyncio.run_coroutine_threadsafe(self.stop(), loop).result()
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join()

    async def _handle(self, request: web.Request) -> web.StreamResponse:
        """Record the request, check its key, and answer it."""
        if request.path == "/_fake/requests":
            if request.method == "DELETE":
                self.requests.clear()
                return web.Response(status=204)
            return _json(self.requests)
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        headers = {k.lower(): v for k, v in request.headers.items()}
        record = RecordedRequest(
            method=request.method, path=request.path, headers=headers, body=body
        )
        if self.record:
            self.requests.append(record)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "Incorrect API key provided.", code="invalid_api_key")
        if request.method == "POST" and request.path == "/v1/chat/completions":
            return await self._chat(request, body)
        if request.method == "GET" and request.path == "/v1/models":
            names = ("fixed", "echo", "tool")
            data = [{"id": m, "object": "model", "created": 0, "owned_by": "fake"} for m in names]
            return _json({"object": "list", "data": data})
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
            behaviour = parse_behaviour(request.headers.get("x-fake-behaviour") or model)
        except BehaviourError as exc:
            reason = f"Unknown or invalid fake behaviour directive '{exc.args[0]}'."
            return _error(400, reason, param="model", code="invalid_fake_behaviour")
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay / 1000)
        if behaviour.error is not None:
            response = _error(behaviour.error, f"fake upstream error {behaviour.error}")
            if behaviour.retry_after is not None:
                response.headers["Retry-After"] = behaviour.retry_after
            return response
        stream = body.get("stream") is True
        if behaviour.drop_after is not None and not stream:
            _close(request)
            return web.Response()
        if behaviour.malformed and not stream:
            return web.Response(body=_MALFORMED, content_type="application/json")

        tool: str | None = None
        if behaviour.mode == "tool":
            functions = [t.get("function") for t in body.get("tools") or [] if isinstance(t, dict)]
            tool = next((f.get("name") for f in functions if isinstance(f, dict)), None)
            if not isinstance(tool, str):
                return _error(400, "'tool' needs a function in 'tools'.", param="tools")
            text, finish = "{}", "tool_calls"
        else:
            text, finish = _reply(body, behaviour)
        prompt = sum(count_words(_text(m.get("content"))) + 3 for m in messages)
        usage = _usage(prompt, count_words(text) * n, behaviour.cached)
        head: _Json = {
            "id": f"chatcmpl-{uuid.uuid4().hex[:29]}",
            "object": "chat.completion.chunk" if stream else "chat.completion",
            "created": int(time.time()),
            "model": model,
            "system_fingerprint": SYSTEM_FINGERPRINT,
        }
        if stream:
            firsts: list[_Json] = [{"role": "assistant", "content": ""}] * n
            deltas: list[_Json] = [{"content": p} for p in _split(text, behaviour.chunks)]
            if tool is not None:
                calls = [[{"index": 0, **_call(tool, "")}] for _ in range(n)]
                firsts = [{"role": "assistant", "content": None, "tool_calls": c} for c in calls]
                deltas = [{"tool_calls": [{"index": 0, "function": {"arguments": text}}]}]
            options = body.get("stream_options")
            with_usage = isinstance(options, dict) and options.get("include_usage") is True
            final = usage if with_usage and not behaviour.no_usage else None
            return await _stream(request, behaviour, head, firsts, deltas, finish, final)
        choices = []
        for i in range(n):
            message: _Json = {"role": "assistant", "content": text, "refusal": None}
            if tool is not None:
                message.update(content=None, tool_calls=[_call(tool, text)])
            choices.append(
                {"index": i, "message": message, "logprobs": None, "finish_reason": finish}
            )
        return _json(
            {**head, "choices": choices, **({} if behaviour.no_usage else {"usage": usage})}
        )


async def _stream(
    request: web.Request,
    behaviour: Behaviour,
    head: _Json,
    firsts: list[_Json],
    deltas: list[_Json],
    finish: str,
    usage: _Json | None,
) -> web.StreamResponse:
    """Stream first deltas, content deltas, finish chunks, usage (unless None) and [DONE]."""
    extra: _Json = {} if usage is None else {"usage": None}

    def event(index: int, delta: _Json, finish_reason: str | None = None) -> bytes:
        entry = {"index": index, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
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
    response = web.StreamResponse(
        headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
    )
    await response.prepare(request)
    try:
        for k, data in enumerate(events):
            if k and behaviour.chunk_delay:
                await asyncio.sleep(behaviour.chunk_delay / 1000)
            await response.write(data)
    except ConnectionResetError:
        return response  # the client went away; there is nobody left to answer
    if behaviour.drop_after is not None and not behaviour.malformed:
        _close(request)
    return response


async def _serve(host: str, port: int, api_key: str | None, record: bool) -> None:
    fake = FakeOpenAI(host, port, api_key, record=record)
    await fake.start()
    print(fake.base_url, flush=True)
    stopping = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(signum, stopping.set)
    try:
        await stopping.wait()
    finally:
        await fake.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m crossroads.testing.fake_openai",
        description="Serve a fake OpenAI-compatible chat-completions upstream.",
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100, help="0 picks a free port")
    parser.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY'")
    parser.add_argument(
        "--no-record", action="store_true", help="do not keep received requests (for benchmarks)"
    )
    args = parser.parse_args(argv)
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(args.host, args.port, args.api_key, not args.no_record))


if __name__ == "__main__":
    main()
