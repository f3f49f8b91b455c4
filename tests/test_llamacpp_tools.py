"""Tool calling on the local engine: conversation rewriting, call grammars, call parsing."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import pytest
from jsonschema import Draft202012Validator

from crossroads.protocol.errors import GatewayError
from crossroads.providers.llamacpp.engine import LlamaEngine
from crossroads.providers.llamacpp.structured import LLGUIDANCE
from crossroads.providers.llamacpp.tools import parse_tool_calls, tool_call_grammar, tool_messages

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather for a city",
        "parameters": {
            "type": "object",
            "properties": {
                "city": {"$ref": "#/$defs/city"},
                "unit": {"enum": ["celsius", "fahrenheit"]},
            },
            "required": ["city", "unit"],
            "additionalProperties": False,
            "$defs": {"city": {"type": "string", "minLength": 1, "maxLength": 20}},
        },
    },
}
TIME = {
    "type": "function",
    "function": {
        "name": "get_time",
        "description": "Current time in a time zone",
        "parameters": {
            "type": "object",
            "properties": {
                "zone": {"type": "string", "pattern": r"^[A-Z][a-z]{1,15}/[A-Z][a-z_]{1,15}$"}
            },
            "required": ["zone"],
            "additionalProperties": False,
        },
    },
}
PING = {"type": "function", "function": {"name": "ping"}}  # no parameters at all
TOOLS = [WEATHER, TIME, PING]
SCHEMAS: dict[str, Any] = {
    "get_weather": WEATHER["function"]["parameters"],  # type: ignore[index]
    "get_time": TIME["function"]["parameters"],  # type: ignore[index]
    "ping": {"type": "object", "properties": {}, "additionalProperties": False},
}
CALL = {"id": "call_1", "type": "function"}
HISTORY: list[dict[str, Any]] = [
    {"role": "developer", "content": "Be brief."},
    {"role": "user", "content": "Weather in Paris?"},
    {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {
                **CALL,
                "function": {
                    "name": "get_weather",
                    "arguments": '{"city": "Paris", "unit": "celsius"}',
                },
            },
            {
                "id": "call_2",
                "type": "function",
                "function": {"name": "get_time", "arguments": '{"zone": "Europe/Paris"}'},
            },
        ],
    },
    {"role": "tool", "tool_call_id": "call_1", "content": "18C, sunny"},
    {"role": "tool", "tool_call_id": "call_2", "content": [{"type": "text", "text": "14:05"}]},
    {"role": "user", "content": "And in Rome?"},
]


def valid_call(call: dict[str, Any], names: set[str]) -> None:
    assert call["type"] == "function" and call["id"].startswith("call_")
    name = call["function"]["name"]
    assert name in names
    Draft202012Validator(SCHEMAS[name]).validate(json.loads(call["function"]["arguments"]))


# --- conversation rewriting -----------------------------------------------------------------


def test_tool_turns_become_alternating_text() -> None:
    messages = tool_messages(HISTORY, TOOLS)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    system = messages[0]["content"]
    assert system.startswith("Be brief.\n\nYou can call these tools:")
    assert '"name": "get_weather"' in system and '"description": "Current weather' in system
    # A function without parameters takes none.
    assert (
        '"parameters": {"type": "object", "properties": {}, "additionalProperties": false}'
        in system
    )
    assert '<tool_call>{"name": "<tool name>", "arguments"' in system
    assert messages[2]["content"] == (
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Paris", "unit": "celsius"}}'
        "</tool_call>\n"
        '<tool_call>{"name": "get_time", "arguments": {"zone": "Europe/Paris"}}</tool_call>'
    )
    assert messages[3]["content"] == (
        '<tool_response name="get_weather">18C, sunny</tool_response>\n\n'
        '<tool_response name="get_time">14:05</tool_response>\n\nAnd in Rome?'
    )


def test_rewriting_without_tools_still_fixes_the_turns() -> None:
    messages = tool_messages(
        [
            {"role": "assistant", "content": "Hello!"},  # a conversation may open with us
            {"role": "user", "content": "Hi"},
            {"role": "user", "content": [{"type": "text", "text": "there"}]},
            {"role": "system", "content": "Late instruction."},
            {"role": "tool", "tool_call_id": "unknown", "content": "orphan"},
        ],
        None,
    )
    assert messages == [
        {"role": "user", "content": ""},
        {"role": "assistant", "content": "Hello!"},
        {
            "role": "user",
            "content": "Hi\n\nthere\n\nLate instruction.\n\n<tool_response>orphan</tool_response>",
        },
    ]
    assert tool_messages([{"role": "system", "content": "S"}], []) == [
        {"role": "system", "content": "S"},
        {"role": "user", "content": ""},
    ]


# --- grammars -------------------------------------------------------------------------------


def test_no_grammar_without_tools_or_with_none() -> None:
    assert tool_call_grammar(None, "required", True) is None
    assert tool_call_grammar([], "auto", True) is None
    assert tool_call_grammar(TOOLS, "none", True) is None


def test_grammar_shapes() -> None:
    required = tool_call_grammar(TOOLS, "required", False)
    assert required is not None and required.startswith(LLGUIDANCE + "start: call\n")
    schema = json.loads(required.split("arguments: %json ", 1)[1])
    assert [b["properties"]["name"]["const"] for b in schema["anyOf"]] == [
        "get_weather",
        "get_time",
        "ping",
    ]
    weather = schema["anyOf"][0]["properties"]["arguments"]
    assert weather["properties"]["city"]["$ref"] == "#/anyOf/0/properties/arguments/$defs/city"
    assert schema["anyOf"][2]["properties"]["arguments"] == SCHEMAS["ping"]
    named = tool_call_grammar(TOOLS, {"type": "function", "function": {"name": "get_time"}}, True)
    assert named is not None and 'start: call ("\\n" call)*' in named
    assert [
        b["properties"]["name"]["const"] for b in json.loads(named.split("%json ")[1])["anyOf"]
    ] == ["get_time"]
    auto = tool_call_grammar(TOOLS, "auto", True)
    assert auto is not None and auto.startswith(LLGUIDANCE + "start: TEXT | call")
    assert auto == tool_call_grammar(TOOLS, None, True)  # auto is the default


@pytest.mark.parametrize(
    ("tools", "choice", "param", "expected"),
    [
        (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice", "'nope'"),
        (TOOLS, "sometimes", "tool_choice", "tool_choice must be"),
        (
            [{"type": "function", "function": {"name": "f", "parameters": {"type": "string"}}}],
            "required",
            "tools[0].function.parameters",
            "must describe an object",
        ),
        (
            [
                PING,
                {"type": "function", "function": {"name": "g", "parameters": {"uniqueItems": 1}}},
            ],
            "auto",
            "tools[1].function.parameters",
            "invalid JSON schema",
        ),
    ],
)
def test_bad_tools_and_choices_are_refused(
    tools: list[dict[str, Any]], choice: Any, param: str, expected: str
) -> None:
    with pytest.raises(GatewayError) as caught:
        tool_call_grammar(tools, choice, True)
    assert caught.value.status == 400 and caught.value.param == param
    assert expected in caught.value.message


# --- parsing --------------------------------------------------------------------------------


def test_parse_round_trips_calls_and_keeps_the_rest() -> None:
    text = (
        'Let me check.\n<tool_call>{"name": "get_weather", "arguments": '
        '{"city": "Rome", "unit": "celsius"}}</tool_call>\n'
        '<tool_call>{"name":"ping","arguments":{}}</tool_call>'
    )
    content, calls = parse_tool_calls(text, TOOLS)
    assert content == "Let me check."
    assert [c["function"]["name"] for c in calls] == ["get_weather", "ping"]
    assert json.loads(calls[0]["function"]["arguments"]) == {"city": "Rome", "unit": "celsius"}
    assert len({c["id"] for c in calls}) == 2
    for call in calls:
        valid_call(call, set(SCHEMAS))
    # Rendering the calls back (the next turn of the conversation) and parsing gives them again.
    assistant = {"role": "assistant", "content": content, "tool_calls": calls}
    rendered = tool_messages([{"role": "user", "content": "x"}, assistant], None)[1]["content"]
    again_content, again = parse_tool_calls(rendered, TOOLS)
    assert again_content == "Let me check."
    assert [c["function"] for c in again] == [c["function"] for c in calls]


@pytest.mark.parametrize(
    "block",
    [
        '<tool_call>{"name": "get_weather", "arguments": {"city": "Rome"}}</tool_call>',  # unit
        '<tool_call>{"name": "launch", "arguments": {}}</tool_call>',  # unknown tool
        '<tool_call>{"name": "ping"}</tool_call>',  # no arguments
        '<tool_call>{"name": "ping", "arguments": {"x": 1}}</tool_call>',  # ping takes none
        '<tool_call>{"name": "ping", "arguments": []}</tool_call>',
        "<tool_call>not json</tool_call>",
        '<tool_call>{"name": "ping", "arguments": {}}',  # cut off by max_tokens
    ],
)
def test_malformed_calls_stay_content(block: str) -> None:
    content, calls = parse_tool_calls(f"Sure. {block} Done.", TOOLS)
    assert calls == [] and content == f"Sure. {block} Done."


def test_parse_only_calls_gives_no_content() -> None:
    assert parse_tool_calls("plain answer", TOOLS) == ("plain answer", [])
    content, calls = parse_tool_calls(
        '<tool_call>{"name":"ping","arguments":{}}</tool_call>', TOOLS
    )
    assert content is None and len(calls) == 1


# --- on the real engine ---------------------------------------------------------------------


async def complete(
    engine: LlamaEngine,
    messages: list[dict[str, Any]],
    tool_choice: Any,
    parallel: bool,
    seed: int,
    max_tokens: int = 120,
) -> tuple[str | None, list[dict[str, Any]], str]:
    request: dict[str, Any] = {
        "messages": tool_messages(messages, TOOLS),
        "max_tokens": max_tokens,
        "temperature": 0.8,
        "seed": seed,
    }
    grammar = tool_call_grammar(TOOLS, tool_choice, parallel)
    if grammar is not None:
        request["grammar"] = grammar
    result = await engine.call("handle_chat_completions", request)
    choice = result["choices"][0]
    content, calls = parse_tool_calls(choice["message"]["content"], TOOLS)
    return content, calls, choice["finish_reason"]


@pytest.mark.engine
async def test_rewritten_conversation_renders_in_the_gemma_template(engine: LlamaEngine) -> None:
    rendered = await engine.http("/apply-template", {"messages": tool_messages(HISTORY, TOOLS)})
    prompt = rendered["prompt"]
    assert prompt.startswith("<start_of_turn>user\nBe brief.\n\nYou can call these tools:")
    assert '<start_of_turn>model\n<tool_call>{"name": "get_weather"' in prompt
    assert '<tool_response name="get_time">14:05</tool_response>\n\nAnd in Rome?' in prompt
    assert prompt.endswith("<start_of_turn>model\n")


@pytest.mark.engine
async def test_required_and_named_calls_are_valid(engine: LlamaEngine) -> None:
    ask = [{"role": "user", "content": "What is the weather in Oslo?"}]
    named = {"type": "function", "function": {"name": "get_time"}}
    runs = [("required", False, 1), ("required", False, 2), (named, False, 3), (named, True, 4)]
    results = await asyncio.gather(*(complete(engine, ask, c, p, s) for c, p, s in runs))
    for (choice, parallel, _), (content, calls, finish) in zip(runs, results, strict=True):
        if parallel:  # this model may keep adding calls until max_tokens; all must be valid
            assert len(calls) >= 1
        else:
            assert (finish, content, len(calls)) == ("stop", None, 1)
        for call in calls:
            valid_call(call, set(SCHEMAS) if choice == "required" else {"get_time"})


@pytest.mark.engine
async def test_parallel_calls_are_valid(engine: LlamaEngine) -> None:
    ask = [{"role": "user", "content": "Weather and time in Oslo and in Rome?"}]
    content, calls, finish = await complete(engine, ask, "required", True, 5, 160)
    assert len(calls) >= 1
    for call in calls:
        valid_call(call, set(SCHEMAS))
    if finish == "stop":  # a run cut by max_tokens may leave a partial block as content
        assert content is None


@pytest.mark.engine
async def test_multi_turn_conversation_completes(engine: LlamaEngine) -> None:
    runs = [("auto", True, 6), ("auto", True, 7), ("required", True, 8), ("none", True, 9)]
    results = await asyncio.gather(*(complete(engine, HISTORY, c, p, s) for c, p, s in runs))
    for (choice, _, _), (content, calls, finish) in zip(runs, results, strict=True):
        assert finish in ("stop", "length")
        for call in calls:
            valid_call(call, set(SCHEMAS))
        if choice == "auto" and content is not None and finish == "stop":
            # Under "auto" a reply that opens with a call tag is held to the call format.
            assert not content.lstrip().startswith("<tool_call>"), content
        if choice == "required":
            assert calls
