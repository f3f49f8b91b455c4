"""Property-based: any valid OpenAI request translates into one the upstream accepts.

The fake Anthropic and Gemini upstreams check requests as strictly as the real APIs, so an
upstream 400 here means the gateway produced a body the provider would refuse — a
translation bug. Hypothesis builds valid conversations (system prompts anywhere, text and
image parts, tool calls with their results, consecutive turns of one role) with valid
options, and every answer must be a success or a 400 that the gateway itself gave with a
message saying what to change. Never a 500, never an upstream 400.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY

IMAGE = "data:image/png;base64,iVBORw0KGgo="
words = st.text(alphabet="abcdefgh xyz", min_size=1, max_size=24).filter(str.strip)
TOOL = {
    "type": "function",
    "function": {
        "name": "lookup",
        "description": "Look something up.",
        "parameters": {
            "type": "object",
            "properties": {
                "query": {"type": "string"},
                "limit": {"type": ["integer", "null"], "minimum": 1},
                "tags": {"type": "array", "items": {"type": "string", "enum": ["a", "b"]}},
            },
            "required": ["query"],
            "additionalProperties": False,
        },
    },
}


@st.composite
def turn(draw: st.DrawFn, index: int) -> list[dict[str, Any]]:
    """One step of a conversation: a few messages that are valid together."""
    kind = draw(st.sampled_from(["user", "user-parts", "assistant", "system", "tool-round"]))
    if kind == "user":
        return [{"role": "user", "content": draw(words)}]
    if kind == "user-parts":
        parts: list[dict[str, Any]] = [{"type": "text", "text": draw(words)}]
        if draw(st.booleans()):
            parts.append({"type": "image_url", "image_url": {"url": IMAGE}})
        return [{"role": "user", "content": parts}]
    if kind == "assistant":
        return [{"role": "assistant", "content": draw(words)}]
    if kind == "system":
        return [{"role": draw(st.sampled_from(["system", "developer"])), "content": draw(words)}]
    calls = draw(st.integers(min_value=1, max_value=3))
    ids = [f"call_{index}_{k}" for k in range(calls)]
    arguments = json.dumps({"query": draw(words)})
    assistant = {
        "role": "assistant",
        "content": draw(st.none() | words),
        "tool_calls": [
            {"id": i, "type": "function", "function": {"name": "lookup", "arguments": arguments}}
            for i in ids
        ],
    }
    results = [{"role": "tool", "tool_call_id": i, "content": draw(words)} for i in ids]
    return [assistant, *results]


@st.composite
def requests(draw: st.DrawFn) -> dict[str, Any]:
    steps = draw(st.lists(st.integers(), min_size=1, max_size=5))
    messages: list[dict[str, Any]] = [{"role": "user", "content": draw(words)}]
    for index, _ in enumerate(steps):
        messages += draw(turn(index))
    if messages[-1]["role"] in ("assistant", "system", "developer"):
        messages.append({"role": "user", "content": draw(words)})
    body: dict[str, Any] = {"messages": messages, "tools": [TOOL]}
    options = {
        "temperature": st.floats(min_value=0, max_value=1),
        "top_p": st.floats(min_value=0.01, max_value=1),
        "max_tokens": st.integers(min_value=1, max_value=64),
        "max_completion_tokens": st.integers(min_value=1, max_value=64),
        "stop": st.lists(words, min_size=1, max_size=3),
        "seed": st.integers(min_value=0, max_value=2**31),
        "presence_penalty": st.floats(min_value=-2, max_value=2),
        "user": words,
        "tool_choice": st.sampled_from(
            ["auto", "none", "required", {"type": "function", "function": {"name": "lookup"}}]
        ),
        "parallel_tool_calls": st.booleans(),
        "stream": st.booleans(),
        "n": st.just(1),
        "top_k": st.integers(min_value=1, max_value=40),
    }
    for name, strategy in options.items():
        if draw(st.booleans()):
            body[name] = draw(strategy)
    if draw(st.integers(min_value=0, max_value=4)) == 0:
        body.pop("tools")
        body.pop("tool_choice", None)
        body.pop("parallel_tool_calls", None)
        body["response_format"] = draw(
            st.sampled_from(
                [
                    {"type": "json_object"},
                    {
                        "type": "json_schema",
                        "json_schema": {
                            "name": "answer",
                            "schema": {
                                "type": "object",
                                "properties": {"a": {"type": "string"}},
                                "required": ["a"],
                            },
                        },
                    },
                ]
            )
        )
    return body


@pytest.fixture(scope="module")
def http(golden_gateway: ServedApp) -> Iterator[httpx.Client]:
    with httpx.Client(
        base_url=golden_gateway.url, headers={"Authorization": f"Bearer {API_KEY}"}, timeout=10
    ) as client:
        yield client


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
@settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(body=requests())
def test_valid_requests_translate_to_bodies_the_upstream_accepts(
    http: httpx.Client, dialect: str, body: dict[str, Any]
) -> None:
    response = http.post("/v1/chat/completions", json={**body, "model": f"{dialect}-echo"})
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        error = response.json()["error"]
        assert not error["message"].startswith("Upstream"), (error, body)
        assert error["param"], error
        return
    if body.get("stream"):
        events = [e for e in response.text.split("\n\n") if e]
        assert events[-1] == "data: [DONE]", events[-3:]
    else:
        assert response.json()["choices"]
