"""The fake Gemini upstream: wire format, every directive, strict validation, auth and the CLI."""

from __future__ import annotations

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

from crossroads.testing.fake_gemini import (
    DEFAULT_REPLY,
    DEFAULT_THOUGHT,
    FakeGemini,
    parse_behaviour,
)
from crossroads.testing.fake_gemini_signatures import thought_signature

KEY = "gemini-test-key"
USER = [{"role": "user", "parts": [{"text": "Say hello to me"}]}]
USER_TOKENS = 4 + 3  # four words + 3 for the content
REPLY_TOKENS = 5
WEATHER = {
    "name": "get_weather",
    "description": "The weather in a city.",
    "parameters": {
        "type": "OBJECT",
        "properties": {"city": {"type": "STRING"}},
        "required": ["city"],
    },
}
TOOLS = [{"functionDeclarations": [WEATHER, {"name": "get_time"}]}]
NEGLIGIBLE = [
    {"category": f"HARM_CATEGORY_{c}", "probability": "NEGLIGIBLE"}
    for c in ("SEXUALLY_EXPLICIT", "HATE_SPEECH", "HARASSMENT", "DANGEROUS_CONTENT")
]


@pytest.fixture
async def fake() -> AsyncIterator[FakeGemini]:
    server = FakeGemini(api_key=KEY)
    await server.start()
    yield server
    await server.stop()


@pytest.fixture
async def http(fake: FakeGemini) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"x-goog-api-key": KEY}
    async with httpx.AsyncClient(base_url=fake.base_url, headers=headers, timeout=10) as client:
        yield client


async def generate(http: httpx.AsyncClient, model: str = "fixed", **body: Any) -> httpx.Response:
    headers = body.pop("headers", None)
    body.setdefault("contents", USER)
    return await http.post(f"/models/{model}:generateContent", json=body, headers=headers)


async def stream(http: httpx.AsyncClient, model: str = "fixed", **body: Any) -> httpx.Response:
    body.setdefault("contents", USER)
    return await http.post(f"/models/{model}:streamGenerateContent?alt=sse", json=body)


def events(raw: bytes) -> list[dict[str, Any]]:
    """Parse an SSE body, asserting Google's framing: `data: JSON` then CRLF CRLF, no [DONE]."""
    assert raw.endswith(b"\r\n\r\n")
    parts = raw.split(b"\r\n\r\n")
    assert parts[-1] == b""
    for part in parts[:-1]:
        assert part.startswith(b"data: ")
        assert b"\n" not in part
        assert b"[DONE]" not in part
    return [orjson.loads(part[len(b"data: ") :]) for part in parts[:-1]]


async def read_raw(response: httpx.Response, into: list[bytes]) -> None:
    async for data in response.aiter_raw():
        into.append(data)


def texts(found: list[dict[str, Any]], index: int = 0) -> list[str]:
    return [
        part.get("text", "")
        for event in found
        for part in event["candidates"][index]["content"]["parts"]
        if not part.get("thought")
    ]


def error_of(response: httpx.Response, status: int, name: str) -> str:
    assert response.status_code == status
    assert response.headers["content-type"].startswith("application/json")
    error = response.json()["error"]
    assert (error["code"], error["status"]) == (status, name)
    return str(error["message"])


def test_parse_prompt_blocked() -> None:
    assert parse_behaviour("prompt_blocked").prompt_blocked
    assert not parse_behaviour("blocked").prompt_blocked


# --- non-streaming answers -----------------------------------------------------------------------


async def test_fixed_exact_shape(http: httpx.AsyncClient) -> None:
    system = {"parts": [{"text": "Be brief."}, {"text": "Be kind."}]}
    response = await generate(http, systemInstruction=system)
    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    body = response.json()
    assert list(body) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert body["candidates"] == [
        {
            "content": {"parts": [{"text": DEFAULT_REPLY}], "role": "model"},
            "finishReason": "STOP",
            "index": 0,
            "safetyRatings": NEGLIGIBLE,
        }
    ]
    prompt = 4 + USER_TOKENS  # the system instruction's words, without the 3 per content
    assert body["usageMetadata"] == {
        "promptTokenCount": prompt,
        "candidatesTokenCount": REPLY_TOKENS,
        "totalTokenCount": prompt + REPLY_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": prompt}],
    }
    assert body["modelVersion"] == "fixed"
    assert isinstance(body["responseId"], str) and body["responseId"]


