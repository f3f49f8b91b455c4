"""Conversations that go on: the next turn gives back what the last answer carried.

Anthropic (with thinking on) and Gemini 3 take a tool loop's next turn only with the signed
reasoning their previous answer issued; Anthropic takes tool-call ids only in its own
alphabet, whoever issued them; both read PDF files. Each test keeps the first answer as a
client using the `openai` SDK keeps it (streamed or not), sends it back through the
gateway, and lets fake upstreams that refuse what the real APIs refuse judge the result.
"""

from __future__ import annotations

import base64
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.testing.fake_anthropic import redacted_data, thinking_signature
from crossroads.testing.fake_gemini_signatures import thought_signature
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, ARGS, DIALECT_PRICE, flush_log, running_gateway

USER = [{"role": "user", "content": "alpha beta gamma"}]
WEATHER = [
    {
        "type": "function",
        "function": {
            "name": "get_weather",
            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
        },
    }
]
THINKING = {"reasoning_effort": "low", "max_completion_tokens": 4000}
PDF = "data:application/pdf;base64," + base64.b64encode(b"%PDF-1.4\n%%EOF\n").decode()
# model → its deployments in order (provider, fake behaviour); a failing first deployment
# fails over to the second, as a conversation moves between providers.
MODELS = {
    "claude-tool": [("anthropic", f"args={ARGS}")],
    "claude-redacted-tool": [("anthropic", f"redacted+args={ARGS}")],
    "claude-echo": [("anthropic", "echo")],
    "gemini3-tool": [("gemini", f"signed+args={ARGS}")],
    "gemini3-echo": [("gemini", "signed+echo")],
    "gemini-echo": [("gemini", "echo")],
    "openai-then-claude": [("openai", "error=503"), ("anthropic", "echo")],
    "claude-then-gemini3": [("anthropic", "error=503"), ("gemini", "signed+echo")],
}


@pytest.fixture(scope="module")
def continued_gateway(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database: Path = tmp_path_factory.mktemp("continued") / "log.db"
    keys = {"openai": "sk-oa", "anthropic": "sk-an", "gemini": "sk-ge"}
    providers: dict[str, Any] = {
        name: {"base_url": fakes[name].base_url, "api_key": key} for name, key in keys.items()
    }
    providers["anthropic"]["dialect"] = "anthropic"
    providers["gemini"]["dialect"] = "gemini"
    models = {
        name: {
            "deployments": [
                {"provider": provider, "model": behaviour, "price": DIALECT_PRICE}
                for provider, behaviour in deployments
            ]
        }
        for name, deployments in MODELS.items()
    }
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}"},
            "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
            "providers": providers,
            "models": models,
            "routing": {"retries": 0},
        }
    )
    with running_gateway(config) as served:
        yield served


@pytest.fixture
def sdk(continued_gateway: ServedApp) -> Iterator[OpenAI]:
    url = f"{continued_gateway.url}/v1"
    with OpenAI(base_url=url, api_key=API_KEY, max_retries=0) as client:
        yield client


def sent(fakes: dict[str, Any], dialect: str) -> dict[str, Any]:
    body = fakes[dialect].requests[-1]["body"]
    assert isinstance(body, dict)
    return body


def answer_message(sdk: OpenAI, stream: bool, **request: Any) -> dict[str, Any]:
    """The answer's assistant message as a client keeps it to send back, extensions too."""
    if not stream:
        completion = sdk.chat.completions.create(**request)
        return completion.choices[0].message.model_dump(exclude_none=True)
    message: dict[str, Any] = {"role": "assistant", "content": ""}
    calls: dict[int, dict[str, Any]] = {}
    details: list[Any] = []
    for chunk in sdk.chat.completions.create(stream=True, **request):
        for choice in chunk.choices:
            delta = choice.delta
            message["content"] += delta.content or ""
            details += (delta.model_extra or {}).get("reasoning_details") or []
            for call in delta.tool_calls or ():
                entry = calls.setdefault(
                    call.index,
                    {"id": "", "type": "function", "function": {"name": "", "arguments": ""}},
                )
                entry["id"] += call.id or ""
                if call.function is not None:
                    entry["function"]["name"] += call.function.name or ""
                    entry["function"]["arguments"] += call.function.arguments or ""
                entry.update(call.model_extra or {})
    if calls:
        message["tool_calls"] = [calls[k] for k in sorted(calls)]
    if details:
        message["reasoning_details"] = details
    return message


