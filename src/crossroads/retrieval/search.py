"""Searching collections: keyword, vector, and the hybrid of the two.

Hybrid ranking is a weighted fusion of normalised scores, not reciprocal-rank fusion: every
keyword candidate also gets its exact vector similarity (the matrix is in memory), each
list's scores are min-max scaled to 0–1 over the candidates, and a chunk's fused score is
`alpha · vector + (1 − alpha) · keyword`. On the HaluEval passage set
(benchmarks/retrieval/passages.py) plain RRF (k = 60) ranked far below BM25 alone
(recall@1 0.833 vs 0.909 on 2,000 questions), because it throws away how far ahead the
keyword winner is; score fusion keeps it.

Vectors are held in memory per store as one numpy matrix, reloaded when the store's
`version` in the database moves (another replica, or this one, added or removed chunks):
a search costs one small query plus a matrix product.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from crossroads.retrieval.embedder import Embedder
from crossroads.storage.collection_store import CollectionStore

__all__ = ["DEFAULT_ALPHA", "Hit", "SearchMode", "Searcher", "fuse"]

SearchMode = Literal["hybrid", "keyword", "vector"]

DEFAULT_ALPHA = 0.3  # share of the vector score in hybrid ranking (tuned on HaluEval)
_CANDIDATES = 50  # per list, before fusion
_INLINE_QUERY = 2000  # characters: a query this short is embedded on the event loop


@dataclass(frozen=True, slots=True)
class Hit:
    chunk_id: str
    store_id: str
    file_id: str | None
    source: str
    text: str
    score: float


def _scaled(scores: dict[str, float]) -> dict[str, float]:
    if not scores:
        return {}
    low, high = min(scores.values()), max(scores.values())
    span = high - low
    if span <= 0:
        return dict.fromkeys(scores, 1.0)
    return {key: (value - low) / span for key, value in scores.items()}


def fuse(
    keyword: dict[str, float], vector: dict[str, float], alpha: float = DEFAULT_ALPHA
) -> list[tuple[str, float]]:
    """Chunks ranked by `alpha · vector + (1 − alpha) · keyword`, each list min-max scaled;
    a chunk missing from a list scores 0 there."""
    k, v = _scaled(keyword), _scaled(vector)
    fused = {
        chunk: alpha * v.get(chunk, 0.0) + (1 - alpha) * k.get(chunk, 0.0) for chunk in {*k, *v}
    }
    return sorted(fused.items(), key=lambda item: (-item[1], item[0]))


class _Matrix:
    __slots__ = ("ids", "matrix", "rows", "version")

    def __init__(self, version: int, ids: list[str], matrix: np.ndarray) -> None:
        self.version = version
        self.ids = ids
        self.rows = {chunk: row for row, chunk in enumerate(ids)}
        self.matrix = matrix


class Searcher:
    """Ranks chunks of one or more stores for a query (the caller checked ownership)."""

    def __init__(self, store: CollectionStore, embedder: Embedder) -> None:
        self.store = store
        self.embedder = embedder
        self._matrices: dict[str, _Matrix] = {}
        self._lock = asyncio.Lock()

    async def search(
        self,
        store_ids: Sequence[str],
        query: str,
        limit: int = 10,
        mode: SearchMode = "hybrid",
        alpha: float = DEFAULT_ALPHA,
    ) -> list[Hit]:
        pool = max(limit, _CANDIDATES)
        keyword: dict[str, float] = {}
        vector: dict[str, float] = {}
        if mode == "keyword":
            keyword = dict(await self.store.keyword_search(store_ids, query, pool))
        elif mode == "vector":
            vector = self._top(await self._similarities(store_ids, query), pool, {})
        else:  # both at once: the keyword query runs in the database's thread meanwhile
            found, similarities = await asyncio.gather(
                self.store.keyword_search(store_ids, query, pool),
                self._similarities(store_ids, query),
            )
            keyword = dict(found)
            vector = self._top(similarities, pool, keyword)
        if mode == "keyword":
            ranked = sorted(keyword.items(), key=lambda item: (-item[1], item[0]))
        elif mode == "vector":
            ranked = sorted(vector.items(), key=lambda item: (-item[1], item[0]))
        else:
            ranked = fuse(keyword, vector, alpha)
        ranked = ranked[:limit]
        rows = await self.store.chunks([chunk for chunk, _ in ranked])
        return [
            Hit(c, row.store_id, row.file_id, row.source, row.text, round(score, 6))
            for c, score in ranked
            if (row := rows.get(c)) is not None
        ]

    async def _similarities(
        self, store_ids: Sequence[str], query: str
    ) -> list[tuple[_Matrix, np.ndarray]]:
        """Each store's matrix with the query's cosine similarity to every row."""
        if len(query) <= _INLINE_QUERY:  # ~0.1 ms: less than a hop to a worker thread
            query_vector = self.embedder.embed([query])[0]
        else:
            query_vector = (await asyncio.to_thread(self.embedder.embed, [query]))[0]
        versions = await self.store.versions(store_ids)
        out = []
        for store_id in store_ids:
            held = await self._matrix(store_id, versions.get(store_id, 0))
            if held.ids:
                out.append((held, held.matrix @ query_vector))
        return out

    @staticmethod
    def _top(
        similarities: list[tuple[_Matrix, np.ndarray]], pool: int, also: dict[str, float]
    ) -> dict[str, float]:
        """The `pool` most similar chunks per store, and every chunk of `also`, scored."""
        scores: dict[str, float] = {}
        for held, values in similarities:
            top = min(pool, len(held.ids))
            best = np.argpartition(-values, top - 1)[:top]
            scores.update({held.ids[i]: float(values[i]) for i in best})
            for chunk in also:
                if (row := held.rows.get(chunk)) is not None:
                    scores[chunk] = float(values[row])
        return scores

    async def _matrix(self, store_id: str, version: int) -> _Matrix:
        held = self._matrices.get(store_id)
        if held is not None and held.version == version:
            return held
        async with self._lock:
            held = self._matrices.get(store_id)
            if held is None or held.version != version:
                loaded_version, ids, matrix = await self.store.vectors(store_id)
                held = _Matrix(loaded_version, ids, matrix)
                self._matrices[store_id] = held
        return held

    def forget(self, store_id: str) -> None:
        self._matrices.pop(store_id, None)
