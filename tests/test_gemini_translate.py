"""OpenAI chat completions ↔ Gemini generateContent: requests, answers and streams."""

from __future__ import annotations

import re
from typing import Any

import pytest

from crossroads.protocol.assembly import StreamAssembler
from crossroads.protocol.errors import GatewayError
from crossroads.providers.base import UpstreamError
from crossroads.providers.gemini.translate import (
    GeminiRequest,
    StreamMapper,
    map_request,
    map_response,
    map_usage,
)

MODEL = "gemini-2.5-flash"
USER = {"role": "user", "content": "Hi"}
GENERATED_ID = re.compile(r"^call_[0-9a-f]{24}$")


def request(**body: Any) -> GeminiRequest:
    return map_request({"model": MODEL, "messages": [USER], **body})


def config(**body: Any) -> dict[str, Any]:
    generation: dict[str, Any] = request(**body).body.get("generationConfig", {})
    return generation


def refused(body: dict[str, Any]) -> GatewayError:
    with pytest.raises(GatewayError) as info:
        map_request({"model": MODEL, **body})
    assert info.value.status == 400
    return info.value


# --- requests: messages ---------------------------------------------------------------------


def test_a_minimal_request() -> None:
    assert request() == GeminiRequest(
        body={"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]},
        model=MODEL,
        include_reasoning=True,
        json_mode=False,
    )


def test_system_and_developer_messages_become_the_system_instruction_in_order() -> None:
    body = map_request(
        {
            "model": MODEL,
            "messages": [
                {"role": "system", "content": "Be brief."},
                {"role": "developer", "content": [{"type": "text", "text": "Use French."}]},
                USER,
                {"role": "system", "content": "No emoji."},
            ],
        }
    ).body
    assert body == {
        "systemInstruction": {
            "parts": [{"text": "Be brief."}, {"text": "Use French."}, {"text": "No emoji."}]
        },
        "contents": [{"role": "user", "parts": [{"text": "Hi"}]}],
    }


def test_a_conversation_with_tool_calls_and_results() -> None:
    messages = [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Looking.",
            "tool_calls": [
                {
                    "id": "call_1",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city": "Paris"}'},
                },
                {
                    "id": "call_2",
                    "type": "function",
                    "function": {"name": "clock", "arguments": ""},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_1", "content": '{"temp": 21}'},
        {"role": "tool", "tool_call_id": "call_2", "content": "10:00"},
        {"role": "user", "content": [{"type": "text", "text": "Thanks!"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "You're welcome."}]},
        {"role": "user", "content": "And numbers?"},
        {"role": "user", "content": "Like 42."},
    ]
    contents = map_request({"model": MODEL, "messages": messages}).body["contents"]
    assert contents == [
        {"role": "user", "parts": [{"text": "Weather in Paris and Rome?"}]},
        {
            "role": "model",
            "parts": [
                {"text": "Looking."},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}, "id": "call_1"}},
                {"functionCall": {"name": "clock", "args": {}, "id": "call_2"}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {
                    "functionResponse": {
                        "name": "weather",
                        "response": {"temp": 21},
                        "id": "call_1",
                    }
                },
                {
                    "functionResponse": {
                        "name": "clock",
                        "response": {"result": "10:00"},
                        "id": "call_2",
                    }
                },
                {"text": "Thanks!"},
            ],
        },
        {"role": "model", "parts": [{"text": "You're welcome."}]},
        {"role": "user", "parts": [{"text": "And numbers?"}, {"text": "Like 42."}]},
    ]


@pytest.mark.parametrize(
    ("content", "response"),
    [
        ('{"ok": true}', {"ok": True}),
        ("42", {"result": 42}),
        ("[1, 2]", {"result": [1, 2]}),
        ("not json", {"result": "not json"}),
        ([{"type": "text", "text": '{"a": '}, {"type": "text", "text": "1}"}], {"a": 1}),
    ],
)
def test_tool_results_that_are_not_objects_are_wrapped(content: Any, response: Any) -> None:
    messages = [
        {"role": "assistant", "tool_calls": [_call("c", "f", "{}")]},
        {"role": "tool", "tool_call_id": "c", "content": content},
    ]
    contents = map_request({"model": MODEL, "messages": messages}).body["contents"]
    assert contents[1]["parts"] == [
        {"functionResponse": {"name": "f", "response": response, "id": "c"}}
    ]


def test_a_tool_result_for_an_unknown_call_is_refused() -> None:
    messages = [
        {"role": "assistant", "tool_calls": [_call("c", "f", "{}")]},
        {"role": "tool", "tool_call_id": "other", "content": "x"},
    ]
    error = refused({"messages": messages})
    assert error.param == "messages[1].tool_call_id"
    assert "'other'" in error.message


@pytest.mark.parametrize("arguments", ["[1, 2]", "not json", '"text"'])
def test_tool_call_arguments_must_be_a_json_object(arguments: str) -> None:
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [_call("a", "f", "{}"), _call("b", "g", arguments)]},
    ]
    error = refused({"messages": messages})
    assert error.param == "messages[1].tool_calls[1].function.arguments"


