"""Semantic cache quality per threshold, and what a hit adds to a request's latency.

Quality: each seeded pair (benchmarks/cache/pairs.py) is one fresh cache holding the first
question's answer and asked the second; a paraphrase should hit, a near miss must not.
Reported per similarity threshold: paraphrase hit rate and near-miss false-hit rate, with
the names-and-numbers veto (what the gateway runs) and, as the baseline, without it.

Latency: the cache stage's `before` on a hit (lookup, answer rebuilt with usage and the
`cache` field) for exact and semantic hits on the memory, SQLite and Redis backends: the
time a hit adds before the answer is sent (p50/p99 over `--runs`). `sqlite-only` is the
baseline of a database read on every hit; `sqlite-other` an entry another process stored,
served by the gateway's tiered backend (its first hit per process, `-first`, apart).

    nice -n 10 python benchmarks/cache/semantic.py [--pairs 500] [--runs 2000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from pairs import near_misses, paraphrases

from crossroads.cache.backends import (
    DatabaseBackend,
    MemoryBackend,
    RedisBackend,
    TieredBackend,
)
from crossroads.cache.keys import normalise_question, veto
from crossroads.cache.responses import ResponseCache, probe
from crossroads.retrieval.embedder import LocalEmbedder
from crossroads.storage.cache_store import CacheStore
from crossroads.storage.database import create_engine

RESULTS = Path(__file__).resolve().parents[1] / "results" / "cache.json"
THRESHOLDS = (0.70, 0.75, 0.80, 0.82, 0.84, 0.86, 0.88, 0.90, 0.92, 0.95)
COMPLETION = {
    "id": "chatcmpl-1",
    "object": "chat.completion",
    "created": 0,
    "model": "m",
    "choices": [
        {
            "index": 0,
            "message": {"role": "assistant", "content": "An answer."},
            "finish_reason": "stop",
        }
    ],
    "usage": {"prompt_tokens": 12, "completion_tokens": 3, "total_tokens": 15},
}


def quality(embedder: LocalEmbedder, count: int) -> dict[str, Any]:
    sets = {"paraphrase": paraphrases(count), "near_miss": near_misses(count)}
    out: dict[str, Any] = {}
    for name, pairs in sets.items():
        a = embedder.embed([normalise_question(p[0]) for p in pairs])
        b = embedder.embed([normalise_question(p[1]) for p in pairs])
        similarity = np.sum(a * b, axis=1)
        vetoed = np.array([veto(p[1], p[0]) for p in pairs])
        out[name] = (similarity, vetoed)
    rows = []
    for threshold in THRESHOLDS:
        row: dict[str, Any] = {"threshold": threshold}
        for name, (similarity, vetoed) in out.items():
            row[f"{name}_hits_without_veto"] = round(float(np.mean(similarity >= threshold)), 4)
            row[f"{name}_hits"] = round(float(np.mean((similarity >= threshold) & ~vetoed)), 4)
        rows.append(row)
    return {"pairs_each": count, "rows": rows}


def _percentiles(samples: list[float]) -> dict[str, float]:
    ms = np.array(samples) * 1000
    return {
        "p50_ms": round(float(np.percentile(ms, 50)), 4),
        "p99_ms": round(float(np.percentile(ms, 99)), 4),
    }


async def hit_latency(embedder: LocalEmbedder, runs: int, redis_url: str) -> dict[str, Any]:
    from crossroads.cache.config import CacheConfig
    from crossroads.stages.cache import CacheKind, CacheStage

    folder = Path(tempfile.mkdtemp(prefix="crossroads-cache-"))
    engine = create_engine(f"sqlite+aiosqlite:///{folder / 'cache.db'}")
    store = CacheStore(engine)
    await store.open()
    backends: dict[str, Any] = {
        "memory": MemoryBackend(),
        "sqlite": TieredBackend(MemoryBackend(), DatabaseBackend(store)),  # as the gateway
        "sqlite-only": DatabaseBackend(store),  # another process's entry: a database read
    }
    try:
        import redis

        redis.Redis.from_url(redis_url, socket_connect_timeout=1).ping()
        backends["redis"] = RedisBackend(redis_url, prefix=f"crossroads-bench:{uuid.uuid4().hex}")
    except Exception as exc:
        print(f"redis skipped: {exc}")
    results: dict[str, Any] = {}

    class _Chat:  # what CacheStage.before reads and writes
        def __init__(self, body: dict[str, Any]) -> None:
            self.body = body
            self.reports: dict[str, Any] = {}

        def report(self, name: str, value: Any) -> None:
            self.reports[name] = value

    for name, backend in backends.items():
        cache = ResponseCache(backend, embedder)
        kind = CacheKind(CacheConfig(), cache)
        stored = {
            "model": "m",
            "temperature": 0,
            "messages": [{"role": "user", "content": "What is the population of Paris?"}],
        }
        await cache.store("ns", probe(stored, True), COMPLETION, 600)
        for kind_of_hit, text in (
            ("exact", "What is the population of Paris?"),
            ("semantic", "what is the population of Paris"),
        ):
            body = {**stored, "messages": [{"role": "user", "content": text}]}
            samples = []
            for _ in range(runs):
                stage = CacheStage(kind, "ns", semantic=True, read=True, ttl=600, threshold=0.86)
                chat = _Chat(body)
                started = time.perf_counter()
                answer = await stage.before(chat)  # type: ignore[arg-type]
                samples.append(time.perf_counter() - started)
                assert answer is not None and chat.reports["cache"]["type"] == kind_of_hit
            results[f"{name}/{kind_of_hit}"] = _percentiles(samples)
        await cache.aclose()
    results.update(await _other_process(embedder, store, runs, _Chat))
    await engine.dispose()
    return results


async def _other_process(
    embedder: LocalEmbedder, store: CacheStore, runs: int, chat_type: Any
) -> dict[str, Any]:
    """Hits on SQLite for an entry another process stored, as the gateway's tiered backend
    serves them: `first` is a process's first hit (its memory empty: the bucket and the
    answer read from the database), the others every later hit (the answer copied into
    memory by the first read)."""
    from crossroads.cache.config import CacheConfig
    from crossroads.stages.cache import CacheKind, CacheStage

    writer = ResponseCache(TieredBackend(MemoryBackend(), DatabaseBackend(store)), embedder)
    stored = {
        "model": "m",
        "temperature": 0,
        "messages": [{"role": "user", "content": "How tall is the Eiffel Tower?"}],
    }
    await writer.store("other", probe(stored, True), COMPLETION, 600)
    results: dict[str, Any] = {}
    for kind_of_hit, text in (
        ("exact", "How tall is the Eiffel Tower?"),
        ("semantic", "how tall is the Eiffel Tower"),
    ):
        body = {**stored, "messages": [{"role": "user", "content": text}]}
        first: list[float] = []
        later: list[float] = []
        for run in range(runs):
            if run % 20 == 0:  # a new process: empty memory
                reader = ResponseCache(
                    TieredBackend(MemoryBackend(), DatabaseBackend(store)), embedder
                )
                kind = CacheKind(CacheConfig(), reader)
            stage = CacheStage(kind, "other", semantic=True, read=True, ttl=600, threshold=0.86)
            chat = chat_type(body)
            started = time.perf_counter()
            answer = await stage.before(chat)
            (first if run % 20 == 0 else later).append(time.perf_counter() - started)
            assert answer is not None and chat.reports["cache"]["type"] == kind_of_hit
        results[f"sqlite-other/{kind_of_hit}"] = _percentiles(later)
        results[f"sqlite-other/{kind_of_hit}-first"] = _percentiles(first)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pairs", type=int, default=500)
    parser.add_argument("--runs", type=int, default=2000)
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    embedder = LocalEmbedder()
    embedder.warm()
    result: dict[str, Any] = {"quality": quality(embedder, args.pairs)}
    result["hit_latency"] = asyncio.run(hit_latency(embedder, args.runs, args.redis))
    result["load_average"] = [round(x, 2) for x in os.getloadavg()]  # a busy machine skews times
    print(
        f"{'threshold':>9} {'para hits':>9} {'false hits':>10} | without veto: "
        f"{'para':>6} {'false':>6}"
    )
    for row in result["quality"]["rows"]:
        print(
            f"{row['threshold']:>9.2f} {row['paraphrase_hits']:>9.3f} "
            f"{row['near_miss_hits']:>10.3f} |               "
            f"{row['paraphrase_hits_without_veto']:>6.3f} "
            f"{row['near_miss_hits_without_veto']:>6.3f}"
        )
    print(f"{'hit (backend/type)':<28} {'p50 ms':>8} {'p99 ms':>8}")
    for name, row in result["hit_latency"].items():
        print(f"{name:<28} {row['p50_ms']:>8.3f} {row['p99_ms']:>8.3f}")
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
