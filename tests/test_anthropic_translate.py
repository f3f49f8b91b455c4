"""OpenAI chat completions ↔ Anthropic's Messages API: requests, answers and streams."""

from __future__ import annotations

import re
from typing import Any

import pytest

from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError
from crossroads.providers.anthropic.reasoning import lost_thinking
from crossroads.providers.anthropic.tool_ids import from_anthropic, to_anthropic
from crossroads.providers.anthropic.translate import (
    DEFAULT_MAX_TOKENS,
    AnthropicRequest,
    StreamMapper,
    map_request,
    map_response,
    map_usage,
)
from crossroads.providers.base import UpstreamError

MODEL = "claude-sonnet-4-5"
JSON_TOOL_DESCRIPTION = "Respond with the answer as this tool's input."
WEATHER = {
    "type": "object",
    "properties": {"city": {"type": "string"}},
    "required": ["city"],
}


def body(*messages: dict[str, Any], **params: Any) -> dict[str, Any]:
    return {"model": MODEL, "messages": list(messages) or [user("Hi")], **params}


def user(content: Any) -> dict[str, Any]:
    return {"role": "user", "content": content}


def assistant(content: Any = None, **fields: Any) -> dict[str, Any]:
    return {"role": "assistant", "content": content, **fields}


def call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def tool(call_id: str, content: Any) -> dict[str, Any]:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def weather_tool() -> dict[str, Any]:
    return {
        "type": "function",
        "function": {"name": "weather", "description": "Weather now.", "parameters": WEATHER},
    }


def mapped(**params: Any) -> dict[str, Any]:
    """The Messages API body for a one-turn request with `params`, model and messages aside."""
    out = map_request(body(**params)).body
    assert out.pop("model") == MODEL
    assert out.pop("messages") == [{"role": "user", "content": "Hi"}]
    return out


