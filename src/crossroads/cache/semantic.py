"""The semantic cache's vectors, held in this process per (namespace, context).

Lookups never leave the process to compare vectors: a bucket is one numpy matrix, and a
question is one matrix-vector product (tens of microseconds for thousands of entries). A
backend that other replicas share (Redis, the database) also keeps each entry's vector, so
a bucket this process has not seen, or has not reloaded for `reload_after` seconds, is read
from there once; the answer itself is always confirmed in the backend before it is used,
so an entry expired or evicted there is never served from here.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

__all__ = ["Match", "SemanticIndex"]


@dataclass(slots=True)
class _Bucket:
    keys: list[str] = field(default_factory=list)
    questions: list[str] = field(default_factory=list)
    expires: list[float] = field(default_factory=list)
    matrix: np.ndarray | None = None
    loaded_at: float = 0.0


@dataclass(frozen=True, slots=True)
class Match:
    key: str
    question: str
    similarity: float


class SemanticIndex:
    def __init__(self, max_per_bucket: int = 10_000, reload_after: float = 5.0) -> None:
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._max = max_per_bucket
        self.reload_after = reload_after

    def stale(self, namespace: str, context: str) -> bool:
        """Whether the bucket should be (re)read from a shared backend."""
        bucket = self._buckets.get((namespace, context))
        return bucket is None or time.monotonic() - bucket.loaded_at > self.reload_after

    def load(
        self, namespace: str, context: str, rows: list[tuple[str, str, np.ndarray, float]]
    ) -> None:
        """Merge entries read from the backend: (key, question, vector, expires at)."""
        bucket = self._buckets.setdefault((namespace, context), _Bucket())
        known = set(bucket.keys)
        for key, question, vector, expires in rows:
            if key not in known:
                self._append(bucket, key, question, vector, expires)
        bucket.loaded_at = time.monotonic()

    def add(
        self,
        namespace: str,
        context: str,
        key: str,
        question: str,
        vector: np.ndarray,
        expires: float,
    ) -> None:
        bucket = self._buckets.setdefault((namespace, context), _Bucket(loaded_at=time.monotonic()))
        if key in bucket.keys:
            i = bucket.keys.index(key)
            bucket.expires[i] = expires
            return
        self._append(bucket, key, question, vector, expires)

    def _append(
        self, bucket: _Bucket, key: str, question: str, vector: np.ndarray, expires: float
    ) -> None:
        row = np.asarray(vector, dtype=np.float32).reshape(1, -1)
        bucket.matrix = row if bucket.matrix is None else np.vstack([bucket.matrix, row])
        bucket.keys.append(key)
        bucket.questions.append(question)
        bucket.expires.append(expires)
        if len(bucket.keys) > self._max:  # the oldest go first
            del bucket.keys[0], bucket.questions[0], bucket.expires[0]
            bucket.matrix = bucket.matrix[1:]

    def nearest(self, namespace: str, context: str, vector: np.ndarray) -> Match | None:
        """The most similar live entry of the bucket, or None when it is empty."""
        bucket = self._buckets.get((namespace, context))
        if bucket is None or bucket.matrix is None or not bucket.keys:
            return None
        similarities = bucket.matrix @ vector
        now = time.time()
        for i in np.argsort(-similarities)[:8]:
            if bucket.expires[i] > now:
                return Match(bucket.keys[i], bucket.questions[i], float(similarities[i]))
        return None
