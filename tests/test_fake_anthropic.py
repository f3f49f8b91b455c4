"""The fake Anthropic upstream: wire format, every directive, strict validation, auth and CLI."""

from __future__ import annotations

import copy
import os
import signal
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from typing import Any

import httpx
import orjson
import pytest

from crossroads.testing.fake_anthropic import (
    DEFAULT_THINKING,
    FakeAnthropic,
    redacted_data,
    thinking_signature,
)
from crossroads.testing.fake_base import DEFAULT_REPLY

KEY = "sk-ant-test-0123456789"
HEADERS = {"x-api-key": KEY, "anthropic-version": "2023-06-01"}
USER: list[dict[str, Any]] = [{"role": "user", "content": "Say hello to me"}]
# 4 words + 3 for the message.
USER_TOKENS = 7
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
OTHER = {"name": "other", "input_schema": {"type": "object"}}
THINKING = {"type": "enabled", "budget_tokens": 1024}
REQUIRED = {"model": "fixed", "max_tokens": 100, "messages": USER}


@pytest.fixture
async def fake() -> AsyncIterator[FakeAnthropic]:
    server = FakeAnthropic(api_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http(fake: FakeAnthropic) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=fake.base_url, headers=HEADERS, timeout=10) as client:
        yield client


async def post(http: httpx.AsyncClient, model: str = "fixed", **fields: Any) -> httpx.Response:
    """POST /v1/messages with a valid body; `fields` override or add (None removes)."""
    body = {**REQUIRED, "model": model, **fields}
    return await http.post("/v1/messages", json={k: v for k, v in body.items() if v is not None})


async def message(http: httpx.AsyncClient, model: str = "fixed", **fields: Any) -> Any:
    response = await post(http, model, **fields)
    assert response.status_code == 200, response.text
    return response.json()


def sse(raw: bytes) -> list[dict[str, Any]]:
    """Parse an SSE body, asserting the framing: `event: T` then `data: {..."type": "T"...}`."""
    assert raw.endswith(b"\n\n")
    events = []
    for part in raw.split(b"\n\n")[:-1]:
        event_line, data_line = part.split(b"\n")
        assert event_line.startswith(b"event: ")
        assert data_line.startswith(b"data: ")
        data = orjson.loads(data_line[len(b"data: ") :])
        assert data["type"] == event_line[len(b"event: ") :].decode()
        events.append(data)
    return events


async def stream(http: httpx.AsyncClient, model: str = "fixed", **fields: Any) -> Any:
    response = await post(http, model, stream=True, **fields)
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "text/event-stream"
    return sse(response.content)


def assemble(events: list[dict[str, Any]]) -> dict[str, Any]:
    """Rebuild the Message from its events, as a client library does."""
    assert events[0]["type"] == "message_start"
    assert events[-1] == {"type": "message_stop"}
    result: dict[str, Any] = copy.deepcopy(events[0]["message"])
    partial: dict[int, str] = {}
    for event in events[1:-1]:
        kind = event["type"]
        if kind == "content_block_start":
            assert event["index"] == len(result["content"])
            result["content"].append(dict(event["content_block"]))
        elif kind == "content_block_delta":
            block, delta = result["content"][event["index"]], event["delta"]
            if delta["type"] == "text_delta":
                block["text"] += delta["text"]
            elif delta["type"] == "thinking_delta":
                block["thinking"] += delta["thinking"]
            elif delta["type"] == "signature_delta":
                block["signature"] = delta["signature"]
            else:
                assert delta["type"] == "input_json_delta"
                partial[event["index"]] = partial.get(event["index"], "") + delta["partial_json"]
        elif kind == "content_block_stop":
            if event["index"] in partial:
                result["content"][event["index"]]["input"] = orjson.loads(
                    partial.pop(event["index"])
                )
        elif kind == "message_delta":
            result.update(event["delta"])
            result["usage"] = {**result["usage"], **event["usage"]}
        else:
            assert kind == "ping"
    return result


def without_ids(value: Any) -> Any:
    value = copy.deepcopy(value)
    value.pop("id")
    for block in value["content"]:
        block.pop("id", None)
    return value