def refused(request: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        map_request(request)
    assert info.value.status == 400
    return info.value


# --- requests: the conversation ---------------------------------------------------------------


def test_a_plain_request_carries_model_messages_and_the_default_limit() -> None:
    request = map_request(body(user("Hi")))
    assert request == AnthropicRequest(
        body={
            "model": MODEL,
            "messages": [{"role": "user", "content": "Hi"}],
            "max_tokens": DEFAULT_MAX_TOKENS,
        },
        json_tool=None,
        include_reasoning=True,
        model=MODEL,
    )
    assert DEFAULT_MAX_TOKENS == 4096


def test_streaming_requests_say_so() -> None:
    assert map_request(body(), stream=True).body["stream"] is True
    assert "stream" not in map_request(body(stream=True)).body


def test_system_and_developer_messages_anywhere_become_the_system_string() -> None:
    out = map_request(
        body(
            {"role": "system", "content": "Be brief."},
            user("Hi"),
            {"role": "developer", "content": [{"type": "text", "text": "Use metric units."}]},
            assistant("Hello."),
            {
                "role": "system",
                "content": [{"type": "text", "text": "A"}, {"type": "text", "text": "B"}],
            },
            user("Weather?"),
        )
    ).body
    assert out["system"] == "Be brief.\n\nUse metric units.\n\nA\n\nB"
    assert out["messages"] == [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": "Weather?"},
    ]
    assert "system" not in map_request(body()).body


def test_a_tool_conversation_merges_results_into_one_user_turn_results_first() -> None:
    out = map_request(
        body(
            {"role": "system", "content": "Be brief."},
            user("Weather in Oslo and Rome?"),
            assistant(
                "",
                tool_calls=[
                    call("call_1", "weather", '{"city": "Oslo"}'),
                    call("call_2", "weather", '{"city":"Rome"}'),
                ],
            ),
            tool("call_1", "3°C"),
            tool("call_2", [{"type": "text", "text": "21"}, {"type": "text", "text": "°C"}]),
            user("And in Paris?"),
            assistant("Let me check.", tool_calls=[call("call_3", "weather", "")]),
            user([{"type": "text", "text": "Quickly, please."}]),
            tool("call_3", "12°C"),
        )
    ).body
    assert out["messages"] == [
        {"role": "user", "content": "Weather in Oslo and Rome?"},
        {
            "role": "assistant",
            "content": [
                {"type": "tool_use", "id": "call_1", "name": "weather", "input": {"city": "Oslo"}},
                {"type": "tool_use", "id": "call_2", "name": "weather", "input": {"city": "Rome"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_1", "content": "3°C"},
                {"type": "tool_result", "tool_use_id": "call_2", "content": "21°C"},
                {"type": "text", "text": "And in Paris?"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Let me check."},
                {"type": "tool_use", "id": "call_3", "name": "weather", "input": {}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "tool_result", "tool_use_id": "call_3", "content": "12°C"},
                {"type": "text", "text": "Quickly, please."},
            ],
        },
    ]


def test_adjacent_turns_of_one_role_merge_and_names_are_ignored() -> None:
    out = map_request(
        body(
            {"role": "user", "content": "One.", "name": "ann"},
            user([{"type": "text", "text": "Two."}, {"type": "text", "text": ""}]),
            assistant([{"type": "text", "text": "Three."}], name="bot"),
            assistant("Four."),
            user(""),
            user("Five."),
        )
    ).body
    assert out["messages"] == [
        {
            "role": "user",
            "content": [{"type": "text", "text": "One."}, {"type": "text", "text": "Two."}],
        },
        {
            "role": "assistant",
            "content": [{"type": "text", "text": "Three."}, {"type": "text", "text": "Four."}],
        },
        {"role": "user", "content": "Five."},
    ]


def test_a_single_text_part_is_sent_as_the_string_it_stands_for() -> None:
    out = map_request(body(user([{"type": "text", "text": "Hi"}]))).body
    assert out["messages"] == [{"role": "user", "content": "Hi"}]


def test_reasoning_content_of_earlier_answers_is_not_replayed() -> None:
    out = map_request(
        body(user("Hi"), assistant("Hello.", reasoning_content="They said hi."), user("Bye"))
    ).body
    assert out["messages"][1] == {"role": "assistant", "content": "Hello."}


SIGNED = {
    "type": "reasoning.text",
    "text": "Weather first.",
    "signature": "c2ln",
    "format": "anthropic-claude-v1",
    "index": 0,
}
REDACTED = {"type": "reasoning.encrypted", "data": "b3BhcXVl", "format": "anthropic-claude-v1"}
THOUGHT = {"type": "thinking", "thinking": "Weather first.", "signature": "c2ln"}


def test_reasoning_details_given_back_open_their_assistant_turn() -> None:
    other = {"type": "reasoning.text", "text": "x", "format": "google-gemini-v1"}
    unsigned = {"type": "reasoning.text", "text": "y", "signature": None}
    details = [other, SIGNED, unsigned, REDACTED]
    out = map_request(
        body(
            user("Weather?"),
            assistant("Checking.", tool_calls=[call("toolu_1", "weather", "{}")]),
            assistant("More.", reasoning_details=[{**SIGNED, "text": "Later."}]),
            tool("toolu_1", "sunny"),
            reasoning_effort="low",
        )
    ).body
    # Thinking first in the merged turn; another format's or unsigned reasoning left out.
    assert out["messages"][1]["content"] == [
        {**THOUGHT, "thinking": "Later."},
        {"type": "text", "text": "Checking."},
        {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}},
        {"type": "text", "text": "More."},
    ]
    out = map_request(
        body(
            user("Weather?"),
            assistant(
                None, tool_calls=[call("toolu_1", "weather", "{}")], reasoning_details=details
            ),
            tool("toolu_1", "sunny"),
            reasoning_effort="low",
        )
    ).body
    assert out["messages"][1]["content"][:2] == [
        THOUGHT,
        {"type": "redacted_thinking", "data": "b3BhcXVl"},
    ]


def test_thinking_alone_or_in_a_final_turn_without_thinking_is_not_replayed() -> None:
    out = map_request(
        body(user("Hi"), assistant("", reasoning_details=[SIGNED]), user("Again"))
    ).body
    texts = [{"type": "text", "text": "Hi"}, {"type": "text", "text": "Again"}]
    assert out["messages"] == [{"role": "user", "content": texts}]
    prefill = body(user("Hi"), assistant("The answer is", reasoning_details=[SIGNED]))
    assert map_request(prefill).body["messages"][1] == {
        "role": "assistant",
        "content": "The answer is",
    }


@pytest.mark.parametrize(
    ("details", "param"),
    [
        ("signed", "messages[1].reasoning_details"),
        (["x"], "messages[1].reasoning_details[0]"),
        ([{**SIGNED, "text": 3}], "messages[1].reasoning_details[0]"),
        ([{**REDACTED, "data": ""}], "messages[1].reasoning_details[0]"),
    ],
)
def test_malformed_reasoning_details_are_refused(details: Any, param: str) -> None:
    conversation = (user("Hi"), assistant("Hello.", reasoning_details=details), user("Bye"))
    assert refused(body(*conversation)).param == param


@pytest.mark.parametrize(
    ("messages", "params", "dropped"),
    [
        # A tool loop in progress whose opening turn came back without its thinking.
        ([assistant(None, tool_calls=[call("a", "f", "{}")]), tool("a", "x")], {}, True),
        # A user message after the results joins their turn: the loop is still open.
        (
            [assistant(None, tool_calls=[call("a", "f", "{}")]), tool("a", "x"), user("go")],
            {},
            True,
        ),
        # Every thinking parameter the caller set is dropped.
        (
            [assistant(None, tool_calls=[call("a", "f", "{}")]), tool("a", "x")],
            {"reasoning": {"exclude": True}},
            True,
        ),
        # The thinking came back with the turn.
        (
            [
                assistant(None, tool_calls=[call("a", "f", "{}")], reasoning_details=[SIGNED]),
                tool("a", "x"),
                assistant(None, tool_calls=[call("b", "f", "{}")]),
                tool("b", "x"),
            ],
            {},
            False,
        ),
        # Unsigned reasoning is no thinking block.
        (
            [
                assistant(
                    None,
                    tool_calls=[call("a", "f", "{}")],
                    reasoning_details=[{**SIGNED, "signature": None}],
                ),
                tool("a", "x"),
            ],
            {},
            True,
        ),
        # The loop ended with an answer and a new question.
        (
            [
                assistant(None, tool_calls=[call("a", "f", "{}")]),
                tool("a", "x"),
                assistant("Done."),
                user("More?"),
            ],
            {},
            False,
        ),
        # Thinking off: nothing to drop.
        (
            [assistant(None, tool_calls=[call("a", "f", "{}")]), tool("a", "x")],
            {"reasoning_effort": None, "reasoning": {"enabled": False}},
            False,
        ),
    ],
)
def test_thinking_is_dropped_only_for_a_tool_loop_that_lost_it(
    messages: list[dict[str, Any]], params: dict[str, Any], dropped: bool
) -> None:
    request = body(user("Go"), *messages, **{"reasoning_effort": "low", **params})
    expected = [n for n in ("reasoning_effort", "reasoning") if request.get(n) is not None]
    assert lost_thinking(request) == (expected if dropped else [])
    if dropped:  # what the real API refuses; the fake agrees (see test_dialects_continued)
        first = map_request(request).body["messages"][1]["content"]
        assert first[0]["type"] == "tool_use"


@pytest.mark.parametrize(
    "call_id", ["functions.get_weather:0", "call 1", "é", "", "xid_abc", "a+b/c="]
)
def test_foreign_tool_call_ids_map_into_anthropics_alphabet_and_back(call_id: str) -> None:
    mapped_id = to_anthropic(call_id)
    assert re.fullmatch(r"[a-zA-Z0-9_-]+", mapped_id)
    assert from_anthropic(mapped_id) == call_id
    out = map_request(
        body(
            user("Go"),
            assistant(None, tool_calls=[call(call_id, "f", "{}")]),
            tool(call_id, "done"),
        )
    ).body
    assert out["messages"][1]["content"][0]["id"] == mapped_id
    assert out["messages"][2]["content"][0]["tool_use_id"] == mapped_id


def test_anthropic_ids_pass_unchanged_both_ways() -> None:
    for tool_id in ("toolu_01A09q90qw90lq917835lq9", "call_1", "srvtoolu_x-y"):
        assert to_anthropic(tool_id) == tool_id
        assert from_anthropic(tool_id) == tool_id
    encoded = to_anthropic("functions.f:0")
    answer = map_response(
        message(
            {"type": "tool_use", "id": encoded, "name": "f", "input": {}}, stop_reason="tool_use"
        ),
        plain(),
    )
    assert answer["choices"][0]["message"]["tool_calls"][0]["id"] == "functions.f:0"


def test_a_pdf_file_part_is_a_document() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
    out = map_request(body(user([part, {"type": "text", "text": "Sum up."}]))).body
    assert out["messages"][0]["content"] == [
        {
            "type": "document",
            "source": {"type": "base64", "media_type": "application/pdf", "data": "JVBERi0="},
        },
        {"type": "text", "text": "Sum up."},
    ]


def test_images_as_base64_and_as_urls() -> None:
    out = map_request(
        body(
            user(
                [
                    {"type": "text", "text": "Compare"},
                    {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0K"}},
                    {
                        "type": "image_url",
                        "image_url": {"url": "https://example.com/cat.jpg", "detail": "high"},
                    },
                ]
            )
        )
    ).body
    assert out["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Compare"},
                {
                    "type": "image",
                    "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0K"},
                },
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    "url",
    ["data:image/bmp;base64,Qk0=", "data:image/png,rawbytes", "ftp://example.com/cat.png"],
)
def test_images_anthropic_cannot_take_are_refused_by_part(url: str) -> None:
    parts = [{"type": "text", "text": "Look"}, {"type": "image_url", "image_url": {"url": url}}]
    error = refused(body(user("Hi"), assistant("Yes?"), user(parts)))
    assert error.param == "messages[2].content[1]"


@pytest.mark.parametrize(
    ("part", "param"),
    [
        (
            {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
            "messages[0].content[1]",
        ),
        ({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[1].file.file_id"),
        (
            {"type": "file", "file": {"file_data": "data:text/csv;base64,YSxi"}},
            "messages[0].content[1].file.file_data",
        ),
        ({"type": "file", "file": {"filename": "a.pdf"}}, "messages[0].content[1].file.file_data"),
    ],
)
def test_audio_and_files_other_than_inline_pdfs_are_refused(
    part: dict[str, Any], param: str
) -> None:
    assert refused(body(user([{"type": "text", "text": "Hear"}, part]))).param == param


def test_arguments_that_are_not_a_json_object_are_refused() -> None:
    for arguments in ("[1, 2]", "{oops", '"text"'):
        conversation = (
            user("Go"),
            assistant(None, tool_calls=[call("a", "f", "{}"), call("b", "f", arguments)]),
        )
        error = refused(body(*conversation))
        assert error.param == "messages[1].tool_calls[1].function.arguments"


def test_legacy_function_messages_and_unknown_roles_are_refused() -> None:
    function = {"role": "function", "name": "f", "content": "42"}
    assert refused(body(user("Go"), function)).param == "messages[1]"
    legacy = assistant(None, function_call={"name": "f", "arguments": "{}"})
    assert refused(body(user("Go"), legacy)).param == "messages[1].function_call"
    assert refused(body({"role": "narrator", "content": "Once"})).param == "messages[0].role"


def test_a_conversation_must_open_with_the_user() -> None:
    error = refused(
        body({"role": "system", "content": "Be nice."}, assistant("Hello!"), user("Hi"))
    )
    assert error.param == "messages[1]"
    assert "begin with a user message" in error.message
    assert refused(body({"role": "system", "content": "Be nice."})).param == "messages"


# --- requests: parameters ---------------------------------------------------------------------


def test_token_limits() -> None:
    assert mapped()["max_tokens"] == 4096
    assert map_request(body(), default_max_tokens=1000).body["max_tokens"] == 1000
    assert mapped(max_tokens=300)["max_tokens"] == 300
    assert mapped(max_tokens=300, max_completion_tokens=200)["max_tokens"] == 200


def test_sampling_stop_and_user_and_what_is_left_behind() -> None:
    assert mapped(
        temperature=0.2,
        top_p=0.9,
        top_k=40,
        stop="END",
        user="user-7",
        metadata={"team": "a"},
        store=True,
        seed=7,
        n=1,
        stream_options={"include_usage": True},
    ) == {
        "max_tokens": 4096,
        "temperature": 0.2,
        "top_p": 0.9,
        "top_k": 40,
        "stop_sequences": ["END"],
        "metadata": {"user_id": "user-7"},
    }
    assert mapped(stop=["a", "b"])["stop_sequences"] == ["a", "b"]
    assert "stop_sequences" not in mapped(stop=[])


def test_tools() -> None:
    bare = {"type": "function", "function": {"name": "now"}}
    assert mapped(tools=[weather_tool(), bare]) == {
        "max_tokens": 4096,
        "tools": [
            {"name": "weather", "input_schema": WEATHER, "description": "Weather now."},
            {"name": "now", "input_schema": {"type": "object", "properties": {}}},
        ],
    }


@pytest.mark.parametrize(
    ("choice", "parallel", "expected"),
    [
        (None, None, None),
        (None, True, None),
        (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", None, {"type": "auto"}),
        ("auto", False, {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", None, {"type": "any"}),
        ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
        ("none", None, {"type": "none"}),
        ("none", False, {"type": "none"}),
        (
            {"type": "function", "function": {"name": "weather"}},
            None,
            {"type": "tool", "name": "weather"},
        ),
        (
            {"type": "function", "function": {"name": "weather"}},
            False,
            {"type": "tool", "name": "weather", "disable_parallel_tool_use": True},
        ),
    ],
)
def test_tool_choice(choice: Any, parallel: bool | None, expected: dict[str, Any] | None) -> None:
    out = mapped(tools=[weather_tool()], tool_choice=choice, parallel_tool_calls=parallel)
    assert out["tools"][0]["name"] == "weather"
    assert out.get("tool_choice") == expected


def test_tool_choice_without_tools() -> None:
    assert mapped(tool_choice="none", parallel_tool_calls=False) == {"max_tokens": 4096}
    assert refused(body(tool_choice="required")).param == "tool_choice"


def test_json_schema_is_a_forced_tool() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "integer"}}}
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": schema, "strict": True}}
    request = map_request(body(response_format=fmt))
    assert request.json_tool == "sum"
    assert request.body["tools"] == [
        {"name": "sum", "description": JSON_TOOL_DESCRIPTION, "input_schema": schema}
    ]
    assert request.body["tool_choice"] == {"type": "tool", "name": "sum"}


@pytest.mark.parametrize(
    ("params", "name", "schema"),
    [
        ({"response_format": {"type": "json_object"}}, "json_answer", {"type": "object"}),
        ({"guided_json": WEATHER}, "json_answer", WEATHER),
        (
            {"guided_json": '{"type": "object", "properties": {}}'},
            "json_answer",
            {"type": "object", "properties": {}},
        ),
        (
            {"response_format": {"type": "json_schema", "json_schema": {"name": "x"}}},
            "x",
            {"type": "object"},
        ),
    ],
)
def test_other_json_answers(params: dict[str, Any], name: str, schema: Any) -> None:
    request = map_request(body(**params))
    assert request.json_tool == name
    assert request.body["tools"] == [
        {"name": name, "description": JSON_TOOL_DESCRIPTION, "input_schema": schema}
    ]
    assert request.body["tool_choice"] == {"type": "tool", "name": name}


def test_text_format_changes_nothing() -> None:
    request = map_request(body(response_format={"type": "text"}))
    assert request.json_tool is None
    assert request.body == {
        "model": MODEL,
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 4096,
    }


def test_a_json_answer_cannot_join_the_callers_tools_or_be_an_array() -> None:
    error = refused(body(tools=[weather_tool()], response_format={"type": "json_object"}))
    assert error.param == "response_format"
    assert "cannot be combined with `tools`" in error.message
    assert refused(body(tools=[weather_tool()], guided_json=WEATHER)).param == "guided_json"
    array = {"type": "json_schema", "json_schema": {"name": "xs", "schema": {"type": "array"}}}
    assert refused(body(response_format=array)).param == "response_format"


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768)],
)
def test_reasoning_effort_sets_a_thinking_budget_on_top_of_the_default_limit(
    effort: str, budget: int
) -> None:
    for params in ({"reasoning_effort": effort}, {"reasoning": {"effort": effort}}):
        assert mapped(**params) == {
            "thinking": {"type": "enabled", "budget_tokens": budget},
            "max_tokens": budget + 4096,
        }


def test_other_ways_to_ask_for_reasoning() -> None:
    assert mapped(reasoning_effort="none") == {"max_tokens": 4096}
    assert mapped(reasoning={"effort": "none"}) == {"max_tokens": 4096}
    assert mapped(reasoning={"enabled": True}) == {
        "thinking": {"type": "enabled", "budget_tokens": 8192},
        "max_tokens": 8192 + 4096,
    }
    assert mapped(reasoning={"enabled": False}, reasoning_effort="high") == {"max_tokens": 4096}
    assert mapped(reasoning={"max_tokens": 3000}, reasoning_effort="high") == {
        "thinking": {"type": "enabled", "budget_tokens": 3000},
        "max_tokens": 3000 + 4096,
    }
    assert refused(body(reasoning={"max_tokens": 1000})).param == "reasoning.max_tokens"


def test_the_callers_limit_must_exceed_the_thinking_budget() -> None:
    assert mapped(reasoning_effort="low", max_tokens=2049)["max_tokens"] == 2049
    error = refused(body(reasoning_effort="low", max_completion_tokens=2048))
    assert error.param == "max_completion_tokens"
    assert "2048" in error.message
    assert refused(body(reasoning={"max_tokens": 5000}, max_tokens=100)).param == "max_tokens"


def test_reasoning_exclude_hides_the_thinking() -> None:
    request = map_request(body(reasoning={"effort": "low", "exclude": True}))
    assert request.include_reasoning is False
    assert request.body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert map_request(body(reasoning={"effort": "low"})).include_reasoning is True


def test_a_native_thinking_object_wins_untouched() -> None:
    native = {"type": "enabled", "budget_tokens": 5000, "display": "omitted"}
    assert mapped(thinking=native, reasoning_effort="high") == {
        "thinking": native,
        "max_tokens": 5000 + 4096,
    }
    adaptive = {"type": "adaptive"}
    assert mapped(thinking=adaptive) == {"thinking": adaptive, "max_tokens": 4096}
    assert mapped(thinking={"type": "disabled"}, tool_choice="required", tools=[weather_tool()])[
        "tool_choice"
    ] == {"type": "any"}


@pytest.mark.parametrize("thinking", ["yes", True, ["enabled"]])
def test_a_native_thinking_that_is_not_an_object_is_refused(thinking: Any) -> None:
    assert refused(body(thinking=thinking)).param == "thinking"


def test_thinking_refuses_forced_tools_and_changed_sampling() -> None:
    named = {"type": "function", "function": {"name": "weather"}}
    for choice in ("required", named):
        error = refused(body(reasoning_effort="low", tools=[weather_tool()], tool_choice=choice))
        assert error.param == "tool_choice"
    error = refused(body(reasoning_effort="low", response_format={"type": "json_object"}))
    assert error.param == "response_format"
    assert "JSON answer" in error.message
    assert refused(body(reasoning_effort="low", guided_json=WEATHER)).param == "guided_json"
    assert refused(body(reasoning_effort="low", temperature=0.5)).param == "temperature"
    assert refused(body(reasoning_effort="low", top_p=0.5)).param == "top_p"
    assert refused(body(reasoning_effort="low", top_k=5)).param == "top_k"
    allowed = mapped(reasoning_effort="low", temperature=1, top_p=0.95, tool_choice="auto")
    assert allowed["temperature"] == 1
    assert allowed["top_p"] == 0.95


# --- answers ----------------------------------------------------------------------------------


def plain() -> AnthropicRequest:
    return map_request(body())


def message(*content: dict[str, Any], stop_reason: str | None = "end_turn") -> dict[str, Any]:
    return {
        "id": "msg_01",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-5-20250929",
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": {
            "input_tokens": 20,
            "cache_creation_input_tokens": 100,
            "cache_read_input_tokens": 1000,
            "output_tokens": 30,
        },
    }


USAGE = {
    "prompt_tokens": 1120,
    "completion_tokens": 30,
    "total_tokens": 1150,
    "prompt_tokens_details": {"cached_tokens": 1000, "cache_write_tokens": 100},
    "completion_tokens_details": {"reasoning_tokens": 0},
}


def test_a_text_answer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("time.time", lambda: 1700000000.5)
    answer = map_response(
        message({"type": "text", "text": "Hello"}, {"type": "text", "text": " there."}), plain()
    )
    assert answer == {
        "id": "msg_01",
        "object": "chat.completion",
        "created": 1700000000,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there.", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": USAGE,
    }


def test_tool_calls_thinking_and_redacted_thinking() -> None:
    answer = map_response(
        message(
            {"type": "thinking", "thinking": "Two cities.", "signature": "sig=="},
            {"type": "redacted_thinking", "data": "opaque"},
            {"type": "thinking", "thinking": " Two calls.", "signature": "sig2=="},
            {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {"city": "Oslo"}},
            {"type": "tool_use", "id": "toolu_2", "name": "now", "input": {}},
            stop_reason="tool_use",
        ),
        plain(),
    )
    assert answer["choices"][0] == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": "toolu_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Oslo"}'},
                },
                {
                    "id": "toolu_2",
                    "type": "function",
                    "function": {"name": "now", "arguments": "{}"},
                },
            ],
            "reasoning_content": "Two cities. Two calls.",
            "reasoning_details": [
                {
                    "type": "reasoning.text",
                    "text": "Two cities.",
                    "signature": "sig==",
                    "format": "anthropic-claude-v1",
                    "index": 0,
                },
                {
                    "type": "reasoning.encrypted",
                    "data": "opaque",
                    "format": "anthropic-claude-v1",
                    "index": 1,
                },
                {
                    "type": "reasoning.text",
                    "text": " Two calls.",
                    "signature": "sig2==",
                    "format": "anthropic-claude-v1",
                    "index": 2,
                },
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }
    hidden = map_request(body(reasoning={"effort": "low", "exclude": True}))
    thinking = {"type": "thinking", "thinking": "Hmm.", "signature": "s"}
    answer = map_response(message(thinking, {"type": "text", "text": "Yes."}), hidden)
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": "Yes.",
        "refusal": None,
    }


