"""The fake OpenAI upstream: exact wire format, every directive, recording, auth and the CLI."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import AsyncOpenAI, AsyncStream, OpenAI
from openai.types.chat import (
    ChatCompletionChunk,
    ChatCompletionMessageParam,
    ChatCompletionToolParam,
)

from crossroads.testing.fake_openai import (
    DEFAULT_REPLY,
    BehaviourError,
    FakeOpenAI,
    count_words,
    parse_behaviour,
)

USER: list[ChatCompletionMessageParam] = [{"role": "user", "content": "Say hello to me"}]
# 4 words + 3 for the message.
USER_TOKENS = 7
WEATHER_TOOL: ChatCompletionToolParam = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture
async def fake() -> AsyncIterator[FakeOpenAI]:
    server = FakeOpenAI()
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def sdk(fake: FakeOpenAI) -> AsyncIterator[AsyncOpenAI]:
    async with AsyncOpenAI(base_url=fake.base_url, api_key="sk-any", max_retries=0) as client:
        yield client


@pytest.fixture
async def http(fake: FakeOpenAI) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=10) as client:
        yield client


def events(raw: bytes) -> list[bytes]:
    """Split an SSE body into events, asserting the framing: each ends with a blank line."""
    assert raw.endswith(b"\n\n")
    parts = raw.split(b"\n\n")
    assert parts[-1] == b""
    for part in parts[:-1]:
        assert part.startswith(b"data: ")
        assert b"\n" not in part
    return [part + b"\n\n" for part in parts[:-1]]


def chunks_of(raw: bytes) -> list[dict[str, Any]]:
    found = events(raw)
    assert found[-1] == b"data: [DONE]\n\n"
    return [orjson.loads(event[len(b"data: ") :]) for event in found[:-1]]


async def read_raw(response: httpx.Response, into: list[bytes]) -> None:
    async for data in response.aiter_raw():
        into.append(data)


async def read_stream(stream: AsyncStream[ChatCompletionChunk], into: list[str]) -> None:
    async with stream:
        async for chunk in stream:
            into.append(chunk.choices[0].delta.content or "")


async def post(http: httpx.AsyncClient, body: dict[str, Any], **kw: Any) -> httpx.Response:
    return await http.post("/chat/completions", json={"messages": USER, **body}, **kw)


# --- behaviour strings ---------------------------------------------------------------------------


def test_parse_behaviour() -> None:
    b = parse_behaviour("reply=Good_day+delay=20+error=503+retry_after=2.5+no_usage+cached=4")
    assert (b.mode, b.reply, b.delay, b.error, b.retry_after) == (
        "fixed",
        "Good day",
        20,
        503,
        "2.5",
    )
    assert b.no_usage
    assert b.cached == 4
    assert parse_behaviour("echo+chunks=3+chunk_delay=5+drop_after=0").drop_after == 0
    assert parse_behaviour("error=503+rate=30").rate == 30
    assert parse_behaviour("fixed").rate == 100
    assert parse_behaviour("stream_error").stream_error == 1
    assert parse_behaviour("stream_error=0").stream_error == 0
    sized = parse_behaviour("reply_size=30")
    assert (sized.mode, sized.reply) == ("fixed", "lorem ipsum dolor sit amet lor")
    bad_ones = ("", "nope", "echo+", "delay=x", "error=200", "chunks=0", "malformed=1", "echo=1")
    for bad in (*bad_ones, "rate=101", "rate=-1", "rate=x"):
        with pytest.raises(BehaviourError):
            parse_behaviour(bad)
    assert count_words("  one two\nthree ") == 3


# --- non-streaming -------------------------------------------------------------------------------


async def test_fixed_exact_shape(http: httpx.AsyncClient) -> None:
    messages = [{"role": "system", "content": "Be brief."}, *USER]
    response = await http.post("/chat/completions", json={"model": "fixed", "messages": messages})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == [
        "id",
        "object",
        "created",
        "model",
        "system_fingerprint",
        "choices",
        "usage",
    ]
    assert body["id"].startswith("chatcmpl-")
    assert body["object"] == "chat.completion"
    assert isinstance(body["created"], int)
    assert abs(body["created"] - time.time()) < 60
    assert body["model"] == "fixed"
    assert body["system_fingerprint"].startswith("fp_")
    assert body["choices"] == [
        {
            "index": 0,
            "message": {"role": "assistant", "content": DEFAULT_REPLY, "refusal": None},
            "logprobs": None,
            "finish_reason": "stop",
        }
    ]
    assert body["usage"] == {
        "prompt_tokens": 2 + 3 + USER_TOKENS,
        "completion_tokens": 5,
        "total_tokens": 2 + 3 + USER_TOKENS + 5,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }


async def test_sdk_fixed_and_default_model(sdk: AsyncOpenAI, http: httpx.AsyncClient) -> None:
    completion = await sdk.chat.completions.create(model="fixed", messages=USER)
    assert completion.choices[0].message.content == DEFAULT_REPLY
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == USER_TOKENS
    # A body without a model falls back to `fixed`.
    response = await http.post("/chat/completions", json={"messages": USER})
    assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY


async def test_reply_directive(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="reply=Good_day_to_you", messages=USER)
    assert completion.choices[0].message.content == "Good day to you"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 4


async def test_aggregate_follows_a_majority_of_the_proposals_shown(sdk: AsyncOpenAI) -> None:
    async def answer(*proposals: str) -> str | None:
        listed = "\n\n".join(f"[{i + 1}] {p}" for i, p in enumerate(proposals))
        messages = [{"role": "system", "content": f"Proposals:\n\n{listed}"}, *USER]
        done = await sdk.chat.completions.create(model="reply=Mine+aggregate", messages=messages)  # type: ignore[arg-type]
        return done.choices[0].message.content

    assert await answer("Paris", "Lyon", "Paris") == "Paris"
    assert await answer("Paris", "Lyon") == "Mine"  # a tie: its own answer
    assert await answer("Paris") == "Mine"  # one proposal is no majority
    assert await answer() == "Mine"


async def test_echo_counts_text_parts(sdk: AsyncOpenAI) -> None:
    messages: Any = [
        {"role": "system", "content": "ignored system text"},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": "an answer"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one two"},
                {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                {"type": "text", "text": "three"},
            ],
        },
    ]
    completion = await sdk.chat.completions.create(model="echo", messages=messages)
    assert completion.choices[0].message.content == "one two three"
    assert completion.usage is not None
    assert completion.usage.prompt_tokens == (3 + 2 + 2 + 3) + 4 * 3
    assert completion.usage.completion_tokens == 3


async def test_header_overrides_model(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="gpt-4o-mini",
        messages=USER,
        extra_headers={"x-fake-behaviour": "echo"},
    )
    assert completion.model == "gpt-4o-mini"
    assert completion.choices[0].message.content == "Say hello to me"


async def test_n_choices(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(model="fixed", messages=USER, n=3)
    assert [c.index for c in completion.choices] == [0, 1, 2]
    assert {c.message.content for c in completion.choices} == {DEFAULT_REPLY}
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 15


async def test_stop(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="reply=alpha_beta_gamma_delta",
        messages=USER,
        stop=["delta", " gamma"],
    )
    choice = completion.choices[0]
    assert (choice.message.content, choice.finish_reason) == ("alpha beta", "stop")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2


@pytest.mark.parametrize("field", ["max_tokens", "max_completion_tokens"])
async def test_max_tokens(http: httpx.AsyncClient, field: str) -> None:
    body = (await post(http, {"model": "fixed", field: 2})).json()
    assert body["choices"][0]["message"]["content"] == "Hello from"
    assert body["choices"][0]["finish_reason"] == "length"
    assert body["usage"]["completion_tokens"] == 2
    # A limit the reply fits in changes nothing.
    body = (await post(http, {"model": "fixed", field: 5})).json()
    assert body["choices"][0]["message"]["content"] == DEFAULT_REPLY
    assert body["choices"][0]["finish_reason"] == "stop"


async def test_no_usage_and_cached(http: httpx.AsyncClient, sdk: AsyncOpenAI) -> None:
    assert "usage" not in (await post(http, {"model": "no_usage"})).json()
    completion = await sdk.chat.completions.create(model="fixed+cached=4", messages=USER)
    assert completion.usage is not None
    assert completion.usage.prompt_tokens_details is not None
    assert completion.usage.prompt_tokens_details.cached_tokens == 4
    assert completion.usage.prompt_tokens == USER_TOKENS


async def test_tool(sdk: AsyncOpenAI) -> None:
    completion = await sdk.chat.completions.create(
        model="tool",
        messages=USER,
        tools=[WEATHER_TOOL, {**WEATHER_TOOL, "function": {"name": "other"}}],
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.content is None
    assert choice.message.tool_calls is not None
    [call] = choice.message.tool_calls
    assert call.id.startswith("call_")
    assert call.type == "function"
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 1


async def test_tool_without_tools_is_400(http: httpx.AsyncClient) -> None:
    response = await post(http, {"model": "tool"})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "tools"


async def test_delay(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    response = await post(http, {"model": "fixed+delay=200"})
    assert response.status_code == 200
    assert time.monotonic() - started >= 0.2


# --- errors --------------------------------------------------------------------------------------


async def test_error_with_retry_after(sdk: AsyncOpenAI, http: httpx.AsyncClient) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        await sdk.chat.completions.create(model="error=503+retry_after=2", messages=USER)
    assert caught.value.status_code == 503
    assert caught.value.response.headers["retry-after"] == "2"
    assert caught.value.body == {
        "message": "fake upstream error 503",
        "type": "server_error",
        "param": None,
        "code": None,
    }
    response = await post(http, {"model": "error=429", "stream": True})
    assert response.status_code == 429
    assert "retry-after" not in response.headers
    error = response.json()["error"]
    assert (error["type"], error["code"]) == ("requests", "rate_limit_exceeded")
    with pytest.raises(openai.RateLimitError):
        await sdk.chat.completions.create(model="error=429", messages=USER)


async def test_unknown_directive_is_400(sdk: AsyncOpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        await sdk.chat.completions.create(model="echo+sparkle=3", messages=USER)
    assert "sparkle=3" in caught.value.message
    assert caught.value.body == {
        "message": "Unknown or invalid fake behaviour directive 'sparkle=3'.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "invalid_fake_behaviour",
    }


async def test_bad_bodies_are_400(http: httpx.AsyncClient) -> None:
    response = await http.post("/chat/completions", content=b"{not json")
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"
    response = await http.post("/chat/completions", json={"model": "fixed"})
    assert response.status_code == 400
    response = await http.get("/nowhere")
    assert response.status_code == 404
    assert response.json()["error"]["code"] == "unknown_url"


async def test_malformed(http: httpx.AsyncClient) -> None:
    response = await post(http, {"model": "malformed"})
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    response = await post(http, {"model": "malformed", "stream": True})
    assert response.status_code == 200
    found = events(response.content)
    assert found[-1] == b"data: [DONE]\n\n"
    orjson.loads(found[0][len(b"data: ") :])
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(found[1][len(b"data: ") :])


async def test_malformed_through_sdk(sdk: AsyncOpenAI) -> None:
    with pytest.raises(json.JSONDecodeError):
        await sdk.chat.completions.create(model="malformed", messages=USER)


async def test_drop_after(fake: FakeOpenAI, http: httpx.AsyncClient, sdk: AsyncOpenAI) -> None:
    parts: list[bytes] = []
    body = {"model": "drop_after=2", "messages": USER, "stream": True}
    async with http.stream("POST", "/chat/completions", json=body) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await read_raw(response, parts)
    received = b"".join(parts)
    found = events(received)
    assert b"[DONE]" not in received
    assert len(found) == 3  # the role chunk and two content chunks
    assert [orjson.loads(e[6:])["choices"][0]["delta"] for e in found[1:]] == [
        {"content": "Hello"},
        {"content": " from"},
    ]
    # The SDK sees the stream break.
    stream = await sdk.chat.completions.create(model="drop_after=1", messages=USER, stream=True)
    pieces: list[str] = []
    with pytest.raises(openai.APIConnectionError):
        await read_stream(stream, pieces)
    assert "".join(pieces) == "Hello"
    # Without streaming the connection closes before any response.
    with pytest.raises(openai.APIConnectionError):
        await sdk.chat.completions.create(model="drop_after=0", messages=USER)
    assert len(fake.requests) == 3


# --- rate: faults on a share of requests ---------------------------------------------------------


async def failed_requests(seed: int, model: str, count: int = 200) -> list[int]:
    """Which of `count` sequential requests to a fake seeded with `seed` got a 503."""
    fake = FakeOpenAI(seed=seed)
    await fake.start()
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, timeout=10) as http:
            statuses = [(await post(http, {"model": model})).status_code for _ in range(count)]
    finally:
        await fake.stop()
    assert set(statuses) <= {200, 503}
    return [k for k, status in enumerate(statuses) if status == 503]


async def test_rate_faults_a_share_reproducibly() -> None:
    failed = await failed_requests(7, "error=503+rate=30")
    assert 40 <= len(failed) <= 80
    assert await failed_requests(7, "error=503+rate=30") == failed
    assert await failed_requests(8, "error=503+rate=30") != failed


async def test_rate_drops_some_streams() -> None:
    fake = FakeOpenAI(seed=3)
    await fake.start()
    dropped = 0
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, timeout=10) as http:
            body = {"model": "drop_after=2+rate=10", "messages": USER, "stream": True}
            for _ in range(100):
                parts: list[bytes] = []
                async with http.stream("POST", "/chat/completions", json=body) as response:
                    try:
                        await read_raw(response, parts)
                    except httpx.RemoteProtocolError:
                        dropped += 1
                        assert len(events(b"".join(parts))) == 3  # role + two content chunks
                    else:
                        assert (
                            "".join(
                                c["choices"][0]["delta"].get("content") or ""
                                for c in chunks_of(b"".join(parts))
                            )
                            == DEFAULT_REPLY
                        )
    finally:
        await fake.stop()
    assert 0 < dropped < 100


async def test_rate_zero_never_faults_and_hundred_always(http: httpx.AsyncClient) -> None:
    for _ in range(20):
        assert (await post(http, {"model": "error=500+rate=0"})).status_code == 200
        assert (await post(http, {"model": "error=500+rate=100"})).status_code == 500
        response = await post(http, {"model": "malformed+rate=0"})
        assert response.json()["choices"][0]["message"]["content"] == DEFAULT_REPLY


def test_rate_spares_only_the_faults() -> None:
    fake = FakeOpenAI(seed=1)
    spec = "reply=Hi+delay=5+chunks=2+error=503+retry_after=1+malformed+drop_after=1+stream_error"
    assert fake.behaviour_for(f"{spec}+rate=100") == parse_behaviour(f"{spec}+rate=100")
    spared = fake.behaviour_for(f"{spec}+rate=0")
    faults = (spared.error, spared.retry_after, spared.malformed, spared.drop_after)
    assert faults == (None, None, False, None)
    assert spared.stream_error is None
    assert (spared.reply, spared.delay, spared.chunks) == ("Hi", 5, 2)


# --- streaming -----------------------------------------------------------------------------------


async def test_stream_without_usage(http: httpx.AsyncClient) -> None:
    response = await post(http, {"model": "fixed", "stream": True})
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    chunks = chunks_of(response.content)
    assert len({c["id"] for c in chunks}) == 1
    for chunk in chunks:
        assert list(chunk) == ["id", "object", "created", "model", "system_fingerprint", "choices"]
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["model"] == "fixed"
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[1:-1] == [
        {"content": p} for p in ["Hello", " from", " the", " fake", " upstream."]
    ]
    assert deltas[-1] == {}
    assert [c["choices"][0]["finish_reason"] for c in chunks] == [None] * 6 + ["stop"]
    assert all(c["choices"][0]["logprobs"] is None for c in chunks)


async def test_stream_with_usage(http: httpx.AsyncClient) -> None:
    body = {"model": "fixed+cached=2", "stream": True, "stream_options": {"include_usage": True}}
    chunks = chunks_of((await post(http, body)).content)
    for chunk in chunks[:-1]:
        assert chunk["usage"] is None
        assert len(chunk["choices"]) == 1
    assert chunks[-1]["choices"] == []
    assert chunks[-1]["usage"] == {
        "prompt_tokens": USER_TOKENS,
        "completion_tokens": 5,
        "total_tokens": USER_TOKENS + 5,
        "prompt_tokens_details": {"cached_tokens": 2},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"


async def test_stream_no_usage_even_when_asked(http: httpx.AsyncClient) -> None:
    body = {"model": "no_usage", "stream": True, "stream_options": {"include_usage": True}}
    chunks = chunks_of((await post(http, body)).content)
    assert all("usage" not in c and c["choices"] for c in chunks)


async def test_stream_n_stop_max_tokens_and_chunks(http: httpx.AsyncClient) -> None:
    body = {"model": "fixed+chunks=3", "stream": True, "n": 2, "max_tokens": 3}
    chunks = chunks_of((await post(http, body)).content)
    text: dict[int, str] = {0: "", 1: ""}
    finish: dict[int, str] = {}
    for chunk in chunks:
        [choice] = chunk["choices"]
        text[choice["index"]] += choice["delta"].get("content") or ""
        if choice["finish_reason"]:
            finish[choice["index"]] = choice["finish_reason"]
    assert text == {0: "Hello from the", 1: "Hello from the"}
    assert finish == {0: "length", 1: "length"}
    assert len(chunks) == 2 + 3 * 2 + 2  # role chunks, three pieces each, finish chunks
    body = {"model": "echo", "stream": True, "stop": "hello"}
    chunks = chunks_of((await post(http, body)).content)
    assert "".join(c["choices"][0]["delta"].get("content", "") for c in chunks) == "Say "


async def test_stream_chunk_delay(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    chunks_of((await post(http, {"model": "fixed+chunk_delay=30", "stream": True})).content)
    assert time.monotonic() - started >= 6 * 0.03


async def test_sdk_stream(sdk: AsyncOpenAI) -> None:
    stream = await sdk.chat.completions.create(
        model="echo",
        messages=USER,
        stream=True,
        stream_options={"include_usage": True},
    )
    pieces: list[str] = []
    usage = None
    async with stream:
        async for chunk in stream:
            if chunk.choices:
                pieces.append(chunk.choices[0].delta.content or "")
            usage = chunk.usage
    assert "".join(pieces) == "Say hello to me"
    assert usage is not None
    assert (usage.prompt_tokens, usage.completion_tokens) == (USER_TOKENS, 4)


async def test_stream_tool(sdk: AsyncOpenAI, http: httpx.AsyncClient) -> None:
    body = {"model": "tool", "stream": True, "tools": [WEATHER_TOOL]}
    chunks = chunks_of((await post(http, body)).content)
    first = chunks[0]["choices"][0]["delta"]
    assert first["role"] == "assistant"
    assert first["content"] is None
    [call] = first["tool_calls"]
    assert call["index"] == 0
    assert call["id"].startswith("call_")
    assert call["function"] == {"name": "get_weather", "arguments": ""}
    assert chunks[1]["choices"][0]["delta"] == {
        "tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]
    }
    assert chunks[-1]["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    stream = await sdk.chat.completions.create(
        model="tool",
        messages=USER,
        tools=[WEATHER_TOOL],
        stream=True,
    )
    arguments = ""
    async with stream:
        async for chunk in stream:
            for delta in chunk.choices[0].delta.tool_calls or []:
                assert delta.function is not None
                arguments += delta.function.arguments or ""
    assert arguments == "{}"


# --- recording, models, auth ---------------------------------------------------------------------


async def test_requests_are_recorded(fake: FakeOpenAI, http: httpx.AsyncClient) -> None:
    await post(http, {"model": "echo", "temperature": 0.5}, headers={"X-Trace": "abc"})
    [seen] = fake.requests
    assert seen["method"] == "POST"
    assert seen["path"] == "/v1/chat/completions"
    assert seen["headers"]["x-trace"] == "abc"
    assert seen["body"] == {"messages": USER, "model": "echo", "temperature": 0.5}
    root = fake.base_url.removesuffix("/v1")
    listed = await http.get(f"{root}/_fake/requests")
    assert listed.json() == [seen]
    assert (await http.delete(f"{root}/_fake/requests")).status_code == 204
    assert fake.requests == []
    assert (await http.get(f"{root}/_fake/requests")).json() == []


async def test_models(sdk: AsyncOpenAI) -> None:
    models = await sdk.models.list()
    assert {m.id for m in models.data} >= {"fixed", "echo"}
    assert all(m.object == "model" for m in models.data)


async def test_auth() -> None:
    server = FakeOpenAI(api_key="sk-right")
    await server.start()
    try:
        async with AsyncOpenAI(base_url=server.base_url, api_key="sk-wrong", max_retries=0) as bad:
            with pytest.raises(openai.AuthenticationError) as caught:
                await bad.chat.completions.create(model="fixed", messages=USER)
            assert caught.value.code == "invalid_api_key"
            assert caught.value.body == {
                "message": "Incorrect API key provided: sk-wrong.",
                "type": "invalid_request_error",
                "param": None,
                "code": "invalid_api_key",
            }
        async with httpx.AsyncClient() as http:
            response = await http.get(f"{server.base_url}/models")
            assert response.status_code == 401
        async with AsyncOpenAI(base_url=server.base_url, api_key="sk-right", max_retries=0) as ok:
            completion = await ok.chat.completions.create(model="fixed", messages=USER)
            assert completion.choices[0].message.content == DEFAULT_REPLY
        assert server.requests[-1]["headers"]["authorization"] == "Bearer sk-right"
    finally:
        await server.stop()


# --- synchronous use and the command line --------------------------------------------------------


def test_running_in_thread() -> None:
    fake = FakeOpenAI()
    with fake.running_in_thread() as running:
        assert running is fake
        assert running.port != 0
        assert running.base_url == f"http://127.0.0.1:{running.port}/v1"
        with OpenAI(base_url=running.base_url, api_key="sk-any", max_retries=0) as client:
            completion = client.chat.completions.create(model="echo", messages=USER)
            assert completion.choices[0].message.content == "Say hello to me"
            stream = client.chat.completions.create(model="fixed", messages=USER, stream=True)
            with stream:
                text = "".join(c.choices[0].delta.content or "" for c in stream)
            assert text == DEFAULT_REPLY
    assert len(fake.requests) == 2
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.base_url}/models")


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")
def test_command_line() -> None:
    command = [sys.executable, "-m", "crossroads.testing.fake_openai", "--port", "0", "--seed", "7"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1")
        response = httpx.post(
            f"{base_url}/chat/completions", json={"model": "echo", "messages": USER}
        )
        assert response.json()["choices"][0]["message"]["content"] == "Say hello to me"
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