def test_a_thought_signature_on_a_tool_call_goes_back_to_gemini() -> None:
    call = _call("c", "f", "{}") | {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    contents = map_request(
        {"model": MODEL, "messages": [USER, {"role": "assistant", "tool_calls": [call]}]}
    ).body["contents"]
    assert contents[1]["parts"] == [
        {"functionCall": {"name": "f", "args": {}, "id": "c"}, "thoughtSignature": "c2ln"}
    ]


def test_each_step_of_the_current_turn_gets_a_signature_on_its_first_call() -> None:
    signed = _call("b", "f", "{}") | {"extra_content": {"google": {"thought_signature": "c2ln"}}}
    messages = [
        USER,
        {"role": "assistant", "tool_calls": [_call("old", "f", "{}")]},
        {"role": "tool", "tool_call_id": "old", "content": "1"},
        {"role": "user", "content": "Again, twice."},
        {"role": "assistant", "tool_calls": [_call("a1", "f", "{}"), _call("a2", "f", "{}")]},
        {"role": "tool", "tool_call_id": "a1", "content": "2"},
        {"role": "tool", "tool_call_id": "a2", "content": "3"},
        {"role": "assistant", "tool_calls": [signed]},
        {"role": "tool", "tool_call_id": "b", "content": "4"},
    ]
    contents = map_request({"model": MODEL, "messages": messages}).body["contents"]
    signatures = [
        [part.get("thoughtSignature") for part in content["parts"]]
        for content in contents
        if content["role"] == "model"
    ]
    # A turn the user has closed needs none; parallel calls are signed on the first only;
    # a signature the caller gave back is kept.
    assert signatures == [[None], ["skip_thought_signature_validator", None], ["c2ln"]]


def test_a_pdf_file_part_is_inline_data() -> None:
    part = {"type": "file", "file": {"file_data": "data:application/pdf;base64,JVBERi0="}}
    contents = map_request(
        {"model": MODEL, "messages": [{"role": "user", "content": [part]}]}
    ).body["contents"]
    assert contents[0]["parts"] == [
        {"inlineData": {"mimeType": "application/pdf", "data": "JVBERi0="}}
    ]


def test_images_and_audio() -> None:
    content = [
        {"type": "text", "text": "Compare."},
        {"type": "image_url", "image_url": {"url": "data:image/png;base64,iVBORw0KGgo="}},
        {"type": "image_url", "image_url": {"url": "https://example.com/a/cat.WEBP?size=2"}},
        {
            "type": "image_url",
            "image_url": {"url": "http://example.com/photo.jpg", "detail": "low"},
        },
        {"type": "image_url", "image_url": {"url": "https://example.com/render"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/x.heic"}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
        {"type": "input_audio", "input_audio": {"data": "SUQz", "format": "mp3"}},
    ]
    contents = map_request(
        {"model": MODEL, "messages": [{"role": "user", "content": content}]}
    ).body["contents"]
    assert contents == [
        {
            "role": "user",
            "parts": [
                {"text": "Compare."},
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {
                    "fileData": {
                        "mimeType": "image/webp",
                        "fileUri": "https://example.com/a/cat.WEBP?size=2",
                    }
                },
                {
                    "fileData": {
                        "mimeType": "image/jpeg",
                        "fileUri": "http://example.com/photo.jpg",
                    }
                },
                {"fileData": {"mimeType": "image/jpeg", "fileUri": "https://example.com/render"}},
                {"fileData": {"mimeType": "image/heic", "fileUri": "https://example.com/x.heic"}},
                {"inlineData": {"mimeType": "audio/wav", "data": "UklGRg=="}},
                {"inlineData": {"mimeType": "audio/mp3", "data": "SUQz"}},
            ],
        }
    ]


@pytest.mark.parametrize(
    ("part", "param"),
    [
        ({"type": "file", "file": {"file_id": "file-1"}}, "messages[0].content[1].file.file_id"),
        (
            {"type": "file", "file": {"file_data": "data:application/zip;base64,UEsD"}},
            "messages[0].content[1].file.file_data",
        ),
        (
            {"type": "image_url", "image_url": {"url": "data:image/png,rawbytes"}},
            "messages[0].content[1].image_url.url",
        ),
        (
            {"type": "image_url", "image_url": {"url": "ftp://example.com/a.png"}},
            "messages[0].content[1].image_url.url",
        ),
    ],
)
def test_content_gemini_cannot_take_is_refused(part: dict[str, Any], param: str) -> None:
    content = [{"type": "text", "text": "Look."}, part]
    assert refused({"messages": [{"role": "user", "content": content}]}).param == param


# --- requests: options ----------------------------------------------------------------------


def test_generation_config() -> None:
    assert config(
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        max_tokens=100,
        max_completion_tokens=200,
        stop=["END", "STOP"],
        n=2,
        seed=7,
        presence_penalty=0.5,
        frequency_penalty=-0.5,
        logprobs=True,
        top_logprobs=3,
    ) == {
        "temperature": 0.3,
        "topP": 0.9,
        "topK": 40,
        "maxOutputTokens": 200,
        "stopSequences": ["END", "STOP"],
        "candidateCount": 2,
        "seed": 7,
        "presencePenalty": 0.5,
        "frequencyPenalty": -0.5,
        "responseLogprobs": True,
        "logprobs": 3,
    }


def test_generation_config_edge_values() -> None:
    assert config(max_tokens=50, stop="END", top_k=-1, logprobs=False, temperature=None) == {
        "maxOutputTokens": 50,
        "stopSequences": ["END"],
    }
    assert config(logprobs=True) == {"responseLogprobs": True}


def test_gateway_fields_are_not_sent() -> None:
    body = request(user="u-1", metadata={"k": "v"}, store=True).body
    assert body == {"contents": [{"role": "user", "parts": [{"text": "Hi"}]}]}


def test_safety_settings_and_cached_content_pass_through() -> None:
    settings = [{"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_NONE"}]
    body = request(safety_settings=settings, cached_content="cachedContents/abc").body
    assert body["safetySettings"] == settings
    assert body["cachedContent"] == "cachedContents/abc"


def test_response_format_json_object() -> None:
    mapped = request(response_format={"type": "json_object"})
    assert mapped.body["generationConfig"] == {"responseMimeType": "application/json"}
    assert mapped.json_mode is True
    assert request(response_format={"type": "text"}).json_mode is False


def test_response_format_json_schema() -> None:
    schema = {"type": "object", "properties": {"n": {"type": "integer"}}, "required": ["n"]}
    mapped = request(
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}}
    )
    assert mapped.json_mode is True
    assert mapped.body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {
            "type": "OBJECT",
            "properties": {"n": {"type": "INTEGER"}},
            "propertyOrdering": ["n"],
            "required": ["n"],
        },
    }