def test_text_beside_tool_calls_is_kept() -> None:
    answer = map_response(
        message(
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "toolu_1", "name": "now", "input": {}},
            stop_reason="tool_use",
        ),
        plain(),
    )
    assert answer["choices"][0]["message"]["content"] == "Checking."
    assert len(answer["choices"][0]["message"]["tool_calls"]) == 1


def test_an_empty_answer_has_empty_content_and_the_upstream_model_when_none_was_asked() -> None:
    request = map_request({"messages": [user("Hi")]})
    answer = map_response(message(stop_reason=None), request)
    assert answer["model"] == "claude-sonnet-4-5-20250929"
    assert answer["choices"][0]["message"]["content"] == ""
    assert answer["choices"][0]["finish_reason"] == "stop"


@pytest.mark.parametrize(
    ("stop_reason", "finish"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("max_tokens", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("pause_turn", "stop"),
        ("model_context_window_exceeded", "length"),
        (None, "stop"),
        ("something_new", "stop"),
    ],
)
def test_every_stop_reason(stop_reason: str | None, finish: str) -> None:
    answer = map_response(message({"type": "text", "text": "x"}, stop_reason=stop_reason), plain())
    assert answer["choices"][0]["finish_reason"] == finish


def test_a_json_answer_is_the_forced_tools_input_as_content() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": {"type": "object"}}}
    request = map_request(body(response_format=fmt))
    answer = map_response(
        message(
            {"type": "tool_use", "id": "toolu_1", "name": "sum", "input": {"answer": 4, "é": [1]}},
            stop_reason="tool_use",
        ),
        request,
    )
    assert answer["choices"][0]["message"] == {
        "role": "assistant",
        "content": '{"answer":4,"é":[1]}',
        "refusal": None,
    }
    assert answer["choices"][0]["finish_reason"] == "stop"
    cut = map_response(message(stop_reason="max_tokens"), request)
    assert cut["choices"][0]["finish_reason"] == "length"


def test_usage_counts_missing_or_null_as_zero() -> None:
    assert map_usage({"input_tokens": 5, "output_tokens": 7, "cache_read_input_tokens": None}) == {
        "prompt_tokens": 5,
        "completion_tokens": 7,
        "total_tokens": 12,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert map_response({"id": "m", "content": []}, plain())["usage"] is None


# --- streams ----------------------------------------------------------------------------------


def start(**usage: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_start",
        {
            "type": "message_start",
            "message": {
                "id": "msg_02",
                "type": "message",
                "role": "assistant",
                "model": "claude-sonnet-4-5-20250929",
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": usage or {"input_tokens": 25, "output_tokens": 1},
            },
        },
    )


def block_start(index: int, block: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_start", {
        "type": "content_block_start",
        "index": index,
        "content_block": block,
    }


def delta(index: int, kind: str, **fields: Any) -> tuple[str, dict[str, Any]]:
    return (
        "content_block_delta",
        {"type": "content_block_delta", "index": index, "delta": {"type": kind, **fields}},
    )


def block_stop(index: int) -> tuple[str, dict[str, Any]]:
    return "content_block_stop", {"type": "content_block_stop", "index": index}


def message_delta(stop_reason: str | None, **usage: int) -> tuple[str, dict[str, Any]]:
    return (
        "message_delta",
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": usage,
        },
    )


STOP = ("message_stop", {"type": "message_stop"})
PING = ("ping", {"type": "ping"})


def run(
    request: AnthropicRequest, events: list[tuple[str, dict[str, Any]]]
) -> list[dict[str, Any]]:
    mapper = StreamMapper(request)
    chunks = []
    for name, data in events:
        assert not mapper.finished
        chunks.extend(mapper.feed(name, data))
    assert mapper.finished
    return chunks


def assemble(chunks: list[dict[str, Any]]) -> dict[str, Any]:
    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    return assembler.completion()


def test_a_streamed_answer_with_text_and_two_parallel_tool_calls() -> None:
    request = map_request(body(tools=[weather_tool()]), stream=True)
    chunks = run(
        request,
        [
            start(input_tokens=25, cache_read_input_tokens=100, output_tokens=1),
            PING,
            block_start(0, {"type": "text", "text": ""}),
            delta(0, "text_delta", text="Checking "),
            delta(0, "text_delta", text="both."),
            block_stop(0),
            block_start(1, {"type": "tool_use", "id": "toolu_1", "name": "weather", "input": {}}),
            delta(1, "input_json_delta", partial_json=""),
            delta(1, "input_json_delta", partial_json='{"city": '),
            delta(1, "input_json_delta", partial_json='"Oslo"}'),
            block_stop(1),
            block_start(2, {"type": "tool_use", "id": "toolu_2", "name": "weather", "input": {}}),
            delta(2, "input_json_delta", partial_json='{"ci'),
            delta(2, "input_json_delta", partial_json='ty": "Rome"}'),
            block_stop(2),
            message_delta("tool_use", output_tokens=89),
            STOP,
        ],
    )
    created = chunks[0]["created"]
    assert {chunk["created"] for chunk in chunks} == {created}
    assert {chunk["id"] for chunk in chunks} == {"msg_02"}
    assert chunks[0]["choices"] == [
        {
            "index": 0,
            "delta": {"role": "assistant", "content": ""},
            "logprobs": None,
            "finish_reason": None,
        }
    ]
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"][0]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert tool_deltas[0] == {
        "index": 0,
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "weather", "arguments": ""},
    }
    assert tool_deltas[1] == {"index": 0, "function": {"arguments": '{"city": '}}
    assert [d["index"] for d in tool_deltas] == [0, 0, 0, 1, 1, 1]
    assert chunks[-1] == {
        "id": "msg_02",
        "object": "chat.completion.chunk",
        "created": created,
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": 125,
            "completion_tokens": 89,
            "total_tokens": 214,
            "prompt_tokens_details": {"cached_tokens": 100, "cache_write_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    assert assemble(chunks) == {
        "id": "msg_02",
        "object": "chat.completion",
        "created": created,
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {
                    "role": "assistant",
                    "content": "Checking both.",
                    "refusal": None,
                    "tool_calls": [
                        {
                            "id": "toolu_1",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Oslo"}'},
                        },
                        {
                            "id": "toolu_2",
                            "type": "function",
                            "function": {"name": "weather", "arguments": '{"city": "Rome"}'},
                        },
                    ],
                },
                "logprobs": None,
                "finish_reason": "tool_calls",
            }
        ],
        "usage": chunks[-1]["usage"],
        "system_fingerprint": None,
    }


