"""Golden tests: one OpenAI-format request, three wire dialects, equivalent answers.

The same request goes through the gateway to an `openai`, an `anthropic` and a `gemini`
provider, each a fake upstream speaking that provider's real wire format, and the official
`openai` SDK reads the answers. Text, tool calls (streamed deltas reassembled), finish
reasons, usage, cost and errors must come out the same whatever dialect served them.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, ARGS, DIALECTS

USER = [{"role": "user", "content": "alpha beta gamma"}]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "description": "Weather for a city.",
            "parameters": {
                "type": "object",
                "properties": {
                    "city": {"type": "string"},
                    "days": {"type": ["integer", "null"], "minimum": 1},
                },
                "required": ["city"],
                "additionalProperties": False,
            },
        },
    }
]


@pytest.fixture
def sdk(golden_gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{golden_gateway.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def last_body(fakes: dict[str, Any], dialect: str) -> dict[str, Any]:
    body = fakes[dialect].requests[-1]["body"]
    assert isinstance(body, dict)
    return body


def reassemble(chunks: list[Any]) -> dict[str, Any]:
    """What a client builds from streamed chunks: text, reasoning, tool calls, finish, usage."""
    text, reasoning, finish, usage = "", "", None, None
    calls: dict[int, dict[str, str]] = {}
    for chunk in chunks:
        if chunk.usage is not None:
            usage = chunk.usage
        for choice in chunk.choices:
            delta = choice.delta
            text += delta.content or ""
            reasoning += (delta.model_extra or {}).get("reasoning_content") or ""
            for call in delta.tool_calls or ():
                entry = calls.setdefault(call.index, {"id": "", "name": "", "arguments": ""})
                entry["id"] += call.id or ""
                if call.function is not None:
                    entry["name"] += call.function.name or ""
                    entry["arguments"] += call.function.arguments or ""
            finish = choice.finish_reason or finish
    return {
        "text": text,
        "reasoning": reasoning,
        "calls": [calls[k] for k in sorted(calls)],
        "finish": finish,
        "usage": usage,
    }


def usage_summary(usage: Any) -> tuple[int, int, int, float]:
    extra = usage.model_extra or {}
    return usage.prompt_tokens, usage.completion_tokens, usage.total_tokens, extra["cost"]


# --- the same answer whatever the dialect -----------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_text_answer_is_the_same(sdk: OpenAI, dialect: str) -> None:
    completion = sdk.chat.completions.create(model=f"{dialect}-echo", messages=USER)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert choice.message.role == "assistant"
    assert choice.message.content == "alpha beta gamma"
    assert choice.finish_reason == "stop"
    assert completion.provider == dialect  # type: ignore[attr-defined]
    # Every fake counts words + 3 per message, so usage and cost agree across dialects.
    assert usage_summary(completion.usage) == (6, 3, 9, pytest.approx((6 * 2 + 3 * 8) / 1e6))


@pytest.mark.parametrize("dialect", DIALECTS)
def test_streamed_text_is_the_same(sdk: OpenAI, dialect: str) -> None:
    chunks = list(
        sdk.chat.completions.create(
            model=f"{dialect}-chunked",
            messages=USER,  # type: ignore[arg-type]
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    answer = reassemble(chunks)
    assert answer["text"] == "alpha beta gamma"
    assert answer["finish"] == "stop"
    assert usage_summary(answer["usage"]) == (6, 3, 9, pytest.approx((6 * 2 + 3 * 8) / 1e6))
    assert len({chunk.id for chunk in chunks}) == 1


@pytest.mark.parametrize("dialect", DIALECTS)
@pytest.mark.parametrize("stream", [False, True])
def test_limits_and_stops_finish_the_same(sdk: OpenAI, dialect: str, stream: bool) -> None:
    cut = sdk.chat.completions.create(
        model=f"{dialect}-echo",
        messages=USER,  # type: ignore[arg-type]
        max_completion_tokens=2,
        stream=stream,
    )
    stopped = sdk.chat.completions.create(
        model=f"{dialect}-echo",
        messages=USER,  # type: ignore[arg-type]
        stop=["gamma"],
        stream=stream,
    )
    if stream:
        cut_answer, stopped_answer = reassemble(list(cut)), reassemble(list(stopped))  # type: ignore[arg-type]
        results = [(cut_answer["text"], cut_answer["finish"])]
        results.append((stopped_answer["text"], stopped_answer["finish"]))
    else:
        results = [
            (c.choices[0].message.content, c.choices[0].finish_reason)  # type: ignore[union-attr]
            for c in (cut, stopped)
        ]
    assert results[0] == ("alpha beta", "length")
    assert results[1][0].strip() == "alpha beta"
    assert results[1][1] == "stop"


@pytest.mark.parametrize("dialect", DIALECTS)
def test_parallel_tool_calls_are_the_same(sdk: OpenAI, dialect: str) -> None:
    completion = sdk.chat.completions.create(
        model=f"{dialect}-tools",
        messages=USER,  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    calls = choice.message.tool_calls or []
    assert [c.function.name for c in calls] == ["get_weather", "get_weather"]  # type: ignore[union-attr]
    assert [json.loads(c.function.arguments) for c in calls] == [json.loads(ARGS)] * 2  # type: ignore[union-attr]
    assert len({c.id for c in calls}) == 2
    assert not choice.message.content


@pytest.mark.parametrize("dialect", DIALECTS)
def test_streamed_tool_call_deltas_reassemble_the_same(sdk: OpenAI, dialect: str) -> None:
    chunks = sdk.chat.completions.create(
        model=f"{dialect}-tools",
        messages=USER,  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        stream=True,
    )
    answer = reassemble(list(chunks))
    assert answer["finish"] == "tool_calls"
    assert [c["name"] for c in answer["calls"]] == ["get_weather", "get_weather"]
    assert [json.loads(c["arguments"]) for c in answer["calls"]] == [json.loads(ARGS)] * 2
    assert all(c["id"] for c in answer["calls"])
    assert answer["text"] == ""


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_tool_conversation_round_trips(sdk: OpenAI, dialect: str) -> None:
    """The tool call and its result go back upstream in the dialect's own shape."""
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "Be brief."},
        *USER,
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": ARGS},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "sunny"},
        {"role": "user", "content": "thanks"},
    ]
    completion = sdk.chat.completions.create(
        model=f"{dialect}-echo",
        messages=messages,  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        tool_choice="auto",
    )
    assert completion.choices[0].message.content == "thanks"