def test_a_response_schema_gemini_cannot_express_names_its_path() -> None:
    schema = {"type": "object", "properties": {"n": {"not": {}}}}
    error = refused(
        {
            "messages": [USER],
            "response_format": {
                "type": "json_schema",
                "json_schema": {"name": "x", "schema": schema},
            },
        }
    )
    assert error.param == "response_format.json_schema.schema.properties.n.not"


@pytest.mark.parametrize(
    "guided",
    [
        {"type": "array", "items": {"type": "string"}},
        '{"type": "array", "items": {"type": "string"}}',
    ],
)
def test_guided_json(guided: Any) -> None:
    mapped = request(guided_json=guided)
    assert mapped.json_mode is True
    assert mapped.body["generationConfig"] == {
        "responseMimeType": "application/json",
        "responseSchema": {"type": "ARRAY", "items": {"type": "STRING"}},
    }
    error = refused(
        {"messages": [USER], "guided_json": {"type": "object", "patternProperties": {}}}
    )
    assert error.param == "guided_json.patternProperties"


def test_guided_choice() -> None:
    mapped = request(guided_choice=["yes", "no"])
    assert mapped.json_mode is True
    assert mapped.body["generationConfig"] == {
        "responseMimeType": "text/x.enum",
        "responseSchema": {"type": "STRING", "enum": ["yes", "no"]},
    }


def test_two_output_constraints_at_once_are_refused() -> None:
    error = refused(
        {"messages": [USER], "response_format": {"type": "json_object"}, "guided_choice": ["a"]}
    )
    assert error.param == "guided_choice"