THINKING_STREAM = [
    start(),
    block_start(0, {"type": "thinking", "thinking": ""}),
    delta(0, "thinking_delta", thinking="Let me "),
    delta(0, "thinking_delta", thinking="think."),
    delta(0, "signature_delta", signature="EqQBCgIYAhIM"),
    block_stop(0),
    block_start(1, {"type": "redacted_thinking", "data": "opaque"}),
    block_stop(1),
    block_start(2, {"type": "text", "text": ""}),
    delta(2, "text_delta", text="42."),
    delta(2, "citations_delta", citation={"type": "char_location"}),
    block_stop(2),
    message_delta("end_turn", output_tokens=50),
    STOP,
]


def test_streamed_thinking_becomes_reasoning_content_and_whole_details() -> None:
    chunks = run(map_request(body(reasoning_effort="low")), THINKING_STREAM)
    details = [
        c["choices"][0]["delta"]["reasoning_details"]
        for c in chunks
        if c["choices"] and "reasoning_details" in c["choices"][0]["delta"]
    ]
    signed = {
        "type": "reasoning.text",
        "text": "Let me think.",
        "signature": "EqQBCgIYAhIM",
        "format": "anthropic-claude-v1",
        "index": 0,
    }
    redacted = {
        "type": "reasoning.encrypted",
        "data": "opaque",
        "format": "anthropic-claude-v1",
        "index": 1,
    }
    # One entry per chunk, each complete once its block has stopped.
    assert details == [[signed], [redacted]]
    completion = assemble(chunks)
    assert completion["choices"][0]["message"] == {
        "role": "assistant",
        "content": "42.",
        "refusal": None,
        "reasoning_content": "Let me think.",
        "reasoning_details": [signed, redacted],
    }
    assert completion["choices"][0]["finish_reason"] == "stop"


