"""The app's response cache, from its config: backend chosen by `cache.backend`."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.cache.backends import (
    CacheBackend,
    DatabaseBackend,
    MemoryBackend,
    RedisBackend,
    TieredBackend,
)
from crossroads.cache.config import CacheConfig
from crossroads.cache.responses import ResponseCache
from crossroads.retrieval.embedder import Embedder
from crossroads.storage.cache_store import CacheStore

__all__ = ["build_response_cache"]


def build_response_cache(
    config: CacheConfig, engine: AsyncEngine, embedder: Embedder, state_url: str | None
) -> ResponseCache:
    backend: CacheBackend
    if config.backend == "sqlite":
        # The gateway's database (SQLite or PostgreSQL), behind this process's memory.
        backend = TieredBackend(
            MemoryBackend(config.max_entries), DatabaseBackend(CacheStore(engine))
        )
    elif config.backend == "redis":
        url = config.url or state_url
        if not url or not url.startswith(("redis://", "rediss://", "unix://")):
            raise ValueError("cache.backend = 'redis' needs cache.url or a redis storage.state_url")
        backend = RedisBackend(url)
    else:
        backend = MemoryBackend(config.max_entries)
    return ResponseCache(backend, embedder)


def uses_semantic(config: CacheConfig) -> bool:
    layers = [config, *config.models.values(), *config.keys.values()]
    return any(layer.mode == "semantic" for layer in layers)
