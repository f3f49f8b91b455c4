"""Breakers and live stats shared between replicas through Redis."""

from __future__ import annotations

import os
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis

from crossroads.config import parse_config
from crossroads.testing.fake_openai import FakeOpenAI
from crossroads.testing.server import ServedApp
from tests.conftest import API_KEY, running_gateway

pytestmark = pytest.mark.redis

REDIS_URL = "redis://127.0.0.1:6379/0"
USER = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def pair(
    fake_upstream: FakeOpenAI, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[ServedApp, ServedApp]]:
    try:
        redis.Redis.from_url(REDIS_URL, socket_timeout=2).ping()
    except redis.RedisError as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis is unreachable and CI is set: {error}")
        pytest.skip(f"Redis is unreachable (set CI to make this fail): {error}")
    broken = f"broken-{uuid.uuid4().hex[:8]}"  # fresh deployment keys for every run
    folder: Path = tmp_path_factory.mktemp("shared")

    def config(name: str) -> Any:
        return parse_config(
            {
                "storage": {
                    "database_url": f"sqlite+aiosqlite:///{folder / name}.db",
                    "state_url": REDIS_URL,
                    "flush_interval": 0.05,
                },
                "keys": [{"name": "main", "key": API_KEY, "logs": "all"}],
                "providers": {
                    broken: {"base_url": fake_upstream.base_url, "api_key": "sk-upstream"},
                    "good": {"base_url": fake_upstream.base_url, "api_key": "sk-upstream"},
                },
                "models": {
                    "m": {
                        "deployments": [
                            {"provider": broken, "model": "error=503"},
                            {"provider": "good", "model": "fixed"},
                        ]
                    }
                },
                "routing": {
                    "retries": 0,
                    "sync_interval": 0.1,
                    "breaker": {"consecutive_failures": 2, "cooldown": 30},
                },
            }
        )

    with running_gateway(config("a")) as a, running_gateway(config("b")) as b:
        yield a, b


def chat(served: ServedApp) -> dict[str, Any]:
    response = httpx.post(
        f"{served.url}/v1/chat/completions",
        json={"model": "m", "messages": USER},
        headers={"Authorization": f"Bearer {API_KEY}"},
    )
    assert response.status_code == 200, response.text
    routing: dict[str, Any] = response.json()["routing"]
    return routing


def test_a_circuit_opened_on_one_replica_opens_on_the_others(
    pair: tuple[ServedApp, ServedApp],
) -> None:
    a, b = pair
    first = chat(a)
    broken = first["attempts"][0]["deployment"]
    chat(a)  # the second failure in a row opens the circuit on replica a
    assert next(c["excluded"] for c in chat(a)["candidates"] if c["deployment"] == broken)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        routing = chat(b)
        excluded = {c["deployment"]: c["excluded"] for c in routing["candidates"]}
        if excluded[broken]:
            break
        time.sleep(0.1)
    assert excluded[broken].startswith("circuit open")
    assert [a["deployment"] for a in routing["attempts"]] == ["good/fixed"]


def test_stats_show_every_replica(pair: tuple[ServedApp, ServedApp]) -> None:
    a, b = pair
    chat(a)
    chat(b)
    time.sleep(0.4)  # a sync interval or more
    stats = httpx.get(
        f"{b.url}/v1/providers/stats", headers={"Authorization": f"Bearer {API_KEY}"}
    ).json()
    cluster = stats["deployments"]["good/fixed"]["cluster"]
    assert len(cluster["replicas"]) >= 2
    assert cluster["requests"] == sum(r["requests"] for r in cluster["replicas"].values())