async def test_reply_and_echo(http: httpx.AsyncClient) -> None:
    body = (await generate(http, "reply=Good_day")).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Good day"}]
    assert body["usageMetadata"]["candidatesTokenCount"] == 2
    contents = [
        {"role": "user", "parts": [{"text": "first question"}]},
        {"role": "model", "parts": [{"text": "an answer"}]},
        {"parts": [{"text": "second"}, {"text": "question here"}]},  # no role: the user's
    ]
    body = (await generate(http, "echo", contents=contents)).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "second question here"}]
    assert body["usageMetadata"]["promptTokenCount"] == (2 + 3) + (2 + 3) + (3 + 3)


async def test_header_overrides_the_url_model(http: httpx.AsyncClient) -> None:
    response = await generate(http, "fixed", headers={"x-fake-behaviour": "echo"})
    assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Say hello to me"}]
    assert response.json()["modelVersion"] == "fixed"


async def test_unknown_directive_is_400(http: httpx.AsyncClient) -> None:
    message = error_of(await generate(http, "gemini-2.5-flash"), 400, "INVALID_ARGUMENT")
    assert "gemini-2.5-flash" in message


async def test_stop_sequences_and_max_output_tokens(http: httpx.AsyncClient) -> None:
    body = (await generate(http, generationConfig={"stopSequences": [" fake", "zzz"]})).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Hello from the"}]
    assert body["candidates"][0]["finishReason"] == "STOP"
    assert body["usageMetadata"]["candidatesTokenCount"] == 3
    body = (await generate(http, generationConfig={"maxOutputTokens": 2})).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": "Hello from"}]
    assert body["candidates"][0]["finishReason"] == "MAX_TOKENS"
    assert body["usageMetadata"]["candidatesTokenCount"] == 2


async def test_candidate_count(http: httpx.AsyncClient) -> None:
    body = (await generate(http, generationConfig={"candidateCount": 2})).json()
    assert [c["index"] for c in body["candidates"]] == [0, 1]
    assert body["candidates"][0]["content"] == body["candidates"][1]["content"]
    assert body["usageMetadata"]["candidatesTokenCount"] == 2 * REPLY_TOKENS


async def test_tool_calls(http: httpx.AsyncClient) -> None:
    body = (await generate(http, "tool", tools=TOOLS)).json()
    (candidate,) = body["candidates"]
    assert candidate["content"] == {
        "parts": [{"functionCall": {"name": "get_weather", "args": {}}}],
        "role": "model",
    }
    assert candidate["finishReason"] == "STOP"
    assert body["usageMetadata"]["candidatesTokenCount"] == 1  # "{}"
    config = {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["get_time"]}}
    model = 'tools=2+args={"city":_"Paris"}'
    body = (await generate(http, model, tools=TOOLS, toolConfig=config)).json()
    call = {"functionCall": {"name": "get_time", "args": {"city": "Paris"}}}
    assert body["candidates"][0]["content"]["parts"] == [call, call]
    assert body["usageMetadata"]["candidatesTokenCount"] == 2  # compact '{"city":"Paris"}' twice
    none = {"functionCallingConfig": {"mode": "NONE"}}
    body = (await generate(http, "tool", tools=TOOLS, toolConfig=none)).json()
    assert body["candidates"][0]["content"]["parts"] == [{"text": DEFAULT_REPLY}]
    message = error_of(await generate(http, "tool"), 400, "INVALID_ARGUMENT")
    assert "function declaration" in message
    error_of(await generate(http, "args=[1]", tools=TOOLS), 400, "INVALID_ARGUMENT")


async def test_function_round_trip_is_counted(http: httpx.AsyncClient) -> None:
    contents = [
        *USER,
        {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"a": 1}}}]},
        {"role": "user", "parts": [{"functionResponse": {"name": "get_weather", "response": {}}}]},
    ]
    body = (await generate(http, contents=contents, tools=TOOLS)).json()
    assert body["usageMetadata"]["promptTokenCount"] == USER_TOKENS + (1 + 3) + (1 + 3)


