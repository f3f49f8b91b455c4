"""What an upstream sends that is unusual but legal, through the gateway to the SDK.

Large bodies, overload errors inside a stream, Google's RetryInfo instead of a `Retry-After`
header, and a `temperature` in OpenAI's range but not in Anthropic's: each against the fake
upstream of every dialect concerned, so the answer is the same whatever served it.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, DIALECTS, running_gateway

USER = [{"role": "user", "content": "alpha beta gamma"}]
MB = 1 << 20
WORDS = MB  # a `max_tokens` (the fakes count words) that cuts none of 5 MB of filler
# Model suffix → fake behaviour, on every dialect.
BEHAVIOURS = {
    "echo": "echo",
    "1mb": f"reply_size={MB}",
    "5mb": f"reply_size={5 * MB}+chunks=40",
    "overloaded": "error=503",
    "early-overload": "stream_error=0",
    "late-overload": "stream_error=2",
    "rate-limited": "error=429+retry_after=1",
}
# Anthropic says "overloaded" with its own 529.
OVERLOADED = {"openai": "error=503", "anthropic": "error=529", "gemini": "error=503"}


@pytest.fixture(scope="module")
def served(fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database: Path = tmp_path_factory.mktemp("conformance") / "log.db"
    keys = {"openai": "sk-oa", "anthropic": "sk-an", "gemini": "sk-ge"}
    providers = {
        dialect: {
            "dialect": dialect,
            "base_url": fakes[dialect].base_url,
            "api_key": keys[dialect],
            "read_timeout": 10,
        }
        for dialect in DIALECTS
    }
    models: dict[str, Any] = {}
    for dialect in DIALECTS:
        for suffix, behaviour in BEHAVIOURS.items():
            if suffix == "overloaded":
                behaviour = OVERLOADED[dialect]
            models[f"{dialect}-{suffix}"] = {
                "deployments": [{"provider": dialect, "model": behaviour}]
            }
    # An overload, streamed or not, is retried on the same deployment, then failed over.
    for name, behaviour in (("stream", "stream_error=0"), ("plain", "error=529")):
        models[f"failover-{name}"] = {
            "deployments": [
                {"provider": "anthropic", "model": behaviour},
                {"provider": "gemini", "model": "echo"},
            ]
        }
    models["anthropic-then-openai"] = {
        "deployments": [
            {"provider": "anthropic", "model": "echo"},
            {"provider": "openai", "model": "echo"},
        ]
    }
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
            "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
            "providers": providers,
            "models": models,
            "routing": {
                "retries": 1,
                "backoff_initial": 0.01,
                "backoff_max": 0.02,
                "max_retry_after": 5,
                "attempt_timeout": 15,
                "breaker": {"consecutive_failures": 1000, "min_requests": 1000},
            },
        }
    )
    with running_gateway(config) as app:
        yield app


@pytest.fixture
def sdk(served: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0, timeout=30) as client:
        yield client


def stream_events(served: ServedApp, body: dict[str, Any]) -> tuple[httpx.Response, list[Any]]:
    """POST a streamed request; the response and its decoded `data:` events ([DONE] as is)."""
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"messages": USER, "stream": True, **body},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
    events: list[Any] = []
    if response.headers.get("content-type", "").startswith("text/event-stream"):
        for event in response.text.split("\n\n"):
            if event.startswith("data: "):
                data = event.removeprefix("data: ")
                events.append(data if data == "[DONE]" else json.loads(data))
    return response, events


def text_of(events: list[Any]) -> str:
    return "".join(
        e["choices"][0]["delta"].get("content") or ""
        for e in events
        if isinstance(e, dict) and e.get("choices")
    )


def filler(size: int) -> str:
    text = "lorem ipsum dolor sit amet " * (size // 27 + 1)
    return text[:size]


# --- large bodies ------------------------------------------------------------------------


@pytest.mark.parametrize("size", ["1mb", "5mb"])
@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_large_answer_arrives_whole(sdk: OpenAI, dialect: str, size: str) -> None:
    completion = sdk.chat.completions.create(
        model=f"{dialect}-{size}",
        messages=USER,  # type: ignore[arg-type]
        max_tokens=WORDS,
    )
    expected = filler(MB if size == "1mb" else 5 * MB)
    assert completion.choices[0].message.content == expected


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_large_streamed_answer_arrives_whole(served: ServedApp, dialect: str) -> None:
    response, events = stream_events(served, {"model": f"{dialect}-5mb", "max_tokens": WORDS})
    assert response.status_code == 200
    assert events[-1] == "[DONE]"
    assert text_of(events) == filler(5 * MB)


# --- overload inside a stream ------------------------------------------------------------


def error_of(response: httpx.Response) -> dict[str, Any]:
    error = response.json()["error"]
    assert isinstance(error, dict)
    return error


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
def test_an_early_overload_in_a_stream_is_the_same_503_as_without_streaming(
    served: ServedApp, dialect: str
) -> None:
    headers = {"Authorization": f"Bearer {API_KEY}"}
    url = f"{served.url}/v1/chat/completions"
    plain = httpx.post(
        url, json={"model": f"{dialect}-overloaded", "messages": USER}, headers=headers
    )
    streamed, events = stream_events(served, {"model": f"{dialect}-early-overload"})
    assert plain.status_code == streamed.status_code == 503
    assert events == []  # a real HTTP error, not a 200 stream
    expected, got = error_of(plain), error_of(streamed)
    assert (got["type"], got["code"]) == (expected["type"], expected["code"])
    assert (got["type"], got["code"]) == ("upstream_error", "upstream_error")
    assert "overloaded" in got["message"].lower()
    assert "in its stream" in got["message"]


def test_an_early_overload_in_a_stream_is_retried_and_failed_over_like_a_plain_one(
    served: ServedApp, sdk: OpenAI
) -> None:
    plain = sdk.chat.completions.with_raw_response.create(model="failover-plain", messages=USER)  # type: ignore[arg-type]
    plain_attempts = json.loads(plain.text)["routing"]["attempts"]
    response, events = stream_events(
        served, {"model": "failover-stream", "stream_options": {"include_usage": True}}
    )
    assert response.status_code == 200
    assert text_of(events) == "alpha beta gamma"
    stream_attempts = events[-2]["routing"]["attempts"]
    summary = [(a["provider"], a["status"], a["error"]) for a in stream_attempts]
    assert summary == [(a["provider"], a["status"], a["error"]) for a in plain_attempts]
    assert summary == [
        ("anthropic", 529, "upstream_error"),  # retried once on the same deployment
        ("anthropic", 529, "upstream_error"),
        ("gemini", 200, None),
    ]


@pytest.mark.parametrize("dialect", ["anthropic", "gemini"])
def test_a_late_overload_ends_the_stream_with_the_same_error(
    served: ServedApp, dialect: str
) -> None:
    response, events = stream_events(served, {"model": f"{dialect}-late-overload"})
    assert response.status_code == 200
    assert text_of(events)  # content came first, so the status could not change any more
    assert events[-1] != "[DONE]"
    error = events[-1]["error"]
    assert (error["type"], error["code"]) == ("upstream_error", "upstream_error")
    assert "overloaded" in error["message"].lower()


# --- Retry-After -------------------------------------------------------------------------


@pytest.mark.parametrize("dialect", DIALECTS)
def test_a_rate_limit_carries_retry_after_and_the_retry_waits_for_it(
    sdk: OpenAI, dialect: str
) -> None:
    # Gemini says when in a google.rpc.RetryInfo only; the others in a `retry-after` header.
    started = time.monotonic()
    with pytest.raises(openai.RateLimitError) as caught:
        sdk.chat.completions.create(model=f"{dialect}-rate-limited", messages=USER)  # type: ignore[arg-type]
    elapsed = time.monotonic() - started
    assert caught.value.response.headers["retry-after"] == "1"
    assert elapsed >= 1.0  # the one retry waited the upstream's delay


# --- temperature ranges ------------------------------------------------------------------


def test_anthropic_temperature_above_one_is_clamped_and_reported(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    completion = sdk.chat.completions.create(
        model="anthropic-echo",
        messages=USER,  # type: ignore[arg-type]
        temperature=1.7,
    )
    assert completion.choices[0].message.content == "alpha beta gamma"
    assert completion.model_extra is not None
    assert completion.model_extra["adjusted_params"] == {"temperature": 1.0}
    assert "dropped_params" not in completion.model_extra
    assert fakes["anthropic"].requests[-1]["body"]["temperature"] == 1.0


def test_anthropic_temperature_clamp_is_reported_on_a_stream(
    served: ServedApp, fakes: dict[str, Any]
) -> None:
    response, events = stream_events(
        served,
        {"model": "anthropic-echo", "temperature": 2, "stream_options": {"include_usage": True}},
    )
    assert response.status_code == 200
    assert text_of(events) == "alpha beta gamma"
    assert events[0]["adjusted_params"] == {"temperature": 1.0}
    assert events[-2]["adjusted_params"] == {"temperature": 1.0}  # the usage chunk
    assert fakes["anthropic"].requests[-1]["body"]["temperature"] == 1.0


def test_a_temperature_in_range_is_sent_as_is(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    completion = sdk.chat.completions.create(
        model="anthropic-echo",
        messages=USER,  # type: ignore[arg-type]
        temperature=0.4,
    )
    assert "adjusted_params" not in (completion.model_extra or {})
    assert fakes["anthropic"].requests[-1]["body"]["temperature"] == 0.4


def test_gemini_takes_openai_temperatures_up_to_two(sdk: OpenAI, fakes: dict[str, Any]) -> None:
    completion = sdk.chat.completions.create(
        model="gemini-echo",
        messages=USER,  # type: ignore[arg-type]
        temperature=2,
    )
    assert completion.choices[0].message.content == "alpha beta gamma"
    assert "adjusted_params" not in (completion.model_extra or {})
    assert fakes["gemini"].requests[-1]["body"]["generationConfig"]["temperature"] == 2


def test_require_parameters_skips_a_deployment_that_would_clamp(
    sdk: OpenAI, fakes: dict[str, Any]
) -> None:
    completion = sdk.chat.completions.with_raw_response.create(
        model="anthropic-then-openai",
        messages=USER,  # type: ignore[arg-type]
        temperature=1.5,
        extra_body={"provider": {"require_parameters": True}},
    )
    answer = json.loads(completion.text)
    assert answer["provider"] == "openai"
    assert "adjusted_params" not in answer
    skipped = [c for c in answer["routing"]["candidates"] if c["excluded"]]
    assert [c["deployment"] for c in skipped] == ["anthropic/echo"]
    assert "temperature accepts 0 to 1" in skipped[0]["excluded"]
    assert fakes["openai"].requests[-1]["body"]["temperature"] == 1.5


def test_require_parameters_with_only_a_clamping_deployment_is_a_400(sdk: OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as caught:
        sdk.chat.completions.create(
            model="anthropic-echo",
            messages=USER,  # type: ignore[arg-type]
            temperature=1.5,
            extra_body={"provider": {"require_parameters": True}},
        )
    error = caught.value.response.json()["error"]
    assert (error["param"], error["code"]) == ("temperature", "unsupported_parameter")
    assert "temperature accepts 0 to 1" in error["message"]
