"""The cache's pieces: request keys, the veto, and each backend (PostgreSQL and Redis too)."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from redis.asyncio import Redis
from redis.exceptions import RedisError

from crossroads.cache.backends import (
    CacheBackend,
    DatabaseBackend,
    MemoryBackend,
    RedisBackend,
    TieredBackend,
)
from crossroads.cache.keys import exact_key, last_question, veto
from crossroads.cache.responses import ResponseCache, probe
from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.storage.cache_store import CacheStore
from crossroads.storage.database import create_engine
from tests.conftest import postgres_engine

REDIS_URL = "redis://127.0.0.1:6379/0"
ANSWER = {"choices": [{"index": 0, "message": {"content": "2.1 million"}}], "usage": {}}


def _body(text: str, **extra: Any) -> dict[str, Any]:
    return {"model": "m", "messages": [{"role": "user", "content": text}], **extra}


def test_exact_key_keeps_what_changes_the_answer() -> None:
    base = exact_key(_body("Hi there"))
    assert exact_key(_body("  Hi   there ")) == base
    assert exact_key(_body("Hi there", stream=True, user="u", metadata={"a": 1})) == base
    assert exact_key(_body("Hi there", temperature=0.5)) != base
    assert exact_key(_body("Hi there", seed=3)) != base
    assert exact_key({**_body("Hi there"), "model": "other"}) != base
    assert exact_key(_body("hi there")) != base


def test_semantic_context_excludes_only_the_last_question() -> None:
    one = last_question(_body("What is the population of Paris?"))
    two = last_question(_body("How many people live in Paris?"))
    assert one is not None and two is not None and one[0] == two[0]
    sys_body = {
        "model": "m",
        "messages": [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}],
    }
    assert last_question(sys_body)[0] != last_question(_body("Hi"))[0]  # type: ignore[index]
    assert (
        last_question({"model": "m", "messages": [{"role": "assistant", "content": "x"}]}) is None
    )


@pytest.mark.parametrize(
    ("asked", "stored", "vetoed"),
    [
        ("How many people live in Paris?", "What is the population of Paris?", False),
        ("What is the population of Lyon?", "What is the population of Paris?", True),
        ("GDP of Spain in 2019", "GDP of Spain in 2020", True),
        ("what is the population of lyon", "what is the population of paris", True),
        ("Summarize the history of Rome.", "Summarise the history of Rome.", False),
        ("What's the capital of Japan?", "What is the capital of Japan?", False),
        ("Who founded Google?", "Who founded Netflix?", True),
    ],
)
def test_veto(asked: str, stored: str, vetoed: bool) -> None:
    assert veto(asked, stored) is vetoed


async def _redis_or_skip() -> None:
    admin = Redis.from_url(REDIS_URL, socket_connect_timeout=2)
    try:
        await admin.ping()
    except (RedisError, OSError) as error:
        if os.environ.get("CI"):
            pytest.fail(f"Redis at {REDIS_URL} is unreachable and CI is set: {error}")
        pytest.skip(f"Redis at {REDIS_URL} is unreachable (set CI to make this fail)")
    finally:
        await admin.aclose()


@pytest.fixture(
    params=[
        "memory",
        "sqlite",
        "tiered",
        pytest.param("postgresql", marks=pytest.mark.postgres),
        pytest.param("redis", marks=pytest.mark.redis),
    ]
)
async def backend(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheBackend]:
    if request.param == "memory":
        yield MemoryBackend(max_entries=100)
    elif request.param in ("sqlite", "tiered"):
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        store = CacheStore(engine)
        await store.open()
        database = DatabaseBackend(store)
        yield database if request.param == "sqlite" else TieredBackend(MemoryBackend(), database)
        await engine.dispose()
    elif request.param == "postgresql":
        async for pg in postgres_engine("test_cache"):
            store = CacheStore(pg)
            await store.open()
            yield DatabaseBackend(store)
    else:
        await _redis_or_skip()
        redis_backend = RedisBackend(REDIS_URL, prefix=f"crossroads-test:{uuid.uuid4().hex}")
        yield redis_backend
        await redis_backend.aclose()


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.warm()
    return model


async def test_backends_store_expire_and_answer_semantically(
    backend: CacheBackend, embedder: LocalEmbedder
) -> None:
    cache = ResponseCache(backend, embedder)
    stored = probe(_body("What is the population of Paris?"), semantic=True)
    await cache.store("ns", stored, ANSWER, ttl=60)
    exact = await cache.lookup("ns", probe(_body("What is the population of Paris?"), True), 0.86)
    assert exact is not None and exact.type == "exact" and exact.completion == ANSWER
    similar = await cache.lookup("ns", probe(_body("what is the population of Paris"), True), 0.86)
    assert similar is not None and similar.type == "semantic" and similar.similarity
    assert (
        await cache.lookup("ns", probe(_body("What is the population of Lyon?"), True), 0.5) is None
    )
    assert await cache.lookup("other-ns", stored, 0.86) is None
    short = probe(_body("Short-lived?"), semantic=False)
    await cache.store("ns", short, ANSWER, ttl=0.05)
    await asyncio.sleep(0.1)
    assert await cache.lookup("ns", short, 0.86) is None


async def test_a_second_process_finds_semantic_entries_of_a_shared_backend(
    backend: CacheBackend, embedder: LocalEmbedder
) -> None:
    if not backend.shared:
        pytest.skip("memory entries are this process's own")
    writer, reader = ResponseCache(backend, embedder), ResponseCache(backend, embedder)
    await writer.store("ns", probe(_body("Who founded Netflix?"), True), ANSWER, ttl=60)
    hit = await reader.lookup("ns", probe(_body("who founded Netflix"), True), 0.8)
    assert hit is not None and hit.type == "semantic"


async def test_nul_in_namespace_or_question_is_stored(
    backend: CacheBackend, embedder: LocalEmbedder
) -> None:
    cache = ResponseCache(backend, embedder)
    asked = probe(_body("Who wrote Hamlet?\x00"), semantic=True)
    await cache.store("ns\x00x", asked, ANSWER, ttl=60)
    hit = await cache.lookup("ns\x00x", asked, 0.86)
    assert hit is not None and hit.type == "exact"
