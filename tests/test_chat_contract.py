"""Contract tests: the official OpenAI SDK against a real gateway and a real fake upstream."""

from __future__ import annotations

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, PRICE

USER = [{"role": "user", "content": "Say hello to the gateway"}]
# The fake upstream counts words plus 3 per message.
PROMPT_TOKENS = 5 + 3
FIXED_REPLY = "Hello from the fake upstream."


def expected_cost(prompt: int, completion: int, cached: int = 0) -> float:
    return round(
        (
            (prompt - cached) * PRICE["input"]
            + cached * PRICE["cached_input"]
            + completion * PRICE["output"]
        )
        / 1_000_000,
        12,
    )


def test_create_returns_openai_completion_with_usage_cost_and_provider(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="fixed", messages=USER)  # type: ignore[arg-type]
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.content == FIXED_REPLY
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == PROMPT_TOKENS
    assert usage.completion_tokens == 5
    extra = usage.model_extra or {}
    assert extra["prompt_characters"] == len("Say hello to the gateway")
    assert extra["response_characters"] == len(FIXED_REPLY)
    assert extra["cost"] == pytest.approx(expected_cost(PROMPT_TOKENS, 5))
    assert extra["latency_ms"] > 0
    assert extra["prompt_cache_hit_tokens"] == 0
    assert (completion.model_extra or {})["provider"] == "fake"


def test_cached_tokens_are_priced_at_the_cached_rate(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="cached", messages=USER)  # type: ignore[arg-type]
    extra = completion.usage.model_extra or {}  # type: ignore[union-attr]
    assert extra["prompt_cache_hit_tokens"] == 4
    assert extra["prompt_cache_miss_tokens"] == PROMPT_TOKENS - 4
    assert extra["cost"] == pytest.approx(expected_cost(PROMPT_TOKENS, 5, cached=4))


def test_missing_upstream_usage_is_estimated_and_flagged(client: OpenAI) -> None:
    completion = client.chat.completions.create(model="no-usage", messages=USER)  # type: ignore[arg-type]
    extra = completion.usage.model_extra or {}  # type: ignore[union-attr]
    assert extra["estimated"] is True
    assert completion.usage.completion_tokens == -(-len(FIXED_REPLY) // 4)  # type: ignore[union-attr]
    assert extra["cost"] > 0


def test_stream_relays_chunks_and_reports_usage_in_the_last_chunk(client: OpenAI) -> None:
    stream = client.chat.completions.create(
        model="echo",
        messages=[{"role": "user", "content": "one two three four"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "one two three four"
    assert all(c.usage is None for c in chunks[:-1])
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert last.usage.completion_tokens == 4
    extra = last.usage.model_extra or {}
    assert extra["response_characters"] == len("one two three four")
    assert extra["cost"] == pytest.approx(expected_cost(4 + 3, 4))
    assert (last.model_extra or {})["provider"] == "fake"


def test_stream_without_include_usage_has_no_usage_chunk(client: OpenAI) -> None:
    chunks = list(client.chat.completions.create(model="fixed", messages=USER, stream=True))  # type: ignore[arg-type]
    assert chunks[-1].choices and chunks[-1].choices[0].finish_reason == "stop"
    assert all(c.usage is None for c in chunks)


def test_stream_is_byte_compatible_sse(gateway: ServedApp) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "fixed", "messages": USER, "stream": True},
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        body = response.read().decode()
    events = body.split("\n\n")
    assert events[-1] == ""
    assert events[-2] == "data: [DONE]"
    assert all(e.startswith("data: {") for e in events[:-2])


def test_upstream_sees_upstream_model_without_our_fields_and_with_unknown_params(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    fake_upstream.requests.clear()
    client.chat.completions.create(
        model="fixed",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"session_id": "s-1", "extra": {"ip": "1.2.3.4"}, "repetition_penalty": 1.1},
        metadata={"team": "search"},
    )
    seen = fake_upstream.requests[-1]
    body = seen["body"]
    assert body["model"] == "fixed"
    assert "session_id" not in body and "extra" not in body
    assert body["repetition_penalty"] == 1.1
    assert body["metadata"] == {"team": "search"}
    assert seen["headers"]["authorization"] == "Bearer sk-upstream"


def test_stream_always_asks_the_upstream_for_usage(
    client: OpenAI, fake_upstream: FakeOpenAI
) -> None:
    fake_upstream.requests.clear()
    list(client.chat.completions.create(model="fixed", messages=USER, stream=True))  # type: ignore[arg-type]
    assert fake_upstream.requests[-1]["body"]["stream_options"] == {"include_usage": True}


def test_tool_calls_pass_through_streamed_and_not(client: OpenAI) -> None:
    tools = [{"type": "function", "function": {"name": "lookup", "parameters": {"type": "object"}}}]
    completion = client.chat.completions.create(model="tool", messages=USER, tools=tools)  # type: ignore[arg-type]
    calls = completion.choices[0].message.tool_calls
    assert calls and calls[0].function.name == "lookup"  # type: ignore[union-attr]
    assert completion.choices[0].finish_reason == "tool_calls"
    chunks = list(
        client.chat.completions.create(model="tool", messages=USER, tools=tools, stream=True)  # type: ignore[arg-type]
    )
    names = [
        tc.function.name
        for c in chunks
        for ch in c.choices
        for tc in ch.delta.tool_calls or ()
        if tc.function and tc.function.name
    ]
    assert names == ["lookup"]


# --- errors, each surfacing as the SDK's matching exception ----------------------------------


def test_wrong_key_is_401(gateway: ServedApp) -> None:
    with OpenAI(base_url=f"{gateway.url}/v1", api_key="sk-wrong-key-000000", max_retries=0) as sdk:
        with pytest.raises(openai.AuthenticationError) as caught:
            sdk.chat.completions.create(model="fixed", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "invalid_api_key"
    assert "sk-wrong" not in str(caught.value.message)


def test_missing_key_is_401(gateway: ServedApp) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions", json={"model": "fixed", "messages": USER}
    )
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "missing_api_key"


def test_unknown_model_is_404_model_not_found(client: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="no-such-model", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "model_not_found"
    assert caught.value.param == "model"


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "fixed", "messages": USER, "temperature": 2.5}, "temperature"),
        ({"model": "fixed", "messages": []}, "messages"),
        ({"model": "fixed"}, "messages"),
        ({"model": "fixed", "messages": [{"role": "robot", "content": "x"}]}, "messages[0]"),
        (
            {"model": "fixed", "messages": USER, "top_logprobs": 30, "logprobs": True},
            "top_logprobs",
        ),
        ({"model": "fixed", "messages": USER, "n": "two"}, "n"),
        ({"model": "a,b,c,d,e,f", "messages": USER}, "model"),
        ({"model": "fixed", "messages": USER, "session_id": "s" * 129}, "session_id"),
        (
            {"model": "fixed", "messages": USER, "quality_risk_threshold": 1.5},
            "quality_risk_threshold",
        ),
    ],
)
def test_invalid_values_are_400_naming_the_param(client: OpenAI, body: dict, param: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=httpx.Response)
    assert caught.value.param == param
    assert caught.value.code in ("invalid_value", None)


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"plugins": [{"id": "web"}]}, "plugins"),
        ({"provider": {"quantizations": ["fp8"]}}, "provider.quantizations"),
    ],
)
def test_not_yet_served_parameters_are_400_unsupported(
    client: OpenAI, extra: dict, param: str
) -> None:  # type: ignore[type-arg]
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="fixed", messages=USER, extra_body=extra)  # type: ignore[arg-type]
    assert caught.value.code == "unsupported_parameter"
    assert caught.value.param == param


