"""One gateway with answer quality configured, for tests/test_quality_*.py: fake upstream
models whose fixed replies play answerers, liars, judges and proposers."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from openai import OpenAI

from crossroads.config import parse_config
from crossroads.server.app import create_app
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp, serve_in_thread
from tests.conftest import API_KEY, flush_log

CONTEXT = (
    "Paris is the capital of France. The Eiffel Tower was completed in 1889 for the World's "
    "Fair and was designed by the engineering company of Gustave Eiffel."
)
QUESTION = "When was the Eiffel Tower completed, and who designed it?"
RIGHT = "The Eiffel Tower was completed in 1889 and designed by the company of Gustave Eiffel."
WRONG = "Napoleon Bonaparte ordered the tower in 1795 after his victory at Waterloo in Belgium."
PRICE = {"input": 1.0, "output": 2.0}

# Public model name → the fake's behaviour (its upstream model id; `_` is a space, `|`
# separates alternatives picked by the request's seed).
MODELS = {
    "right": f"reply={RIGHT}",
    "wrong": f"reply={WRONG}",
    "mixed": f"reply={RIGHT} {WRONG}",
    # seed 0 (the regeneration): the right answer; seed 1 (the caller's): the wrong one
    "wrong-then-right": f"reply={RIGHT}|{WRONG}",
    "judge-high": "reply=0.92",
    "judge-low": "reply=0.05",
    "pass-judge": "reply=PASS_the_answer_is_concise",
    "fail-judge": "reply=FAIL_the_answer_is_rude",
    "score-judge": "reply=0.8_mostly_helpful",
    "broken": "error=500",
    "voter": "reply=Paris|Lyon|Paris|Paris|Marseille",
    "picker": "reply=2",
    "proposer-a": "reply=Paris_is_the_capital.",
    "proposer-b": "reply=The_capital_is_Paris.",
    "aggregator": "reply=Paris.",
}


@pytest.fixture(scope="module")
def fake() -> Iterator[FakeOpenAI]:
    with FakeOpenAI(api_key="sk-upstream").running_in_thread() as fake:
        yield fake


@pytest.fixture(scope="module")
def served(fake: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServedApp]:
    database = Path(tmp_path_factory.mktemp("quality")) / "log.db"
    models = {
        name: {
            "deployments": [{"provider": "fake", "model": spec.replace(" ", "_"), "price": PRICE}]
        }
        for name, spec in MODELS.items()
    }
    data = {
        "storage": {"database_url": f"sqlite+aiosqlite:///{database}", "flush_interval": 0.05},
        "providers": {"fake": {"base_url": fake.base_url, "api_key": "sk-upstream"}},
        "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
        "models": models,
        "quality": {
            "judge_model": "judge-high",
            "criteria": {
                "concise": {"prompt": "The answer is concise.", "model": "pass-judge"},
                "polite": {"prompt": "The answer is polite.", "model": "fail-judge"},
                "helpful": {
                    "prompt": "The answer helps.",
                    "model": "score-judge",
                    "kind": "score",
                    "pass_score": 0.7,
                },
                "flaky": {"prompt": "Anything.", "model": "broken"},
            },
            "moa": {
                "moa": {"proposers": ["proposer-a", "proposer-b"], "aggregator": "aggregator"},
                "deep-moa": {
                    "proposers": ["proposer-a", "proposer-b"],
                    "aggregator": "aggregator",
                    "layers": 2,
                },
            },
        },
    }
    with serve_in_thread(create_app(parse_config(data))) as app:
        yield app


@pytest.fixture
def client(served: ServedApp) -> Iterator[OpenAI]:
    with OpenAI(base_url=f"{served.url}/v1", api_key=API_KEY, max_retries=0) as sdk:
        yield sdk


def ask(question: str = QUESTION) -> list[dict[str, Any]]:
    return [
        {"role": "system", "content": f"Answer from this context only: {CONTEXT}"},
        {"role": "user", "content": question},
    ]


def record(served: ServedApp, log_id: str) -> dict[str, Any]:
    flush_log(served)
    response = httpx.get(
        f"{served.url}/v1/logs/{log_id}", headers={"Authorization": f"Bearer {API_KEY}"}
    )
    assert response.status_code == 200, response.text
    found: dict[str, Any] = response.json()
    return found


def post(served: ServedApp, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{served.url}/v1/chat/completions",
        json=body,
        headers={"Authorization": f"Bearer {API_KEY}"},
        timeout=30,
    )
