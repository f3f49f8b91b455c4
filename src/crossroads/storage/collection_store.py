"""Retrieval collections' rows and the one owner of their SQL: files, stores, chunks.

Every read and delete takes the caller's `owner` and filters on it, so a collection of
another key looks exactly like one that does not exist. Keyword search is the database's
own: FTS5's BM25 on SQLite, `ts_rank` over an English tsvector on PostgreSQL (each index
made by `open`, since neither is portable DDL). Vectors are float32 blobs read back whole
into numpy by `retrieval/search.py`, which keeps them in memory keyed by the store's
`version`, bumped on every change here.
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import numpy as np
import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from crossroads.storage.keyset import Page, page_query
from crossroads.storage.migrate import upgrade
from crossroads.storage.schema import collection_chunks, stored_files, vector_stores
from crossroads.storage.storable import readable_json, storable_json, storable_text

__all__ = ["ChunkRow", "CollectionStore", "StoredFile", "VectorStore", "keyword_terms"]

_TERM = re.compile(r"\w+", re.UNICODE)
_MAX_TERMS = 64
# Words too common to say what a passage is about. Matching them only makes the keyword
# index rank every chunk (73 ms instead of a few at 10k chunks, same recall).
_STOPWORDS = frozenset(
    {
        "a",
        "an",
        "and",
        "are",
        "as",
        "at",
        "be",
        "by",
        "did",
        "do",
        "does",
        "for",
        "from",
        "had",
        "has",
        "have",
        "how",
        "in",
        "is",
        "it",
        "its",
        "of",
        "on",
        "or",
        "that",
        "the",
        "their",
        "this",
        "to",
        "was",
        "were",
        "what",
        "when",
        "where",
        "which",
        "who",
        "whom",
        "why",
        "with",
    }
)


@dataclass(frozen=True, slots=True)
class StoredFile:
    id: str
    owner: str
    filename: str
    purpose: str
    kind: str
    bytes: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class VectorStore:
    id: str
    owner: str
    name: str | None
    metadata: dict[str, Any] | None
    embedding_model: str
    chunk_size: int
    chunk_overlap: int
    version: int
    created_at: datetime


@dataclass(frozen=True, slots=True)
class ChunkRow:
    id: str
    store_id: str
    file_id: str | None
    source: str
    position: int
    text: str


def keyword_terms(query: str) -> list[str]:
    """The query's words, lower-cased and deduplicated: what both keyword indexes match
    (any of them; ranking rewards matching more, and rarer, ones)."""
    seen: dict[str, None] = {}
    for match in _TERM.finditer(query.lower()):
        if match.group(0) not in _STOPWORDS:
            seen.setdefault(match.group(0), None)
    return list(seen)[:_MAX_TERMS]


_SQLITE_WIDE = (
    "SELECT f.chunk_id, best.score FROM (SELECT rowid AS r, -bm25(collection_chunks_fts) AS score "
    "FROM collection_chunks_fts WHERE collection_chunks_fts MATCH :match "
    "ORDER BY bm25(collection_chunks_fts) LIMIT :wide) AS best "
    "JOIN collection_chunks_fts AS f ON f.rowid = best.r "
    "WHERE f.store_id IN ({stores}) ORDER BY best.score DESC LIMIT :limit"
)
_SQLITE_FILTERED = (
    "SELECT chunk_id, -bm25(collection_chunks_fts) AS score FROM collection_chunks_fts "
    "WHERE collection_chunks_fts MATCH :match AND store_id IN ({stores}) "
    "ORDER BY bm25(collection_chunks_fts) LIMIT :limit"
)


def _new_id(prefix: str) -> str:
    return f"{prefix}{secrets.token_hex(12)}"


def _storable_metadata(metadata: dict[str, Any] | None) -> Any:
    """A store's metadata as the database can hold it (text as `storable_text` makes it)."""
    return None if metadata is None else readable_json(storable_json(metadata)[0])


