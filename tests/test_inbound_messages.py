"""`POST /v1/messages` with Anthropic's own SDK as the client, served by models on an
anthropic-dialect and an openai-dialect fake upstream.

Shapes are checked against the SDK's own types with validation (the SDK itself builds its
objects without validating), and stream event sequences are read off the wire, not
through the SDK's accumulator, which would forgive a missing or misplaced event.
"""

from __future__ import annotations

import base64
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import orjson
import pytest
from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from crossroads.testing.fake_anthropic import thinking_signature
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, flush_log
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]

EVENT = TypeAdapter(RawMessageStreamEvent)
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake").decode()


@pytest.fixture
def claude(inbound_gateway: ServedApp) -> Iterator[anthropic.Anthropic]:
    with anthropic.Anthropic(
        base_url=inbound_gateway.url, api_key=API_KEY, max_retries=0
    ) as client:
        yield client


def raw_message(client: anthropic.Anthropic, **body: Any) -> tuple[Message, httpx.Response]:
    """The answer validated strictly against the SDK's `Message`, and the HTTP response."""
    raw = client.messages.with_raw_response.create(**body)
    response = raw.http_response
    return Message.model_validate(response.json()), response


def raw_events(gateway: ServedApp, body: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """(event name, data) of a streamed answer, off the wire; each data validated."""
    events = []
    headers = {"x-api-key": API_KEY, "anthropic-version": "2023-06-01"}
    with httpx.stream(
        "POST", f"{gateway.url}/v1/messages", json={**body, "stream": True}, headers=headers
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                assert data["type"] == name
                if name not in ("error", "ping"):  # the SDK's union has neither
                    EVENT.validate_python(data)
                events.append((name, data))
    return events


def sent(fakes: dict[str, Any], dialect: str) -> dict[str, Any]:
    body = fakes[dialect].requests[-1]["body"]
    assert isinstance(body, dict)
    return body


USER = [{"role": "user", "content": "alpha beta gamma"}]


@pytest.mark.parametrize("model", ["claude-echo", "gpt-echo", "gemini-echo"])
def test_message_from_any_dialect(claude: anthropic.Anthropic, model: str) -> None:
    message, response = raw_message(claude, model=model, max_tokens=100, messages=USER)
    assert message.content[0].type == "text"
    assert message.content[0].text == "alpha beta gamma"
    assert message.model == model
    assert message.role == "assistant"
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0
    assert message.usage.output_tokens == 3
    assert message.id == "msg_" + response.headers["x-crossroads-log-id"]
    assert response.headers["request-id"] == response.headers["x-crossroads-log-id"]


def test_parameters_reach_the_openai_dialect(
    claude: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    claude.messages.create(
        model="gpt-echo",
        max_tokens=50,
        system=[{"type": "text", "text": "Be brief."}, {"type": "text", "text": "Be kind."}],
        stop_sequences=["STOP"],
        temperature=0.5,
        top_p=0.9,
        metadata={"user_id": "user-7"},
        messages=USER,
    )
    body = sent(fakes, "openai")
    assert body["messages"][0] == {"role": "system", "content": "Be brief.\n\nBe kind."}
    assert body["messages"][1] == {"role": "user", "content": "alpha beta gamma"}
    assert body["max_tokens"] == 50
    assert body["stop"] == ["STOP"]
    assert body["temperature"] == 0.5
    assert body["top_p"] == 0.9
    assert body["user"] == "user-7"


def test_parameters_reach_the_anthropic_dialect_unchanged(
    claude: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    claude.messages.create(
        model="claude-echo",
        max_tokens=50,
        system="Be brief.",
        stop_sequences=["STOP"],
        top_k=5,
        messages=USER,
    )
    body = sent(fakes, "anthropic")
    assert body["system"] == "Be brief."
    assert body["stop_sequences"] == ["STOP"]
    assert body["max_tokens"] == 50
    assert body["top_k"] == 5
    assert body["messages"] == [{"role": "user", "content": "alpha beta gamma"}]


def test_stop_and_length(claude: anthropic.Anthropic) -> None:
    cut = claude.messages.create(
        model="gpt-echo",
        max_tokens=2,
        messages=[{"role": "user", "content": "one two three four"}],
    )
    assert cut.stop_reason == "max_tokens"
    assert cut.content[0].type == "text"
    assert cut.content[0].text == "one two"


def test_stream_event_sequence(inbound_gateway: ServedApp) -> None:
    body = {"model": "gpt-chunked", "max_tokens": 100, "messages": USER}
    events = raw_events(inbound_gateway, body)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert set(names[3:-3]) == {"content_block_delta"}
    start = events[0][1]["message"]
    assert start["content"] == [] and start["stop_reason"] is None
    assert start["usage"]["input_tokens"] > 0  # an estimate until message_delta
    assert events[1][1] == {
        "type": "content_block_start",
        "index": 0,
        "content_block": {"type": "text", "text": ""},
    }
    text = "".join(data["delta"]["text"] for name, data in events if name == "content_block_delta")
    assert text == "alpha beta gamma"
    delta = events[-2][1]
    assert delta["delta"]["stop_reason"] == "end_turn"
    assert delta["usage"]["output_tokens"] == 3
    assert delta["usage"]["input_tokens"] > 0


@pytest.mark.parametrize("model", ["claude-chunked", "gpt-chunked"])
def test_stream_through_the_sdk(claude: anthropic.Anthropic, model: str) -> None:
    with claude.messages.stream(model=model, max_tokens=100, messages=USER) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
    assert "".join(texts) == "alpha beta gamma"
    assert final.content[0].type == "text"
    assert final.content[0].text == "alpha beta gamma"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3


def test_thinking_blocks_are_returned_signed_and_go_back(
    claude: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message, _ = raw_message(
        claude, model="claude-think", max_tokens=2000, thinking=thinking, messages=USER
    )
    assert [block.type for block in message.content] == ["thinking", "text"]
    block = message.content[0]
    assert block.type == "thinking"
    assert block.thinking == "Two plus two"
    assert block.signature == thinking_signature("Two plus two")
    assert sent(fakes, "anthropic")["thinking"] == thinking
    # The whole answer, thinking included, goes back on the next turn.
    again = claude.messages.create(
        model="claude-echo",
        max_tokens=2000,
        thinking=thinking,
        messages=[
            *USER,
            {"role": "assistant", "content": [b.model_dump() for b in message.content]},
            {"role": "user", "content": "delta epsilon"},
        ],
    )
    assert again.content[-1].type == "text"
    turn = sent(fakes, "anthropic")["messages"][1]
    assert turn["content"][0] == {
        "type": "thinking",
        "thinking": "Two plus two",
        "signature": thinking_signature("Two plus two"),
    }


def test_thinking_streams_with_its_signature(inbound_gateway: ServedApp) -> None:
    body = {
        "model": "claude-think",
        "max_tokens": 2000,
        "thinking": {"type": "enabled", "budget_tokens": 1024},
        "messages": USER,
    }
    events = raw_events(inbound_gateway, body)
    starts = [data["content_block"]["type"] for n, data in events if n == "content_block_start"]
    assert starts == ["thinking", "text"]
    deltas = [data["delta"] for n, data in events if n == "content_block_delta"]
    assert "".join(d.get("thinking", "") for d in deltas) == "Two plus two"
    signatures = [d["signature"] for d in deltas if d["type"] == "signature_delta"]
    assert signatures == [thinking_signature("Two plus two")]
    # Blocks never interleave: each stops before the next starts.
    order = [(n, data.get("index")) for n, data in events if n.startswith("content_block_")]
    opened = None
    for name, index in order:
        if name == "content_block_start":
            assert opened is None
            opened = index
        elif name == "content_block_stop":
            assert index == opened
            opened = None
        else:
            assert index == opened


@pytest.mark.parametrize("model", ["claude-tool", "gpt-tool", "gemini-tool"])
def test_tool_use(claude: anthropic.Anthropic, model: str) -> None:
    message, _ = raw_message(claude, model=model, max_tokens=100, tools=[WEATHER], messages=USER)
    assert message.stop_reason == "tool_use"
    call = message.content[-1]
    assert call.type == "tool_use"
    assert call.name == "get_weather"
    assert call.input == {"city": "Paris", "days": 2}


def test_tool_choice_reaches_upstreams(claude: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    claude.messages.create(
        model="gpt-tool",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
        messages=USER,
    )
    body = sent(fakes, "openai")
    assert body["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert body["parallel_tool_calls"] is False
    assert body["tools"][0]["function"]["parameters"] == WEATHER["input_schema"]
    claude.messages.create(
        model="claude-tool",
        max_tokens=100,
        tools=[WEATHER],
        tool_choice={"type": "any"},
        messages=USER,
    )
    assert sent(fakes, "anthropic")["tool_choice"]["type"] == "any"


def test_streamed_parallel_tool_calls(inbound_gateway: ServedApp) -> None:
    body = {"model": "gpt-tools", "max_tokens": 100, "tools": [WEATHER], "messages": USER}
    events = raw_events(inbound_gateway, body)
    names = [name for name, _ in events]
    blocks = [data["content_block"] for n, data in events if n == "content_block_start"]
    assert [b["type"] for b in blocks] == ["tool_use", "tool_use"]
    assert all(b["input"] == {} and b["name"] == "get_weather" for b in blocks)
    for index in (0, 1):
        parts = [
            data["delta"]["partial_json"]
            for n, data in events
            if n == "content_block_delta" and data["index"] == index
        ]
        assert orjson.loads("".join(parts)) == {"city": "Paris", "days": 2}
    # Each block stops before the next starts.
    assert names.index("content_block_stop") < names.index("content_block_start", 3)
    assert events[-2][1]["delta"]["stop_reason"] == "tool_use"


def test_tool_conversation_moves_from_anthropic_to_openai(
    claude: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    """A tool loop that begins on an anthropic-dialect model and is answered by an
    openai-dialect one, then goes back: the call and its result keep their id."""
    first = claude.messages.create(
        model="claude-tool", max_tokens=100, tools=[WEATHER], messages=USER
    )
    call = first.content[-1]
    assert call.type == "tool_use"
    conversation: list[Any] = [
        *USER,
        {"role": "assistant", "content": [b.model_dump() for b in first.content]},
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": call.id, "content": "sunny and warm"},
                {"type": "text", "text": "so what now"},
            ],
        },
    ]
    second = claude.messages.create(
        model="gpt-echo", max_tokens=100, tools=[WEATHER], messages=conversation
    )
    assert second.content[0].type == "text"
    assert second.content[0].text == "so what now"
    messages = sent(fakes, "openai")["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.id
    assert orjson.loads(messages[1]["tool_calls"][0]["function"]["arguments"]) == call.input
    assert messages[2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny and warm"}
    assert messages[3]["role"] == "user"
    # And back on Anthropic, which checks that every tool_result answers a tool_use.
    conversation += [
        {"role": "assistant", "content": [b.model_dump() for b in second.content]},
        {"role": "user", "content": "thanks"},
    ]
    third = claude.messages.create(
        model="claude-echo", max_tokens=100, tools=[WEATHER], messages=conversation
    )
    assert third.content[0].type == "text"
    assert third.content[0].text == "thanks"
    turns = sent(fakes, "anthropic")["messages"]
    assert turns[2]["content"][0]["tool_use_id"] == call.id


def test_tool_conversation_moves_from_openai_to_anthropic(
    claude: anthropic.Anthropic, fakes: dict[str, Any]
) -> None:
    first = claude.messages.create(model="gpt-tool", max_tokens=100, tools=[WEATHER], messages=USER)
    call = first.content[-1]
    assert call.type == "tool_use"
    result = {"type": "tool_result", "tool_use_id": call.id, "content": "rain", "is_error": True}
    second = claude.messages.create(
        model="claude-echo",
        max_tokens=100,
        tools=[WEATHER],
        messages=[
            *USER,
            {"role": "assistant", "content": [b.model_dump() for b in first.content]},
            {"role": "user", "content": [result]},
        ],
    )
    assert second.stop_reason == "end_turn"
    turns = sent(fakes, "anthropic")["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use"
    assert turns[2]["content"][0]["tool_use_id"] == turns[1]["content"][0]["id"]


def test_images_reach_both_dialects(claude: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}}
    content = [image, {"type": "text", "text": "what is this"}]
    claude.messages.create(
        model="gpt-echo", max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    parts = sent(fakes, "openai")["messages"][0]["content"]
    assert parts[0] == {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}
    claude.messages.create(
        model="claude-echo", max_tokens=100, messages=[{"role": "user", "content": content}]
    )
    blocks = sent(fakes, "anthropic")["messages"][0]["content"]
    assert blocks[0] == image


def test_count_tokens(claude: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    before = len(fakes["anthropic"].requests) + len(fakes["openai"].requests)
    short = claude.messages.count_tokens(model="claude-echo", messages=USER)
    long = claude.messages.count_tokens(
        model="claude-echo",
        system="You answer questions about the weather in great detail.",
        tools=[WEATHER],
        messages=[{"role": "user", "content": "alpha beta gamma " * 50}],
    )
    assert 0 < short.input_tokens < long.input_tokens
    assert len(fakes["anthropic"].requests) + len(fakes["openai"].requests) == before
    with pytest.raises(anthropic.NotFoundError):
        claude.messages.count_tokens(model="no-such-model", messages=USER)
    with pytest.raises(anthropic.BadRequestError):
        claude.messages.count_tokens(model="gpt-echo", messages=[])


def test_models_in_anthropic_shape(claude: anthropic.Anthropic, inbound_gateway: ServedApp) -> None:
    page = claude.models.list()
    ids = [model.id for model in page.data]
    assert "claude-echo" in ids and "gpt-echo" in ids
    assert all(model.type == "model" for model in page.data)
    openai_shape = httpx.get(
        f"{inbound_gateway.url}/v1/models", headers={"authorization": f"Bearer {API_KEY}"}
    ).json()
    assert openai_shape["object"] == "list"
    assert openai_shape["data"][0]["object"] == "model"


def test_bearer_token_auth(inbound_gateway: ServedApp) -> None:
    with anthropic.Anthropic(
        base_url=inbound_gateway.url, auth_token=OTHER_KEY, max_retries=0
    ) as client:
        message = client.messages.create(model="gpt-echo", max_tokens=10, messages=USER)
    assert message.content[0].type == "text"


# --- errors, in Anthropic's envelope -----------------------------------------------------------


def _envelope(error: anthropic.APIStatusError, kind: str) -> str:
    body = error.response.json()
    assert body["type"] == "error"
    assert body["error"]["type"] == kind
    assert body["request_id"]
    message: str = body["error"]["message"]
    return message


def test_missing_max_tokens(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.post(
            "/v1/messages", body={"model": "gpt-echo", "messages": USER}, cast_to=httpx.Response
        )
    assert "max_tokens" in _envelope(caught.value, "invalid_request_error")


@pytest.mark.parametrize(
    ("body", "named"),
    [
        ({"messages": [{"role": "robot", "content": "x"}]}, "messages.0.role"),
        (
            {"messages": [{"role": "user", "content": [{"type": "video", "url": "x"}]}]},
            "messages.0.content.0.type",
        ),
        (
            {"messages": [{"role": "user", "content": [{"type": "image", "source": {}}]}]},
            "messages.0.content.0.source",
        ),
        ({"messages": USER, "max_tokens": 0}, "max_tokens"),
        ({"messages": USER, "temperature": 1.5}, "temperature"),
        ({"messages": USER, "tool_choice": {"type": "sometimes"}}, "tool_choice"),
        (
            {"messages": USER, "tools": [{"type": "web_search_20250305", "name": "web"}]},
            "tools.0.type",
        ),
        ({"messages": []}, "messages"),
        (
            {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 100}},
            "thinking.budget_tokens",
        ),
        (
            {"messages": USER, "thinking": {"type": "enabled", "budget_tokens": 2000}},
            "thinking.budget_tokens",
        ),
    ],
)
def test_bad_requests_name_the_field(
    inbound_gateway: ServedApp, body: dict[str, Any], named: str
) -> None:
    full = {"model": "gpt-echo", "max_tokens": 10, **body}
    response = httpx.post(
        f"{inbound_gateway.url}/v1/messages",
        json=full,
        headers={"x-api-key": API_KEY, "anthropic-version": "2023-06-01"},
    )
    assert response.status_code == 400
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert named in error["error"]["message"]


def test_malformed_json(inbound_gateway: ServedApp) -> None:
    response = httpx.post(
        f"{inbound_gateway.url}/v1/messages",
        content=b'{"model": ',
        headers={"x-api-key": API_KEY, "content-type": "application/json"},
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "invalid_request_error"


def test_wrong_key(inbound_gateway: ServedApp) -> None:
    with (
        anthropic.Anthropic(base_url=inbound_gateway.url, api_key="sk-nope", max_retries=0) as bad,
        pytest.raises(anthropic.AuthenticationError) as caught,
    ):
        bad.messages.create(model="gpt-echo", max_tokens=10, messages=USER)
    _envelope_without_id = caught.value.response.json()
    assert _envelope_without_id["error"]["type"] == "authentication_error"


def test_unknown_model(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.NotFoundError) as caught:
        claude.messages.create(model="no-such-model", max_tokens=10, messages=USER)
    assert "no-such-model" in _envelope(caught.value, "not_found_error")


def test_upstream_rate_limit(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as caught:
        claude.messages.create(model="claude-error-429", max_tokens=10, messages=USER)
    _envelope(caught.value, "rate_limit_error")


def test_upstream_unavailable(claude: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude.messages.create(model="gpt-error-503", max_tokens=10, messages=USER)
    assert caught.value.status_code == 503
    _envelope(caught.value, "api_error")


def test_error_mid_stream_is_an_error_event(
    inbound_gateway: ServedApp, claude: anthropic.Anthropic
) -> None:
    body = {"model": "claude-stream-error", "max_tokens": 100, "messages": USER}
    events = raw_events(inbound_gateway, body)
    name, data = events[-1]
    assert name == "error"
    assert data["error"]["type"] in ("overloaded_error", "api_error")
    assert "message_stop" not in [n for n, _ in events]

    def read_all() -> None:
        with claude.messages.stream(**body) as stream:
            for _ in stream:
                pass

    with pytest.raises(anthropic.APIStatusError):  # the SDK raises it too
        read_all()


# --- the same pipeline: log and usage ------------------------------------------------------------


def test_logged_with_usage(claude: anthropic.Anthropic, inbound_gateway: ServedApp) -> None:
    message, response = raw_message(claude, model="claude-echo", max_tokens=100, messages=USER)
    log_id = response.headers["x-crossroads-log-id"]
    flush_log(inbound_gateway)
    record = httpx.get(
        f"{inbound_gateway.url}/v1/logs/{log_id}", headers={"authorization": f"Bearer {API_KEY}"}
    ).json()
    assert record["model_requested"] == "claude-echo"
    assert record["provider"] == "anthropic"
    assert record["status_code"] == 200
    assert record["prompt_tokens"] == message.usage.input_tokens
    assert record["completion_tokens"] == message.usage.output_tokens
    assert record["cost"] > 0
    assert record["key_id"] == "main"


def test_refused_request_is_logged(inbound_gateway: ServedApp) -> None:
    response = httpx.post(
        f"{inbound_gateway.url}/v1/messages",
        json={"model": "gpt-echo", "messages": USER},
        headers={"x-api-key": API_KEY},
    )
    assert response.status_code == 400
    log_id = response.headers["x-crossroads-log-id"]
    flush_log(inbound_gateway)
    record = httpx.get(
        f"{inbound_gateway.url}/v1/logs/{log_id}", headers={"authorization": f"Bearer {API_KEY}"}
    ).json()
    assert record["status_code"] == 400
    assert record["request"]["model"] == "gpt-echo"


def _record(gateway: ServedApp, log_id: str) -> dict[str, Any]:
    flush_log(gateway)
    record: dict[str, Any] = httpx.get(
        f"{gateway.url}/v1/logs/{log_id}", headers={"authorization": f"Bearer {API_KEY}"}
    ).json()
    return record


def test_streams_are_logged_as_served(
    claude: anthropic.Anthropic, inbound_gateway: ServedApp
) -> None:
    with claude.messages.with_streaming_response.create(
        model="gpt-chunked", max_tokens=100, messages=USER, stream=True
    ) as response:
        log_id = response.headers["x-crossroads-log-id"]
        list(response.iter_lines())
    record = _record(inbound_gateway, log_id)
    assert record["status_code"] == 200
    assert record["stream"] is True
    assert record["completion_tokens"] == 3
    assert record["error_code"] is None


def test_failed_streams_are_logged_with_their_error(
    claude: anthropic.Anthropic, inbound_gateway: ServedApp
) -> None:
    with claude.messages.with_streaming_response.create(
        model="claude-stream-error", max_tokens=100, messages=USER, stream=True
    ) as response:
        log_id = response.headers["x-crossroads-log-id"]
        list(response.iter_lines())
    record = _record(inbound_gateway, log_id)
    assert record["error_code"] is not None
    assert record["error_code"] != "client_closed_request"


def test_guardrails_apply(claude: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    sent_before = len(fakes["anthropic"].requests)
    with pytest.raises(anthropic.BadRequestError) as caught:
        claude.messages.create(
            model="claude-guarded",
            max_tokens=100,
            messages=[{"role": "user", "content": "tell me the secret"}],
        )
    assert "policy" in _envelope(caught.value, "invalid_request_error")
    assert len(fakes["anthropic"].requests) == sent_before
    refused = claude.messages.create(
        model="claude-guarded",
        max_tokens=100,
        messages=[{"role": "user", "content": "then drop table users"}],
    )
    assert refused.stop_reason == "refusal"
    assert refused.content[0].type == "text"
    assert "drop table" not in refused.content[0].text


@pytest.mark.parametrize("path", ["/v1/messages", "/v1/responses", "/v1/completions"])
def test_a_client_that_leaves_mid_stream_is_recorded(inbound_gateway: ServedApp, path: str) -> None:
    """The translated stream closes the pipeline's, which records the hang-up (and would
    release the key's limits) as it does for chat completions."""
    body: dict[str, Any] = {"model": "gpt-slow-stream", "stream": True, "max_tokens": 100}
    body.update(
        {"messages": USER}
        if path == "/v1/messages"
        else {"input": "a b c d e f"}
        if path == "/v1/responses"
        else {"prompt": "a b c d e f"}
    )
    if path == "/v1/responses":
        del body["max_tokens"]
    with httpx.stream(
        "POST",
        f"{inbound_gateway.url}{path}",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
    ) as response:
        assert response.status_code == 200
        log_id = response.headers["x-crossroads-log-id"]
        next(response.iter_bytes())
    for _ in range(50):
        record = _record(inbound_gateway, log_id)
        if record.get("status_code") is not None:
            break
        time.sleep(0.1)
    assert record["status_code"] == 499
    assert record["error_code"] == "client_closed_request"


# A fan-out `model` is refused on this API: tests/test_inbound_fanout.py.


def test_thinking_on_a_model_without_it(claude: anthropic.Anthropic, fakes: dict[str, Any]) -> None:
    """Claude Code turns thinking on for every request; a model that cannot think still
    answers (the setting is dropped and the log says so)."""
    message = claude.messages.create(
        model="gpt-echo",
        max_tokens=4000,
        thinking={"type": "enabled", "budget_tokens": 1024},
        messages=USER,
    )
    assert message.content[-1].type == "text"
    assert message.content[-1].text == "alpha beta gamma"