def test_tools() -> None:
    tools = [
        {
            "type": "function",
            "function": {
                "name": "weather",
                "description": "Current weather.",
                "parameters": {
                    "type": "object",
                    "properties": {"city": {"type": "string"}, "unit": {"enum": ["C", "F"]}},
                    "required": ["city"],
                    "additionalProperties": False,
                },
                "strict": True,
            },
        },
        {
            "type": "function",
            "function": {"name": "now", "parameters": {"type": "object", "properties": {}}},
        },
        {"type": "function", "function": {"name": "ping"}},
    ]
    body = request(tools=tools, tool_choice="auto").body
    assert body["tools"] == [
        {
            "functionDeclarations": [
                {
                    "name": "weather",
                    "description": "Current weather.",
                    "parameters": {
                        "type": "OBJECT",
                        "properties": {
                            "city": {"type": "STRING"},
                            "unit": {"type": "STRING", "enum": ["C", "F"]},
                        },
                        "propertyOrdering": ["city", "unit"],
                        "required": ["city"],
                    },
                },
                {"name": "now"},
                {"name": "ping"},
            ]
        }
    ]
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "AUTO"}}


def test_a_tool_schema_gemini_cannot_express_names_its_path() -> None:
    tools = [
        _tool("ok"),
        _tool("bad", {"type": "object", "properties": {"x": {"allOf": [{}, {}]}}}),
    ]
    error = refused({"messages": [USER], "tools": tools})
    assert error.param == "tools[1].function.parameters.properties.x.allOf"


@pytest.mark.parametrize(
    ("choice", "expected"),
    [
        ("auto", {"mode": "AUTO"}),
        ("none", {"mode": "NONE"}),
        ("required", {"mode": "ANY"}),
        (
            {"type": "function", "function": {"name": "b"}},
            {"mode": "ANY", "allowedFunctionNames": ["b"]},
        ),
    ],
)
def test_tool_choice(choice: Any, expected: dict[str, Any]) -> None:
    body = request(tools=[_tool("a"), _tool("b")], tool_choice=choice).body
    assert body["toolConfig"] == {"functionCallingConfig": expected}


def test_tool_choice_needs_the_tools_it_names() -> None:
    choice = {"type": "function", "function": {"name": "c"}}
    error = refused({"messages": [USER], "tools": [_tool("a")], "tool_choice": choice})
    assert error.param == "tool_choice.function.name"
    assert refused({"messages": [USER], "tool_choice": "required"}).param == "tool_choice"
    assert "toolConfig" not in request(tool_choice="none").body


@pytest.mark.parametrize(
    ("effort", "budget"),
    [
        ("none", 0),
        ("minimal", 512),
        ("low", 1024),
        ("medium", 8192),
        ("high", 24576),
        ("xhigh", 32768),
    ],
)
def test_reasoning_effort_is_a_thinking_budget(effort: str, budget: int) -> None:
    expected = {"thinkingConfig": {"thinkingBudget": budget, "includeThoughts": True}}
    assert config(reasoning_effort=effort) == expected
    assert config(reasoning={"effort": effort}) == expected


def test_reasoning_settings() -> None:
    assert config(reasoning_effort="low", reasoning={"max_tokens": 3000}) == {
        "thinkingConfig": {"thinkingBudget": 3000, "includeThoughts": True}
    }
    assert config(reasoning_effort="low", reasoning={"effort": "high"}) == {
        "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": True}
    }
    assert config(reasoning={"enabled": True}) == {
        "thinkingConfig": {"thinkingBudget": 8192, "includeThoughts": True}
    }
    assert config(reasoning={"enabled": False}) == {
        "thinkingConfig": {"thinkingBudget": 0, "includeThoughts": True}
    }
    assert request().include_reasoning is True
    assert "generationConfig" not in request().body


def test_excluded_reasoning_is_not_returned() -> None:
    mapped = request(reasoning={"effort": "high", "exclude": True})
    assert mapped.include_reasoning is False
    assert mapped.body["generationConfig"] == {
        "thinkingConfig": {"thinkingBudget": 24576, "includeThoughts": False}
    }
    alone = request(reasoning={"exclude": True})
    assert alone.include_reasoning is False
    assert alone.body["generationConfig"] == {"thinkingConfig": {"includeThoughts": False}}


# --- responses ------------------------------------------------------------------------------


def _response(*candidates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"candidates": list(candidates), "modelVersion": MODEL, "responseId": "r1", **extra}


