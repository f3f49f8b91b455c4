"""What every fake upstream shares: a real aiohttp server, request recording, behaviours.

Each wire dialect (OpenAI, Anthropic, Gemini) has its own fake speaking that provider's
format; they differ in paths, envelopes and event framing, but not in how they are started,
how they record what they received, or how a test selects a misbehaviour. That common part
lives here so each fake module holds only its dialect.

Behaviour strings are `+`-separated directives, e.g. `echo`, `fixed+delay=200`,
`error=503+retry_after=2`:

    fixed             reply "Hello from the fake upstream." (the default)
    reply=<text>      reply <text>, with "_" standing for a space
    reply_size=<n>    reply n characters of filler words (large bodies, without a long model id)
    echo              reply the text of the last user message
    aggregate         OpenAI: act as a mixture's aggregator (or a later layer's proposer) that
                      goes with the crowd — see `fake_aggregate`
    tool              call the first declared function (arguments "{}" unless args= is given)
    tools=<n>         call the first declared function n times in one answer (parallel calls)
    args=<json>       the arguments of the tool call(s), with "_" standing for a space
    think=<text>      reasoning text before the answer (dialects that have reasoning)
    redacted          Anthropic: the reasoning comes as a redacted_thinking block
    signed            Gemini: act as Gemini 3, whose function calls carry a thoughtSignature
                      that must come back on the next turns (see fake_gemini_signatures)
    delay=<ms>        wait before answering (before any header is sent)
    error=<status>    answer with that HTTP status (400-599) and the dialect's error envelope
    retry_after=<s>   add a Retry-After header to the error
    malformed         200 with a body that is not JSON (streams: an event that is not JSON)
    drop_after=<n>    streams: send n content events, then close the connection;
                      non-streaming: close the connection without answering
    drop_reused       close the connection without answering when the request came on a
                      kept-alive connection that already served one (an upstream closing an
                      idle connection just as the next request reaches it)
    stream_error      streams: after the first content event, send the dialect's in-stream
                      overload error event (Anthropic: `overloaded_error`, Gemini: UNAVAILABLE)
    stream_error=<n>  the same after n content events (0: before any content)
    rate=<pct>        the faults above (error, malformed, drop_after, stream_error) strike
                      only pct% (0-100) of requests, drawn at random per request from the
                      fake's own generator (`seed=` / `--seed` makes a run repeatable when
                      requests arrive in the same order); the rest are answered normally
    chunk_delay=<ms>  wait between streamed events
    chunks=<n>        stream the reply as n pieces of near-equal length (default: one per word)
    no_usage          report no usage
    stop_reason       say which stop string cut the reply, in the choice's `stop_reason`
                      (as vLLM does; OpenAI dialect)
    cached=<n>        report n cached (cache-read) prompt tokens
    cache_write=<n>   report n cache-creation prompt tokens (Anthropic)
    blocked           the answer is stopped by a safety filter (Gemini: finishReason SAFETY)
    prompt_blocked    the prompt is refused before any answer (Gemini: promptFeedback.blockReason)

Token counting is deterministic, so tests can compute expected cost: a prompt counts the
whitespace-separated words of every message's text + 3 per message, a reply its words.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import itertools
import random
import re
import signal
import ssl
import threading
import weakref
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, TypedDict

import orjson
from aiohttp import web

__all__ = [
    "DEFAULT_REPLY",
    "Behaviour",
    "BehaviourError",
    "FakeUpstream",
    "RecordedRequest",
    "close_connection",
    "count_words",
    "json_response",
    "parse_behaviour",
    "split_reply",
]

DEFAULT_REPLY = "Hello from the fake upstream."
_WORD = re.compile(r"\s*\S+")
_INT_DIRECTIVES = frozenset(
    {
        "delay",
        "error",
        "drop_after",
        "chunk_delay",
        "chunks",
        "cached",
        "cache_write",
        "tools",
        "rate",
        "reply_size",
        "stream_error",
    }
)
_TEXT_DIRECTIVES = frozenset({"reply", "args", "think"})
_FLAGS = frozenset(
    {
        "malformed",
        "no_usage",
        "stop_reason",
        "blocked",
        "prompt_blocked",
        "redacted",
        "signed",
        "drop_reused",
        "aggregate",
    }
)
_FILLER = "lorem ipsum dolor sit amet "


class RecordedRequest(TypedDict):
    """One request as the fake upstream saw it; header names are lower-cased."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any  # the parsed JSON body, None when absent or not JSON


class BehaviourError(ValueError):
    """A behaviour string holds an unknown or invalid directive (the first argument)."""