def answered(message: dict[str, Any]) -> list[dict[str, Any]]:
    """The conversation after `message`: the user's question, it, and its tool results."""
    results = [
        {"role": "tool", "tool_call_id": call["id"], "content": "sunny"}
        for call in message["tool_calls"]
    ]
    return [*USER, message, *results]


def dropped_params(response: Any, stream: bool) -> Any:
    if stream:
        chunks = list(response)
        return (chunks[0].model_extra or {}).get("dropped_params")
    return (response.model_extra or {}).get("dropped_params")


# --- Anthropic: signed thinking -------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "block"),
    [
        (
            "claude-tool",
            {
                "type": "thinking",
                "thinking": "Let me think.",
                "signature": thinking_signature("Let me think."),
            },
        ),
        (
            "claude-redacted-tool",
            {"type": "redacted_thinking", "data": redacted_data("Let me think.")},
        ),
    ],
)
@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_given_back_opens_the_tool_loop(
    sdk: OpenAI, fakes: dict[str, Any], model: str, block: dict[str, Any], stream: bool
) -> None:
    first = answer_message(sdk, stream, model=model, messages=USER, tools=WEATHER, **THINKING)
    assert [d["format"] for d in first["reasoning_details"]] == ["anthropic-claude-v1"]
    completion = sdk.chat.completions.create(
        model="claude-echo",
        messages=answered(first),  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        **THINKING,  # type: ignore[arg-type]
    )
    assert (completion.model_extra or {}).get("dropped_params") is None
    body = sent(fakes, "anthropic")
    assert body["thinking"] == {"type": "enabled", "budget_tokens": 2048}
    assert body["messages"][1]["role"] == "assistant"
    assert body["messages"][1]["content"][0] == block
    assert body["messages"][1]["content"][1]["type"] == "tool_use"


@pytest.mark.parametrize("stream", [False, True])
def test_anthropic_thinking_is_dropped_for_a_tool_loop_that_lost_it(
    sdk: OpenAI, fakes: dict[str, Any], stream: bool
) -> None:
    first = answer_message(
        sdk, False, model="claude-tool", messages=USER, tools=WEATHER, **THINKING
    )
    del first["reasoning_details"]  # a client that keeps only OpenAI's own fields
    response = sdk.chat.completions.create(
        model="claude-echo",
        messages=answered(first),  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        stream=stream,
        **THINKING,  # type: ignore[arg-type]
    )
    assert dropped_params(response, stream) == ["reasoning_effort"]
    body = sent(fakes, "anthropic")
    assert "thinking" not in body
    assert body["messages"][1]["content"][0]["type"] == "tool_use"


def test_lost_thinking_with_required_parameters_is_a_400(sdk: OpenAI) -> None:
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ARGS},
    }
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="claude-echo",
            messages=answered({"role": "assistant", "tool_calls": [call]}),  # type: ignore[arg-type]
            tools=WEATHER,  # type: ignore[arg-type]
            extra_body={"provider": {"require_parameters": True}},
            **THINKING,  # type: ignore[arg-type]
        )
    assert "reasoning_effort" in str(caught.value)


def test_a_finished_tool_loop_keeps_thinking_on(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    call = {
        "id": "toolu_1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": ARGS},
    }
    messages = [
        *answered({"role": "assistant", "tool_calls": [call]}),
        {"role": "assistant", "content": "Sunny in Paris."},
        {"role": "user", "content": "And tomorrow?"},
    ]
    completion = sdk.chat.completions.create(
        model="claude-echo",
        messages=messages,  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        **THINKING,  # type: ignore[arg-type]
    )
    assert completion.choices[0].message.content == "And tomorrow?"
    assert (completion.model_extra or {}).get("dropped_params") is None
    assert sent(fakes, "anthropic")["thinking"]["type"] == "enabled"


# --- Anthropic: tool-call ids from anywhere ---------------------------------------------------