async def test_signed_calls_must_come_back_signed_in_the_current_turn(
    http: httpx.AsyncClient,
) -> None:
    body = (await generate(http, "signed+tools=2", tools=TOOLS)).json()
    signature = thought_signature("get_weather")
    call = {"functionCall": {"name": "get_weather", "args": {}}}
    # Parallel calls: only the first carries the signature.
    assert body["candidates"][0]["content"]["parts"] == [
        call | {"thoughtSignature": signature},
        call,
    ]
    found = events((await stream(http, "signed+tool", tools=TOOLS)).content)
    assert found[0]["candidates"][0]["content"]["parts"] == [call | {"thoughtSignature": signature}]

    def turn(first: dict[str, Any], closed: bool = False) -> list[dict[str, Any]]:
        result = {"functionResponse": {"name": "get_weather", "response": {}}}
        contents = [
            *USER,
            {"role": "model", "parts": [first]},
            {"role": "user", "parts": [result]},
        ]
        return (
            [*contents, {"role": "model", "parts": [{"text": "Done."}]}, *USER]
            if closed
            else contents
        )

    for accepted in (
        turn(call | {"thoughtSignature": signature}),
        turn(call | {"thoughtSignature": "skip_thought_signature_validator"}),
        turn(call, closed=True),  # a finished turn needs no signatures
    ):
        response = await generate(http, "signed+echo", contents=accepted, tools=TOOLS)
        assert response.status_code == 200, response.text
    # Gemini 2.5 does not ask for them.
    assert (await generate(http, "echo", contents=turn(call), tools=TOOLS)).status_code == 200
    missing = error_of(
        await generate(http, "signed", contents=turn(call), tools=TOOLS), 400, "INVALID_ARGUMENT"
    )
    assert missing.startswith("Function call is missing a thought_signature in functionCall parts.")
    assert "`default_api:get_weather` , position 1" in missing
    wrong = call | {"thoughtSignature": thought_signature("get_time")}
    invalid = error_of(
        await generate(http, "signed", contents=turn(wrong), tools=TOOLS), 400, "INVALID_ARGUMENT"
    )
    assert invalid == "Thought signature is not valid (contents[1].parts[0])."


async def test_inline_data_of_an_unsupported_type_is_refused(http: httpx.AsyncClient) -> None:
    def user(mime: str) -> list[dict[str, Any]]:
        return [{"role": "user", "parts": [{"inlineData": {"mimeType": mime, "data": "JVBE"}}]}]

    for mime in ("application/pdf", "image/png", "text/plain", "audio/wav"):
        assert (await generate(http, contents=user(mime))).status_code == 200
    response = await generate(http, contents=user("application/zip"))
    assert error_of(response, 400, "INVALID_ARGUMENT") == "Unsupported MIME type: application/zip"


async def test_thoughts(http: httpx.AsyncClient) -> None:
    body = (await generate(http, "think=Hmm,_let_me_see")).json()
    parts = body["candidates"][0]["content"]["parts"]
    assert parts == [{"text": "Hmm, let me see", "thought": True}, {"text": DEFAULT_REPLY}]
    usage = body["usageMetadata"]
    assert usage["thoughtsTokenCount"] == 4
    assert usage["totalTokenCount"] == USER_TOKENS + REPLY_TOKENS + 4
    config = {"thinkingConfig": {"includeThoughts": True, "thinkingBudget": 128}}
    body = (await generate(http, generationConfig=config)).json()
    assert body["candidates"][0]["content"]["parts"][0] == {
        "text": DEFAULT_THOUGHT,
        "thought": True,
    }
    assert body["usageMetadata"]["thoughtsTokenCount"] == 3


async def test_cached_and_no_usage(http: httpx.AsyncClient) -> None:
    usage = (await generate(http, "cached=4")).json()["usageMetadata"]
    assert usage["cachedContentTokenCount"] == 4
    assert usage["promptTokenCount"] == USER_TOKENS
    assert usage["cacheTokensDetails"] == [{"modality": "TEXT", "tokenCount": 4}]
    assert "usageMetadata" not in (await generate(http, "no_usage")).json()


async def test_blocked(http: httpx.AsyncClient) -> None:
    body = (await generate(http, "blocked")).json()
    (candidate,) = body["candidates"]
    assert "content" not in candidate
    assert candidate["finishReason"] == "SAFETY"
    ratings = {r["category"]: r for r in candidate["safetyRatings"]}
    assert ratings["HARM_CATEGORY_DANGEROUS_CONTENT"] == {
        "category": "HARM_CATEGORY_DANGEROUS_CONTENT",
        "probability": "HIGH",
        "blocked": True,
    }
    assert ratings["HARM_CATEGORY_HARASSMENT"]["probability"] == "NEGLIGIBLE"
    assert body["usageMetadata"] == {
        "promptTokenCount": USER_TOKENS,
        "totalTokenCount": USER_TOKENS,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": USER_TOKENS}],
    }
    body = (await generate(http, "prompt_blocked")).json()
    assert "candidates" not in body
    assert body["promptFeedback"]["blockReason"] == "SAFETY"
    found = events((await stream(http, "prompt_blocked")).content)
    assert len(found) == 1
    assert found[0]["promptFeedback"]["blockReason"] == "SAFETY"


