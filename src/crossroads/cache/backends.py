"""Where cached answers live: this process's memory, the gateway's database, or Redis.

Each backend stores an answer (JSON bytes) under (namespace, key) with a time to live, and
for entries the semantic cache may match also the question and its vector, so another
replica can fill its in-process index (`semantic.py`) from it.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from crossroads.storage.cache_store import CacheStore

__all__ = [
    "CacheBackend",
    "DatabaseBackend",
    "MemoryBackend",
    "RedisBackend",
    "SemanticEntry",
    "TieredBackend",
]

# (context, question, float32 vector bytes)
SemanticEntry = tuple[str, str, bytes]


class CacheBackend(Protocol):
    shared: bool  # whether other processes see its entries

    async def get(self, namespace: str, key: str) -> bytes | None: ...

    async def get_many(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        """Several entries in one round trip (the exact key and the semantic candidate)."""
        ...

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: SemanticEntry | None = None,
    ) -> None: ...

    async def semantic_rows(
        self, namespace: str, context: str
    ) -> list[tuple[str, str, bytes, float]]: ...

    async def aclose(self) -> None: ...


class MemoryBackend:
    """Least-recently-used entries of this process, at most `max_entries`."""

    shared = False

    def __init__(self, max_entries: int = 10_000) -> None:
        self._entries: OrderedDict[tuple[str, str], tuple[float, bytes]] = OrderedDict()
        self._max = max_entries

    async def get(self, namespace: str, key: str) -> bytes | None:
        entry = self._entries.get((namespace, key))
        if entry is None:
            return None
        if entry[0] <= time.time():
            del self._entries[(namespace, key)]
            return None
        self._entries.move_to_end((namespace, key))
        return entry[1]

    async def get_many(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        return [await self.get(namespace, key) for key in keys]

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: SemanticEntry | None = None,
    ) -> None:
        self._entries[(namespace, key)] = (time.time() + ttl, payload)
        self._entries.move_to_end((namespace, key))
        while len(self._entries) > self._max:
            self._entries.popitem(last=False)

    async def semantic_rows(
        self, namespace: str, context: str
    ) -> list[tuple[str, str, bytes, float]]:
        return []  # the in-process index is all there is

    async def aclose(self) -> None:
        self._entries.clear()


class DatabaseBackend:
    """The `response_cache` table of the gateway's database (storage/cache_store.py)."""

    shared = True

    def __init__(self, store: CacheStore) -> None:
        self.store = store

    async def get(self, namespace: str, key: str) -> bytes | None:
        return await self.store.get(namespace, key)

    async def get_many(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        return [e[0] if e else None for e in await self.get_entries(namespace, keys)]

    async def get_entries(
        self, namespace: str, keys: list[str]
    ) -> list[tuple[bytes, float] | None]:
        """(payload, expires at) of each key's live entry, None where there is none."""
        found = await self.store.get_many(namespace, keys)
        return [found.get(key) for key in keys]

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: SemanticEntry | None = None,
    ) -> None:
        await self.store.put(namespace, key, payload, ttl, semantic)

    async def semantic_rows(
        self, namespace: str, context: str
    ) -> list[tuple[str, str, bytes, float]]:
        far = time.time() + 60.0  # the answer is confirmed in the table before use
        return [(k, q, v, far) for k, q, v in await self.store.semantic_rows(namespace, context)]

    async def aclose(self) -> None:
        return None


class RedisBackend:
    """Answers as Redis strings with a TTL; semantic entries also in one hash per bucket."""

    shared = True

    def __init__(self, url: str, prefix: str = "crossroads:cache") -> None:
        import redis.asyncio as redis

        self._redis = redis.Redis.from_url(url)
        self._prefix = prefix

    def _key(self, namespace: str, key: str) -> str:
        return f"{self._prefix}:{namespace}:{key}"

    def _bucket(self, namespace: str, context: str) -> str:
        return f"{self._prefix}:semantic:{namespace}:{context}"

    async def get(self, namespace: str, key: str) -> bytes | None:
        value = await self._redis.get(self._key(namespace, key))
        return bytes(value) if value is not None else None

    async def get_many(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        values = await self._redis.mget([self._key(namespace, key) for key in keys])
        return [bytes(v) if v is not None else None for v in values]

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: SemanticEntry | None = None,
    ) -> None:
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.set(self._key(namespace, key), payload, px=max(1, int(ttl * 1000)))
            if semantic is not None:
                context, question, vector = semantic
                bucket = self._bucket(namespace, context)
                pipe.hset(bucket, key, question.encode() + b"\x00" + vector)
                pipe.expire(bucket, max(1, int(ttl)))
            await pipe.execute()

    async def semantic_rows(
        self, namespace: str, context: str
    ) -> list[tuple[str, str, bytes, float]]:
        rows = await self._redis.hgetall(self._bucket(namespace, context))
        far = time.time() + 60.0  # confirmed by `get` before use
        out = []
        for key, value in rows.items():
            question, _, vector = bytes(value).partition(b"\x00")
            out.append((bytes(key).decode(), question.decode(), vector, far))
        return out

    async def aclose(self) -> None:
        await self._redis.aclose()


class TieredBackend:
    """This process's memory in front of a database backend: an answer stored here is
    served from memory until it expires (a hit without a database round trip); one stored
    by another process is read from the database once, then copied into memory with the
    time it has left, so its next hit is memory-fast too (on SQLite, a hit read from the
    database adds about 1 ms p50, one from memory about 0.1 ms). Like this process's own
    entries, a copy is served until it expires even if another process replaces it."""

    shared = True

    def __init__(self, front: MemoryBackend, back: DatabaseBackend) -> None:
        self.front = front
        self.back = back

    async def get(self, namespace: str, key: str) -> bytes | None:
        return (await self.get_many(namespace, [key]))[0]

    async def get_many(self, namespace: str, keys: list[str]) -> list[bytes | None]:
        found = await self.front.get_many(namespace, keys)
        if any(value is not None for value in found):
            # Memory answers alone: an exact entry only another process stored may then
            # lose to a semantic one held here, which is still a valid answer.
            return found
        entries = await self.back.get_entries(namespace, keys)
        now = time.time()
        for key, entry in zip(keys, entries, strict=True):
            if entry is not None and entry[1] > now:
                await self.front.put(namespace, key, entry[0], entry[1] - now)
        return [e[0] if e else None for e in entries]

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: SemanticEntry | None = None,
    ) -> None:
        await self.front.put(namespace, key, payload, ttl)
        await self.back.put(namespace, key, payload, ttl, semantic)

    async def semantic_rows(
        self, namespace: str, context: str
    ) -> list[tuple[str, str, bytes, float]]:
        return await self.back.semantic_rows(namespace, context)

    async def aclose(self) -> None:
        await self.front.aclose()