def usage(prompt: int, output: int, read: int = 0, write: int = 0) -> dict[str, int]:
    return {
        "input_tokens": prompt - read - write,
        "cache_creation_input_tokens": write,
        "cache_read_input_tokens": read,
        "output_tokens": output,
    }


# --- non-streaming -------------------------------------------------------------------------------


async def test_text_reply_exact_shape(http: httpx.AsyncClient) -> None:
    response = await post(http, system="Be brief.", metadata={"user_id": "u-1"})
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["request-id"].startswith("req_")
    body = response.json()
    assert list(body) == [
        "id",
        "type",
        "role",
        "model",
        "content",
        "stop_reason",
        "stop_sequence",
        "usage",
    ]
    assert body["id"].startswith("msg_")
    assert without_ids(body) == {
        "type": "message",
        "role": "assistant",
        "model": "fixed",
        "content": [{"type": "text", "text": DEFAULT_REPLY}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": usage(2 + USER_TOKENS, 5),
    }


async def test_echo_counts_every_kind_of_block(http: httpx.AsyncClient) -> None:
    image = {"type": "base64", "media_type": "image/png", "data": "AAAA"}
    messages: list[dict[str, Any]] = [
        {"role": "user", "content": "first question"},
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "let me look"},
                {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {"a": "b c"}},
            ],
        },
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_1"}]},
        # Consecutive user messages are one turn, as the real API merges them.
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "one two"},
                {"type": "image", "source": image},
                {"type": "text", "text": "three"},
            ],
        },
    ]
    system = [{"type": "text", "text": "Be brief."}]
    body = await message(http, "echo", messages=messages, system=system, tools=[WEATHER])
    assert body["content"] == [{"type": "text", "text": "one two three"}]
    # system 2; messages 2 + (3 + 2) + 0 + 3; 3 per message.
    assert body["usage"] == usage(2 + 2 + 5 + 0 + 3 + 4 * 3, 3)
    result = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny and warm"}
    messages[2]["content"] = [result]
    body = await message(http, "echo", messages=messages, system=system, tools=[WEATHER])
    assert body["usage"]["input_tokens"] == 24 + 3