async def test_json_mode(http: httpx.AsyncClient) -> None:
    schema = {
        "type": "OBJECT",
        "properties": {
            "name": {"type": "STRING"},
            "age": {"type": "INTEGER", "minimum": 0},
            "tags": {"type": "ARRAY", "items": {"type": "STRING"}, "minItems": 2},
            "kind": {"type": "STRING", "format": "enum", "enum": ["cat", "dog"]},
            "note": {"type": "STRING", "nullable": True},
        },
        "required": ["tags", "name", "age", "kind"],
        "propertyOrdering": ["name", "age", "tags", "kind", "note"],
    }
    config = {"responseMimeType": "application/json", "responseSchema": schema}
    body = (await generate(http, generationConfig=config)).json()
    text = body["candidates"][0]["content"]["parts"][0]["text"]
    assert text == '{"name":"text","age":0,"tags":["text","text"],"kind":"cat"}'
    config = {"responseMimeType": "application/json"}
    body = (await generate(http, generationConfig=config)).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "{}"
    json_schema = {"type": "object", "properties": {"ok": {"type": ["boolean", "null"]}}}
    config = {"responseMimeType": "application/json", "responseJsonSchema": json_schema}
    json_schema["required"] = ["ok"]
    body = (await generate(http, generationConfig=config)).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == '{"ok":false}'
    enum = {"type": "STRING", "enum": ["positive", "negative"]}
    config = {"responseMimeType": "text/x.enum", "responseSchema": enum}
    body = (await generate(http, generationConfig=config)).json()
    assert body["candidates"][0]["content"]["parts"][0]["text"] == "positive"


async def test_logprobs(http: httpx.AsyncClient) -> None:
    config = {"responseLogprobs": True, "logprobs": 2, "maxOutputTokens": 2}
    candidate = (await generate(http, generationConfig=config)).json()["candidates"][0]
    assert candidate["avgLogprobs"] == -0.1
    result = candidate["logprobsResult"]
    assert result["chosenCandidates"] == [
        {"token": "Hello", "logProbability": -0.1},
        {"token": " from", "logProbability": -0.1},
    ]
    assert [len(step["candidates"]) for step in result["topCandidates"]] == [2, 2]
    assert result["topCandidates"][0]["candidates"][0] == result["chosenCandidates"][0]
    assert result["logProbabilitySum"] == -0.2
    config = {"responseLogprobs": True}
    result = (await generate(http, generationConfig=config)).json()["candidates"][0]
    assert "topCandidates" not in result["logprobsResult"]
    assert "logprobsResult" not in (await generate(http)).json()["candidates"][0]


# --- errors, auth and validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "name"),
    [
        (400, "INVALID_ARGUMENT"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
    ],
)
async def test_error_directive(http: httpx.AsyncClient, status: int, name: str) -> None:
    response = await generate(http, f"error={status}")
    assert error_of(response, status, name)
    assert "retry-after" not in response.headers
    assert "details" not in response.json()["error"]


async def test_error_with_retry_after(http: httpx.AsyncClient) -> None:
    response = await stream(http, "error=429+retry_after=7")
    error_of(response, 429, "RESOURCE_EXHAUSTED")
    assert "retry-after" not in response.headers  # Google says it only in the body
    assert response.json()["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": "7s"}
    ]


async def test_rate_fails_a_share_reproducibly() -> None:
    async def statuses(seed: int) -> list[int]:
        fake = FakeGemini(api_key=KEY, seed=seed)
        await fake.start()
        try:
            headers = {"x-goog-api-key": KEY}
            async with httpx.AsyncClient(base_url=fake.base_url, headers=headers) as client:
                return [
                    (await generate(client, "error=503+rate=30")).status_code for _ in range(200)
                ]
        finally:
            await fake.stop()

    first = await statuses(11)
    assert set(first) == {200, 503}
    assert 40 <= first.count(503) <= 80
    assert await statuses(11) == first