@pytest.mark.parametrize(
    ("suffix", "status", "error"),
    [
        ("error-400", 400, openai.BadRequestError),
        ("error-429", 429, openai.RateLimitError),
        ("error-500", 502, openai.InternalServerError),
        ("error-503", 503, openai.InternalServerError),
    ],
)
@pytest.mark.parametrize("dialect", DIALECTS)
def test_upstream_errors_surface_the_same(
    sdk: OpenAI, dialect: str, suffix: str, status: int, error: type[Exception]
) -> None:
    with pytest.raises(error) as caught:
        sdk.chat.completions.create(model=f"{dialect}-{suffix}", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == status  # type: ignore[attr-defined]
    assert f"Upstream '{dialect}' returned HTTP" in str(caught.value)
    if status == 429:
        assert caught.value.response.headers["retry-after"] == "3"  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("dialect", "suffix", "code"),
    [
        *((dialect, "drop", "upstream_stream_interrupted") for dialect in DIALECTS),
        # An overload event inside the stream (the OpenAI fake has none to send) is the
        # error an overloaded non-streamed request gets.
        ("anthropic", "stream-error", "upstream_error"),
        ("gemini", "stream-error", "upstream_error"),
    ],
)
def test_a_stream_that_fails_mid_answer_ends_with_an_error_event(
    golden_gateway: ServedApp, dialect: str, suffix: str, code: str
) -> None:
    body = {"model": f"{dialect}-{suffix}", "messages": USER, "stream": True}
    response = httpx.post(
        f"{golden_gateway.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=10,
    )
    assert response.status_code == 200
    events = [line for line in response.text.split("\n\n") if line]
    assert events[-1] != "data: [DONE]"
    error = json.loads(events[-1].removeprefix("data: "))["error"]
    assert error["code"] == code
    assert error["type"] == "upstream_error"


# --- what only some dialects have ----------------------------------------------------------


