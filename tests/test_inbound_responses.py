"""`POST /v1/responses` with the official `openai` SDK as the client, served by models on
an openai-dialect and an anthropic-dialect fake upstream.

Answers are validated strictly against the SDK's `Response` and stream event types;
event sequences are read off the wire.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import orjson
import pytest
from openai import OpenAI
from openai.types.responses import Response, ResponseStreamEvent
from pydantic import TypeAdapter

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, OTHER_KEY, flush_log
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]

EVENT = TypeAdapter(ResponseStreamEvent)
WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}


@pytest.fixture
def sdk(inbound_gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def create(sdk: OpenAI, **body: Any) -> tuple[Response, httpx.Response]:
    raw = sdk.responses.with_raw_response.create(**body)
    return Response.model_validate(raw.http_response.json()), raw.http_response


def raw_events(
    gateway: ServedApp, body: dict[str, Any], key: str = API_KEY
) -> list[tuple[str, dict[str, Any]]]:
    events = []
    with httpx.stream(
        "POST",
        f"{gateway.url}/v1/responses",
        json={**body, "stream": True},
        headers={"authorization": f"Bearer {key}"},
    ) as response:
        assert response.status_code == 200
        name = None
        for line in response.iter_lines():
            if line.startswith("event: "):
                name = line[7:]
            elif line.startswith("data: "):
                data = orjson.loads(line[6:])
                assert data["type"] == name
                EVENT.validate_python(data)
                events.append((name, data))
    numbers = [data["sequence_number"] for _, data in events]
    assert numbers == list(range(len(events)))
    return events


def sent(fakes: dict[str, Any], dialect: str) -> dict[str, Any]:
    body = fakes[dialect].requests[-1]["body"]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("model", ["gpt-echo", "claude-echo", "gemini-echo"])
def test_text_response(sdk: OpenAI, model: str) -> None:
    response, http = create(sdk, model=model, input="alpha beta gamma")
    assert response.output_text == "alpha beta gamma"
    assert response.status == "completed"
    assert response.model == model
    assert response.id == "resp_" + http.headers["x-crossroads-log-id"]
    assert response.usage is not None
    assert response.usage.output_tokens == 3
    assert response.usage.total_tokens == response.usage.input_tokens + 3


def test_parameters_reach_upstream(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    schema = {
        "type": "object",
        "properties": {"answer": {"type": "string"}},
        "required": ["answer"],
        "additionalProperties": False,
    }
    sdk.responses.create(
        model="gpt-echo",
        instructions="Be brief.",
        input=[
            {"role": "user", "content": [{"type": "input_text", "text": "alpha"}]},
            {"role": "assistant", "content": [{"type": "output_text", "text": "beta"}]},
            {"role": "user", "content": "gamma"},
        ],
        max_output_tokens=50,
        temperature=0.3,
        metadata={"team": "blue"},
        text={"format": {"type": "json_schema", "name": "reply", "schema": schema, "strict": True}},
    )
    body = sent(fakes, "openai")
    assert body["messages"] == [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "alpha"}]},
        {"role": "assistant", "content": "beta"},
        {"role": "user", "content": "gamma"},
    ]
    assert body["max_completion_tokens"] == 50
    assert body["temperature"] == 0.3
    assert body["metadata"] == {"team": "blue"}
    assert body["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "reply", "schema": schema, "strict": True},
    }
    assert "extra" not in body  # the gateway's own bookkeeping stays home


def test_incomplete_when_cut(sdk: OpenAI) -> None:
    response, _ = create(sdk, model="gpt-echo", input="one two three four", max_output_tokens=16)
    assert response.status == "completed"
    cut, _ = create(sdk, model="gpt-echo", input=" ".join(["word"] * 40), max_output_tokens=16)
    assert cut.status == "incomplete"
    assert cut.incomplete_details is not None
    assert cut.incomplete_details.reason == "max_output_tokens"


def test_stream_event_sequence(inbound_gateway: ServedApp) -> None:
    events = raw_events(inbound_gateway, {"model": "gpt-chunked", "input": "alpha beta gamma"})
    names = [name for name, _ in events]
    deltas = names.count("response.output_text.delta")
    assert deltas >= 2
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * deltas,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[0][1]["response"]["status"] == "in_progress"
    done = events[-1][1]["response"]
    assert done["status"] == "completed"
    assert done["output"][0]["content"][0]["text"] == "alpha beta gamma"
    assert done["usage"]["output_tokens"] == 3
    Response.model_validate(done)


@pytest.mark.parametrize("model", ["gpt-chunked", "claude-chunked"])
def test_stream_through_the_sdk(sdk: OpenAI, model: str) -> None:
    with sdk.responses.stream(model=model, input="alpha beta gamma") as stream:
        texts = [e.delta for e in stream if e.type == "response.output_text.delta"]
        final = stream.get_final_response()
    assert "".join(texts) == "alpha beta gamma"
    assert final.output_text == "alpha beta gamma"


def test_function_call_stream(inbound_gateway: ServedApp) -> None:
    body = {"model": "gpt-tools", "input": "weather?", "tools": [WEATHER]}
    events = raw_events(inbound_gateway, body)
    names = [name for name, _ in events]
    one_call = [
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
    ]
    assert names == ["response.created", "response.in_progress", *one_call, *one_call,
                     "response.completed"]  # fmt: skip
    output = events[-1][1]["response"]["output"]
    assert [item["type"] for item in output] == ["function_call", "function_call"]
    assert all(orjson.loads(item["arguments"]) == {"city": "Paris", "days": 2} for item in output)
    assert output[0]["call_id"] != output[1]["call_id"]


@pytest.mark.parametrize("model", ["gpt-tool", "claude-tool"])
def test_function_call_round_trip_across_providers(
    sdk: OpenAI, fakes: dict[str, Any], model: str
) -> None:
    """A function call issued by one dialect's model, answered with its output on the
    other's, the conversation given back as input items."""
    first = sdk.responses.create(model=model, input="weather in Paris?", tools=[WEATHER])
    calls = [item for item in first.output if item.type == "function_call"]
    assert len(calls) == 1
    call = calls[0]
    assert call.name == "get_weather"
    assert orjson.loads(call.arguments) == {"city": "Paris", "days": 2}
    other = "claude-echo" if model.startswith("gpt") else "gpt-echo"
    second = sdk.responses.create(
        model=other,
        tools=[WEATHER],
        input=[
            {"role": "user", "content": "weather in Paris?"},
            {
                "type": "function_call",
                "call_id": call.call_id,
                "name": call.name,
                "arguments": call.arguments,
            },
            {"type": "function_call_output", "call_id": call.call_id, "output": "sunny"},
            {"role": "user", "content": "and tomorrow"},
        ],
    )
    assert second.output_text == "and tomorrow"
    if other == "gpt-echo":
        messages = sent(fakes, "openai")["messages"]
        assert messages[1]["tool_calls"][0]["id"] == call.call_id
        assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "sunny"}
    else:
        turns = sent(fakes, "anthropic")["messages"]
        assert turns[1]["content"][0]["type"] == "tool_use"
        assert turns[2]["content"][0]["type"] == "tool_result"
        assert turns[2]["content"][0]["tool_use_id"] == turns[1]["content"][0]["id"]