def _candidate(
    *parts: dict[str, Any], index: int = 0, finish: str = "STOP", **extra: Any
) -> dict[str, Any]:
    return {
        "content": {"role": "model", "parts": list(parts)},
        "finishReason": finish,
        "index": index,
        **extra,
    }


USAGE = {
    "promptTokenCount": 10,
    "candidatesTokenCount": 5,
    "totalTokenCount": 22,
    "cachedContentTokenCount": 4,
    "thoughtsTokenCount": 7,
}


def test_a_text_answer() -> None:
    answer = map_response(
        _response(_candidate({"text": "Hello"}, {"text": " there"}), usageMetadata=USAGE),
        request(),
    )
    assert answer == {
        "id": "chatcmpl-r1",
        "object": "chat.completion",
        "created": answer["created"],
        "model": MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Hello there", "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 10,
            "completion_tokens": 12,
            "total_tokens": 22,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 7},
        },
    }
    assert isinstance(answer["created"], int)


def test_parallel_function_calls_get_ids_when_gemini_gives_none() -> None:
    answer = map_response(
        _response(
            _candidate(
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                {"functionCall": {"name": "weather", "args": {"city": "Rome"}, "id": "g-2"}},
                {"functionCall": {"name": "clock"}, "thoughtSignature": "c2ln"},
            )
        ),
        request(),
    )
    choice = answer["choices"][0]
    calls = choice["message"]["tool_calls"]
    assert GENERATED_ID.match(calls[0]["id"])
    assert GENERATED_ID.match(calls[2]["id"])
    assert calls[0]["id"] != calls[2]["id"]
    assert choice == {
        "index": 0,
        "message": {
            "role": "assistant",
            "content": None,
            "refusal": None,
            "tool_calls": [
                {
                    "id": calls[0]["id"],
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "g-2",
                    "type": "function",
                    "function": {"name": "weather", "arguments": '{"city":"Rome"}'},
                },
                {
                    "id": calls[2]["id"],
                    "type": "function",
                    "function": {"name": "clock", "arguments": "{}"},
                    "extra_content": {"google": {"thought_signature": "c2ln"}},
                },
            ],
        },
        "logprobs": None,
        "finish_reason": "tool_calls",
    }


def test_thoughts_become_reasoning_content_unless_excluded() -> None:
    response = _response(
        _candidate(
            {"text": "Let me think.", "thought": True}, {"text": "42", "thoughtSignature": "s"}
        )
    )
    message = map_response(response, request())["choices"][0]["message"]
    assert message == {
        "role": "assistant",
        "content": "42",
        "refusal": None,
        "reasoning_content": "Let me think.",
    }
    excluded = map_response(response, request(reasoning={"exclude": True}))
    assert excluded["choices"][0]["message"] == {
        "role": "assistant",
        "content": "42",
        "refusal": None,
    }


@pytest.mark.parametrize(
    ("reason", "expected"),
    [
        ("STOP", "stop"),
        ("MAX_TOKENS", "length"),
        ("SAFETY", "content_filter"),
        ("RECITATION", "content_filter"),
        ("LANGUAGE", "content_filter"),
        ("BLOCKLIST", "content_filter"),
        ("PROHIBITED_CONTENT", "content_filter"),
        ("SPII", "content_filter"),
        ("IMAGE_SAFETY", "content_filter"),
        ("MALFORMED_FUNCTION_CALL", "stop"),
        ("OTHER", "stop"),
        ("FINISH_REASON_UNSPECIFIED", "stop"),
        ("SOMETHING_NEW", "stop"),
    ],
)
def test_finish_reasons(reason: str, expected: str) -> None:
    answer = map_response(_response(_candidate({"text": "x"}, finish=reason)), request())
    assert answer["choices"][0]["finish_reason"] == expected


def test_finish_reasons_with_function_calls() -> None:
    call = {"functionCall": {"name": "f", "args": {}}}
    for reason, expected in (
        ("STOP", "tool_calls"),
        ("OTHER", "tool_calls"),
        ("MAX_TOKENS", "length"),
    ):
        answer = map_response(_response(_candidate(call, finish=reason)), request())
        assert answer["choices"][0]["finish_reason"] == expected