def test_anthropic_overloaded_529_is_503_with_the_message(sdk: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.chat.completions.create(model="anthropic-error-529", messages=USER)  # type: ignore[arg-type]
    assert caught.value.status_code == 503
    assert "HTTP 529" in str(caught.value)


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_reasoning_comes_back_as_reasoning_content(sdk: OpenAI, dialect: str, stream: bool) -> None:
    response = sdk.chat.completions.create(
        model=f"{dialect}-think",
        messages=USER,  # type: ignore[arg-type]
        reasoning_effort="low",
        max_completion_tokens=4000,
        stream=stream,
    )
    if stream:
        answer = reassemble(list(response))  # type: ignore[arg-type]
        text, reasoning = answer["text"], answer["reasoning"]
    else:
        message = response.choices[0].message  # type: ignore[union-attr]
        text, reasoning = message.content, (message.model_extra or {}).get("reasoning_content")
    assert text == "Four."
    assert reasoning == "Two plus two"


def test_anthropic_reasoning_effort_becomes_a_thinking_budget(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    sdk.chat.completions.create(
        model="anthropic-echo",
        messages=USER,  # type: ignore[arg-type]
        reasoning_effort="low",
        max_completion_tokens=4000,
    )
    sent = last_body(fakes, "anthropic")
    assert sent["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert sent["max_tokens"] == 4000


def test_gemini_reasoning_becomes_a_thinking_config(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    sdk.chat.completions.create(
        model="gemini-echo",
        messages=USER,  # type: ignore[arg-type]
        extra_body={"reasoning": {"max_tokens": 1500, "exclude": True}},
    )
    config = last_body(fakes, "gemini")["generationConfig"]["thinkingConfig"]
    assert config == {"thinkingBudget": 1500, "includeThoughts": False}


def test_anthropic_cache_tokens_are_priced_exactly(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="anthropic-cached", messages=USER)  # type: ignore[arg-type]
    usage = completion.usage
    assert usage is not None
    assert usage.prompt_tokens == 6
    details = usage.prompt_tokens_details
    assert details is not None and details.cached_tokens == 4
    assert details.cache_write_tokens == 2
    # 0 fresh input tokens, 4 read at 0.5, 2 written at 2.5, 3 output at 8 (per 1M).
    expected = (0 * 2.0 + 4 * 0.5 + 2 * 2.5 + 3 * 8.0) / 1e6
    assert usage.model_extra["cost"] == pytest.approx(expected)  # type: ignore[index]
    assert usage.model_extra["prompt_cache_hit_tokens"] == 4  # type: ignore[index]


def test_anthropic_request_shape(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    sdk.chat.completions.create(
        model="anthropic-echo",
        messages=[{"role": "system", "content": "Be brief."}, *USER],  # type: ignore[list-item]
        stop="gamma",
        user="user-7",
        tools=WEATHER,  # type: ignore[arg-type]
        tool_choice={"type": "function", "function": {"name": "get_weather"}},
        parallel_tool_calls=False,
    )
    sent = last_body(fakes, "anthropic")
    assert sent["system"] in ("Be brief.", [{"type": "text", "text": "Be brief."}])
    assert sent["messages"] == [{"role": "user", "content": "alpha beta gamma"}]
    assert sent["max_tokens"] == 4096  # the documented default
    assert sent["stop_sequences"] == ["gamma"]
    assert sent["metadata"] == {"user_id": "user-7"}
    assert sent["tool_choice"] == {
        "type": "tool",
        "name": "get_weather",
        "disable_parallel_tool_use": True,
    }
    assert sent["tools"][0]["input_schema"]["required"] == ["city"]


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
@pytest.mark.parametrize("stream", [False, True])
def test_json_schema_output_is_json_content(sdk: OpenAI, dialect: str, stream: bool) -> None:
    schema = {
        "type": "object",
        "properties": {"city": {"type": "string"}, "days": {"type": "integer"}},
        "required": ["city", "days"],
    }
    # Anthropic answers through the forced tool; Gemini's fake fills the schema itself.
    model = f"{dialect}-one-tool" if dialect == "anthropic" else f"{dialect}-fixed"
    response = sdk.chat.completions.create(
        model=model,
        messages=USER,  # type: ignore[arg-type]
        response_format={
            "type": "json_schema",
            "json_schema": {"name": "forecast", "schema": schema},
        },
        stream=stream,
    )
    if stream:
        answer = reassemble(list(response))  # type: ignore[arg-type]
        text, finish, calls = answer["text"], answer["finish"], answer["calls"]
    else:
        choice = response.choices[0]  # type: ignore[union-attr]
        text, finish, calls = (
            choice.message.content,
            choice.finish_reason,
            choice.message.tool_calls,
        )
    document = json.loads(text)
    assert isinstance(document, dict) and "city" in document
    assert finish == "stop"
    assert not calls


def test_gemini_images_and_system_go_in_gemini_shape(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    image = "data:image/png;base64,iVBORw0KGgo="
    sdk.chat.completions.create(
        model="gemini-echo",
        messages=[  # type: ignore[list-item]
            {"role": "system", "content": "Be brief."},
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "what is this"},
                    {"type": "image_url", "image_url": {"url": image}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}},
                ],
            },
        ],
        n=2,
        seed=5,
    )
    sent = last_body(fakes, "gemini")
    assert sent["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    parts = sent["contents"][0]["parts"]
    assert parts[0] == {"text": "what is this"}
    assert parts[1] == {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}}
    assert parts[2] == {
        "fileData": {"mimeType": "image/png", "fileUri": "https://example.com/cat.png"}
    }
    assert sent["generationConfig"]["candidateCount"] == 2
    assert sent["generationConfig"]["seed"] == 5


def test_gemini_n_gives_n_choices(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="gemini-echo", messages=USER, n=2)  # type: ignore[arg-type]
    assert [c.index for c in completion.choices] == [0, 1]
    assert {c.message.content for c in completion.choices} == {"alpha beta gamma"}


def test_anthropic_image_parts(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    sdk.chat.completions.create(
        model="anthropic-echo",
        messages=[  # type: ignore[list-item]
            {
                "role": "user",
                "content": [
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,AAAA"}},
                    {"type": "image_url", "image_url": {"url": "https://example.com/a.jpg"}},
                    {"type": "text", "text": "compare"},
                ],
            }
        ],
    )
    content = last_body(fakes, "anthropic")["messages"][0]["content"]
    assert content[0] == {
        "type": "image",
        "source": {"type": "base64", "media_type": "image/png", "data": "AAAA"},
    }
    assert content[1] == {
        "type": "image",
        "source": {"type": "url", "url": "https://example.com/a.jpg"},
    }
    assert content[2] == {"type": "text", "text": "compare"}


def test_gemini_safety_block_is_a_content_filter_finish(sdk: OpenAI) -> None:
    completion = sdk.chat.completions.create(model="gemini-blocked", messages=USER)  # type: ignore[arg-type]
    choice = completion.choices[0]
    assert choice.finish_reason == "content_filter"
    results = (choice.model_extra or {})["content_filter_results"]
    assert results["dangerous"] == {"filtered": True, "severity": "high"}
    assert results["hate"]["filtered"] is False


def test_a_tool_schema_gemini_cannot_express_is_400_naming_the_path(sdk: OpenAI) -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "tag",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "labels": {"type": "object", "additionalProperties": {"type": "string"}}
                    },
                },
            },
        }
    ]
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(model="gemini-echo", messages=USER, tools=tools)  # type: ignore[arg-type]
    assert (
        caught.value.param == "tools[0].function.parameters.properties.labels.additionalProperties"
    )  # type: ignore[attr-defined]