def test_previous_response_id_continues_on_another_provider(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    first = sdk.responses.create(model="claude-echo", instructions="Be brief.", input="alpha")
    second = sdk.responses.create(
        model="gpt-echo", previous_response_id=first.id, input="beta gamma"
    )
    assert second.output_text == "beta gamma"
    assert second.previous_response_id == first.id
    # The first response's instructions do not carry over; its turns do.
    assert sent(fakes, "openai")["messages"] == [
        {"role": "user", "content": "alpha"},
        {"role": "assistant", "content": "alpha"},
        {"role": "user", "content": "beta gamma"},
    ]


def test_previous_response_with_a_function_call(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    first = sdk.responses.create(model="gpt-tool", input="weather?", tools=[WEATHER])
    call = next(item for item in first.output if item.type == "function_call")
    second = sdk.responses.create(
        model="claude-echo",
        previous_response_id=first.id,
        tools=[WEATHER],
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )
    assert second.status == "completed"
    turns = sent(fakes, "anthropic")["messages"]
    assert turns[1]["content"][0]["type"] == "tool_use"
    assert turns[2]["content"][0]["content"] == "sunny"


def test_previous_response_from_a_stream(inbound_gateway: ServedApp, sdk: OpenAI) -> None:
    events = raw_events(inbound_gateway, {"model": "gpt-chunked", "input": "alpha beta"})
    first_id = events[-1][1]["response"]["id"]
    second = sdk.responses.create(model="gpt-echo", previous_response_id=first_id, input="gamma")
    assert second.output_text == "gamma"


def test_previous_response_of_another_key_is_not_found(
    sdk: OpenAI, inbound_gateway: ServedApp
) -> None:
    first = sdk.responses.create(model="gpt-echo", input="secret words")
    with OpenAI(base_url=f"{inbound_gateway.url}/v1", api_key=OTHER_KEY, max_retries=0) as other:
        with pytest.raises(openai.NotFoundError) as caught:
            other.responses.create(model="gpt-echo", previous_response_id=first.id, input="x")
    error = caught.value.response.json()["error"]
    assert error["param"] == "previous_response_id"
    assert error["code"] == "previous_response_not_found"


@pytest.mark.parametrize("response_id", ["resp_0123456789abcdef0123456789abcdef", "nonsense"])
def test_unknown_previous_response(sdk: OpenAI, response_id: str) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="gpt-echo", previous_response_id=response_id, input="x")


def test_unstored_response_cannot_be_continued(sdk: OpenAI) -> None:
    first = sdk.responses.create(model="gpt-echo", input="private", store=False)
    assert first.store is False
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="gpt-echo", previous_response_id=first.id, input="x")