RATINGS = [
    {"category": "HARM_CATEGORY_HATE_SPEECH", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_HARASSMENT", "probability": "LOW"},
    {"category": "HARM_CATEGORY_SEXUALLY_EXPLICIT", "probability": "MEDIUM"},
    {"category": "HARM_CATEGORY_DANGEROUS_CONTENT", "probability": "HIGH", "blocked": True},
    {"category": "HARM_CATEGORY_CIVIC_INTEGRITY", "probability": "NEGLIGIBLE"},
    {"category": "HARM_CATEGORY_UNKNOWN", "probability": "HIGH"},
]


def test_safety_ratings_become_content_filter_results() -> None:
    answer = map_response(_response(_candidate({"text": "x"}, safetyRatings=RATINGS)), request())
    assert answer["choices"][0]["content_filter_results"] == {
        "hate": {"filtered": False, "severity": "safe"},
        "harassment": {"filtered": False, "severity": "low"},
        "sexual": {"filtered": False, "severity": "medium"},
        "dangerous": {"filtered": True, "severity": "high"},
        "civic_integrity": {"filtered": False, "severity": "safe"},
    }


def test_a_safety_stop_marks_medium_and_high_categories_filtered() -> None:
    answer = map_response(
        _response(_candidate(finish="SAFETY", safetyRatings=RATINGS[:4])), request()
    )
    choice = answer["choices"][0]
    assert choice["finish_reason"] == "content_filter"
    assert choice["message"] == {"role": "assistant", "content": "", "refusal": None}
    assert choice["content_filter_results"] == {
        "hate": {"filtered": False, "severity": "safe"},
        "harassment": {"filtered": False, "severity": "low"},
        "sexual": {"filtered": True, "severity": "medium"},
        "dangerous": {"filtered": True, "severity": "high"},
    }


def test_no_ratings_no_content_filter_results() -> None:
    answer = map_response(_response(_candidate({"text": "x"}, safetyRatings=[])), request())
    assert "content_filter_results" not in answer["choices"][0]


def test_a_blocked_prompt_is_a_400() -> None:
    blocked = {
        "promptFeedback": {"blockReason": "PROHIBITED_CONTENT", "safetyRatings": RATINGS[:1]},
        "usageMetadata": {"promptTokenCount": 3, "totalTokenCount": 3},
    }
    with pytest.raises(GatewayError) as info:
        map_response(blocked, request())
    error = info.value
    assert (error.status, error.code, error.param) == (400, "content_filter", "messages")
    assert "The prompt was blocked" in error.message
    assert "PROHIBITED_CONTENT" in error.message


def test_an_answer_without_candidates_is_malformed() -> None:
    with pytest.raises(UpstreamError) as info:
        map_response({"usageMetadata": {}}, request())
    assert info.value.failure == "malformed"


LOGPROBS = {
    "topCandidates": [
        {
            "candidates": [
                {"token": "Hé", "logProbability": -0.1},
                {"token": "Hi", "logProbability": -2.5},
            ]
        },
        {"candidates": [{"token": "!", "logProbability": -0.01}]},
    ],
    "chosenCandidates": [{"token": "Hé", "logProbability": -0.1}, {"token": "!"}],
}
MAPPED_LOGPROBS = {
    "content": [
        {
            "token": "Hé",
            "logprob": -0.1,
            "bytes": [72, 195, 169],
            "top_logprobs": [
                {"token": "Hé", "logprob": -0.1, "bytes": [72, 195, 169]},
                {"token": "Hi", "logprob": -2.5, "bytes": [72, 105]},
            ],
        },
        {
            "token": "!",
            "logprob": 0.0,
            "bytes": [33],
            "top_logprobs": [{"token": "!", "logprob": -0.01, "bytes": [33]}],
        },
    ]
}


def test_logprobs() -> None:
    answer = map_response(
        _response(_candidate({"text": "Hé!"}, logprobsResult=LOGPROBS)), request(logprobs=True)
    )
    assert answer["choices"][0]["logprobs"] == MAPPED_LOGPROBS


def test_candidates_become_choices_in_index_order() -> None:
    answer = map_response(
        _response(_candidate({"text": "b"}, index=1), _candidate({"text": "a"})), request(n=2)
    )
    assert [(c["index"], c["message"]["content"]) for c in answer["choices"]] == [
        (0, "a"),
        (1, "b"),
    ]


def test_usage() -> None:
    assert map_usage({"promptTokenCount": 3, "candidatesTokenCount": 2}) == {
        "prompt_tokens": 3,
        "completion_tokens": 2,
        "total_tokens": 5,
        "prompt_tokens_details": {"cached_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 0},
    }
    assert map_usage(USAGE)["completion_tokens"] == 12


def test_an_answer_without_usage_has_none() -> None:
    assert map_response(_response(_candidate({"text": "x"})), request())["usage"] is None


# --- streams --------------------------------------------------------------------------------


def _event(*candidates: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"candidates": list(candidates), "modelVersion": MODEL, "responseId": "s1", **extra}


def _piece(*parts: dict[str, Any], index: int = 0, **extra: Any) -> dict[str, Any]:
    return {"content": {"role": "model", "parts": list(parts)}, "index": index, **extra}


def _feed_all(mapper: StreamMapper, events: list[dict[str, Any]]) -> list[dict[str, Any]]:
    chunks = [chunk for event in events for chunk in mapper.feed(event)]
    return chunks + mapper.finish()


def test_a_full_stream_with_two_candidates_reassembles_exactly() -> None:
    mapped = request(n=2, tools=[_tool("weather")], reasoning_effort="low")
    mapper = StreamMapper(mapped)
    events = [
        _event(_piece({"text": "Thinking about it.", "thought": True})),
        _event(_piece({"text": "The weather"}), _piece({"text": "Let me "}, index=1)),
        _event(
            _piece({"text": " is fine"}),
            _piece(
                {"text": "check."},
                {"functionCall": {"name": "weather", "args": {"city": "Paris"}}},
                index=1,
            ),
        ),
        _event(
            _piece(
                {
                    "functionCall": {
                        "name": "weather",
                        "args": {"city": "Rome", "days": [1, 2]},
                        "id": "g7",
                    }
                },
                index=1,
            ),
            usageMetadata={"promptTokenCount": 9, "candidatesTokenCount": 4, "totalTokenCount": 13},
        ),
        _event(_piece({"text": "."}, finishReason="STOP", safetyRatings=RATINGS[:1])),
        _event(
            _piece({"text": ""}, index=1, finishReason="STOP"),
            usageMetadata={
                "promptTokenCount": 9,
                "candidatesTokenCount": 20,
                "totalTokenCount": 35,
                "thoughtsTokenCount": 6,
            },
        ),
    ]
    chunks: list[dict[str, Any]] = []
    for number, event in enumerate(events):
        assert not mapper.finished, number
        chunks += mapper.feed(event)
    assert mapper.finished
    chunks += mapper.finish()

    for chunk in chunks:
        assert chunk["id"] == "chatcmpl-s1"
        assert chunk["object"] == "chat.completion.chunk"
        assert chunk["created"] == chunks[0]["created"]
        assert chunk["model"] == MODEL
    assert [c["choices"][0]["delta"] for c in chunks[:2]] == [
        {"role": "assistant", "content": ""},
        {"reasoning_content": "Thinking about it."},
    ]
    tool_deltas = [
        c["choices"][0]["delta"]["tool_calls"]
        for c in chunks
        if c["choices"] and "tool_calls" in c["choices"][0]["delta"]
    ]
    assert [[{k: v for k, v in call.items() if k != "id"} for call in d] for d in tool_deltas] == [
        [
            {
                "index": 0,
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
            }
        ],
        [
            {
                "index": 1,
                "type": "function",
                "function": {"name": "weather", "arguments": '{"city":"Rome","days":[1,2]}'},
            }
        ],
    ]
    assert chunks[-1] == {
        "id": "chatcmpl-s1",
        "object": "chat.completion.chunk",
        "created": chunks[0]["created"],
        "model": MODEL,
        "choices": [],
        "usage": {
            "prompt_tokens": 9,
            "completion_tokens": 26,
            "total_tokens": 35,
            "prompt_tokens_details": {"cached_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 6},
        },
    }

    assembler = StreamAssembler()
    for chunk in chunks:
        assembler.add(chunk)
    completion = assembler.completion()
    first_id = tool_deltas[0][0]["id"]
    assert GENERATED_ID.match(first_id)
    assert completion["choices"] == [
        {
            "index": 0,
            "message": {
                "role": "assistant",
                "content": "The weather is fine.",
                "refusal": None,
                "reasoning_content": "Thinking about it.",
            },
            "logprobs": None,
            "finish_reason": "stop",
        },
        {
            "index": 1,
            "message": {
                "role": "assistant",
                "content": "Let me check.",
                "refusal": None,
                "tool_calls": [
                    {
                        "id": first_id,
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city":"Paris"}'},
                    },
                    {
                        "id": "g7",
                        "type": "function",
                        "function": {
                            "name": "weather",
                            "arguments": '{"city":"Rome","days":[1,2]}',
                        },
                    },
                ],
            },
            "logprobs": None,
            "finish_reason": "tool_calls",
        },
    ]
    assert completion["usage"] == chunks[-1]["usage"]
    finish_chunk = next(
        c for c in chunks if c["choices"] and c["choices"][0]["finish_reason"] == "stop"
    )
    assert finish_chunk["choices"][0] == {
        "index": 0,
        "delta": {},
        "logprobs": None,
        "finish_reason": "stop",
        "content_filter_results": {"hate": {"filtered": False, "severity": "safe"}},
    }


def test_the_stream_and_the_whole_answer_agree() -> None:
    response = _response(
        _candidate(
            {"text": "Hmm.", "thought": True},
            {"text": "Hé!"},
            {"functionCall": {"name": "f", "args": {"a": 1}, "id": "x"}},
            logprobsResult=LOGPROBS,
            safetyRatings=RATINGS,
        ),
        _candidate({"text": "Other"}, index=1, finish="MAX_TOKENS"),
        usageMetadata=USAGE,
    )
    mapped = request(n=2, logprobs=True)
    whole = map_response(response, mapped)
    mapper = StreamMapper(mapped)
    assembler = StreamAssembler()
    for chunk in _feed_all(mapper, [response]):
        assembler.add(chunk)
    streamed = assembler.completion()
    for choice in whole["choices"]:
        choice.pop("content_filter_results", None)
    assert streamed["choices"] == whole["choices"]
    assert streamed["usage"] == whole["usage"]
    assert streamed["id"] == whole["id"]


def test_a_stream_without_usage_ends_without_a_usage_chunk() -> None:
    mapper = StreamMapper(request())
    chunks = mapper.feed(_event(_piece({"text": "x"}, finishReason="STOP")))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "x"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert mapper.finished
    assert mapper.finish() == []


def test_a_stream_that_ends_early_is_not_finished() -> None:
    mapper = StreamMapper(request(n=2))
    mapper.feed(_event(_piece({"text": "x"}, finishReason="STOP")))
    assert not mapper.finished


def test_excluded_thoughts_are_not_streamed() -> None:
    mapper = StreamMapper(request(reasoning={"effort": "low", "exclude": True}))
    chunks = mapper.feed(_event(_piece({"text": "secret", "thought": True}, {"text": "ok"})))
    assert [c["choices"][0]["delta"] for c in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "ok"},
    ]


def test_streamed_logprobs_ride_on_the_content_chunk() -> None:
    mapper = StreamMapper(request(logprobs=True))
    chunks = mapper.feed(_event(_piece({"text": "Hé!"}, logprobsResult=LOGPROBS)))
    assert chunks[1]["choices"][0] == {
        "index": 0,
        "delta": {"content": "Hé!"},
        "logprobs": MAPPED_LOGPROBS,
        "finish_reason": None,
    }


def test_a_stream_whose_prompt_is_blocked_is_a_400() -> None:
    mapper = StreamMapper(request())
    with pytest.raises(GatewayError) as info:
        mapper.feed({"promptFeedback": {"blockReason": "SAFETY"}, "responseId": "s1"})
    assert (info.value.status, info.value.code) == (400, "content_filter")


def test_an_error_event_is_the_error_it_would_be_without_streaming() -> None:
    mapper = StreamMapper(request())
    mapper.feed(_event(_piece({"text": "x"})))
    with pytest.raises(UpstreamError) as info:
        mapper.feed({"error": {"code": 503, "message": "overloaded", "status": "UNAVAILABLE"}})
    assert (info.value.failure, info.value.status) == ("http", 503)  # as a 503 response
    assert info.value.message == "overloaded"
    assert info.value.code == "UNAVAILABLE"
    assert info.value.in_stream


def test_an_error_event_carries_its_retry_info() -> None:
    retry = {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "17.5s"}
    error = {"message": "quota", "status": "RESOURCE_EXHAUSTED", "details": [retry]}
    with pytest.raises(UpstreamError) as info:
        StreamMapper(request()).feed({"error": error})  # no `code`: the status name says 429
    assert (info.value.status, info.value.retry_after) == (429, 17.5)


def test_an_error_event_without_a_known_status_interrupts_the_stream() -> None:
    with pytest.raises(UpstreamError) as info:
        StreamMapper(request()).feed({"error": "something broke"})
    assert (info.value.failure, info.value.status) == ("stream_interrupted", None)
    assert "something broke" in info.value.message


def _call(call_id: str, name: str, arguments: str) -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _tool(name: str, parameters: dict[str, Any] | None = None) -> dict[str, Any]:
    schema = parameters or {"type": "object", "properties": {"city": {"type": "string"}}}
    return {"type": "function", "function": {"name": name, "parameters": schema}}
