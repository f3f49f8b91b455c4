"""The tiered cache (memory in front of the database): an entry another process stored is
read from the database once, then answered from this process's memory until the time it
had left runs out. SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from crossroads.cache.backends import DatabaseBackend, MemoryBackend, TieredBackend
from crossroads.cache.responses import ResponseCache, probe
from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.storage.cache_store import CacheStore
from crossroads.storage.database import create_engine
from tests.conftest import postgres_engine

ANSWER = {"choices": [{"index": 0, "message": {"content": "Reed Hastings"}}], "usage": {}}


class CountingDatabase(DatabaseBackend):
    """The real database backend, counting the reads that reach it."""

    reads = 0

    async def get_entries(self, namespace: str, keys: list[str]) -> Any:
        self.reads += 1
        return await super().get_entries(namespace, keys)


def _body(text: str) -> dict[str, Any]:
    return {"model": "m", "temperature": 0, "messages": [{"role": "user", "content": text}]}


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[CacheStore]:
    if request.param == "sqlite":
        engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'c.db'}")
        opened = CacheStore(engine)
        await opened.open()
        yield opened
        await engine.dispose()
    else:
        async for pg in postgres_engine("test_cache_tiers"):
            opened = CacheStore(pg)
            await opened.open()
            yield opened


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    model = LocalEmbedder()
    model.warm()
    return model


@pytest.mark.parametrize("question", ["Who founded Netflix?", "who founded Netflix"])
async def test_another_process_entry_is_read_once_then_from_memory(
    store: CacheStore, embedder: LocalEmbedder, question: str
) -> None:
    writer = ResponseCache(TieredBackend(MemoryBackend(), DatabaseBackend(store)), embedder)
    await writer.store("ns", probe(_body("Who founded Netflix?"), True), ANSWER, ttl=0.6)
    database = CountingDatabase(store)
    reader = ResponseCache(TieredBackend(MemoryBackend(), database), embedder)
    kind = "exact" if question.endswith("?") else "semantic"
    for _ in range(3):
        hit = await reader.lookup("ns", probe(_body(question), True), 0.8)
        assert hit is not None and hit.type == kind and hit.completion == ANSWER
    assert database.reads == 1  # the first lookup; the others answered from memory
    await asyncio.sleep(0.7)  # the copy expires with the entry, not later
    assert await reader.lookup("ns", probe(_body(question), True), 0.8) is None
    assert database.reads == 2