def test_the_router_needs_candidates(client: OpenAI) -> None:
    # This gateway marks no model routable, so `model: "router"` must name its candidates.
    with pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model="router", messages=USER)  # type: ignore[arg-type]
    assert caught.value.code == "no_router_candidate"
    assert caught.value.param == "model"


def test_malformed_json_is_400(gateway: ServedApp) -> None:
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}", "Content-Type": "application/json"},
        content=b'{"model": "fixed", "messages": [',
    )
    assert response.status_code == 400
    assert response.json()["error"]["code"] == "invalid_json"


def test_body_over_the_limit_is_413(client: OpenAI, gateway: ServedApp) -> None:
    huge = [{"role": "user", "content": "x" * (70 * 1024)}]
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model="fixed", messages=huge)  # type: ignore[arg-type]
    assert caught.value.status_code == 413
    # Also when the client streams the body without announcing its length.
    response = httpx.post(
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        content=iter([b"x" * 40_000, b"x" * 40_000]),
    )
    assert response.status_code == 413
    assert response.json()["error"]["code"] == "request_too_large"


def test_upstream_429_is_429_with_retry_after(client: OpenAI) -> None:
    with pytest.raises(openai.RateLimitError) as caught:
        client.chat.completions.create(model="error-429", messages=USER)  # type: ignore[arg-type]
    assert caught.value.response.headers["retry-after"] == "7"
    assert "fake upstream error 429" in caught.value.message


@pytest.mark.parametrize(
    ("model", "status"),
    [
        ("error-500", 502),
        ("error-502", 502),
        ("error-503", 503),
        ("error-504", 504),
        ("error-401", 502),
        ("error-404", 502),
        ("malformed", 502),
        ("unreachable", 502),
        ("timeout", 504),
    ],
)
def test_upstream_failures_are_5xx_keeping_the_upstream_message(
    client: OpenAI, model: str, status: int
) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    if model.startswith("error-"):
        assert f"fake upstream error {model[6:]}" in caught.value.message


@pytest.mark.parametrize(("model", "status"), [("error-400", 400), ("error-422", 422)])
def test_upstream_rejections_of_the_request_keep_their_status(
    client: OpenAI, model: str, status: int
) -> None:
    with pytest.raises(openai.APIStatusError) as caught:
        client.chat.completions.create(model=model, messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == status
    assert "fake upstream error" in caught.value.message


def test_upstream_failure_before_the_first_chunk_is_a_real_http_error(client: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        list(client.chat.completions.create(model="error-503", messages=USER, stream=True))  # type: ignore[arg-type]
    assert caught.value.status_code == 503


def test_stream_dropped_mid_way_ends_with_an_error_event_and_no_done(gateway: ServedApp) -> None:
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/chat/completions",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"model": "drop", "messages": USER, "stream": True},
    ) as response:
        body = response.read().decode()
    assert response.status_code == 200
    assert "[DONE]" not in body
    last = body.strip().split("\n\n")[-1]
    assert last.startswith('data: {"error":')
    assert "upstream_stream_interrupted" in last


def test_sdk_raises_on_a_stream_that_ends_in_an_error_event(client: OpenAI) -> None:
    with pytest.raises(openai.APIError):
        list(client.chat.completions.create(model="drop", messages=USER, stream=True))  # type: ignore[arg-type]