def test_streamed_thinking_is_dropped_when_excluded() -> None:
    request = map_request(body(reasoning={"effort": "low", "exclude": True}))
    chunks = run(request, THINKING_STREAM)
    deltas = [c["choices"][0]["delta"] for c in chunks if c["choices"]]
    assert not any("reasoning_content" in d or "reasoning_details" in d for d in deltas)
    assert assemble(chunks)["choices"][0]["message"]["content"] == "42."


def test_a_streamed_json_answer_is_content() -> None:
    fmt = {"type": "json_schema", "json_schema": {"name": "sum", "schema": {"type": "object"}}}
    chunks = run(
        map_request(body(response_format=fmt)),
        [
            start(),
            block_start(0, {"type": "tool_use", "id": "toolu_1", "name": "sum", "input": {}}),
            delta(0, "input_json_delta", partial_json='{"answer"'),
            delta(0, "input_json_delta", partial_json=": 4}"),
            block_stop(0),
            message_delta("tool_use", output_tokens=12),
            STOP,
        ],
    )
    choice = assemble(chunks)["choices"][0]
    assert choice["message"] == {"role": "assistant", "content": '{"answer": 4}', "refusal": None}
    assert choice["finish_reason"] == "stop"


def test_message_delta_usage_may_repeat_the_input_counts() -> None:
    chunks = run(
        plain(),
        [
            start(input_tokens=10, output_tokens=1),
            block_start(0, {"type": "text", "text": "Hi"}),
            block_stop(0),
            message_delta(
                "max_tokens", input_tokens=12, cache_creation_input_tokens=3, output_tokens=5
            ),
            STOP,
        ],
    )
    completion = assemble(chunks)
    assert completion["choices"][0]["message"]["content"] == "Hi"
    assert completion["choices"][0]["finish_reason"] == "length"
    assert completion["usage"]["prompt_tokens"] == 15
    assert completion["usage"]["completion_tokens"] == 5
    assert completion["usage"]["prompt_tokens_details"]["cache_write_tokens"] == 3