class CollectionStore:
    """Collections in one database. Shares `engine` with its owner and never disposes of it."""

    def __init__(self, engine: AsyncEngine) -> None:
        self._engine = engine
        self._sqlite = engine.dialect.name == "sqlite"

    @property
    def engine(self) -> AsyncEngine:
        return self._engine

    async def open(self) -> None:
        """Migrate, then make the keyword index if it is missing."""
        await upgrade(self._engine)
        async with self._engine.begin() as connection:
            if self._sqlite:
                await connection.execute(
                    sa.text(
                        "CREATE VIRTUAL TABLE IF NOT EXISTS collection_chunks_fts USING "
                        "fts5(chunk_id UNINDEXED, store_id UNINDEXED, text)"
                    )
                )
            else:
                await connection.execute(
                    sa.text(
                        "CREATE INDEX IF NOT EXISTS ix_collection_chunks_tsv ON collection_chunks "
                        "USING gin (to_tsvector('english', text))"
                    )
                )

    # --- files ---------------------------------------------------------------------------

    async def add_file(
        self, owner: str, filename: str, purpose: str, kind: str, size: int, text: str
    ) -> StoredFile:
        # Caller text can hold a NUL or a lone surrogate, which PostgreSQL refuses: stored
        # with U+FFFD instead, as the request log does.
        filename, text = storable_text(filename), storable_text(text)
        row = StoredFile(_new_id("file-"), owner, filename, purpose, kind, size, datetime.now(UTC))
        async with self._engine.begin() as connection:
            await connection.execute(
                stored_files.insert().values(
                    id=row.id,
                    owner=owner,
                    filename=filename,
                    purpose=purpose,
                    kind=kind,
                    bytes=size,
                    text=text,
                    created_at=row.created_at,
                )
            )
        return row

    _FILE_COLUMNS = (
        stored_files.c.id,
        stored_files.c.owner,
        stored_files.c.filename,
        stored_files.c.purpose,
        stored_files.c.kind,
        stored_files.c.bytes,
        stored_files.c.created_at,
    )

    async def get_file(self, owner: str, file_id: str) -> StoredFile | None:
        file_id = storable_text(file_id)
        query = sa.select(*self._FILE_COLUMNS).where(
            stored_files.c.id == file_id, stored_files.c.owner == owner
        )
        async with self._engine.connect() as connection:
            row = (await connection.execute(query)).first()
        return StoredFile(*row) if row is not None else None

    async def file_text(self, owner: str, file_id: str) -> str | None:
        file_id = storable_text(file_id)
        query = sa.select(stored_files.c.text).where(
            stored_files.c.id == file_id, stored_files.c.owner == owner
        )
        async with self._engine.connect() as connection:
            return (await connection.execute(query)).scalar()

    async def list_files(self, owner: str, limit: int = 100) -> list[StoredFile]:
        return (await self.file_page(owner, Page(limit=limit)))[0]

    async def file_page(self, owner: str, page: Page) -> tuple[list[StoredFile], bool]:
        """One page of the caller's files, and whether more follow (`UnknownCursor`)."""
        query = sa.select(*self._FILE_COLUMNS).where(stored_files.c.owner == owner)
        async with self._engine.connect() as connection:
            rows, more = await page_query(
                connection, query, stored_files.c.created_at, stored_files.c.id, page
            )
        return [StoredFile(*row) for row in rows], more

    async def delete_file(self, owner: str, file_id: str) -> bool:
        file_id = storable_text(file_id)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                stored_files.delete().where(
                    stored_files.c.id == file_id, stored_files.c.owner == owner
                )
            )
        return bool(result.rowcount)

    # --- vector stores -------------------------------------------------------------------

    async def create_store(
        self,
        owner: str,
        name: str | None,
        metadata: dict[str, Any] | None,
        embedding_model: str,
        chunk_size: int,
        chunk_overlap: int,
    ) -> VectorStore:
        name = None if name is None else storable_text(name)
        metadata = _storable_metadata(metadata)
        store = VectorStore(
            _new_id("vs_"),
            owner,
            name,
            metadata,
            embedding_model,
            chunk_size,
            chunk_overlap,
            0,
            datetime.now(UTC),
        )
        async with self._engine.begin() as connection:
            await connection.execute(
                vector_stores.insert().values(
                    id=store.id,
                    owner=owner,
                    name=name,
                    metadata=metadata,
                    embedding_model=embedding_model,
                    chunk_size=chunk_size,
                    chunk_overlap=chunk_overlap,
                    version=0,
                    created_at=store.created_at,
                )
            )
        return store

    _STORE_COLUMNS = (
        vector_stores.c.id,
        vector_stores.c.owner,
        vector_stores.c.name,
        vector_stores.c.metadata,
        vector_stores.c.embedding_model,
        vector_stores.c.chunk_size,
        vector_stores.c.chunk_overlap,
        vector_stores.c.version,
        vector_stores.c.created_at,
    )

    async def get_store(self, owner: str, store_id: str) -> VectorStore | None:
        found = await self.get_stores(owner, [store_id])
        return found[0] if found else None

    async def get_stores(self, owner: str, store_ids: Sequence[str]) -> list[VectorStore]:
        """The caller's stores among `store_ids`, in the order asked (unknown ones left out)."""
        store_ids = [storable_text(i) for i in store_ids]  # a NUL: no such store
        query = sa.select(*self._STORE_COLUMNS).where(
            vector_stores.c.id.in_(store_ids), vector_stores.c.owner == owner
        )
        async with self._engine.connect() as connection:
            rows = {row[0]: VectorStore(*row) for row in await connection.execute(query)}
        return [rows[i] for i in dict.fromkeys(store_ids) if i in rows]

    async def list_stores(self, owner: str, limit: int = 100) -> list[VectorStore]:
        return (await self.store_page(owner, Page(limit=limit)))[0]

    async def store_page(self, owner: str, page: Page) -> tuple[list[VectorStore], bool]:
        """One page of the caller's stores, and whether more follow (`UnknownCursor`)."""
        query = sa.select(*self._STORE_COLUMNS).where(vector_stores.c.owner == owner)
        async with self._engine.connect() as connection:
            rows, more = await page_query(
                connection, query, vector_stores.c.created_at, vector_stores.c.id, page
            )
        return [VectorStore(*row) for row in rows], more

    async def delete_store(self, owner: str, store_id: str) -> bool:
        store_id = storable_text(store_id)
        async with self._engine.begin() as connection:
            result = await connection.execute(
                vector_stores.delete().where(
                    vector_stores.c.id == store_id, vector_stores.c.owner == owner
                )
            )
            if not result.rowcount:
                return False
            await connection.execute(
                collection_chunks.delete().where(collection_chunks.c.store_id == store_id)
            )
            if self._sqlite:
                await connection.execute(
                    sa.text("DELETE FROM collection_chunks_fts WHERE store_id = :s"),
                    {"s": store_id},
                )
        return True

    # --- chunks --------------------------------------------------------------------------

    async def add_chunks(
        self,
        store_id: str,
        file_id: str | None,
        source: str,
        texts: Sequence[str],
        embeddings: np.ndarray,
        first_position: int = 0,
    ) -> list[str]:
        """Store one source's chunks with their vectors; bumps the store's version."""
        source = storable_text(source)
        texts = [storable_text(t) for t in texts]
        ids = [_new_id("chunk_") for _ in texts]
        rows = [
            {
                "id": chunk_id,
                "store_id": store_id,
                "file_id": file_id,
                "source": source,
                "position": first_position + i,
                "text": text,
                "embedding": np.asarray(vector, dtype=np.float32).tobytes(),
            }
            for i, (chunk_id, text, vector) in enumerate(zip(ids, texts, embeddings, strict=True))
        ]
        async with self._engine.begin() as connection:
            if rows:
                await connection.execute(collection_chunks.insert(), rows)
                if self._sqlite:
                    await connection.execute(
                        sa.text(
                            "INSERT INTO collection_chunks_fts (chunk_id, store_id, text) "
                            "VALUES (:id, :store_id, :text)"
                        ),
                        [{"id": r["id"], "store_id": store_id, "text": r["text"]} for r in rows],
                    )
            await self._bump(connection, store_id)
        return ids

    async def _bump(self, connection: AsyncConnection, store_id: str) -> None:
        await connection.execute(
            vector_stores.update()
            .where(vector_stores.c.id == store_id)
            .values(version=vector_stores.c.version + 1)
        )

    async def remove_source(self, store_id: str, file_id: str) -> int:
        """Take one file's chunks out of a store; returns how many went."""
        where = (collection_chunks.c.store_id == store_id) & (
            collection_chunks.c.file_id == file_id
        )
        async with self._engine.begin() as connection:
            ids = [
                r[0]
                for r in await connection.execute(sa.select(collection_chunks.c.id).where(where))
            ]
            await connection.execute(collection_chunks.delete().where(where))
            if self._sqlite and ids:
                await connection.execute(
                    sa.text("DELETE FROM collection_chunks_fts WHERE chunk_id = :id"),
                    [{"id": i} for i in ids],
                )
            await self._bump(connection, store_id)
        return len(ids)

    async def store_sources(self, store_id: str) -> list[tuple[str | None, str, int]]:
        """(file id, source, chunk count) of every source in a store."""
        query = (
            sa.select(collection_chunks.c.file_id, collection_chunks.c.source, sa.func.count())
            .where(collection_chunks.c.store_id == store_id)
            .group_by(collection_chunks.c.file_id, collection_chunks.c.source)
        )
        async with self._engine.connect() as connection:
            return [(r[0], r[1], int(r[2])) for r in await connection.execute(query)]

    async def store_files(self, store_id: str) -> list[tuple[str, int, datetime | None]]:
        """(file id, chunk count, the file's upload time — None once the file is deleted) of
        every file in a store."""
        counts = (
            sa.select(collection_chunks.c.file_id, sa.func.count().label("n"))
            .where(
                collection_chunks.c.store_id == store_id, collection_chunks.c.file_id.is_not(None)
            )
            .group_by(collection_chunks.c.file_id)
            .subquery()
        )
        query = sa.select(counts.c.file_id, counts.c.n, stored_files.c.created_at).select_from(
            counts.outerjoin(stored_files, stored_files.c.id == counts.c.file_id)
        )
        async with self._engine.connect() as connection:
            return [(r[0], int(r[1]), r[2]) for r in await connection.execute(query)]

    async def versions(self, store_ids: Sequence[str]) -> dict[str, int]:
        query = sa.select(vector_stores.c.id, vector_stores.c.version).where(
            vector_stores.c.id.in_(list(store_ids))
        )
        async with self._engine.connect() as connection:
            return {r[0]: int(r[1]) for r in await connection.execute(query)}

    async def vectors(self, store_id: str) -> tuple[int, list[str], np.ndarray]:
        """A store's version, chunk ids and their vectors as one matrix (one row per id)."""
        async with self._engine.connect() as connection:
            version = (
                await connection.execute(
                    sa.select(vector_stores.c.version).where(vector_stores.c.id == store_id)
                )
            ).scalar()
            rows = (
                await connection.execute(
                    sa.select(collection_chunks.c.id, collection_chunks.c.embedding)
                    .where(collection_chunks.c.store_id == store_id)
                    .order_by(collection_chunks.c.id)
                )
            ).all()
        ids = [r[0] for r in rows]
        if not rows:
            return int(version or 0), ids, np.zeros((0, 0), dtype=np.float32)
        matrix = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32)
        return int(version or 0), ids, matrix.reshape(len(rows), -1)

    async def keyword_search(
        self, store_ids: Sequence[str], query: str, limit: int
    ) -> list[tuple[str, float]]:
        """(chunk id, score) best first; higher scores are better (BM25 on SQLite, negated
        so; `ts_rank` on PostgreSQL)."""
        terms = keyword_terms(storable_text(query))
        if not terms or not store_ids:
            return []
        params: dict[str, Any] = {"limit": limit}
        stores = ", ".join(f":s{i}" for i in range(len(store_ids)))
        params.update({f"s{i}": s for i, s in enumerate(store_ids)})
        if self._sqlite:
            params["match"] = " OR ".join('"' + t.replace('"', "") + '"' for t in terms)
            params["wide"] = max(4 * limit, 200)
            async with self._engine.connect() as connection:
                # Rank by rowid first (no stored column read per match: 2-3x faster at 50k
                # chunks), keep this store's among the best `wide`; when that leaves too
                # few, rank again with the store filter applied to every match.
                found = [
                    (r[0], float(r[1]))
                    for r in await connection.execute(
                        sa.text(_SQLITE_WIDE.format(stores=stores)), params
                    )
                ]
                if len(found) < limit:
                    found = [
                        (r[0], float(r[1]))
                        for r in await connection.execute(
                            sa.text(_SQLITE_FILTERED.format(stores=stores)), params
                        )
                    ]
            return found
        params["match"] = " | ".join(terms)
        sql = (
            "SELECT id, ts_rank(to_tsvector('english', text), q) AS score "
            "FROM collection_chunks, to_tsquery('english', :match) AS q "
            f"WHERE store_id IN ({stores}) AND to_tsvector('english', text) @@ q "
            "ORDER BY score DESC LIMIT :limit"
        )
        async with self._engine.connect() as connection:
            return [(r[0], float(r[1])) for r in await connection.execute(sa.text(sql), params)]

    async def chunks(self, chunk_ids: Sequence[str]) -> dict[str, ChunkRow]:
        if not chunk_ids:
            return {}
        query = sa.select(
            collection_chunks.c.id,
            collection_chunks.c.store_id,
            collection_chunks.c.file_id,
            collection_chunks.c.source,
            collection_chunks.c.position,
            collection_chunks.c.text,
        ).where(collection_chunks.c.id.in_(list(chunk_ids)))
        async with self._engine.connect() as connection:
            return {r[0]: ChunkRow(*r) for r in await connection.execute(query)}
