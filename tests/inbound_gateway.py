"""One gateway for the inbound-API tests: models on an anthropic-, an openai- and a
gemini-dialect fake upstream, two keys."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from crossroads.config import parse_config
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, ARGS, DIALECT_PRICE, OTHER_KEY, running_gateway

# A custom tool call's arguments: the gateway's one-string wrapping of a freeform input
# (no "+" or "_": the fake's directive syntax uses them).
PATCH = "*** Begin Patch\n*** Add File: hello.txt\n*** End Patch"
PATCH_ARGS = '{"input":"*** Begin Patch\\n*** Add File: hello.txt\\n*** End Patch"}'

# Public model name → (provider, fake behaviour).
MODELS = {
    "claude-echo": ("anthropic", "echo"),
    "claude-chunked": ("anthropic", "echo+chunks=5"),
    "claude-tool": ("anthropic", f"args={ARGS}"),
    "claude-think": ("anthropic", "think=Two_plus_two+reply=Four."),
    "claude-think-tool": ("anthropic", f"think=Look_it_up+args={ARGS}"),
    "claude-error-429": ("anthropic", "error=429+retry_after=3"),
    "claude-stream-error": ("anthropic", "stream_error"),
    "gpt-echo": ("openai", "echo"),
    "gpt-chunked": ("openai", "echo+chunks=4"),
    "gpt-says-stop": ("openai", "echo+stop_reason"),
    "gpt-says-stop-chunked": ("openai", "echo+chunks=4+stop_reason"),
    "gpt-tool": ("openai", f"args={ARGS}"),
    "gpt-tools": ("openai", f"tools=2+args={ARGS}"),
    "gpt-fixed": ("openai", "fixed"),
    "gpt-error-503": ("openai", "error=503"),
    "gpt-drop": ("openai", "drop_after=2"),
    "gpt-slow-stream": ("openai", "echo+chunks=10+chunk_delay=200"),
    "gpt-patch": ("openai", f"args={PATCH_ARGS}"),
    "gpt-patch-chunked": ("openai", f"args={PATCH_ARGS}+chunks=4"),
    "claude-patch": ("anthropic", f"args={PATCH_ARGS}"),
    "claude-patch-unwrapped": ("anthropic", 'args={"patch":"hello"}'),
    "gemini-echo": ("gemini", "echo"),
    "gemini-tool": ("gemini", f"args={ARGS}"),
}


@pytest.fixture(scope="module")
def inbound_gateway(
    fakes: dict[str, Any], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    database: Path = tmp_path_factory.mktemp("inbound") / "log.db"
    providers: dict[str, Any] = {
        "openai": {"base_url": fakes["openai"].base_url, "api_key": "sk-oa"},
        "anthropic": {
            "dialect": "anthropic",
            "base_url": fakes["anthropic"].base_url,
            "api_key": "sk-an",
        },
        "gemini": {"dialect": "gemini", "base_url": fakes["gemini"].base_url, "api_key": "sk-ge"},
    }
    models: dict[str, Any] = {
        name: {"deployments": [{"provider": provider, "model": behaviour, "price": DIALECT_PRICE}]}
        for name, (provider, behaviour) in MODELS.items()
    }
    # Guardrails apply whichever API the request came in by.
    models["claude-guarded"] = {
        "deployments": [{"provider": "anthropic", "model": "echo", "price": DIALECT_PRICE}],
        "guardrails": {
            "input": [{"check": "policy", "action": "block", "deny": ["secret"]}],
            "output": [{"check": "policy", "action": "block", "deny": ["drop table"]}],
        },
    }
    config = parse_config(
        {
            "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
            "keys": [
                {"name": "main", "key": API_KEY, "logs": "all"},
                {"name": "other", "key": OTHER_KEY},
            ],
            "providers": providers,
            "models": models,
            "routing": {"retries": 0},
        }
    )
    with running_gateway(config) as served:
        yield served