def test_a_stream_without_a_stop_reason_still_finishes() -> None:
    chunks = run(plain(), [start(), message_delta(None, output_tokens=1), STOP])
    assert chunks[-2]["choices"][0]["finish_reason"] == "stop"
    assert assemble(chunks)["choices"][0]["finish_reason"] == "stop"


def test_pings_unknown_events_and_unknown_blocks_map_to_nothing() -> None:
    mapper = StreamMapper(plain())
    mapper.feed(*start())
    assert mapper.feed(*PING) == []
    assert mapper.feed("future_event", {"type": "future_event"}) == []
    assert mapper.feed(*block_start(0, {"type": "server_tool_use", "id": "s", "name": "x"})) == []
    assert mapper.feed(*delta(0, "input_json_delta", partial_json="{}")) == []
    assert mapper.feed(*delta(0, "future_delta", stuff=1)) == []
    assert mapper.feed(*block_stop(0)) == []
    assert not mapper.finished


def test_an_error_event_is_the_error_it_would_be_without_streaming() -> None:
    mapper = StreamMapper(plain())
    mapper.feed(*start())
    mapper.feed(*delta(0, "text_delta", text="Hal"))
    error = {"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}}
    with pytest.raises(UpstreamError) as info:
        mapper.feed("error", error)
    assert info.value.message == "Overloaded"
    assert (info.value.failure, info.value.status) == ("http", 529)  # as a 529 response
    assert info.value.code == "overloaded_error"
    assert info.value.in_stream
    assert not mapper.finished


def test_an_error_event_of_an_unknown_type_interrupts_the_stream() -> None:
    mapper = StreamMapper(plain())
    mapper.feed(*start())
    error = {"type": "error", "error": {"type": "future_error", "message": "Odd"}}
    with pytest.raises(UpstreamError) as info:
        mapper.feed("error", error)
    assert (info.value.failure, info.value.status) == ("stream_interrupted", None)
    assert (info.value.message, info.value.code) == ("Odd", "future_error")
