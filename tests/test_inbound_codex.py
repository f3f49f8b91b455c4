"""What Codex sends the Responses API: custom (freeform) tools such as `apply_patch`, their
calls given back as `custom_tool_call(_output)` items, and request fields only OpenAI's own
service acts on. The official `openai` SDK is the client; answers and stream events are
validated against its types."""

from __future__ import annotations

import random
from collections.abc import Iterator
from typing import Any

import httpx
import orjson
import pytest
from openai import OpenAI
from openai.types.responses import CustomToolParam, Response, ResponseCustomToolCall

from crossroads.inbound.custom_input import InputDecoder
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY
from tests.inbound_gateway import PATCH, inbound_gateway
from tests.test_inbound_responses import raw_events, sent

__all__ = ["inbound_gateway"]

GRAMMAR = 'start: "*** Begin Patch" LF body "*** End Patch"'
APPLY_PATCH: CustomToolParam = {
    "type": "custom",
    "name": "apply_patch",
    "description": "Edit files with a patch.",
    "format": {"type": "grammar", "syntax": "lark", "definition": GRAMMAR},
}


@pytest.fixture
def sdk(inbound_gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def post(gateway: ServedApp, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{gateway.url}/v1/responses", json=body, headers={"authorization": f"Bearer {API_KEY}"}
    )


def test_custom_tool_goes_upstream_as_a_one_string_function(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    sdk.responses.create(
        model="gpt-echo",
        input="hi",
        tools=[APPLY_PATCH],
        tool_choice={"type": "custom", "name": "apply_patch"},
    )
    body = sent(fakes, "openai")
    function = body["tools"][0]["function"]
    assert function["name"] == "apply_patch"
    assert function["description"] == "Edit files with a patch."
    parameters = function["parameters"]
    assert parameters["required"] == ["input"]
    assert parameters["properties"]["input"]["type"] == "string"
    assert GRAMMAR in parameters["properties"]["input"]["description"]
    assert body["tool_choice"] == {"type": "function", "function": {"name": "apply_patch"}}


@pytest.mark.parametrize("model", ["gpt-patch", "claude-patch"])
def test_custom_tool_call_comes_back_as_such(sdk: OpenAI, model: str) -> None:
    raw = sdk.responses.with_raw_response.create(
        model=model,
        input="add hello.txt",
        tools=[APPLY_PATCH],
    )
    response = Response.model_validate(raw.http_response.json())
    calls = [item for item in response.output if item.type == "custom_tool_call"]
    assert len(calls) == 1
    call = calls[0]
    assert isinstance(call, ResponseCustomToolCall)
    assert call.name == "apply_patch"
    assert call.input == PATCH
    assert call.call_id
    assert response.tools[0].type == "custom"


@pytest.mark.parametrize("model", ["gpt-patch", "gpt-patch-chunked", "claude-patch"])
def test_custom_tool_call_stream(inbound_gateway: ServedApp, model: str) -> None:
    body = {"model": model, "input": "add hello.txt", "tools": [APPLY_PATCH]}
    events = raw_events(inbound_gateway, body)
    names = [name for name, _ in events]
    deltas = [data for name, data in events if name == "response.custom_tool_call_input.delta"]
    assert deltas  # the input streams: in pieces as the upstream sends the arguments
    assert names == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        *["response.custom_tool_call_input.delta"] * len(deltas),
        "response.custom_tool_call_input.done",
        "response.output_item.done",
        "response.completed",
    ]
    added, done, item_done = events[2][1], events[-3][1], events[-2][1]
    assert added["item"]["type"] == "custom_tool_call"
    assert added["item"]["input"] == ""
    assert "".join(delta["delta"] for delta in deltas) == PATCH
    assert done["input"] == PATCH
    assert {delta["item_id"] for delta in deltas} == {done["item_id"]} == {added["item"]["id"]}
    assert item_done["item"]["input"] == PATCH
    output = events[-1][1]["response"]["output"]
    assert output == [item_done["item"]]


def test_custom_tool_call_through_the_sdk_stream(sdk: OpenAI) -> None:
    with sdk.responses.stream(
        model="gpt-patch-chunked",
        input="add hello.txt",
        tools=[APPLY_PATCH],
    ) as stream:
        deltas = [e.delta for e in stream if e.type == "response.custom_tool_call_input.delta"]
        final = stream.get_final_response()
    assert "".join(deltas) == PATCH
    call = final.output[0]
    assert isinstance(call, ResponseCustomToolCall)
    assert call.input == PATCH


@pytest.mark.parametrize("other", ["gpt-echo", "claude-echo"])
def test_custom_tool_round_trip(sdk: OpenAI, fakes: dict[str, Any], other: str) -> None:
    """A custom call given back with its output, on either dialect, as Codex does."""
    first = sdk.responses.create(
        model="gpt-patch",
        input="add hello.txt",
        tools=[APPLY_PATCH],
    )
    call = first.output[0]
    assert isinstance(call, ResponseCustomToolCall)
    second = sdk.responses.create(
        model=other,
        tools=[APPLY_PATCH],
        input=[
            {"role": "user", "content": "add hello.txt"},
            {"type": "custom_tool_call", "call_id": call.call_id, "name": call.name,
             "input": call.input},
            {"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"},
            {"role": "user", "content": "thanks"},
        ],
    )  # fmt: skip
    assert second.output_text == "thanks"
    if other == "gpt-echo":
        messages = sent(fakes, "openai")["messages"]
        function = messages[1]["tool_calls"][0]["function"]
        assert function["name"] == "apply_patch"
        assert orjson.loads(function["arguments"]) == {"input": PATCH}
        assert messages[2] == {"role": "tool", "tool_call_id": call.call_id, "content": "Done!"}
    else:
        turns = sent(fakes, "anthropic")["messages"]
        assert turns[1]["content"][0]["input"] == {"input": PATCH}
        assert turns[2]["content"][0]["content"] == "Done!"


def test_custom_call_continues_by_previous_response_id(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    first = sdk.responses.create(
        model="gpt-patch",
        input="add hello.txt",
        tools=[APPLY_PATCH],
    )
    call = first.output[0]
    assert isinstance(call, ResponseCustomToolCall)
    second = sdk.responses.create(
        model="gpt-echo",
        previous_response_id=first.id,
        tools=[APPLY_PATCH],
        input=[{"type": "custom_tool_call_output", "call_id": call.call_id, "output": "Done!"}],
    )
    assert second.status == "completed"
    messages = sent(fakes, "openai")["messages"]
    assert messages[1]["tool_calls"][0]["id"] == call.call_id
    assert messages[2]["content"] == "Done!"


def test_codex_fields_are_accepted_and_named_as_dropped(
    inbound_gateway: ServedApp, fakes: dict[str, Any]
) -> None:
    response = post(
        inbound_gateway,
        {
            "model": "gpt-echo",
            "input": "alpha",
            "tools": [APPLY_PATCH],
            "parallel_tool_calls": False,
            "include": ["reasoning.encrypted_content"],
            "prompt_cache_key": "session-1",
            "reasoning": {"effort": "low", "summary": "auto"},
            "store": False,
            "stream": False,
        },
    )
    assert response.status_code == 200, response.text
    parsed = Response.model_validate(response.json())
    assert parsed.output_text == "alpha"
    assert parsed.reasoning is not None and parsed.reasoning.summary == "auto"
    assert response.headers["x-crossroads-dropped-params"] == "include,prompt_cache_key"
    body = sent(fakes, "openai")
    assert "include" not in body and "prompt_cache_key" not in body
    assert body["parallel_tool_calls"] is False


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"background": True}, "background"),
        ({"conversation": "conv_1"}, "conversation"),
        ({"prompt": {"id": "pmpt_1"}}, "prompt"),
        ({"tools": [{"type": "custom"}]}, "tools[0].name"),
        ({"tools": [{**APPLY_PATCH, "format": {"type": "grammar"}}]}, "tools[0].format.definition"),
        ({"tools": [{**APPLY_PATCH, "format": {"type": "xml"}}]}, "tools[0].format"),
        ({"input": [{"type": "custom_tool_call", "call_id": "c", "name": "n"}]}, "input[0]"),
    ],
)
def test_what_cannot_be_served_is_named(
    inbound_gateway: ServedApp, extra: dict[str, Any], param: str
) -> None:
    response = post(inbound_gateway, {"model": "gpt-echo", "input": "x", **extra})
    assert response.status_code == 400
    assert response.json()["error"]["param"] == param


