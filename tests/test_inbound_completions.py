"""Legacy `POST /v1/completions` with the official `openai` SDK, served by chat models."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI
from openai.types import Completion

from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, flush_log
from tests.inbound_gateway import inbound_gateway

__all__ = ["inbound_gateway"]


@pytest.fixture
def sdk(inbound_gateway: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{inbound_gateway.url}/v1", api_key=API_KEY, max_retries=0) as client:
        yield client


def sent(fakes: dict[str, Any], dialect: str) -> dict[str, Any]:
    body = fakes[dialect].requests[-1]["body"]
    assert isinstance(body, dict)
    return body


@pytest.mark.parametrize("model", ["gpt-echo", "claude-echo"])
def test_prompt(sdk: OpenAI, fakes: dict[str, Any], model: str) -> None:
    raw = sdk.completions.with_raw_response.create(model=model, prompt="alpha beta gamma")
    completion = Completion.model_validate(raw.http_response.json())
    assert completion.object == "text_completion"
    assert completion.choices[0].text == "alpha beta gamma"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 3
    assert completion.id == "cmpl-" + raw.http_response.headers["x-crossroads-log-id"]
    dialect = "openai" if model.startswith("gpt") else "anthropic"
    body = sent(fakes, dialect)
    assert body["max_tokens"] == 16  # the endpoint's own default


def test_parameters_reach_upstream(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    sdk.completions.create(
        model="gpt-echo", prompt="alpha", max_tokens=5, temperature=0.2, stop=["\n"], seed=3
    )
    body = sent(fakes, "openai")
    assert body["messages"] == [{"role": "user", "content": "alpha"}]
    assert body["max_tokens"] == 5
    assert body["temperature"] == 0.2
    assert body["stop"] == ["\n"]
    assert body["seed"] == 3


def test_list_of_prompts_with_n(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    completion = sdk.completions.create(model="gpt-echo", prompt=["a b", "c d e"], n=2)
    assert [(c.index, c.text) for c in completion.choices] == [
        (0, "a b"),
        (1, "a b"),
        (2, "c d e"),
        (3, "c d e"),
    ]
    assert completion.usage is not None
    assert completion.usage.completion_tokens == 2 * 2 + 3 * 2


def test_echo(sdk: OpenAI) -> None:
    completion = sdk.completions.create(model="gpt-fixed", prompt="Q: ", echo=True)
    assert completion.choices[0].text == "Q: Hello from the fake upstream."


def test_length(sdk: OpenAI) -> None:
    completion = sdk.completions.create(model="gpt-echo", prompt="one two three", max_tokens=2)
    assert completion.choices[0].text == "one two"
    assert completion.choices[0].finish_reason == "length"


def test_stream(sdk: OpenAI) -> None:
    chunks = list(
        sdk.completions.create(
            model="gpt-chunked",
            prompt="alpha beta gamma",
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    for chunk in chunks:  # as OpenAI's, chunks before the last have a null finish_reason
        if all(choice.finish_reason for choice in chunk.choices):
            Completion.model_validate(chunk.model_dump())
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert text == "alpha beta gamma"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == []
    assert chunks[-1].usage is not None
    assert chunks[-1].usage.completion_tokens == 3


def test_stream_of_two_prompts(sdk: OpenAI) -> None:
    chunks = list(sdk.completions.create(model="claude-chunked", prompt=["a b", "c"], stream=True))
    texts: dict[int, str] = {}
    for chunk in chunks:
        for choice in chunk.choices:
            texts[choice.index] = texts.get(choice.index, "") + choice.text
    assert texts == {0: "a b", 1: "c"}


def test_every_prompt_is_logged(sdk: OpenAI, inbound_gateway: ServedApp) -> None:
    raw = sdk.completions.with_raw_response.create(model="gpt-fixed", prompt=["x", "y", "z"])
    assert len(raw.parse().choices) == 3
    flush_log(inbound_gateway)
    page = httpx.get(
        f"{inbound_gateway.url}/v1/logs",
        params={"model": "gpt-fixed", "limit": 10},
        headers={"authorization": f"Bearer {API_KEY}"},
    ).json()
    prompts = sorted(r["request"]["messages"][0]["content"] for r in page["data"][:3])
    assert prompts == ["x", "y", "z"]
    assert len({r["id"] for r in page["data"][:3]}) == 3


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"model": "gpt-echo"}, "prompt"),
        ({"model": "gpt-echo", "prompt": [1, 2, 3]}, "prompt"),
        ({"model": "gpt-echo", "prompt": "x", "suffix": "y"}, "suffix"),
        ({"model": "gpt-echo", "prompt": "x", "logprobs": 2}, "logprobs"),
        ({"model": "gpt-echo", "prompt": []}, "prompt"),
        ({"model": "gpt-echo", "prompt": "x", "max_tokens": "many"}, "max_tokens"),
    ],
)
def test_bad_requests(inbound_gateway: ServedApp, body: dict[str, Any], param: str) -> None:
    response = httpx.post(
        f"{inbound_gateway.url}/v1/completions",
        json=body,
        headers={"authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["param"] == param
    assert error["type"] == "invalid_request_error"


def test_upstream_error(sdk: OpenAI) -> None:
    with pytest.raises(openai.InternalServerError) as caught:
        sdk.completions.create(model="gpt-error-503", prompt="x")
    assert caught.value.status_code == 503


def test_openapi_lists_the_inbound_apis(inbound_gateway: ServedApp) -> None:
    paths = httpx.get(f"{inbound_gateway.url}/openapi.json").json()["paths"]
    assert "get" in paths["/v1/responses/{response_id}"]
    for path in ("/v1/messages", "/v1/messages/count_tokens", "/v1/responses", "/v1/completions"):
        schema = paths[path]["post"]["requestBody"]["content"]["application/json"]["schema"]
        assert "model" in schema["required"]


def test_stream_with_echo(sdk: OpenAI) -> None:
    chunks = list(sdk.completions.create(model="gpt-fixed", prompt="Q: ", echo=True, stream=True))
    text = "".join(choice.text for chunk in chunks for choice in chunk.choices)
    assert text == "Q: Hello from the fake upstream."
