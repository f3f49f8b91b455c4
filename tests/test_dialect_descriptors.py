"""A dialect is one descriptor: registering a new one needs no edit to config, registry or CLI.

The toy `reverse` dialect below lives entirely in this file — its config table, its
provider, its descriptor — as a new dialect would live in its own folder. Once registered,
the config loader validates its tables (errors named by path like any other), the gateway
serves it, and `crossroads providers list/matrix` show it.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any, Literal

import orjson
import pytest
from openai import OpenAI
from pydantic import Field
from typer.testing import CliRunner

from crossroads.cli import app
from crossroads.config import ConfigError, parse_config
from crossroads.providers.base import Provider, UpstreamCall
from crossroads.providers.capabilities import Capabilities, matrix
from crossroads.providers.dialect import Dialect
from crossroads.providers.registry import build_providers, dialects, register_dialect
from crossroads.providers.settings import ProviderConfig
from tests.conftest import running_gateway

runner = CliRunner()


class ReverseProviderConfig(ProviderConfig):
    """Answers with the last user message reversed, optionally prefixed."""

    dialect: Literal["reverse"]
    prefix: str = ""
    repeat: int = Field(1, ge=1, le=3)


class ReverseProvider:
    dialect = "reverse"

    def __init__(self, name: str, config: ReverseProviderConfig) -> None:
        self.name = name
        self.capabilities = REVERSE_CAPABILITIES
        self._config = config
        self.ready = False
        self.not_ready_reason = "not started"

    async def start(self) -> None:
        self.ready = True

    async def aclose(self) -> None:
        self.ready = False

    def _answer(self, body: dict[str, Any]) -> str:
        last = str(body["messages"][-1]["content"])
        return self._config.prefix + last[::-1] * self._config.repeat

    async def complete(self, call: UpstreamCall) -> dict[str, Any]:
        return {
            "id": "chatcmpl-reverse",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": call.body["model"],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": self._answer(call.body)},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }

    async def stream(self, call: UpstreamCall) -> AsyncIterator[dict[str, Any]]:
        base = {
            "id": "chatcmpl-reverse",
            "object": "chat.completion.chunk",
            "created": int(time.time()),
            "model": call.body["model"],
        }
        text = self._answer(call.body)
        for i, piece in enumerate((text[:2], text[2:])):
            delta = {"role": "assistant", "content": piece} if i == 0 else {"content": piece}
            yield {**base, "choices": [{"index": 0, "delta": delta, "finish_reason": None}]}
        yield {**base, "choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}
        yield {
            **base,
            "choices": [],
            "usage": {"prompt_tokens": 3, "completion_tokens": 2, "total_tokens": 5},
        }


REVERSE_CAPABILITIES = Capabilities(
    parameters=matrix(native=("temperature",), unsupported=("top_p",)),
    unknown="unsupported",
    notes="a toy: answers backwards",
)


def _build(name: str, config: ReverseProviderConfig) -> Provider:
    return ReverseProvider(name, config)


REVERSE = Dialect(
    name="reverse",
    config=ReverseProviderConfig,
    build=_build,
    capabilities=REVERSE_CAPABILITIES,
    base_url="https://reverse.invalid/v1",
    key_env="REVERSE_API_KEY",
)


@pytest.fixture
def reverse_dialect() -> Iterator[Dialect[ReverseProviderConfig]]:
    unregister = register_dialect(REVERSE)
    try:
        yield REVERSE
    finally:
        unregister()


def _config(database: Path | None = None, **table: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "providers": {"backwards": {"dialect": "reverse", **table}},
        "models": {"mirror": {"deployments": [{"provider": "backwards", "model": "m"}]}},
    }
    if database is not None:
        data["storage"] = {"database_url": f"sqlite+aiosqlite:///{database}"}
    return data


def test_an_unregistered_dialect_is_unknown() -> None:
    with pytest.raises(ConfigError) as caught:
        parse_config(_config())
    assert caught.value.problems == [
        "providers.backwards: unknown dialect (known: openai, anthropic, gemini, llamacpp)"
    ]


@pytest.mark.usefixtures("reverse_dialect")
def test_the_config_loader_validates_a_registered_dialect_with_its_own_model() -> None:
    config = parse_config(_config(prefix=">"))
    table = config.providers["backwards"]
    assert isinstance(table, ReverseProviderConfig)
    assert table.prefix == ">"
    data = _config(repeat=9, colour="red")
    data["providers"]["other"] = {"dialect": "nope"}
    with pytest.raises(ConfigError) as caught:
        parse_config(data)
    assert caught.value.problems == [
        "providers.backwards.repeat: Input should be less than or equal to 3",
        "providers.backwards.colour: unknown setting",
        "providers.other: unknown dialect (known: openai, anthropic, gemini, llamacpp, reverse)",
    ]


def test_a_name_is_registered_once(reverse_dialect: Dialect[ReverseProviderConfig]) -> None:
    with pytest.raises(ValueError, match="already registered"):
        register_dialect(reverse_dialect)
    assert dialects()["reverse"] is reverse_dialect


@pytest.mark.usefixtures("reverse_dialect")
def test_the_registry_builds_and_the_gateway_serves_it(tmp_path: Path) -> None:
    config = parse_config(_config(tmp_path / "log.db", prefix="<"))
    assert isinstance(build_providers(config)["backwards"], ReverseProvider)
    with (
        running_gateway(config) as served,
        OpenAI(base_url=f"{served.url}/v1", api_key="unused", max_retries=0) as client,
    ):
        reply = client.chat.completions.create(
            model="mirror", messages=[{"role": "user", "content": "stressed"}], top_p=0.5
        )
        assert reply.choices[0].message.content == "<desserts"
        assert reply.model_extra is not None
        assert reply.model_extra["dropped_params"] == ["top_p"]
        stream = client.chat.completions.create(
            model="mirror", messages=[{"role": "user", "content": "drawer"}], stream=True
        )
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        assert text == "<reward"


@pytest.mark.usefixtures("reverse_dialect")
def test_the_cli_lists_it_and_shows_its_matrix() -> None:
    listed = runner.invoke(app, ["providers", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    assert orjson.loads(listed.output)["reverse"] == {
        "configure": 'dialect = "reverse"',
        "base_url": "https://reverse.invalid/v1",
        "key_env": "REVERSE_API_KEY",
        "notes": "a toy: answers backwards",
    }
    shown = runner.invoke(app, ["providers", "matrix", "reverse", "--json"])
    assert shown.exit_code == 0, shown.output
    support = orjson.loads(shown.output)["reverse"]
    assert (support["temperature"], support["top_p"], support["seed"]) == (
        "native",
        "unsupported",
        "unsupported",
    )


def test_a_dialect_whose_extra_is_missing_is_one_clear_config_error() -> None:
    needy = Dialect(
        name="needy",
        config=ReverseProviderConfig,
        build=_build,
        capabilities=REVERSE_CAPABILITIES,
        requires=("crossroads_test_module_that_is_not_installed",),
        extra="needy",
    )
    unregister = register_dialect(needy)
    try:
        with pytest.raises(ConfigError) as caught:
            parse_config({"providers": {"p": {"dialect": "needy", "colour": "red"}}})
    finally:
        unregister()
    assert caught.value.problems == [
        "providers.p: the needy dialect needs crossroads_test_module_that_is_not_installed, "
        "which is not installed: pip install 'crossroads[needy]'"
    ]


@pytest.mark.parametrize(
    ("table", "problem"),
    [
        ({"dialect": 5}, "providers.p: unknown dialect (known: openai, anthropic, gemini, "),
        (5, "providers.p: Input should be a valid dictionary or instance of OpenAIProviderConfig"),
        ({}, "providers.p: needs `base_url`, or a `preset` that supplies it"),
        ({"dialect": "anthropic", "preset": "x"}, "providers.p.preset: unknown setting"),
        ({"dialect": "gemini", "base_url": "x"}, "providers.p.base_url: must start with http://"),
        ({"dialect": "llamacpp", "base_url": "http://x"}, "providers.p.base_url: unknown setting"),
        (
            {"dialect": "llamacpp", "context_size": 256},
            "providers.p: context_size 256 leaves under 128 tokens for each of the 4 parallel "
            "slots; raise context_size or lower parallel",
        ),
    ],
)
def test_provider_tables_are_reported_as_before(table: Any, problem: str) -> None:
    """The messages and paths config errors had when the dialects were one pydantic union."""
    with pytest.raises(ConfigError) as caught:
        parse_config({"providers": {"p": table}})
    assert len(caught.value.problems) == 1
    assert caught.value.problems[0].startswith(problem)