def test_arguments_not_wrapped_are_the_input_whole(inbound_gateway: ServedApp) -> None:
    """A model that put other keys in the arguments: nothing is lost, the text is them."""
    body = {"model": "claude-patch-unwrapped", "input": "x", "tools": [APPLY_PATCH]}
    events = raw_events(inbound_gateway, body)
    deltas = [d["delta"] for n, d in events if n == "response.custom_tool_call_input.delta"]
    done = next(d for n, d in events if n == "response.custom_tool_call_input.done")
    assert orjson.loads("".join(deltas)) == orjson.loads(done["input"]) == {"patch": "hello"}


@pytest.mark.parametrize(
    "text", [PATCH, "", 'quote " backslash \\ tab \t emoji \U0001f600 \u2028.']
)
def test_input_decoder_on_any_fragmentation(text: str) -> None:
    encodings = [
        orjson.dumps({"input": text}).decode(),
        '{ "input" :\n ' + orjson.dumps(text).decode() + " }",
        orjson.dumps({"input": text}).decode().replace("\U0001f600", "\\ud83d\\ude00"),
    ]
    chooser = random.Random(7)
    for raw in encodings:
        for _ in range(100):
            decoder, out, i = InputDecoder(), "", 0
            while i < len(raw):
                k = chooser.randint(1, 6)
                out += decoder.feed(raw[i : i + k])
                i += k
            assert out == text == decoder.text


