"""The response cache: look a request up, store an answer; exact first, then semantic.

A lookup hashes the request (keys.py) and asks the backend; with semantic on and no exact
entry, the last question is embedded (the packaged local model, about 0.1 ms), compared
with the bucket of questions asked in the same context (semantic.py), and the nearest one
is used when it reaches the threshold, passes the names-and-numbers veto and its answer is
still in the backend.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import orjson

from crossroads.cache.backends import CacheBackend
from crossroads.cache.keys import exact_key, last_question, normalise_question, veto
from crossroads.cache.semantic import SemanticIndex
from crossroads.retrieval.embedder import Embedder

__all__ = ["CacheHit", "Probe", "ResponseCache"]


@dataclass(slots=True)
class Probe:
    """A request as the cache sees it, taken once before any stage rewrites the body (the
    answer is stored under what was looked up)."""

    key: str
    asked: tuple[str, str] | None  # (semantic context, question), when semantic applies
    vector: np.ndarray | None = None


def probe(body: dict[str, Any], semantic: bool) -> Probe:
    return Probe(exact_key(body), last_question(body) if semantic else None)


@dataclass(frozen=True, slots=True)
class CacheHit:
    completion: dict[str, Any]
    type: Literal["exact", "semantic"]
    similarity: float | None = None
    matched: str | None = None  # the stored question, for a semantic hit


class ResponseCache:
    def __init__(self, backend: CacheBackend, embedder: Embedder) -> None:
        self.backend = backend
        self.embedder = embedder
        self.index = SemanticIndex()

    async def lookup(self, namespace: str, probe: Probe, threshold: float) -> CacheHit | None:
        """The exact entry, else the nearest question's that passes the threshold and the
        veto; both read from the backend in one round trip."""
        if probe.asked is None:
            payload = await self.backend.get(namespace, probe.key)
            return CacheHit(orjson.loads(payload), "exact") if payload is not None else None
        context, question = probe.asked
        if self.backend.shared and self.index.stale(namespace, context):
            await self._load(namespace, context)
        probe.vector = self._vector(question)
        match = self.index.nearest(namespace, context, probe.vector)
        if match is not None and (
            match.key == probe.key or match.similarity < threshold or veto(question, match.question)
        ):
            match = None
        keys = [probe.key] if match is None else [probe.key, match.key]
        found = await self.backend.get_many(namespace, keys)
        if found[0] is not None:
            return CacheHit(orjson.loads(found[0]), "exact")
        if match is None or found[1] is None:
            return None
        return CacheHit(
            orjson.loads(found[1]), "semantic", round(match.similarity, 4), match.question
        )

    async def store(
        self, namespace: str, probe: Probe, completion: dict[str, Any], ttl: float
    ) -> None:
        payload = orjson.dumps(completion)
        entry = None
        if probe.asked is not None:
            context, question = probe.asked
            vector = probe.vector if probe.vector is not None else self._vector(question)
            self.index.add(namespace, context, probe.key, question, vector, time.time() + ttl)
            entry = (context, question, vector.tobytes())
        await self.backend.put(namespace, probe.key, payload, ttl, entry)

    def _vector(self, question: str) -> np.ndarray:
        vector: np.ndarray = self.embedder.embed([normalise_question(question)])[0]
        return vector

    async def _load(self, namespace: str, context: str) -> None:
        rows = await self.backend.semantic_rows(namespace, context)
        self.index.load(
            namespace,
            context,
            [(k, q, np.frombuffer(v, dtype=np.float32), e) for k, q, v, e in rows],
        )

    async def aclose(self) -> None:
        await self.backend.aclose()