async def test_stop_sequence(http: httpx.AsyncClient) -> None:
    model = "reply=alpha_beta_gamma_delta"
    body = await message(http, model, stop_sequences=["delta", " gamma"])
    assert body["content"] == [{"type": "text", "text": "alpha beta"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("stop_sequence", " gamma")
    assert body["usage"]["output_tokens"] == 2
    events = await stream(http, model, stop_sequences=["nowhere", "gamma"])
    assert events[-2]["delta"] == {"stop_reason": "stop_sequence", "stop_sequence": "gamma"}
    assert assemble(events)["content"] == [{"type": "text", "text": "alpha beta "}]


async def test_max_tokens(http: httpx.AsyncClient) -> None:
    body = await message(http, max_tokens=2)
    assert body["content"] == [{"type": "text", "text": "Hello from"}]
    assert (body["stop_reason"], body["stop_sequence"]) == ("max_tokens", None)
    assert body["usage"]["output_tokens"] == 2
    body = await message(http, max_tokens=5)
    assert (body["content"][0]["text"], body["stop_reason"]) == (DEFAULT_REPLY, "end_turn")
    # A stop sequence beyond the limit does not matter.
    body = await message(http, max_tokens=1, stop_sequences=["fake"])
    assert (body["content"][0]["text"], body["stop_reason"]) == ("Hello", "max_tokens")
    # max_tokens 0 only warms the prompt cache.
    body = await message(http, max_tokens=0)
    assert (body["content"], body["stop_reason"]) == ([], "max_tokens")
    assert body["usage"] == usage(USER_TOKENS, 0)


async def test_tool(http: httpx.AsyncClient) -> None:
    body = await message(http, 'tool+args={"city":"New_York"}', tools=[WEATHER, OTHER])
    [call] = body["content"]
    assert call["id"].startswith("toolu_")
    assert call == {
        "type": "tool_use",
        "id": call["id"],
        "name": "get_weather",
        "input": {"city": "New York"},
    }
    assert (body["stop_reason"], body["stop_sequence"]) == ("tool_use", None)
    assert body["usage"]["output_tokens"] == 2  # {"city":"New York"}
    # A forced tool choice names the tool; "none" gets text instead.
    choice = {"type": "tool", "name": "other"}
    body = await message(http, "tool", tools=[WEATHER, OTHER], tool_choice=choice)
    assert [(b["name"], b["input"]) for b in body["content"]] == [("other", {})]
    assert body["usage"]["output_tokens"] == 1
    body = await message(http, "tool", tools=[WEATHER], tool_choice={"type": "none"})
    assert body["content"] == [{"type": "text", "text": DEFAULT_REPLY}]
    assert body["stop_reason"] == "end_turn"


async def test_tool_needs_tools_and_an_object(http: httpx.AsyncClient) -> None:
    for model, fields in [("tool", {}), ("tool+args=[1]", {"tools": [WEATHER]})]:
        response = await post(http, model, **fields)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"


async def test_parallel_tools(http: httpx.AsyncClient) -> None:
    body = await message(http, 'tools=2+args={"city":"Oslo"}', tools=[WEATHER])
    assert [b["input"] for b in body["content"]] == [{"city": "Oslo"}] * 2
    assert len({b["id"] for b in body["content"]}) == 2
    assert body["usage"]["output_tokens"] == 2
    choice = {"type": "auto", "disable_parallel_tool_use": True}
    body = await message(http, "tools=3", tools=[WEATHER], tool_choice=choice)
    assert len(body["content"]) == 1


async def test_thinking(http: httpx.AsyncClient) -> None:
    body = await message(http, max_tokens=2048, thinking=THINKING)
    signature = thinking_signature(DEFAULT_THINKING)
    assert body["content"] == [
        {"type": "thinking", "thinking": DEFAULT_THINKING, "signature": signature},
        {"type": "text", "text": DEFAULT_REPLY},
    ]
    assert body["usage"] == usage(USER_TOKENS, 3 + 5)
    body = await message(http, "think=First_this+reply=Done")
    assert [b.get("thinking", b.get("text")) for b in body["content"]] == ["First this", "Done"]
    # Adaptive thinking needs no budget.
    body = await message(http, thinking={"type": "adaptive"})
    assert body["content"][0]["type"] == "thinking"
    # The thinking block goes back unchanged in the next turn; a changed one is refused.
    history = [
        *USER,
        {"role": "assistant", "content": body["content"]},
        {"role": "user", "content": "Go on"},
    ]
    body = await message(http, max_tokens=2048, messages=history, thinking=THINKING)
    assert body["usage"]["input_tokens"] == USER_TOKENS + (3 + 5) + (3 + 2)  # thinking: 0
    history[1]["content"][0] = {**history[1]["content"][0], "thinking": "Let me think"}
    response = await post(http, max_tokens=2048, messages=history, thinking=THINKING)
    assert response.status_code == 400
    assert "Invalid `signature` in `thinking` block" in response.json()["error"]["message"]


async def test_cached_and_cache_write(http: httpx.AsyncClient) -> None:
    body = await message(http, "fixed+cached=3+cache_write=2")
    assert body["usage"] == usage(USER_TOKENS, 5, read=3, write=2)
    assert body["usage"]["input_tokens"] == 2
    # More than the prompt is capped, so the three input fields still sum to the prompt.
    body = await message(http, "fixed+cached=5+cache_write=5")
    assert body["usage"] == usage(USER_TOKENS, 5, read=5, write=2)
    events = await stream(http, "fixed+cached=3+cache_write=2")
    assert events[0]["message"]["usage"] == usage(USER_TOKENS, 1, read=3, write=2)
    assert events[-2]["usage"] == {"output_tokens": 5}


async def test_no_usage_reports_zeros(http: httpx.AsyncClient) -> None:
    assert (await message(http, "no_usage"))["usage"] == usage(0, 0)
    events = await stream(http, "no_usage")
    assert events[0]["message"]["usage"] == usage(0, 0)
    assert events[-2]["usage"] == {"output_tokens": 0}


async def test_delay(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    await message(http, "fixed+delay=150")
    assert time.monotonic() - started >= 0.15


# --- streaming -----------------------------------------------------------------------------------


async def test_stream_exact_sequence(http: httpx.AsyncClient) -> None:
    events = await stream(http)
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 5,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert start["id"].startswith("msg_")
    assert without_ids(start) == {
        "type": "message",
        "role": "assistant",
        "model": "fixed",
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": usage(USER_TOKENS, 1),
    }
    assert events[1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    assert [e["delta"] for e in events[3:8]] == [
        {"type": "text_delta", "text": piece}
        for piece in ["Hello", " from", " the", " fake", " upstream."]
    ]
    assert all(e["index"] == 0 for e in events[3:9])
    assert events[-2] == {
        "type": "message_delta",
        "delta": {"stop_reason": "end_turn", "stop_sequence": None},
        "usage": {"output_tokens": 5},
    }
    assert without_ids(assemble(events)) == without_ids(await message(http))


async def test_stream_chunks(http: httpx.AsyncClient) -> None:
    events = await stream(http, "fixed+chunks=2")
    assert [e["delta"]["text"] for e in events if e["type"] == "content_block_delta"] == [
        "Hello from the",
        " fake upstream.",
    ]


async def test_stream_tools_reassemble(http: httpx.AsyncClient) -> None:
    model = 'tools=2+args={"city":"New_York","days":3}'
    events = await stream(http, model, tools=[WEATHER])
    result = assemble(events)
    assert [b["input"] for b in result["content"]] == [{"city": "New York", "days": 3}] * 2
    for index, block in enumerate(result["content"]):
        assert block["id"].startswith("toolu_")
        [start] = [e for e in events if e["type"] == "content_block_start" and e["index"] == index]
        assert start["content_block"] == {**block, "input": {}}
        deltas = [e["delta"] for e in events if e.get("index") == index and "delta" in e]
        assert len(deltas) >= 2
        assert {d["type"] for d in deltas} == {"input_json_delta"}
    assert result["content"][0]["id"] != result["content"][1]["id"]
    assert result["stop_reason"] == "tool_use"
    assert without_ids(result) == without_ids(await message(http, model, tools=[WEATHER]))


async def test_stream_thinking(http: httpx.AsyncClient) -> None:
    events = await stream(http, max_tokens=2048, thinking=THINKING)
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    deltas = [e["delta"] for e in events if e.get("index") == 0 and "delta" in e]
    assert [d["type"] for d in deltas] == ["thinking_delta"] * 3 + ["signature_delta"]
    assert events[2] == {"type": "ping"}
    result = assemble(events)
    assert [b["type"] for b in result["content"]] == ["thinking", "text"]
    expected = await message(http, max_tokens=2048, thinking=THINKING)
    assert without_ids(result) == without_ids(expected)


async def test_redacted_thinking_arrives_whole(http: httpx.AsyncClient) -> None:
    body = await message(http, "redacted+think=Secret", max_tokens=2048, thinking=THINKING)
    assert body["content"][0] == {"type": "redacted_thinking", "data": redacted_data("Secret")}
    events = await stream(http, "redacted+think=Secret", max_tokens=2048, thinking=THINKING)
    assert events[1]["content_block"] == body["content"][0]
    assert not [e for e in events if e.get("index") == 0 and "delta" in e]
    assert without_ids(assemble(events)) == without_ids(body)


async def test_stream_max_tokens_zero(http: httpx.AsyncClient) -> None:
    events = await stream(http, max_tokens=0)
    assert [e["type"] for e in events] == ["message_start", "ping", "message_delta", "message_stop"]
    assert events[2]["delta"]["stop_reason"] == "max_tokens"


async def test_stream_error_event(http: httpx.AsyncClient) -> None:
    events = await stream(http, "stream_error")
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        "content_block_delta",
        "error",
    ]
    assert events[-1] == {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }


async def test_stream_error_before_any_content(http: httpx.AsyncClient) -> None:
    events = await stream(http, "stream_error=0")
    kinds = [e["type"] for e in events]
    assert kinds == ["message_start", "content_block_start", "ping", "error"]
    assert events[-1]["error"]["type"] == "overloaded_error"


async def test_rate_sends_stream_errors_to_a_share(http: httpx.AsyncClient) -> None:
    fake = FakeAnthropic(api_key=KEY, seed=5)
    await fake.start()
    try:
        async with httpx.AsyncClient(base_url=fake.base_url, headers=HEADERS) as client:
            ends = [(await stream(client, "stream_error+rate=50"))[-1]["type"] for _ in range(60)]
    finally:
        await fake.stop()
    assert set(ends) == {"error", "message_stop"}
    assert 15 <= ends.count("error") <= 45


async def read_raw(response: httpx.Response, into: list[bytes]) -> None:
    async for data in response.aiter_raw():
        into.append(data)


async def test_drop_after(fake: FakeAnthropic, http: httpx.AsyncClient) -> None:
    for n, deltas in [(2, ["Hello", " from"]), (0, [])]:
        parts: list[bytes] = []
        body = {**REQUIRED, "model": f"drop_after={n}", "stream": True}
        async with http.stream("POST", "/v1/messages", json=body) as response:
            assert response.status_code == 200
            with pytest.raises(httpx.RemoteProtocolError):
                await read_raw(response, parts)
        events = sse(b"".join(parts))
        assert [e["type"] for e in events[:3]] == ["message_start", "content_block_start", "ping"]
        assert [e["delta"]["text"] for e in events[3:]] == deltas
    with pytest.raises(httpx.RemoteProtocolError):
        await post(http, "drop_after=0")
    assert len(fake.requests) == 3


async def test_malformed(http: httpx.AsyncClient) -> None:
    response = await post(http, "malformed")
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    response = await post(http, "malformed", stream=True)
    assert response.status_code == 200
    first, second = response.content.split(b"\n\n")[:2]
    assert first.startswith(b"event: message_start\ndata: {")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(second.split(b"\n")[1][len(b"data: ") :])


# --- errors, auth, validation --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "kind"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (418, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (503, "api_error"),
        (529, "overloaded_error"),
    ],
)
async def test_error_statuses(http: httpx.AsyncClient, status: int, kind: str) -> None:
    for streaming in (None, True):
        response = await post(http, f"error={status}+retry_after=7", stream=streaming)
        assert response.status_code == status
        assert response.headers["retry-after"] == "7"
        body = response.json()
        assert body["request_id"].startswith("req_")
        assert body == {
            "type": "error",
            "error": {"type": kind, "message": f"fake upstream error {status}"},
            "request_id": body["request_id"],
        }
    assert "retry-after" not in (await post(http, f"error={status}")).headers


async def test_behaviour_header_overrides_model(http: httpx.AsyncClient) -> None:
    body = {**REQUIRED, "model": "claude-sonnet-4-5"}
    response = await http.post("/v1/messages", json=body, headers={"x-fake-behaviour": "echo"})
    assert response.json()["model"] == "claude-sonnet-4-5"
    assert response.json()["content"] == [{"type": "text", "text": "Say hello to me"}]
    response = await post(http, "echo+sparkle=3")
    assert response.status_code == 400
    assert "'sparkle=3'" in response.json()["error"]["message"]


async def test_auth_and_version(fake: FakeAnthropic) -> None:
    async with httpx.AsyncClient(base_url=fake.base_url) as client:
        body = REQUIRED
        for headers, status, kind, words in [
            ({**HEADERS, "x-api-key": "sk-wrong"}, 401, "authentication_error", "invalid"),
            ({"anthropic-version": "2023-06-01"}, 401, "authentication_error", "required"),
            ({"x-api-key": KEY}, 400, "invalid_request_error", "anthropic-version"),
            ({**HEADERS, "anthropic-version": "2099-01-01"}, 400, "invalid_request_error", "2099"),
        ]:
            for response in [
                await client.post("/v1/messages", json=body, headers=headers),
                await client.get("/v1/models", headers=headers),
            ]:
                assert response.status_code == status
                error = response.json()["error"]
                assert error["type"] == kind
                assert words in error["message"]
        response = await client.post("/v1/messages", json=body, headers=HEADERS)
        assert response.status_code == 200
    # Without an api_key the fake takes any key, or none.
    open_fake = FakeAnthropic()
    await open_fake.start()
    try:
        async with httpx.AsyncClient(base_url=open_fake.base_url) as client:
            version = {"anthropic-version": "2023-06-01"}
            response = await client.post("/v1/messages", json=body, headers=version)
            assert response.status_code == 200
    finally:
        await open_fake.stop()


TOOL_USE = {"type": "tool_use", "id": "toolu_1", "name": "get_weather", "input": {}}
TOOL_RESULT = {"type": "tool_result", "tool_use_id": "toolu_1", "content": "sunny"}
ASKED = [*USER, {"role": "assistant", "content": [TOOL_USE]}]
ANSWER = {"role": "assistant", "content": "Hello."}
ANSWER_TEXT = {"type": "text", "text": "Hello."}
BLANK = {"type": "text", "text": " \n"}
WITH_THINKING = {"thinking": THINKING, "max_tokens": 2048}
SIGNED = {"type": "thinking", "thinking": "Hmm.", "signature": thinking_signature("Hmm.")}
REDACTED = {"type": "redacted_thinking", "data": redacted_data("Hmm.")}
LOOP = [*ASKED, {"role": "user", "content": [TOOL_RESULT]}]
PDF = {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0xLjQ="}


def _user_block(block: dict[str, Any]) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": [block, {"type": "text", "text": "?"}]}]}


@pytest.mark.parametrize(
    ("fields", "words"),
    [
        ({"max_tokens": None}, "max_tokens: Field required"),
        ({"model": None}, "model: Field required"),
        ({"max_tokens": "10"}, "max_tokens: Input should be an integer"),
        ({"max_tokens": -1}, "max_tokens: Input should be an integer"),
        ({"n": 2}, "n: Extra inputs are not permitted"),
        ({"presence_penalty": 0.5}, "presence_penalty: Extra inputs are not permitted"),
        ({"response_format": {"type": "json_object"}}, "response_format: Extra inputs"),
        ({"stop": ["x"]}, "stop: Extra inputs are not permitted"),
        ({"temperature": 1.5}, "temperature: Input should be a number from 0 to 1"),
        ({"top_p": True}, "top_p: Input should be a number from 0 to 1"),
        ({"stream": "yes"}, "stream: Input should be a valid boolean"),
        ({"stop_sequences": "x"}, "stop_sequences: Input should be a list of strings"),
        ({"metadata": {"user": "u"}}, "metadata: Input should be"),
        ({"system": [{"type": "text", "text": " "}]}, "system: Input should be"),
        ({"messages": []}, "messages: Input should be a non-empty list"),
        ({"messages": [{"role": "system", "content": "Be brief."}, *USER]}, 'role "system"'),
        ({"messages": [{"role": "tool", "content": "x"}]}, "messages.0.role: Input should be"),
        ({"messages": [{"role": "user", "content": ""}]}, "must have non-empty content"),
        ({"messages": [{"role": "user", "content": [BLANK]}]}, "non-whitespace text"),
        ({"messages": [{"role": "user", "content": "x", "name": "a"}]}, "messages.0: Extra inputs"),
        ({"messages": [{"role": "user", "content": [TOOL_USE]}]}, "cannot hold a 'tool_use'"),
        (
            {"messages": [*USER, ANSWER, {"role": "user", "content": [TOOL_RESULT]}]},
            "messages.2.content: unexpected `tool_use_id` found in `tool_result` blocks: toolu_1",
        ),
        (
            {"messages": [*ASKED, {"role": "user", "content": "What now?"}], "tools": [WEATHER]},
            "messages.1: `tool_use` ids were found without `tool_result` blocks",
        ),
        (
            {
                "messages": [
                    *ASKED,
                    {"role": "user", "content": [{"type": "text", "text": "a"}, TOOL_RESULT]},
                ]
            },
            "`tool_result` blocks must come first",
        ),
        ({"thinking": {"type": "enabled", "budget_tokens": 512}}, "at least 1024"),
        ({"thinking": THINKING}, "`max_tokens` must be greater than `thinking.budget_tokens`"),
        ({**WITH_THINKING, "temperature": 0.5}, "`temperature` may"),
        ({**WITH_THINKING, "top_k": 5}, "`top_k` must be unset"),
        (
            {**WITH_THINKING, "tools": [WEATHER], "tool_choice": {"type": "any"}},
            "tool_choice forces tool use",
        ),
        ({"thinking": {"type": "on"}}, "thinking: Input should be"),
        (
            {**WITH_THINKING, "messages": LOOP, "tools": [WEATHER]},
            "messages.1.content.0.type: Expected `thinking` or `redacted_thinking`, but found "
            "`tool_use`. When `thinking` is enabled, a final `assistant` message must start",
        ),
        (
            {
                **WITH_THINKING,
                "messages": [*LOOP, {"role": "assistant", "content": [TOOL_USE | {"id": "t2"}]}],
                "tools": [WEATHER],
            },
            "messages.1.content.0.type: Expected `thinking`",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [SIGNED, ANSWER_TEXT]}]},
            "messages.1.content.0: When thinking is disabled, an `assistant` message in the "
            "final position cannot contain `thinking`",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [SIGNED]}, *USER]},
            "messages.1: The final block in an assistant message cannot be `thinking`.",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [REDACTED | {"data": "eA=="}]}]},
            "messages.1.content.0.data: Invalid `data` in `redacted_thinking` block",
        ),
        (
            {"messages": [*USER, {"role": "assistant", "content": [TOOL_USE | {"id": "f.g:0"}]}]},
            "messages.1.content.0.id: String should match pattern '^[a-zA-Z0-9_-]+$'",
        ),
        (
            {
                "messages": [
                    *ASKED,
                    {"role": "user", "content": [TOOL_RESULT | {"tool_use_id": "f.g:0"}]},
                ]
            },
            "messages.2.content.0.tool_use_id: String should match pattern",
        ),
        (
            _user_block({"type": "document", "source": PDF | {"media_type": "text/csv"}}),
            "messages.0.content.0.source.base64.media_type: Input should be 'application/pdf'",
        ),
        (
            _user_block({"type": "document", "source": PDF | {"data": "aGVsbG8="}}),
            "messages.0.content.0.source: The PDF specified was not valid.",
        ),
        (
            _user_block({"type": "document", "source": PDF | {"data": "%%%"}}),
            "messages.0.content.0.source.base64.data: Invalid base64 data",
        ),
        (
            _user_block({"type": "image", "source": PDF}),
            "messages.0.content.0.source.base64.media_type: Input should be 'image/jpeg'",
        ),
        (
            _user_block({"type": "image", "source": {"type": "file", "file_id": "f"}}),
            "messages.0.content.0.source: Input tag 'file' does not match any source type",
        ),
        ({"tool_choice": {"type": "any"}}, "tool_choice may only be specified while providing"),
        ({"tools": [WEATHER], "tool_choice": {"type": "tool", "name": "x"}}, "no tool named 'x'"),
        ({"tools": [WEATHER], "tool_choice": {"type": "auto", "name": "x"}}, "tool_choice: Input"),
        ({"tools": [WEATHER], "tool_choice": "auto"}, "tool_choice: Input should be"),
        ({"tools": [WEATHER, WEATHER]}, "Tool names must be unique"),
        ({"tools": [{"name": "f", "parameters": {"type": "object"}}]}, "tools.0.input_schema"),
        ({"tools": [{"name": "bad name", "input_schema": {"type": "object"}}]}, "tools.0.name"),
        (
            {"tools": [{"type": "function", "function": {"name": "f"}}]},
            "tools.0.type: Input tag 'function' does not match any tool type",
        ),
    ],
)
async def test_validation(http: httpx.AsyncClient, fields: dict[str, Any], words: str) -> None:
    response = await post(http, **fields)
    assert response.status_code == 400
    body = response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == "invalid_request_error"
    assert words in body["error"]["message"]


