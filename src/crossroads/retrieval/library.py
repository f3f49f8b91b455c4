"""Putting documents into collections: parse, chunk, embed, store — and searching them.

`Library` is what the HTTP routes, the retrieval stage and the command line share: one
object per app (made in the lifespan) holding the store, the embedder and the searcher.
Embedding runs in a worker thread, in batches, so a large upload does not stall the event
loop; `progress` is called after each batch (the CLI's progress bar).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Sequence

from crossroads.retrieval.chunking import ChunkingStrategy, chunk_text
from crossroads.retrieval.embedder import Embedder
from crossroads.retrieval.search import DEFAULT_ALPHA, Hit, Searcher, SearchMode
from crossroads.storage.collection_store import CollectionStore, VectorStore

__all__ = ["Library"]

_BATCH = 256

Progress = Callable[[int, int], None]  # (chunks done, chunks in all)


class Library:
    def __init__(self, store: CollectionStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self.searcher = Searcher(store, embedder)

    async def add_text(
        self,
        vector_store: VectorStore,
        text: str,
        source: str,
        file_id: str | None = None,
        progress: Progress | None = None,
    ) -> int:
        """Chunk, embed and store `text`; returns the number of chunks."""
        strategy = ChunkingStrategy(vector_store.chunk_size, vector_store.chunk_overlap)
        chunks = chunk_text(text, strategy)
        await self.add_chunks(vector_store, chunks, source, file_id, progress)
        return len(chunks)

    async def add_chunks(
        self,
        vector_store: VectorStore,
        chunks: Sequence[str],
        source: str,
        file_id: str | None = None,
        progress: Progress | None = None,
    ) -> None:
        for start in range(0, len(chunks), _BATCH):
            batch = list(chunks[start : start + _BATCH])
            vectors = await asyncio.to_thread(self.embedder.embed, batch)
            await self.store.add_chunks(
                vector_store.id, file_id, source, batch, vectors, first_position=start
            )
            if progress is not None:
                progress(start + len(batch), len(chunks))

    async def search(
        self,
        store_ids: Sequence[str],
        query: str,
        limit: int = 10,
        mode: SearchMode = "hybrid",
        alpha: float = DEFAULT_ALPHA,
    ) -> list[Hit]:
        return await self.searcher.search(store_ids, query, limit, mode, alpha)