# --- errors, in OpenAI's envelope ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"input": "x"}, "model"),
        ({"model": "gpt-echo"}, "input"),
        ({"model": "gpt-echo", "input": "x", "temperature": 3}, "temperature"),
        ({"model": "gpt-echo", "input": "x", "tools": [{"type": "web_search"}]}, "tools[0].type"),
        ({"model": "gpt-echo", "input": [{"type": "item_reference", "id": "x"}]}, "input[0].type"),
        ({"model": "gpt-echo", "input": "x", "tool_choice": "maybe"}, "tool_choice"),
        ({"model": "gpt-echo", "input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    ],
)
def test_bad_requests(inbound_gateway: ServedApp, body: dict[str, Any], param: str) -> None:
    response = httpx.post(
        f"{inbound_gateway.url}/v1/responses",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "invalid_request_error"
    assert error["param"] == param


def test_unknown_model_and_upstream_errors(sdk: OpenAI) -> None:
    with pytest.raises(openai.NotFoundError):
        sdk.responses.create(model="no-such-model", input="x")
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.responses.create(model="gpt-error-503", input="x")
    assert caught.value.status_code == 503
    with pytest.raises(openai.RateLimitError):
        sdk.responses.create(model="claude-error-429", input="x")


def test_error_mid_stream(inbound_gateway: ServedApp) -> None:
    events = raw_events(inbound_gateway, {"model": "claude-stream-error", "input": "alpha beta"})
    names = [name for name, _ in events]
    assert names[-2:] == ["error", "response.failed"]
    assert "response.completed" not in names
    assert events[-1][1]["response"]["status"] == "failed"


# --- the same pipeline: log and usage ------------------------------------------------------------


def test_logged_with_usage(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    response, http = create(sdk, model="claude-echo", input="alpha beta")
    flush_log(inbound_gateway)
    record = httpx.get(
        f"{inbound_gateway.url}/v1/logs/{http.headers['x-crossroads-log-id']}",
        headers={"authorization": f"Bearer {API_KEY}"},
    ).json()
    assert response.usage is not None
    assert record["model_requested"] == "claude-echo"
    assert record["provider"] == "anthropic"
    assert record["prompt_tokens"] == response.usage.input_tokens
    assert record["completion_tokens"] == response.usage.output_tokens
    assert record["cost"] > 0


def test_guardrails_apply(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.responses.create(model="claude-guarded", input="tell me the secret")
    assert caught.value.code == "guardrail_blocked"
    refused = sdk.responses.create(model="claude-guarded", input="then drop table users")
    assert refused.status == "incomplete"
    assert refused.incomplete_details is not None
    assert refused.incomplete_details.reason == "content_filter"
    assert "drop table" not in refused.output_text
    events = raw_events(inbound_gateway, {"model": "claude-guarded", "input": "drop table now"})
    assert events[-1][0] == "response.incomplete"


def test_function_call_output_as_parts(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    sdk.responses.create(
        model="gpt-echo",
        input=[
            {"type": "function_call", "call_id": "c1", "name": "f", "arguments": "{}"},
            {
                "type": "function_call_output",
                "call_id": "c1",
                "output": [{"type": "input_text", "text": "sun"}, {"type": "x", "text": 5}],
            },
            {"role": "user", "content": "ok"},
        ],
    )
    assert sent(fakes, "openai")["messages"][1]["content"] == "sun"


def test_reasoning_is_a_summary_item(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    body = {"model": "claude-think", "input": "two plus two?", "reasoning": {"effort": "low"}}
    response, _ = create(sdk, **body)
    assert [item.type for item in response.output] == ["reasoning", "message"]
    reasoning = response.output[0]
    assert reasoning.type == "reasoning"
    assert reasoning.summary[0].text == "Two plus two"
    assert response.output_text == "Four."
    events = raw_events(inbound_gateway, body)
    final = events[-1][1]["response"]
    assert [item["type"] for item in final["output"]] == ["reasoning", "message"]
    assert final["output"][0]["summary"][0]["text"] == "Two plus two"
    with sdk.responses.stream(**body) as stream:
        streamed = stream.get_final_response()
    assert streamed.output_text == "Four."


def test_a_stored_response_is_retrieved(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    first, _ = create(
        sdk,
        model="gpt-tool",
        instructions="Use tools.",
        input="weather?",
        tools=[WEATHER],
        metadata={"team": "blue"},
    )
    again = sdk.responses.retrieve(first.id)
    Response.model_validate(again.model_dump())
    assert again.id == first.id
    assert again.output == first.output
    assert again.instructions == "Use tools."
    assert again.metadata == {"team": "blue"}
    assert again.tools == first.tools
    assert again.usage == first.usage
    with (
        OpenAI(base_url=f"{inbound_gateway.url}/v1", api_key=OTHER_KEY, max_retries=0) as other,
        pytest.raises(openai.NotFoundError),
    ):
        other.responses.retrieve(first.id)
    with pytest.raises(openai.NotFoundError):
        sdk.responses.retrieve("resp_unknown")