@dataclass(slots=True)
class Behaviour:
    """A parsed behaviour string; see the module docstring for the directives."""

    mode: str = "fixed"  # "fixed", "echo" or "tool"
    reply: str = DEFAULT_REPLY
    args: str = "{}"
    tools: int = 1
    think: str | None = None
    redacted: bool = False
    signed: bool = False
    delay: int = 0
    error: int | None = None
    retry_after: str | None = None
    malformed: bool = False
    drop_after: int | None = None
    drop_reused: bool = False
    stream_error: int | None = None  # content events before the error event
    chunk_delay: int = 0
    chunks: int | None = None
    no_usage: bool = False
    stop_reason: bool = False
    cached: int = 0
    cache_write: int = 0
    blocked: bool = False
    prompt_blocked: bool = False
    rate: int = 100  # percent of requests the faults apply to
    aggregate: bool = False  # follow the majority of the proposals shown (fake_aggregate)

    def without_faults(self) -> Behaviour:
        """The same behaviour with its faults (error, malformed, drop_after, stream_error) off."""
        return dataclasses.replace(
            self,
            error=None,
            retry_after=None,
            malformed=False,
            drop_after=None,
            drop_reused=False,
            stream_error=None,
        )


def parse_behaviour(spec: str) -> Behaviour:
    """Parse `+`-separated directives, raising `BehaviourError` naming the first bad one."""
    behaviour = Behaviour()
    for directive in spec.split("+"):
        name, has_value, value = directive.partition("=")
        if not has_value and name in ("fixed", "echo", "tool"):
            behaviour.mode = name
        elif not has_value and name in _FLAGS:
            setattr(behaviour, name, True)
        elif not has_value and name == "stream_error":
            behaviour.stream_error = 1
        elif has_value and name in _TEXT_DIRECTIVES:
            setattr(behaviour, name, value.replace("_", " "))
            if name == "reply":
                behaviour.mode = "fixed"
            elif name == "args":
                behaviour.mode = "tool"
        elif has_value and name == "retry_after" and re.fullmatch(r"\d+(\.\d+)?", value):
            behaviour.retry_after = value
        elif has_value and name in _INT_DIRECTIVES and value.isascii() and value.isdigit():
            number = int(value)
            if (
                (name == "error" and not 400 <= number <= 599)
                or (name in ("chunks", "tools") and not number)
                or (name == "rate" and number > 100)
            ):
                raise BehaviourError(directive)
            if name == "reply_size":
                repeats = number // len(_FILLER) + 1
                behaviour.mode, behaviour.reply = "fixed", (_FILLER * repeats)[:number]
                continue
            setattr(behaviour, name, number)
            if name == "tools":
                behaviour.mode = "tool"
        else:
            raise BehaviourError(directive)
    return behaviour


def count_words(text: str) -> int:
    """The fakes' token count: whitespace-separated words."""
    return len(text.split())


def split_reply(text: str, chunks: int | None) -> list[str]:
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


def cut_reply(text: str, stops: list[str], limit: Any) -> tuple[str, str | None]:
    """Apply stop strings and a word limit; returns the text and which one cut it, if any.

    The second value is "stop" when a stop string cut the text (the stop string itself is
    returned by dialects that report it), "length" when the limit did, else None.
    """
    reason: str | None = None
    for stop in stops:
        if stop and stop in text:
            text, reason = text[: text.index(stop)], "stop"
    if isinstance(limit, int) and not isinstance(limit, bool):
        pieces = _WORD.findall(text)
        if len(pieces) > limit:
            return "".join(pieces[: max(limit, 0)]), "length"
    return text, reason


def json_response(
    value: Any, status: int = 200, headers: dict[str, str] | None = None
) -> web.Response:
    body = orjson.dumps(value)
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def close_connection(request: web.Request) -> None:
    """Close the connection mid-exchange; bytes already written are still delivered."""
    if request.transport is not None:
        request.transport.close()


