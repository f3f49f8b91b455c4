"""Pruning rules: deterministic stripping of named strings and regexes from rows and, through
the `pruning` request stage, from requests to the model trained with them."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from crossroads.config import ConfigError, parse_config
from crossroads.datasets.pruning import Pruner, PruningRule
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, flush_log, gateway_config, running_gateway

ACME = PruningRule(name="acme", pattern="You are Acme's assistant. ")
IDS = PruningRule(name="ids", pattern=r"\border-[0-9]+\b ?", regex=True)


def test_rules_strip_strings_and_regexes_in_order_every_time() -> None:
    pruner = Pruner([ACME, IDS])
    messages: list[dict[str, Any]] = [
        {"role": "system", "content": "You are Acme's assistant. Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "Where is order-123 now?"}]},
        {"role": "assistant", "content": None, "tool_calls": []},
    ]
    pruned = pruner.prune_messages(messages)
    assert pruned[0]["content"] == "Be brief."
    assert pruned[1]["content"] == [{"type": "text", "text": "Where is now?"}]
    assert pruned[2] is messages[2]
    assert messages[0]["content"].startswith("You are Acme")  # the input is not edited
    assert pruner.prune_messages(messages) == pruned
    # a literal pattern is literal: regex characters in it match themselves
    assert Pruner([PruningRule(name="dot", pattern="a.b")]).prune_text("a.b axb") == " axb"


def test_config_names_rules_that_do_not_exist(fake_upstream: FakeOpenAI, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="pruning"):
        parse_config({"pruning": {"rules": [], "models": {"echo": ["missing"]}}})
    with pytest.raises(ConfigError, match="regex"):
        parse_config({"pruning": {"rules": [{"name": "x", "pattern": "(", "regex": True}]}})


@pytest.fixture(scope="module")
def served(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServedApp]:
    config = gateway_config(fake_upstream, tmp_path_factory.mktemp("prune") / "log.db")
    pruning = {
        "rules": [ACME.model_dump(), IDS.model_dump()],
        "models": {"echo": ["acme", "ids"]},
    }
    config = parse_config({**config.model_dump(mode="json", exclude_none=True), "pruning": pruning})
    with running_gateway(config) as g:
        yield g


def _ask(served: ServedApp, model: str, text: str) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": text}]},
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )


def test_the_trained_model_gets_pruned_requests(served: ServedApp) -> None:
    response = _ask(served, "echo", "You are Acme's assistant. Track order-77 please")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["choices"][0]["message"]["content"] == "Track please"  # the fake echoes
    assert body["pruning"] == {"rules": ["acme", "ids"]}
    flush_log(served)
    log_id = response.headers["x-crossroads-log-id"]
    record = httpx.get(
        f"{served.url}/v1/logs/{log_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    assert record["request"]["messages"][0]["content"].startswith("You are Acme")


def test_other_models_are_not_pruned(served: ServedApp) -> None:
    response = _ask(served, "on-vllm", "You are Acme's assistant. Hi")
    assert response.json()["choices"][0]["message"]["content"] == "You are Acme's assistant. Hi"
    assert "pruning" not in response.json()