async def test_validation_accepts_what_the_real_api_accepts(http: httpx.AsyncClient) -> None:
    answered = [*ASKED, {"role": "user", "content": [TOOL_RESULT, {"type": "text", "text": "ok"}]}]
    accepted: list[dict[str, Any]] = [
        {"messages": answered, "tools": [WEATHER]},
        {"messages": [*USER, *USER]},  # consecutive turns are merged
        {"messages": [*USER, {"role": "assistant", "content": "The answer is"}]},  # prefill
        {"messages": [*USER, {"role": "assistant", "content": ""}]},
        {"tools": [WEATHER, {"type": "web_search_20250305", "name": "web_search"}]},
        {"system": [{"type": "text", "text": "Be brief.", "cache_control": {"type": "ephemeral"}}]},
        {"temperature": 0, "top_p": 0.9, "top_k": 5, "stop_sequences": [], "stream": False},
        {"metadata": {"user_id": None}, "service_tier": "auto", "thinking": {"type": "disabled"}},
        {"tools": [WEATHER], "tool_choice": {"type": "any", "disable_parallel_tool_use": True}},
        {"container": None, "inference_geo": None, "cache_control": {"type": "ephemeral"}},
        # An open tool loop that begins with its thinking, signed or redacted.
        *(
            {
                **WITH_THINKING,
                "tools": [WEATHER],
                "messages": [
                    *USER,
                    {"role": "assistant", "content": [thought, TOOL_USE]},
                    {"role": "user", "content": [TOOL_RESULT]},
                ],
            }
            for thought in (SIGNED, REDACTED)
        ),
        # With thinking on, a closed tool loop needs no thinking; with it off, earlier
        # thinking is ignored.
        {**WITH_THINKING, "messages": [*ASKED, *answered[2:], ANSWER, *USER]},
        {
            "messages": [*USER, {"role": "assistant", "content": [SIGNED, TOOL_USE]}, *LOOP[2:]],
            "tools": [WEATHER],
        },
        _user_block({"type": "document", "source": PDF, "title": "a.pdf"}),
        _user_block(
            {
                "type": "document",
                "source": {"type": "text", "media_type": "text/plain", "data": "x"},
            }
        ),
        _user_block({"type": "image", "source": {"type": "url", "url": "https://e.com/a.png"}}),
    ]
    for fields in accepted:
        response = await post(http, **fields)
        assert response.status_code == 200, (fields, response.text)