def test_input_decoder_leaves_other_shapes_to_the_end() -> None:
    assert InputDecoder().feed('{"other": 1, "input": "x"}') == ""
    assert InputDecoder().feed("a bare patch") == ""
    decoder = InputDecoder()
    assert decoder.feed('{"in') == "" and decoder.feed('put": "ab') == "ab"


def test_a_codex_shaped_turn(inbound_gateway: ServedApp, fakes: dict[str, Any]) -> None:
    """A request as Codex sends it mid-session (store off, the whole history given back,
    a shell function tool beside apply_patch), streamed and valid event by event."""
    shell = {
        "type": "function",
        "name": "shell",
        "description": "Runs a shell command.",
        "strict": False,
        "parameters": {
            "type": "object",
            "properties": {"command": {"type": "array", "items": {"type": "string"}}},
            "required": ["command"],
        },
    }
    body = {
        "model": "claude-patch",
        "instructions": "You are a coding agent.",
        "input": [
            {"type": "message", "role": "developer",
             "content": [{"type": "input_text", "text": "sandbox: workspace-write"}]},
            {"type": "message", "role": "user",
             "content": [{"type": "input_text", "text": "add hello.txt"}]},
            {"type": "reasoning", "id": "rs_1", "summary": [],
             "encrypted_content": "opaque"},
            {"type": "function_call", "id": "fc_1", "call_id": "call_1", "name": "shell",
             "arguments": '{"command":["ls"]}'},
            {"type": "function_call_output", "call_id": "call_1", "output": "README.md"},
        ],
        "tools": [APPLY_PATCH, shell],  # the fake calls the first tool
        "tool_choice": "auto",
        "parallel_tool_calls": False,
        "reasoning": {"effort": "medium", "summary": "auto"},
        "store": False,
        "include": ["reasoning.encrypted_content"],
        "prompt_cache_key": "0199-session",
        "text": {"verbosity": "medium"},
    }  # fmt: skip
    events = raw_events(inbound_gateway, body)
    final = events[-1][1]["response"]
    assert final["status"] == "completed"
    assert [item["type"] for item in final["output"]] == ["custom_tool_call"]
    assert final["output"][0]["input"] == PATCH
    turns = sent(fakes, "anthropic")
    assert [tool["name"] for tool in turns["tools"]] == ["apply_patch", "shell"]
    assert turns["messages"][1]["content"][0]["type"] == "tool_use"


def test_a_stored_custom_call_is_retrieved_as_such(sdk: OpenAI) -> None:
    first = sdk.responses.create(model="gpt-patch", input="add hello.txt", tools=[APPLY_PATCH])
    again = sdk.responses.retrieve(first.id)
    assert again.output == first.output
    assert isinstance(again.output[0], ResponseCustomToolCall)
    assert again.tools == first.tools
    assert again.tools[0].type == "custom"