class FakeUpstream:
    """A fake upstream server. `start()` binds it (port 0 picks a free port), `stop()` closes it.

    Subclasses implement `answer` (route one recorded request) and may override
    `base_path` (what `base_url` ends with).
    """

    base_path = ""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        api_key: str | None = None,
        *,
        record: bool = True,
        seed: int | None = None,
        tls: ssl.SSLContext | None = None,
    ) -> None:
        self.host = host
        # Serve https:// with this server-side context (tests of CA bundles, client certs).
        self.tls = tls
        self._served: weakref.WeakSet[Any] = weakref.WeakSet()  # connections that answered
        self.api_key = api_key
        # Benchmarks turn recording off so a long run does not grow without bound.
        self.record = record
        # Owned by this fake, not the module-level generator, so a seed reproduces a run.
        self.random = random.Random(seed)
        self.requests: list[RecordedRequest] = []
        self._port = port
        self._runner: web.AppRunner | None = None

    @property
    def port(self) -> int:
        """The bound port once started (the requested one before)."""
        return self._port

    @property
    def base_url(self) -> str:
        """The base URL a provider is configured with, e.g. `http://127.0.0.1:PORT/v1`."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "https" if self.tls is not None else "http"
        return f"{scheme}://{host}:{self._port}{self.base_path}"

    async def start(self) -> None:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        app.router.add_route("*", "/{tail:.*}", self._handle)
        runner = web.AppRunner(app, access_log=None, shutdown_timeout=0.25)
        await runner.setup()
        try:
            await web.TCPSite(runner, self.host, self._port, ssl_context=self.tls).start()
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
    def running_in_thread(self) -> Iterator[Any]:
        """Serve from a daemon thread with its own event loop, for synchronous callers."""
        loop = asyncio.new_event_loop()

        def run() -> None:
            asyncio.set_event_loop(loop)
            try:
                loop.run_forever()
                loop.run_until_complete(loop.shutdown_asyncgens())
            finally:
                loop.close()

        name = f"{type(self).__name__.lower()}-{id(self):x}"
        thread = threading.Thread(target=run, name=name, daemon=True)
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
        """Serve `/_fake/requests` (GET lists, DELETE clears); record and answer the rest."""
        if request.path == "/_fake/requests":
            if request.method == "DELETE":
                self.requests.clear()
                return web.Response(status=204)
            return json_response(self.requests)
        raw = await request.read()
        try:
            body = orjson.loads(raw) if raw else None
        except orjson.JSONDecodeError:
            body = None
        record = RecordedRequest(
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            body=body,
        )
        if self.record:
            self.requests.append(record)
        transport = request.transport
        try:
            return await self.answer(request, record)
        finally:
            if transport is not None:
                self._served.add(transport)  # the next request on it arrives on a reused one

    async def answer(self, request: web.Request, record: RecordedRequest) -> web.StreamResponse:
        """Answer one request in the dialect's wire format."""
        raise NotImplementedError

    def behaviour_for(self, spec: str) -> Behaviour:
        """This request's behaviour: `spec` parsed, its faults dropped unless `rate=` draws them.

        Raises `BehaviourError` like `parse_behaviour`.
        """
        behaviour = parse_behaviour(spec)
        if behaviour.rate < 100 and self.random.randrange(100) >= behaviour.rate:
            return behaviour.without_faults()
        return behaviour

    async def early_answer(
        self,
        request: web.Request,
        behaviour: Behaviour,
        *,
        stream: bool,
        error: Callable[[], web.Response],
        malformed: bytes,
    ) -> web.StreamResponse | None:
        """The answer every dialect gives before its own work: after `delay`, the directed
        `error`, a dropped connection or a malformed body (the last two when not streaming,
        where they are sent in the stream instead). None: go on and answer normally."""
        if behaviour.drop_reused and request.transport in self._served:
            close_connection(request)
            return web.Response()
        if behaviour.delay:
            await asyncio.sleep(behaviour.delay / 1000)
        if behaviour.error is not None:
            return error()
        if behaviour.drop_after is not None and not stream:
            close_connection(request)
            return web.Response()
        if behaviour.malformed and not stream:
            return web.Response(body=malformed, content_type="application/json")
        return None

    @classmethod
    def command_line(
        cls, argv: list[str] | None, *, description: str, default_port: int, key_help: str
    ) -> None:
        """`python -m crossroads.testing.fake_X`: serve until SIGINT/SIGTERM.

        Prints the base URL once listening, so a script can read where to point a provider.
        """
        parser = argparse.ArgumentParser(
            prog=f"python -m {cls.__module__}", description=description
        )
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=default_port, help="0 picks a free port")
        parser.add_argument("--api-key", default=None, help=key_help)
        parser.add_argument(
            "--no-record",
            action="store_true",
            help="do not keep received requests (for benchmarks)",
        )
        parser.add_argument(
            "--seed", type=int, default=None, help="seed the draws of `rate=` (repeatable runs)"
        )
        args = parser.parse_args(argv)
        fake = cls(args.host, args.port, args.api_key, record=not args.no_record, seed=args.seed)
        with contextlib.suppress(KeyboardInterrupt):
            asyncio.run(fake._serve_until_signalled())

    async def _serve_until_signalled(self) -> None:
        await self.start()
        print(self.base_url, flush=True)
        stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGINT, signal.SIGTERM):
            with contextlib.suppress(NotImplementedError):
                loop.add_signal_handler(signum, stopping.set)
        try:
            await stopping.wait()
        finally:
            await self.stop()

    @staticmethod
    async def write_events(
        request: web.Request, events: list[bytes], behaviour: Behaviour
    ) -> web.StreamResponse:
        """Send pre-framed SSE events with `chunk_delay` between them; close when dropping."""
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
            close_connection(request)
        return response