async def test_bad_bodies_and_paths(http: httpx.AsyncClient) -> None:
    for content in (b"{not json", b"[]", b""):
        response = await http.post("/v1/messages", content=content)
        assert response.status_code == 400
        assert response.json()["error"]["type"] == "invalid_request_error"
    for method, path in [("GET", "/v1/messages"), ("POST", "/v1/chat/completions")]:
        response = await http.request(method, path)
        assert response.status_code == 404
        assert response.json()["error"]["type"] == "not_found_error"


# --- models, recording, synchronous use, command line --------------------------------------------


async def test_models(http: httpx.AsyncClient) -> None:
    body = (await http.get("/v1/models")).json()
    assert [m["id"] for m in body["data"]] == ["fixed", "echo", "tool"]
    assert all(m["type"] == "model" for m in body["data"])
    assert (body["first_id"], body["last_id"], body["has_more"]) == ("fixed", "tool", False)


async def test_requests_are_recorded(fake: FakeAnthropic, http: httpx.AsyncClient) -> None:
    await post(http, "echo", temperature=0.5)
    [seen] = fake.requests
    assert (seen["method"], seen["path"]) == ("POST", "/v1/messages")
    assert seen["headers"]["x-api-key"] == KEY
    assert seen["headers"]["anthropic-version"] == "2023-06-01"
    assert seen["body"] == {**REQUIRED, "model": "echo", "temperature": 0.5}
    assert (await http.get("/_fake/requests")).json() == [seen]
    assert (await http.delete("/_fake/requests")).status_code == 204
    assert fake.requests == []


def test_running_in_thread() -> None:
    fake = FakeAnthropic()
    with fake.running_in_thread() as running:
        assert running.base_url == f"http://127.0.0.1:{running.port}"
        body = {**REQUIRED, "model": "echo"}
        response = httpx.post(f"{running.base_url}/v1/messages", json=body, headers=HEADERS)
        assert response.json()["content"][0]["text"] == "Say hello to me"
    assert len(fake.requests) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")
def test_command_line() -> None:
    command = [sys.executable, "-m", "crossroads.testing.fake_anthropic", "--port", "0"]
    command += ["--api-key", KEY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        body = {**REQUIRED, "model": "echo"}
        response = httpx.post(f"{base_url}/v1/messages", json=body, headers=HEADERS)
        assert response.json()["content"][0]["text"] == "Say hello to me"
        response = httpx.post(f"{base_url}/v1/messages", json=body)
        assert response.status_code == 401
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