async def test_delay(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    assert (await generate(http, "delay=200")).status_code == 200
    assert time.monotonic() - started >= 0.2


async def test_auth(fake: FakeGemini) -> None:
    body = {"contents": USER}
    async with httpx.AsyncClient(base_url=fake.base_url, timeout=10) as client:
        message = error_of(await client.get("/models"), 403, "PERMISSION_DENIED")
        assert "unregistered callers" in message
        response = await client.post(
            "/models/fixed:generateContent", json=body, headers={"x-goog-api-key": "wrong"}
        )
        message = error_of(response, 400, "INVALID_ARGUMENT")
        assert message == "API key not valid. Please pass a valid API key."
        assert response.json()["error"]["details"][0]["reason"] == "API_KEY_INVALID"
        ok = await client.post(f"/models/fixed:generateContent?key={KEY}", json=body)
        assert ok.status_code == 200


async def test_routes(http: httpx.AsyncClient, fake: FakeGemini) -> None:
    assert fake.base_url == f"http://127.0.0.1:{fake.port}/v1beta"
    models = (await http.get("/models")).json()["models"]
    assert [m["name"] for m in models] == ["models/fixed", "models/echo", "models/tool"]
    error_of(await http.post("/models/fixed:countTokens", json={}), 404, "NOT_FOUND")
    error_of(await http.get("/models/fixed:generateContent"), 404, "NOT_FOUND")
    error_of(await http.post("/chat/completions", json={}), 404, "NOT_FOUND")
    response = await http.post("/models/fixed:streamGenerateContent", json={"contents": USER})
    assert "alt=sse" in error_of(response, 400, "INVALID_ARGUMENT")


async def test_requests_are_recorded(http: httpx.AsyncClient, fake: FakeGemini) -> None:
    await stream(http, "echo")
    recorded = (await http.get(f"http://127.0.0.1:{fake.port}/_fake/requests")).json()
    assert recorded == fake.requests
    (request,) = recorded
    assert request["path"] == "/v1beta/models/echo:streamGenerateContent"
    assert request["query"] == {"alt": "sse"}
    assert request["headers"]["x-goog-api-key"] == KEY
    assert request["body"] == {"contents": USER}
    await http.delete(f"http://127.0.0.1:{fake.port}/_fake/requests")
    assert fake.requests == []


def schema_tool(parameters: dict[str, Any]) -> list[dict[str, Any]]:
    return [{"functionDeclarations": [{"name": "f", "parameters": parameters}]}]


INVALID: list[tuple[dict[str, Any], str]] = [
    ({"contents": []}, "* GenerateContentRequest.contents: contents is not specified\n"),
    (
        {"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]},
        "Please use a valid role: user, model.",
    ),
    (
        {"contents": [{"role": "system", "parts": [{"text": "hi"}]}]},
        "Please use a valid role: user, model.",
    ),
    (
        {"contents": [{"role": "user", "parts": []}]},
        "* GenerateContentRequest.contents[0].parts: contents.parts must not be empty.\n",
    ),
    (
        {"contents": [{"role": "user", "parts": [{"thought": True}]}]},
        "* GenerateContentRequest.contents[0].parts[0].data:"
        " required oneof field 'data' must have one initialized field\n",
    ),
    (
        {"contents": [{"parts": [{"text": "a", "inlineData": {"mimeType": "image/png"}}]}]},
        "Invalid value at 'contents[0].parts[0]' (oneof), oneof field 'data' is already set."
        " Cannot set 'inlineData'",
    ),
    (
        {"contents": [{"parts": [{"inlineData": {"mimeType": "image/png", "data": "data:x"}}]}]},
        "Invalid value at 'contents[0].parts[0].inline_data.data' (TYPE_BYTES), \"data:x\"",
    ),
    (
        {"contents": [{"parts": [{"functionCall": {"name": "f", "args": '{"a": 1}'}}]}]},
        "Invalid value at 'contents[0].parts[0].function_call.args'"
        ' (type.googleapis.com/google.protobuf.Struct), "{\\"a\\": 1}"',
    ),
    (
        {"contents": USER, "generationConfig": {"max_tokens": 5}},
        "Invalid JSON payload received. Unknown name \"max_tokens\" at 'generation_config':"
        " Cannot find field.",
    ),
    (
        {"contents": USER, "messages": []},
        'Invalid JSON payload received. Unknown name "messages": Cannot find field.',
    ),
    (
        {"contents": [{"role": "user", "parts": [{"text": "hi", "type": "text"}]}]},
        "Invalid JSON payload received. Unknown name \"type\" at 'contents[0].parts[0]':"
        " Cannot find field.",
    ),
    (
        {"contents": USER, "tools": schema_tool({"type": "object", "additionalProperties": False})},
        'Invalid JSON payload received. Unknown name "additionalProperties" at'
        " 'tools[0].function_declarations[0].parameters': Cannot find field.",
    ),
    (
        {
            "contents": USER,
            "tools": schema_tool(
                {"type": "object", "properties": {"a": {"$ref": "#/$defs/A"}}, "$defs": {}}
            ),
        },
        'Invalid JSON payload received. Unknown name "$ref" at'
        " 'tools[0].function_declarations[0].parameters.properties[0].value': Cannot find"
        ' field.\nInvalid JSON payload received. Unknown name "$defs" at'
        " 'tools[0].function_declarations[0].parameters': Cannot find field.",
    ),
    (
        {"contents": USER, "tools": schema_tool({"type": "dict"})},
        "Invalid value at 'tools[0].function_declarations[0].parameters.type'"
        ' (type.googleapis.com/google.ai.generativelanguage.v1beta.Type), "dict"',
    ),
    (
        {
            "contents": USER,
            "tools": schema_tool({"type": "OBJECT", "properties": {"a": {}}, "oneOf": []}),
        },
        'Invalid JSON payload received. Unknown name "oneOf" at'
        " 'tools[0].function_declarations[0].parameters': Cannot find field.",
    ),
    (
        {
            "contents": USER,
            "tools": schema_tool(
                {
                    "type": "OBJECT",
                    "properties": {
                        "url": {"type": "STRING", "format": "uri"},
                        "tags": {"type": "ARRAY"},
                        "n": {"type": "INTEGER", "properties": {}, "enum": ["1"]},
                    },
                    "required": ["url", "missing"],
                }
            ),
        },
        "* GenerateContentRequest.tools[0].function_declarations[0].parameters.required[1]:"
        ' property "missing" is not defined\n'
        "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties[url]"
        ".format: only 'enum' and 'date-time' are supported for STRING type\n"
        "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties[tags]"
        ".items: missing field.\n"
        "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties[n]"
        ".properties: only allowed for OBJECT type\n"
        "* GenerateContentRequest.tools[0].function_declarations[0].parameters.properties[n]"
        ".enum: only allowed for STRING type\n",
    ),
    (
        {"contents": USER, "tools": [{"functionDeclarations": [{"name": "get weather"}]}]},
        "* GenerateContentRequest.tools[0].function_declarations[0].name: Invalid function name.",
    ),
    (
        {
            "contents": USER,
            "tools": TOOLS,
            "toolConfig": {"functionCallingConfig": {"allowedFunctionNames": ["get_time"]}},
        },
        "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names:"
        " only allowed when mode is ANY or VALIDATED\n",
    ),
    (
        {
            "contents": USER,
            "tools": TOOLS,
            "toolConfig": {"functionCallingConfig": {"mode": "ANY", "allowedFunctionNames": ["x"]}},
        },
        "* GenerateContentRequest.tool_config.function_calling_config.allowed_function_names[0]:"
        ' function "x" is not declared\n',
    ),
    (
        {"contents": USER, "toolConfig": {"functionCallingConfig": {"mode": "REQUIRED"}}},
        "Invalid value at 'tool_config.function_calling_config.mode'"
        ' (type.googleapis.com/google.ai.generativelanguage.v1beta.Mode), "REQUIRED"',
    ),
    (
        {"contents": USER, "generationConfig": {"candidateCount": 9, "temperature": 2.5}},
        "* GenerateContentRequest.generation_config.candidate_count: candidate_count must be in"
        " the range [1, 8]\n* GenerateContentRequest.generation_config.temperature: temperature"
        " must be in the range [0.0, 2.0]\n",
    ),
    (
        {"contents": USER, "generationConfig": {"temperature": "hot"}},
        "Invalid value at 'generation_config.temperature' (TYPE_FLOAT), \"hot\"",
    ),
    (
        {"contents": USER, "generationConfig": {"logprobs": 3}},
        "* GenerateContentRequest.generation_config.logprobs: logprobs is only valid when"
        " response_logprobs is true\n",
    ),
    (
        {"contents": USER, "generationConfig": {"stopSequences": list("abcdef")}},
        "* GenerateContentRequest.generation_config.stop_sequences: at most 5 stop sequences",
    ),
    (
        {"contents": USER, "generationConfig": {"responseMimeType": "application/jsonl"}},
        "* GenerateContentRequest.generation_config.response_mime_type: allowed mimetypes are",
    ),
    (
        {"contents": USER, "generationConfig": {"responseSchema": {"type": "STRING"}}},
        "* GenerateContentRequest.generation_config.response_mime_type: response_mime_type must"
        " be application/json or text/x.enum when a response schema is set\n",
    ),
    (
        {
            "contents": [
                *USER,
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
            ]
        },
        "Please ensure that function response turn comes immediately after a function call turn.",
    ),
    (
        {
            "contents": [
                *USER,
                {"role": "model", "parts": [{"functionCall": {"name": "f", "args": {}}}]},
                {"role": "user", "parts": [{"functionResponse": {"name": "g", "response": {}}}]},
            ]
        },
        "* GenerateContentRequest.contents[2].parts[0].function_response.name:"
        ' no preceding function call is named "g"\n',
    ),
    (
        {
            "contents": [
                *USER,
                {
                    "role": "model",
                    "parts": [{"functionCall": {"name": "f"}}, {"functionCall": {"name": "f"}}],
                },
                {"role": "user", "parts": [{"functionResponse": {"name": "f", "response": {}}}]},
                {"role": "model", "parts": [{"text": "Done."}]},
            ]
        },
        "Please ensure that the number of function response parts is equal to the number of"
        " function call parts of the function call turn.",
    ),
]


@pytest.mark.parametrize(("body", "message"), INVALID)
async def test_invalid_requests(
    http: httpx.AsyncClient, body: dict[str, Any], message: str
) -> None:
    response = await http.post("/models/fixed:generateContent", json=body)
    assert error_of(response, 400, "INVALID_ARGUMENT").startswith(message)


async def test_invalid_body(http: httpx.AsyncClient) -> None:
    for content in (b"not json", b"[1, 2]", b""):
        response = await http.post("/models/fixed:generateContent", content=content)
        assert "Invalid JSON payload" in error_of(response, 400, "INVALID_ARGUMENT")


async def test_valid_requests_in_full(http: httpx.AsyncClient) -> None:
    """Everything a translating gateway may send, in the forms the REST API accepts."""
    contents = [
        {"role": "user", "parts": [{"text": "What is in this image?"}]},
        {
            "role": "user",
            "parts": [
                {"inlineData": {"mimeType": "image/png", "data": "iVBORw0KGgo="}},
                {"fileData": {"mimeType": "application/pdf", "fileUri": "gs://b/a.pdf"}},
            ],
        },
        {
            "role": "model",
            "parts": [
                {"text": "Thinking.", "thought": True},
                {"functionCall": {"id": "c1", "name": "get_weather", "args": {"city": "Oslo"}}},
                {"functionCall": {"id": "c2", "name": "get_time", "args": {}}},
            ],
        },
        {
            "role": "user",
            "parts": [
                {"functionResponse": {"id": "c1", "name": "get_weather", "response": {"t": 3}}}
            ],
        },
        {"role": "user", "parts": [{"functionResponse": {"name": "get_time", "response": {}}}]},
        {"role": "model", "parts": [{"text": "It is cold."}]},
        {"role": "user", "parts": [{"text": "Thanks"}]},
    ]
    lower = {
        "name": "search",
        "parametersJsonSchema": {"type": "object", "additionalProperties": False},
    }
    nested = {
        "name": "plan",
        "parameters": {
            "type": "object",
            "properties": {
                "steps": {"type": "array", "items": {"type": "string"}, "maxItems": "3"},
                "when": {"type": "string", "format": "date-time", "nullable": True},
                "either": {"anyOf": [{"type": "integer"}, {"type": "string"}]},
            },
            "required": ["steps"],
            "propertyOrdering": ["steps", "when"],
        },
    }
    body = {
        "contents": contents,
        "systemInstruction": {"parts": [{"text": "Be brief."}]},
        "tools": [{"functionDeclarations": [WEATHER, {"name": "get_time"}, lower, nested]}],
        "toolConfig": {"functionCallingConfig": {"mode": "auto"}},
        "safetySettings": [
            {"category": "HARM_CATEGORY_HARASSMENT", "threshold": "BLOCK_ONLY_HIGH"}
        ],
        "generationConfig": {
            "temperature": 0.2,
            "topP": 0.9,
            "topK": 40,
            "candidateCount": 1,
            "maxOutputTokens": 100,
            "stopSequences": ["END"],
            "presencePenalty": 0.5,
            "frequencyPenalty": 0.5,
            "seed": 7,
            "responseLogprobs": True,
            "logprobs": 1,
            "thinkingConfig": {"thinkingBudget": 0},
        },
        "cachedContent": "cachedContents/abc",
    }
    response = await http.post("/models/fixed:generateContent", json=body)
    assert response.status_code == 200, response.text


# --- misbehaviour --------------------------------------------------------------------------------


async def test_malformed(http: httpx.AsyncClient) -> None:
    response = await generate(http, "malformed")
    assert response.status_code == 200
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(response.content)
    raw = (await stream(http, "malformed")).content
    first, bad = raw.split(b"\r\n\r\n")[:2]
    assert orjson.loads(first[6:])["candidates"][0]["content"]["parts"] == [{"text": "Hello"}]
    assert bad.startswith(b"data: ")
    with pytest.raises(orjson.JSONDecodeError):
        orjson.loads(bad[6:])


async def test_drop_after(http: httpx.AsyncClient, fake: FakeGemini) -> None:
    received: list[bytes] = []
    body = {"contents": USER}
    url = "/models/drop_after=2:streamGenerateContent?alt=sse"
    async with http.stream("POST", url, json=body) as response:
        assert response.status_code == 200
        with pytest.raises(httpx.RemoteProtocolError):
            await read_raw(response, received)
    found = events(b"".join(received))
    assert texts(found) == ["Hello", " from"]
    assert all("usageMetadata" not in e and "finishReason" not in e["candidates"][0] for e in found)
    with pytest.raises(httpx.RemoteProtocolError):
        await generate(http, "drop_after=0")
    assert len(fake.requests) == 2


async def test_stream_error(http: httpx.AsyncClient) -> None:
    found = events((await stream(http, "stream_error")).content)
    assert len(found) == 2
    assert texts(found[:1]) == ["Hello"]
    assert found[1] == {
        "error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}
    }


async def test_stream_error_before_any_content(http: httpx.AsyncClient) -> None:
    found = events((await stream(http, "stream_error=0")).content)
    assert found == [
        {"error": {"code": 503, "message": "The model is overloaded.", "status": "UNAVAILABLE"}}
    ]


# --- streaming -----------------------------------------------------------------------------------


async def test_stream_text(http: httpx.AsyncClient) -> None:
    response = await stream(http)
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/event-stream"
    found = events(response.content)
    assert texts(found) == ["Hello", " from", " the", " fake", " upstream."]
    assert len({(e["modelVersion"], e["responseId"]) for e in found}) == 1
    for event in found[:-1]:
        assert list(event) == ["candidates", "modelVersion", "responseId"]
        assert event["candidates"] == [{"content": event["candidates"][0]["content"], "index": 0}]
        assert event["candidates"][0]["content"]["role"] == "model"
    last = found[-1]
    assert list(last) == ["candidates", "usageMetadata", "modelVersion", "responseId"]
    assert last["candidates"][0]["finishReason"] == "STOP"
    assert last["candidates"][0]["safetyRatings"] == NEGLIGIBLE
    assert last["usageMetadata"]["totalTokenCount"] == USER_TOKENS + REPLY_TOKENS


async def test_stream_options(http: httpx.AsyncClient) -> None:
    config = {"candidateCount": 2, "maxOutputTokens": 3, "responseLogprobs": True}
    found = events((await stream(http, "chunks=2", generationConfig=config)).content)
    assert texts(found) == ["Hello f", "rom the"]  # near-equal lengths
    assert texts(found, 1) == texts(found)
    assert found[-1]["candidates"][1]["finishReason"] == "MAX_TOKENS"
    assert found[-1]["usageMetadata"]["candidatesTokenCount"] == 6
    chosen = found[0]["candidates"][0]["logprobsResult"]["chosenCandidates"]
    assert chosen == [
        {"token": "Hello", "logProbability": -0.1},
        {"token": " f", "logProbability": -0.1},
    ]
    found = events((await stream(http, "no_usage+cached=3")).content)
    assert "usageMetadata" not in found[-1]
    found = events((await stream(http, "blocked")).content)
    assert len(found) == 1
    assert found[0]["candidates"][0]["finishReason"] == "SAFETY"
    found = events(
        (await stream(http, "reply=", generationConfig={"stopSequences": ["x"]})).content
    )
    assert texts(found) == [""]


async def test_stream_chunk_delay(http: httpx.AsyncClient) -> None:
    started = time.monotonic()
    assert len(events((await stream(http, "chunks=3+chunk_delay=100")).content)) == 3
    assert time.monotonic() - started >= 0.2


async def test_stream_tools_and_thoughts(http: httpx.AsyncClient) -> None:
    found = events((await stream(http, "tools=2+think=Plan_it", tools=TOOLS)).content)
    assert len(found) == 2
    assert found[0]["candidates"][0]["content"]["parts"] == [{"text": "Plan it", "thought": True}]
    call = {"functionCall": {"name": "get_weather", "args": {}}}
    assert found[1]["candidates"][0]["content"]["parts"] == [call, call]
    assert found[1]["candidates"][0]["finishReason"] == "STOP"
    usage = found[1]["usageMetadata"]
    assert (usage["candidatesTokenCount"], usage["thoughtsTokenCount"]) == (2, 2)
    assert usage["totalTokenCount"] == USER_TOKENS + 4


# --- synchronous use and the command line --------------------------------------------------------


def test_running_in_thread() -> None:
    fake = FakeGemini()
    with fake.running_in_thread() as running:
        assert running is fake
        url = f"{running.base_url}/models/echo:generateContent"
        response = httpx.post(url, json={"contents": USER})
        assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Say hello to me"}]
    assert len(fake.requests) == 1
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"{fake.base_url}/models")


@pytest.mark.skipif(sys.platform == "win32", reason="needs SIGTERM")
def test_command_line() -> None:
    command = [sys.executable, "-m", "crossroads.testing.fake_gemini", "--port", "0"]
    command += ["--api-key", KEY, "--no-record"]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env) as process:
        assert process.stdout is not None
        base_url = process.stdout.readline().strip()
        assert base_url.startswith("http://127.0.0.1:")
        assert base_url.endswith("/v1beta")
        url = f"{base_url}/models/echo:generateContent"
        response = httpx.post(url, json={"contents": USER}, headers={"x-goog-api-key": KEY})
        assert response.json()["candidates"][0]["content"]["parts"] == [{"text": "Say hello to me"}]
        assert httpx.get(f"{base_url.removesuffix('/v1beta')}/_fake/requests").json() == []
        process.send_signal(signal.SIGTERM)
        assert process.wait(timeout=10) == 0
        assert process.stdout.read() == ""
