"""Cached answers in the gateway's database (SQLite by default, PostgreSQL at scale).

The one owner of `response_cache`'s SQL. Expired rows are skipped on read and deleted by
`prune`; a write replaces any row with the same namespace and key.
"""

from __future__ import annotations

import time

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncEngine

from crossroads.storage.migrate import upgrade
from crossroads.storage.schema import response_cache
from crossroads.storage.storable import storable_text

__all__ = ["CacheStore", "SemanticRow"]

SemanticRow = tuple[str, str, bytes]  # (key, question, vector)


class CacheStore:
    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine

    async def open(self) -> None:
        await upgrade(self._engine)

    async def get(self, namespace: str, key: str) -> bytes | None:
        namespace = storable_text(namespace)  # caller text; PostgreSQL refuses NUL
        query = sa.select(response_cache.c.payload).where(
            response_cache.c.namespace == namespace,
            response_cache.c.key == key,
            response_cache.c.expires_at > time.time(),
        )
        async with self._engine.connect() as connection:
            value = (await connection.execute(query)).scalar()
        return bytes(value) if value is not None else None

    async def get_many(self, namespace: str, keys: list[str]) -> dict[str, tuple[bytes, float]]:
        """(payload, expires at) of each live entry among `keys`.

        The plan is a primary-key search (`namespace = ? AND key IN (…)`, checked with
        EXPLAIN QUERY PLAN on SQLite): about 20 µs in SQLite itself, against about 0.9 ms
        for the whole call, which is the async driver's thread hop and SQLAlchemy's
        execution — why a process keeps what it read in memory (cache/backends.py)."""
        namespace = storable_text(namespace)
        query = sa.select(
            response_cache.c.key, response_cache.c.payload, response_cache.c.expires_at
        ).where(
            response_cache.c.namespace == namespace,
            response_cache.c.key.in_(keys),
            response_cache.c.expires_at > time.time(),
        )
        async with self._engine.connect() as connection:
            return {r[0]: (bytes(r[1]), float(r[2])) for r in await connection.execute(query)}

    async def put(
        self,
        namespace: str,
        key: str,
        payload: bytes,
        ttl: float,
        semantic: tuple[str, str, bytes] | None = None,
    ) -> None:
        context, question, vector = semantic or (None, None, None)
        namespace = storable_text(namespace)
        question = None if question is None else storable_text(question)
        row = {
            "namespace": namespace,
            "key": key,
            "payload": payload,
            "expires_at": time.time() + ttl,
            "context": context,
            "question": question,
            "vector": vector,
        }
        where = (response_cache.c.namespace == namespace) & (response_cache.c.key == key)
        async with self._engine.begin() as connection:
            await connection.execute(response_cache.delete().where(where))
            await connection.execute(response_cache.insert().values(**row))

    async def semantic_rows(self, namespace: str, context: str) -> list[SemanticRow]:
        namespace = storable_text(namespace)
        query = sa.select(
            response_cache.c.key, response_cache.c.question, response_cache.c.vector
        ).where(
            response_cache.c.namespace == namespace,
            response_cache.c.context == context,
            response_cache.c.expires_at > time.time(),
        )
        async with self._engine.connect() as connection:
            return [(r[0], r[1], bytes(r[2])) for r in await connection.execute(query)]

    async def prune(self) -> int:
        async with self._engine.begin() as connection:
            result = await connection.execute(
                response_cache.delete().where(response_cache.c.expires_at <= time.time())
            )
        return int(result.rowcount or 0)