def test_unsupported_parameters_are_dropped_per_dialect(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    completion = sdk.chat.completions.create(
        model="anthropic-echo",
        messages=USER,  # type: ignore[arg-type]
        seed=3,
        logprobs=True,
        presence_penalty=0.5,
        n=1,
    )
    assert sorted(completion.model_extra["dropped_params"]) == [  # type: ignore[index]
        "logprobs",
        "presence_penalty",
        "seed",
    ]
    sent = last_body(fakes, "anthropic")
    assert not {"seed", "logprobs", "presence_penalty", "n"} & set(sent)
    completion = sdk.chat.completions.create(
        model="gemini-echo",
        messages=USER,
        logit_bias={"1": 2},
        presence_penalty=0.5,  # type: ignore[arg-type]
    )
    assert completion.model_extra["dropped_params"] == ["logit_bias"]  # type: ignore[index]
    assert last_body(fakes, "gemini")["generationConfig"]["presencePenalty"] == 0.5


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
def test_a_callers_openai_key_is_refused_on_other_dialects(sdk: OpenAI, dialect: str) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=f"{dialect}-echo",
            messages=USER,  # type: ignore[arg-type]
            extra_body={"openai_api_key": "sk-mine"},
        )
    assert caught.value.param == "openai_api_key"  # type: ignore[attr-defined]
    assert f"dialect '{dialect}'" in str(caught.value)