def test_tool_call_ids_from_another_provider_reach_anthropic_on_failover(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    calls = [
        {
            "id": f"functions.get_weather:{k}",
            "type": "function",
            "function": {"name": "get_weather", "arguments": ARGS},
        }
        for k in range(2)
    ]
    completion = sdk.chat.completions.create(
        model="openai-then-claude",
        messages=[  # type: ignore[list-item]
            *answered({"role": "assistant", "content": None, "tool_calls": calls}),
            {"role": "user", "content": "thanks"},
        ],
        tools=WEATHER,  # type: ignore[arg-type]
    )
    assert completion.provider == "anthropic"  # type: ignore[attr-defined]
    assert completion.choices[0].message.content == "thanks"
    turns = sent(fakes, "anthropic")["messages"]
    uses = [block["id"] for block in turns[1]["content"]]
    results = [block["tool_use_id"] for block in turns[2]["content"][:2]]
    assert uses == results
    assert len(set(uses)) == 2
    assert all(re.fullmatch(r"[a-zA-Z0-9_-]+", tool_id) for tool_id in uses)


# --- Gemini 3: thought signatures -------------------------------------------------------------


@pytest.mark.parametrize("stream", [False, True])
def test_a_gemini3_thought_signature_goes_back_on_its_function_call(
    sdk: OpenAI, fakes: dict[str, Any], stream: bool
) -> None:
    first = answer_message(sdk, stream, model="gemini3-tool", messages=USER, tools=WEATHER)
    signature = thought_signature("get_weather")
    assert first["tool_calls"][0]["extra_content"] == {"google": {"thought_signature": signature}}
    sdk.chat.completions.create(
        model="gemini3-echo",
        messages=answered(first),  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
    )
    call = sent(fakes, "gemini")["contents"][1]["parts"][0]
    assert call["functionCall"]["name"] == "get_weather"
    assert call["thoughtSignature"] == signature


def test_a_conversation_begun_on_anthropic_continues_on_gemini3(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    first = answer_message(sdk, False, model="claude-tool", messages=USER, tools=WEATHER)
    completion = sdk.chat.completions.create(
        model="claude-then-gemini3",
        messages=answered(first),  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
    )
    assert completion.provider == "gemini"  # type: ignore[attr-defined]
    call = sent(fakes, "gemini")["contents"][1]["parts"][0]
    # The value Google documents for function calls Gemini did not issue itself.
    assert call["thoughtSignature"] == "skip_thought_signature_validator"


# --- PDF files --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "dialect", "document"),
    [
        (
            "claude-echo",
            "anthropic",
            {
                "type": "document",
                "source": {"type": "base64", "media_type": "application/pdf", "data": PDF[28:]},
                "title": "report.pdf",
            },
        ),
        (
            "gemini-echo",
            "gemini",
            {"inlineData": {"mimeType": "application/pdf", "data": PDF[28:]}},
        ),
    ],
)
def test_a_pdf_file_part_reaches_the_upstream_as_a_document(
    sdk: OpenAI, fakes: dict[str, Any], model: str, dialect: str, document: dict[str, Any]
) -> None:
    part = {"type": "file", "file": {"filename": "report.pdf", "file_data": PDF}}
    completion = sdk.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": [{"type": "text", "text": "Summarise"}, part]}],  # type: ignore[list-item,misc]
    )
    assert completion.choices[0].message.content == "Summarise"
    body = sent(fakes, dialect)
    parts = (
        body["messages"][0]["content"] if dialect == "anthropic" else body["contents"][0]["parts"]
    )
    assert parts[1] == document


@pytest.mark.parametrize("model", ["claude-echo", "gemini-echo"])
def test_an_uploaded_file_id_is_a_400_naming_it(sdk: OpenAI, model: str) -> None:
    part = {"type": "file", "file": {"file_id": "file-abc"}}
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model=model,
            messages=[{"role": "user", "content": [part]}],  # type: ignore[list-item,misc]
        )
    assert caught.value.param == "messages[0].content[0].file.file_id"  # type: ignore[attr-defined]
    assert "file_data" in str(caught.value)


# --- the request log --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("model", "params", "signed"),
    [
        ("claude-tool", THINKING, "reasoning_details"),
        ("gemini3-tool", {}, "tool_calls"),
    ],
)
def test_a_streamed_answer_is_logged_with_what_must_be_given_back(
    sdk: OpenAI,
    continued_gateway: ServedApp,
    model: str,
    params: dict[str, Any],
    signed: str,
) -> None:
    raw = sdk.chat.completions.with_raw_response.create(
        model=model,
        messages=USER,  # type: ignore[arg-type]
        tools=WEATHER,  # type: ignore[arg-type]
        stream=True,
        **params,
    )
    for _chunk in raw.parse():
        pass
    flush_log(continued_gateway)
    record = httpx.get(
        f"{continued_gateway.url}/v1/logs/{raw.headers['x-crossroads-log-id']}",
        headers={"Authorization": f"Bearer {API_KEY}"},
    ).json()
    message = record["response"]["choices"][0]["message"]
    if signed == "reasoning_details":
        signature = thinking_signature("Let me think.")
        assert [d["signature"] for d in message["reasoning_details"]] == [signature]
    else:
        google = message["tool_calls"][0]["extra_content"]["google"]
        assert google["thought_signature"] == thought_signature("get_weather")
